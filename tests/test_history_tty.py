#!/usr/bin/python3
"""test_history_tty.py - `ttychat history` on a real terminal (a pty).

Checks that the passphrase prompt turns echo off and the passphrase never
appears on the screen, that a wrong one is refused, that Ctrl-C at the
prompt restores echo and kills the process with SIGINT, and that control
characters stored in a conversation are shown as visible symbols instead
of reaching the terminal.  The store comes from test_history_fixture.
"""
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import termios
import time

import checks
from checks import check, report

BIN = os.environ.get("TTYCHAT_BIN", "./ttychat")
BUILD = os.environ.get("TTYCHAT_BUILDDIR", ".")
FIXTURE = os.path.join(BUILD, "tests", "test_history_fixture")


def run(args, env, steps, timeout=20.0):
    """Runs BIN ARGS on a pty.  STEPS: bytes to type once the output so far
    contains the given prompt, or a callable(fd) called at that point."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(BIN, [BIN] + args, env)
    out = b""
    end = time.time() + timeout
    steps = list(steps)
    status = None
    while time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            try:
                data = os.read(fd, 4096)
            except OSError:
                data = b""
            out += data
        if steps and steps[0][0] in out:
            wait_for, action = steps.pop(0)
            time.sleep(0.05)  # let the program reach its read()
            if callable(action):
                action(fd)
            else:
                os.write(fd, action)
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = st
            # drain what is left
            while True:
                r, _, _ = select.select([fd], [], [], 0.1)
                if not r:
                    break
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    break
                if not data:
                    break
                out += data
            break
    if status is None:
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    os.close(fd)
    return out, status


def main():
    if not os.access(BIN, os.X_OK):
        print("SKIP: %s is not built" % BIN)
        return 77
    if not os.access(FIXTURE, os.X_OK):
        print("SKIP: %s is not built" % FIXTURE)
        return 77
    tmp = tempfile.mkdtemp(prefix="test_history_tty.", dir=BUILD)
    try:
        pw = os.path.join(tmp, "pw")
        with open(pw, "w") as f:
            f.write("s3cret-phrase\n")
        data = os.path.join(tmp, "data")
        subprocess.run([FIXTURE, os.path.join(data, "ttychat"), pw], check=True, stdout=subprocess.DEVNULL)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TTYCHAT_PASSPHRASE")
               and not k.startswith("TTYCHAT_NEW_PASSPHRASE")}
        env["XDG_DATA_HOME"] = data
        env["HOME"] = tmp
        env["TERM"] = "xterm"

        echo_seen = []

        def type_pass(fd):
            echo_seen.append(bool(termios.tcgetattr(fd)[3] & termios.ECHO))
            os.write(fd, b"s3cret-phrase\n")

        out, st = run(["history", "list"], env, [(b"History passphrase: ", type_pass)])
        check(os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0, "list on a tty: status %r, output %r" % (st, out))
        check(echo_seen == [False], "echo off while the passphrase is typed: %r" % echo_seen)
        check(b"s3cret-phrase" not in out, "passphrase not echoed")
        check(b"Sorting" in out and b"What is the capital of France?" in out, "list output: %r" % out)
        # ESC and BEL from the stored title become U+241B and U+2407
        check(b"\x1b[31m" not in out and b"\x07" not in out, "no raw escape or bell on the terminal")
        check("\u241b[31mred".encode() in out and "\u2407".encode() in out, "visible control pictures")

        out, st = run(["history", "list"], env, [(b"History passphrase: ", b"wrong\n")])
        check(os.WIFEXITED(st) and os.WEXITSTATUS(st) == 5, "wrong passphrase: exit 5, got %r" % st)
        check(b"wrong passphrase" in out, "wrong passphrase message: %r" % out)

        echo_after = []

        def interrupt(fd):
            os.write(fd, b"\x03")
            time.sleep(0.3)
            echo_after.append(bool(termios.tcgetattr(fd)[3] & termios.ECHO))

        out, st = run(["history", "list"], env, [(b"History passphrase: ", interrupt)])
        check(os.WIFSIGNALED(st) and os.WTERMSIG(st) == signal.SIGINT, "Ctrl-C kills with SIGINT: %r" % st)
        check(echo_after == [True], "echo restored after Ctrl-C: %r" % echo_after)

        # a new passphrase is asked twice; a mismatch is retried
        out, st = run(["history", "passwd"], env,
                      [(b"History passphrase: ", b"s3cret-phrase\n"),
                       (b"New history passphrase", b"one\n"), (b"Repeat it: ", b"two\n"),
                       (b"New history passphrase (empty for none): \r\nRepeat it: \r\nNew", b"better one\n"),
                       (b"Repeat it: \r\nNew history passphrase (empty for none): \r\nRepeat it: ", b"better one\n")],
                      timeout=60)
        check(os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0, "passwd on a tty: %r %r" % (st, out))
        check(b"better one" not in out and b"two" not in out, "new passphrase not echoed")
        out, st = run(["history", "list"], env, [(b"History passphrase: ", b"better one\n")], timeout=60)
        check(os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0 and b"Sorting" in out, "new passphrase works")
    finally:
        if not checks.failed:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("files kept in", tmp)
    return report()


if __name__ == "__main__":
    sys.exit(main())
