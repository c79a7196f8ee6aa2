"""Training turns shared between client addresses on a hosted studio: no address takes two turns in a row while
another address waits.

Why: a hosted studio trains one run at a time (the Train tab's queue, concurrency id ``train``), each turn up to 8
minutes on a CPU Space. Gradio's queue is first come, first served, so one person with several tabs (several
sessions, one address) queued several runs and held the slot for turn after turn while others waited behind them.
Here, when a turn starts, an address whose previous turn ended less than ``TURN_GAP_S`` ago is refused, with the
reason, if a run of another address is waiting in the same queue; with nobody else waiting it trains at once.
"""

from __future__ import annotations

import functools
import inspect
import threading
import time
from typing import Any, Callable

TURN_APIS = ("train", "resume")  # the handlers that share the one training slot
TURN_GAP_S = 600.0  # a turn on a CPU Space is at most 8 minutes: the next after it is "in a row"

_LAST_END: dict[str, float] = {}  # address key -> when its last turn ended (time.monotonic)
_LOCK = threading.Lock()


def refusal(address: str | None, waiting: set[str], now: float, last_end: dict[str, float]) -> str | None:
    """Why ``address`` may not start a turn now (None: it may): it ended one less than ``TURN_GAP_S`` ago and
    another address is waiting."""
    if address is None or address not in last_end:
        return None
    since = now - last_end[address]
    if since >= TURN_GAP_S or not (waiting - {address}):
        return None
    return ("Your address had the training slot until a moment ago and other visitors are waiting for it: this "
            "run is not started, so that they get their turn. Start it again after theirs.")


def waiting_addresses(concurrency_id: str = "train") -> set[str]:
    """The address keys of the runs waiting in gradio's queue for ``concurrency_id`` (empty outside an event, or if
    gradio's queue is not what this expects)."""
    from gradio.context import LocalContext

    from studio import visitors

    blocks = LocalContext.blocks.get(None)
    queues = getattr(getattr(blocks, "_queue", None), "event_queue_per_concurrency_id", None) or {}
    requests = [getattr(e, "request", None) for e in getattr(queues.get(concurrency_id), "queue", None) or []]
    # (never address_key(None): that would read the current event's request, the one asking)
    return {key for key in (visitors.address_key(r) for r in requests if r is not None) if key}


def fair_turns(fn: Callable) -> Callable:
    """``fn`` (a generator handler of the training slot) refused at its start by ``refusal``; its end is recorded
    for its address. Same signature, so gradio still injects ``gr.Request``."""
    if not inspect.isgeneratorfunction(fn):
        return fn

    @functools.wraps(fn)
    def turn(*args: Any, **kwargs: Any):
        import gradio as gr

        from studio import visitors

        address = visitors.address_key()
        with _LOCK:
            reason = refusal(address, waiting_addresses(), time.monotonic(), _LAST_END)
        if reason:
            raise gr.Error(reason)
        try:
            yield from fn(*args, **kwargs)
        finally:
            if address is not None:
                with _LOCK:
                    _LAST_END[address] = time.monotonic()

    return turn
