"""jsonhttp.py - the request handler base of the Python tests' fake HTTP
servers (an OpenAI-compatible stand-in): HTTP/1.1 keep-alive, no access
log, and answer(status, obj) for a JSON reply with its length."""
import http.server
import json


class JsonHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
