"""How much one client address may upload to a hosted studio in an hour: a count and a byte budget.

Why: gradio's ``/gradio_api/upload`` accepts files before any handler runs, with no session, so its only limits were
the size of each file and the cache's cleaning; the audit sent 20 files of 49 MB in 15 s. On a hosted studio an ASGI
middleware (``UploadLimit``, added through ``launch(app_kwargs=...)``) answers 429 with the time to wait once an
address has sent ``max_files`` files or ``max_bytes`` in the last ``window_s`` seconds (counted by the request's
declared length, which is required: a request without one gets 411).

The client address is the connection's peer; on a Space (``SPACE_ID`` set), where every connection comes from the
Hub's proxy, it is the last address of ``X-Forwarded-For``, the one that proxy added (earlier ones are whatever
the client wrote). A visitor with many addresses gets many budgets: this bounds a careless or scripted flood from
one place, not a botnet.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any, Callable

UPLOAD_PATHS = ("/gradio_api/upload", "/upload")


@dataclass(frozen=True)
class UploadBudget:
    """Per client address, within a sliding window."""

    max_files: int = 60  # requests to the upload route (a photo, a ground truth, a zip: a few per Compare)
    max_bytes: int = 300 * 2**20  # six of the largest upload gradio accepts here (50 MB)
    window_s: float = 3600.0


class AddressLedger:
    """What each address uploaded in the window; thread-safe (uvicorn may serve requests on several threads)."""

    def __init__(self, budget: UploadBudget | None = None) -> None:
        self.budget = budget or UploadBudget()
        self._sent: dict[str, deque[tuple[float, int]]] = defaultdict(deque)
        self._lock = threading.Lock()

    def admit(self, address: str, size: int, now: float | None = None) -> str | None:
        """Record an upload of ``size`` bytes from ``address`` and return None, or, over the budget, record nothing
        and return the refusal (one line, with the minutes to wait)."""
        now = time.time() if now is None else now
        budget = self.budget
        with self._lock:
            sent = self._sent[address]
            while sent and sent[0][0] <= now - budget.window_s:
                sent.popleft()
            count, total = len(sent), sum(n for _, n in sent)
            if count + 1 <= budget.max_files and total + size <= budget.max_bytes:
                sent.append((now, size))
                return None
            wait = budget.window_s - (now - sent[0][0]) if sent else budget.window_s
        minutes = max(1, math.ceil(wait / 60))
        return (f"Too many uploads from your address: at most {budget.max_files} files and "
                f"{budget.max_bytes // 2**20} MB an hour on this hosted studio; try again in {minutes} minute"
                f"{'s' if minutes > 1 else ''}.")


def client_address(scope: dict[str, Any]) -> str:
    """The address the budget is kept for (see the module's docstring)."""
    if os.environ.get("SPACE_ID"):
        for name, value in scope.get("headers", []):
            if name == b"x-forwarded-for":
                last = value.decode("latin-1").split(",")[-1].strip()
                if last:
                    return last
    client = scope.get("client")
    return client[0] if client else "unknown"


BUDGET = UploadBudget()


class UploadLimit:
    """ASGI middleware: uploads over an address's budget get 429 (411 without a declared length) before gradio
    reads a byte of them; every other request passes untouched. Each app (each launch) keeps its own ledger."""

    def __init__(self, app: Callable, ledger: AddressLedger | None = None) -> None:
        self.app = app
        self.ledger = ledger or AddressLedger(BUDGET)

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope.get("type") != "http" or scope.get("method") != "POST" or not scope.get("path", "").endswith(
                UPLOAD_PATHS):
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is None or not length.isdigit():
            await _plain(send, 411, "An upload needs a Content-Length on this hosted studio.")
            return
        refusal = self.ledger.admit(client_address(scope), int(length))
        if refusal:
            await _plain(send, 429, refusal)
            return
        await self.app(scope, receive, send)


async def _plain(send: Callable, status: int, text: str) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
