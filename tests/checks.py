"""checks.py - the counting check() shared by ttychat's Python tests.

A test script calls check(cond, what) for each assertion and ends main()
with `return report()`, which prints "N passed, M failed" and gives the
exit status automake's test driver reads (0 all passed, 1 some failed; a
script that skips exits 77 itself).  Scripts import it from their own
folder, tests/, which Python puts first on sys.path (also in a VPATH or
distcheck build, where the scripts run from the source tree).
"""
import sys

passed = failed = 0


def check(cond, what):
    """Counts one check; prints "FAIL: WHAT" when COND is false."""
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what)
        sys.stdout.flush()


def report():
    """Prints the counts; the exit status for them."""
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0
