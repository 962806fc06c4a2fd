"""pitcrew's mutation runner: runs tests against each mutant of one file, in one process.

usage: python3 pitcrew_mutants.py SPEC.json

SPEC: {"target": path of the mutated file, relative to the working directory,
       "tests": pytest arguments (test files; empty: the suite as configured),
       "mutants": [{"id": ..., "source": path of the mutated source}],
       "timeout": seconds per mutant, "deadline": unix time to stop at,
       "results": path of the JSON-lines file to append one result per mutant to}

The working directory comes first on sys.path, as under `python -m pytest`. The tests run
once against the unmutated file first, as a control (id "__original__"): it must survive, or
no verdict of this run means anything. Each mutant then replaces the target by rename (a new
file, so a half-written one is never imported), every module loaded from the working
directory is forgotten, and pytest runs again in this process (-x: the first failure is
enough). Outcomes: killed (the tests failed), survived (they passed), timeout (they ran past
the limit), error (pytest could not run them: usage error or nothing collected).
"""
import json
import os
import signal
import sys
import time

import pytest


def forget_project_modules(root):
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None) or ""
        if path.startswith(root):
            del sys.modules[name]


class Timeout(BaseException):
    pass


def main():
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    # As `python -m pytest` does: the project, not this script's directory, is importable.
    sys.path[0] = os.getcwd()
    root = os.getcwd() + os.sep
    target = spec["target"]
    with open(target, "rb") as f:
        original = f.read()
    timed_out = [False]

    def on_alarm(signum, frame):
        timed_out[0] = True
        raise Timeout()

    signal.signal(signal.SIGALRM, on_alarm)
    args = ["-x", "-q", "--no-header", "-p", "no:cacheprovider", "-o", "xfail_strict=true"]
    args += spec["tests"]
    control = {"id": "__original__", "source": None}
    with open(spec["results"], "a") as results:
        for mutant in [control] + spec["mutants"]:
            if time.time() >= spec["deadline"]:
                break
            if mutant["source"] is None:
                source = original
            else:
                with open(mutant["source"], "rb") as f:
                    source = f.read()
            with open(target + ".pitcrew-mutant", "wb") as f:
                f.write(source)
            os.replace(target + ".pitcrew-mutant", target)
            forget_project_modules(root)
            timed_out[0] = False
            started = time.time()
            signal.setitimer(signal.ITIMER_REAL, spec["timeout"])
            try:
                code = int(pytest.main(list(args)))
            except Timeout:
                code = -1
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            if timed_out[0]:
                outcome = "timeout"
            elif code == 0:
                outcome = "survived"
            elif code in (4, 5):
                outcome = "error"
            else:
                outcome = "killed"
            results.write(json.dumps({
                "id": mutant["id"],
                "outcome": outcome,
                "code": code,
                "seconds": round(time.time() - started, 4),
            }) + "\n")
            results.flush()
            if mutant is control and outcome != "survived":
                break
    with open(target + ".pitcrew-mutant", "wb") as f:
        f.write(original)
    os.replace(target + ".pitcrew-mutant", target)


if __name__ == "__main__":
    main()
