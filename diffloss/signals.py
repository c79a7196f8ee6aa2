"""One way to stop: Ctrl-C, ``kill`` and a container's SIGTERM (a Space restart, ``docker stop``) all raise
KeyboardInterrupt in the main thread, so the code that handles Ctrl-C (save a checkpoint, close a server) runs for
each of them."""

from __future__ import annotations

import signal


def stop_on_signals() -> None:
    """Make SIGINT and SIGTERM raise KeyboardInterrupt in the main thread.

    SIGINT is re-armed explicitly because a process started in the background by a non-interactive shell
    (``nohup cmd &``, some CI runners) inherits it as ignored, and then ``kill -INT`` would do nothing; SIGTERM's
    default ends the process at once, with no chance to save.
    """
    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
