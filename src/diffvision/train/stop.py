"""Stopping a training run between steps: Ctrl-C (SIGINT) or a scheduler's or torchrun's
SIGTERM asks the run to stop, and it stops at the end of the step in progress; every rank of a
torchrun launch at the same step. A checkpoint then holds whole steps, and no rank is left
waiting in a collective (a gradient all-reduce, the checkpoint's barrier) for a rank that has
stopped, which could hang a launch until torchrun killed it, with no checkpoint. A second signal
stops at once."""

from __future__ import annotations

import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """A context in which SIGINT and SIGTERM set :attr:`asked` instead of interrupting; a second
    signal raises KeyboardInterrupt. Signals that the process ignores (a background shell's
    SIGINT) stay ignored; outside the main thread, where handlers cannot be set, signals are left
    alone."""

    def __init__(self) -> None:
        self.asked = False
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.asked:  # asked twice: now
            raise KeyboardInterrupt(signal.Signals(signum).name)
        self.asked = True

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                if signal.getsignal(sig) is not signal.SIG_IGN:
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
