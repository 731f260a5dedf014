"""Ctrl-C and SIGTERM as requests: a handler that calls back instead of raising KeyboardInterrupt.

Only the main thread may install signal handlers; elsewhere (a search's trial threads) this does
nothing, and the main thread's handler is the one that forwards the request.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Callable, Iterator

INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def interrupts_call(callback: Callable[[str], None]) -> Iterator[None]:
    """Within the block, SIGINT/SIGTERM call ``callback("SIGINT")`` (or "SIGTERM")."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, lambda signum, frame: callback(signal.Signals(signum).name))
                for sig in INTERRUPTS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
