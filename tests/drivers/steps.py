"""What the driver scripts share: named steps, checks that stop the script with a message,
and a watchdog that fails it when something hangs (a driver waiting forever for an answer is
a failure, not a hang of the suite)."""

import faulthandler
import os
import sys
import threading

_step = "start"


def watchdog(seconds):
    """Fails the whole script after `seconds`, even when blocked in C."""

    def fire():
        print(f"FAILED: no answer after {seconds} s during {_step!r}", file=sys.stderr, flush=True)
        faulthandler.dump_traceback(all_threads=True)
        os._exit(3)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()


def begin(what):
    """Names the step now running (printed, and quoted when something fails)."""
    global _step
    _step = what
    print(f"-- {what}", flush=True)


def check(cond, what):
    """Stops the script with `what` unless `cond` holds."""
    if not cond:
        print(f"FAILED during {_step!r}: {what}", file=sys.stderr, flush=True)
        os._exit(1)
