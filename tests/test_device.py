#!/usr/bin/python3
"""test_device.py - --device and --gpu-layers on the command line, with the
real SmolLM2, on whatever machine runs it.

Without a usable GPU (no driver, no device, or a build without CUDA):
`--device cuda` prints exactly one notice line on stderr ("ttychat: no
CUDA device: ...; running on the CPU"), still answers, on the CPU, and
exits 0; the same for `ttychat bench --device cuda`.  With a GPU the same
runs say where they ran ("on cuda: ...", bench's "cuda N/M") and print no
such notice.  Everywhere: `--device cpu` and the default print nothing on
stderr, `--device cpu` and `--gpu-layers 0` run on the CPU, a bad
--device or --gpu-layers value is a usage error (exit 2) that names the
flag, and models.d "device"/"gpu_layers" are read (a bad value is
reported).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from checks import check, report

BIN = os.environ.get("TTYCHAT_BIN", "./ttychat")
MODELS = os.environ.get("TTYCHAT_MODELS_DIR", "")
SMOL = os.path.join(MODELS, "SmolLM2-135M-Instruct.Q4_1.gguf")
NOTICE = re.compile(r"^ttychat: (no CUDA device: .+|CUDA: .+); running on the CPU$")
ENV = {}


def run(args, timeout=180):
    p = subprocess.run([BIN] + args, stdin=subprocess.DEVNULL, capture_output=True, env=ENV, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def backend_of(err):
    """The backend named by -v's model line ("cpu", "cuda: ..."), or None."""
    m = re.search(r"^model: .*, on (.+)$", err, re.M)
    return m.group(1) if m else None


def main():
    if not os.path.isfile(SMOL):
        print("SKIP: %s is absent (run scripts/fetch-models)" % SMOL)
        return 77
    if not os.access(BIN, os.X_OK):
        print("SKIP: %s is not built" % BIN)
        return 77
    tmp = tempfile.mkdtemp(prefix="test_device.")
    try:
        conf = os.path.join(tmp, "config")
        md = os.path.join(conf, "ttychat", "models.d")
        os.makedirs(md)
        ENV.update(os.environ, XDG_CONFIG_HOME=conf, XDG_DATA_HOME=os.path.join(tmp, "data"), CI="true",
                   HOME=tmp)
        for k in ("TTYCHAT_PASSPHRASE_FILE", "TTYCHAT_PASSPHRASE_FD", "TTYCHAT_TEST_INJECT"):
            ENV.pop(k, None)
        q = ["-m", SMOL, "--temp", "0", "-n", "6", "-p", "What is the capital of France?"]

        # the CPU, asked for: no notice, the same text as the default
        rc, out_cpu, err = run(q + ["--device", "cpu"])
        check(rc == 0 and out_cpu.strip(), "--device cpu: exit 0 with text (%d, %r)" % (rc, err))
        check(err == "", "--device cpu: nothing on stderr: %r" % err)
        rc, _, err = run(q + ["--device", "cpu", "-v"])
        check(backend_of(err) == "cpu", "--device cpu -v: on cpu (%r)" % backend_of(err))
        rc, _, err = run(q + ["--gpu-layers", "0", "-v"])
        check(rc == 0 and backend_of(err) == "cpu", "--gpu-layers 0: on cpu (%d, %r)" % (rc, backend_of(err)))
        check(not NOTICE.search(err), "--gpu-layers 0: no notice: %r" % err)

        # CUDA asked for: on the GPU, or one notice line and the CPU
        rc, out, err = run(q + ["--device", "cuda", "-v"])
        be = backend_of(err) or ""
        lines = [l for l in err.splitlines() if NOTICE.match(l)]
        check(rc == 0 and out.strip(), "--device cuda: exit 0 with text (%d, %r)" % (rc, err))
        if be.startswith("cuda"):
            print("note: a usable GPU: %s" % be)
            check(not lines, "--device cuda on a GPU: no fallback notice: %r" % lines)
        else:
            check(be == "cpu", "--device cuda without a GPU: on cpu (%r)" % be)
            check(len(lines) == 1, "--device cuda without a GPU: one notice line: %r" % err)
            check(out == out_cpu, "--device cuda without a GPU: the CPU's text (%r vs %r)" % (out, out_cpu))
            # without -v the notice is all there is on stderr
            rc, out2, err2 = run(q + ["--device", "cuda"])
            check(rc == 0 and out2 == out_cpu, "--device cuda: exit 0, same text (%d)" % rc)
            check(len(err2.splitlines()) == 1 and NOTICE.match(err2.strip()),
                  "--device cuda: exactly the notice on stderr: %r" % err2)
            # the default (auto) stays quiet without a GPU
            rc, out3, err3 = run(q)
            check(rc == 0 and err3 == "" and out3 == out_cpu, "auto without a GPU: quiet (%d, %r)" % (rc, err3))
            # --json=final names the backend
            rc, out4, _ = run(q + ["--device", "cuda", "--json=final"])
            obj = json.loads(out4.splitlines()[-1]) if rc == 0 and out4.strip() else {}
            check(obj.get("model", {}).get("backend") == "cpu", "--json=final: backend cpu: %r" % obj.get("model"))

        # usage errors name the flag
        for args, flag in ((["--device", "bogus"], "--device"), (["--device", ""], "--device"),
                           (["--gpu-layers", "-3"], "--gpu-layers"), (["--gpu-layers", "x"], "--gpu-layers"),
                           (["--gpu-layers", "2000000"], "--gpu-layers")):
            rc, out, err = run(q + args)
            check(rc == 2 and flag in err and out == "", "%s: usage error naming %s (%d, %r)" % (args, flag, rc, err))

        # models.d "device" and "gpu_layers"
        with open(os.path.join(md, "dsmol.json"), "w") as f:
            json.dump({"name": "dsmol", "file": SMOL, "device": "cpu", "gpu_layers": 4}, f)
        rc, _, err = run(["-m", "dsmol", "-n", "2", "-p", "Hi", "-v"])
        check(rc == 0 and backend_of(err) == "cpu" and not NOTICE.search(err),
              "models.d device cpu: on cpu, no notice (%d, %r)" % (rc, err))
        with open(os.path.join(md, "bsmol.json"), "w") as f:
            json.dump({"name": "bsmol", "file": SMOL, "device": "tpu"}, f)
        rc, _, err = run(["-m", "bsmol", "-n", "2", "-p", "Hi"])
        check(rc != 0 and "device" in err, "models.d device tpu: rejected (%d, %r)" % (rc, err))

        # bench: the same fallback, the backend column
        bq = ["bench", "-m", SMOL, "-p", "8", "-n", "4", "-r", "1", "-t", "1"]
        rc, out, err = run(bq + ["--device", "cuda"])
        check(rc == 0 and "tg4" in out, "bench --device cuda: exit 0 with results (%d, %r)" % (rc, err))
        notice = [l for l in err.splitlines() if re.match(r"^ttychat bench: .+; running on the CPU$", l)]
        if "| cuda " in out:
            check(not notice, "bench on a GPU: no fallback notice: %r" % err)
        else:
            check(len(notice) == 1 and "cpu " in out, "bench --device cuda without a GPU: notice, cpu rows: %r %r"
                  % (err, out))
        rc, out, err = run(bq + ["--device", "cpu", "--json"])
        rows = json.loads(out) if rc == 0 else []
        check(rows and all(r.get("backend") == "cpu" and r.get("gpu_layers") == 0 for r in rows) and err == "",
              "bench --device cpu --json: backend cpu, no notice (%d, %r)" % (rc, err))
        rc, out, err = run(bq + ["--device", "bogus"])
        check(rc == 2 and "--device" in err, "bench --device bogus: usage error (%d, %r)" % (rc, err))
        rc, out, err = run(bq + ["--gpu-layers", "-3"])
        check(rc == 2 and "--gpu-layers" in err, "bench --gpu-layers -3: usage error (%d, %r)" % (rc, err))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report()


if __name__ == "__main__":
    sys.exit(main())
