"""Ctrl-C: `edgec: interrupted`, exit status 130, and nothing half-written left behind.

Python raises KeyboardInterrupt where the main thread happens to be, and TVM's C++ code checks
for signals while it works and turns the KeyboardInterrupt into its own error: a RuntimeError, or
nothing at all where TVM works around a failure (Relax's FoldConstant, which builds every
constant expression, leaves an expression whose build failed unfolded and goes on with the next;
edgec's schedule rules try the next primitive). So the CLI installs `handler`, which records the
interrupt and raises KeyboardInterrupt, and raises it again every REPEAT_S seconds (through
`_thread.interrupt_main`) until the CLI has caught it (`stop`), so that code which swallows one
soon meets the next;

- `check()` raises KeyboardInterrupt if one was recorded: before a result is renamed into place
  and after TVM returns;
- `interrupted()` tells the CLI that an error escaping while an interrupt is recorded is the
  interrupt;
- while cleanup runs (inside `deferred()`, or in an except or finally clause) a Ctrl-C is only
  recorded, so that removing a temporary file is not cut short; the repeat comes after it;
- where Python cannot raise it (a weakref callback, a `__del__`: Python prints "Exception ignored
  in ..." with a traceback) the KeyboardInterrupt is dropped without a word: the repeat raises it
  where it can.

Outside the CLI (`edgec` used as a library) Python's own handler stays and `check()` does nothing.
"""

from __future__ import annotations

import _thread
import contextlib
import signal
import sys
import threading

REPEAT_S = 0.02

_interrupted = False  # a Ctrl-C came since `install`
_deferring = 0  # depth of `deferred()` blocks
_stop = threading.Event()  # set: the CLI has caught the interrupt, raise no more
_repeater: threading.Thread | None = None
_unraisablehook = sys.unraisablehook  # the one `install` replaced


def handler(signum, frame) -> None:
    global _interrupted, _repeater
    _interrupted = True
    if _stop.is_set():
        return
    if _repeater is None:
        _repeater = threading.Thread(target=_repeat, name="edgec-interrupt", daemon=True)
        _repeater.start()
    if _deferring or sys.exc_info()[1] is not None:
        return  # cleanup is running: the repeat comes after it
    raise KeyboardInterrupt


def _unraisable(info) -> None:
    if not issubclass(info.exc_type, KeyboardInterrupt):
        _unraisablehook(info)


def _repeat() -> None:
    while not _stop.wait(REPEAT_S):
        _thread.interrupt_main()


def install():
    """Install `handler` for SIGINT and return the previous handler; None (and nothing installed)
    outside the main thread."""
    global _interrupted, _unraisablehook
    if threading.current_thread() is not threading.main_thread():
        return None
    _interrupted = False
    _stop.clear()
    _unraisablehook, sys.unraisablehook = sys.unraisablehook, _unraisable
    return signal.signal(signal.SIGINT, handler)


def stop() -> None:
    """Raise no more KeyboardInterrupts: the CLI has caught one.

    CPython remembers whether the last code run by `exec()` of a string ended in a
    KeyboardInterrupt (dataclasses and namedtuple exec the methods they generate, so an import can)
    and then, at exit, kills the process with SIGINT even though the interrupt was caught: exit
    status -2 instead of 130, about one compile in 40 interrupted at 60%. An `exec` of an empty
    string, which ends normally, resets that."""
    global _repeater
    _stop.set()
    if _repeater is not None:
        _repeater.join()
        _repeater = None
    exec("")  # noqa: S102 - see the docstring


def uninstall(previous) -> None:
    """Stop, make `previous` the SIGINT handler again and forget the interrupt."""
    global _interrupted
    stop()
    signal.signal(signal.SIGINT, previous)
    sys.unraisablehook = _unraisablehook
    _interrupted = False


def interrupted() -> bool:
    return _interrupted


def check() -> None:
    if _interrupted:
        raise KeyboardInterrupt


@contextlib.contextmanager
def deferred():
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
