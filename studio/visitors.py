"""Whose run is it: on a hosted studio every run belongs to the browser session that started it.

Why: a Space serves strangers, and a run holds a visitor's photos, checkpoints and models. In hosted mode
(``studio.hosting``) a run folder records its owner in a small file (never shown, never zipped), and every list,
Stop, Resume and restorer choice asks here; another visitor's run is answered as if it did not exist, so its name
is not even confirmed. On one's own machine (``python app.py``) nothing is recorded and every run is everyone's,
as before.

Who the visitor is: gradio's ``session_hash``, one per page load (a reload is a new session: download the zip
before). It is a random id the browser makes and sends with every request, not a login: a client presenting
another visitor's id is that visitor (it would have to have seen it: it is in no URL or page). Runs also record
the client address (``address_key``) so that all sessions from one address share a cap (``studio.run_budget``). Handlers in ``studio/`` take a ``gr.Request`` parameter where their signature allows (gradio fills it);
everywhere else, e.g. a dropdown refreshed by a function in ``app.py``, the request of the event being handled is
read from gradio's context, so no caller can forget it. Only a hash of the session is written to disk.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable

from studio import hosting

OWNER_FILE = ".owner"  # in a run folder: the hashed session of the visitor who made it (hosted mode only)
ADDRESS_FILE = ".address"  # beside it: the hashed client address of that visitor (runs per address are capped)

RunFilter = Callable[[Path], bool]  # a run folder -> may the visitor see and use it


def _current_request() -> Any:
    """The ``gr.Request`` of the gradio event this thread is handling (None outside one: a Python call, a test)."""
    from gradio.context import LocalContext

    return LocalContext.request.get(None)


def visitor_key(request: Any = None) -> str | None:
    """The visitor as stored on disk: a hash of ``request``'s (else the current event's) session; None when
    there is no browser session (a call from Python)."""
    request = request if request is not None else _current_request()
    session = getattr(request, "session_hash", None)
    return hashlib.sha256(session.encode()).hexdigest()[:32] if session else None


def address_key(request: Any = None) -> str | None:
    """The visitor's client address as stored on disk (a hash; ``studio.upload_limits.client_address``'s rule:
    on a Space the address the Hub's proxy added), or None outside a request."""
    from studio.upload_limits import client_address

    request = request if request is not None else _current_request()
    client = getattr(request, "client", None)
    host = getattr(client, "host", None)
    headers = getattr(request, "headers", None) or {}
    forwarded = headers.get("x-forwarded-for") if hasattr(headers, "get") else None
    scope = {"client": (host, 0) if host else None,
             "headers": [(b"x-forwarded-for", forwarded.encode("latin-1"))] if forwarded else []}
    address = client_address(scope) if (host or forwarded) else None
    return hashlib.sha256(f"address:{address}".encode()).hexdigest()[:32] if address else None


def address_of(run_dir: Path) -> str | None:
    """The key of the address ``claim`` recorded (None: none recorded)."""
    try:
        return (Path(run_dir) / ADDRESS_FILE).read_text().strip() or None
    except OSError:
        return None


def owner_of(run_dir: Path) -> str | None:
    """The key written by ``claim`` (None: the run belongs to nobody, e.g. made on the command line)."""
    try:
        return (Path(run_dir) / OWNER_FILE).read_text().strip() or None
    except OSError:
        return None


def claim(run_dir: Path, request: Any = None) -> None:
    """Record the visitor as the owner of ``run_dir`` (hosted mode; on one's own machine nothing is written)."""
    key = visitor_key(request)
    if hosting.is_hosted() and key:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / OWNER_FILE).write_text(key)
        address = address_key(request)
        if address:
            (run_dir / ADDRESS_FILE).write_text(address)


def run_filter(request: Any = None) -> RunFilter | None:
    """Which runs the visitor may see: None (every run) on one's own machine; in hosted mode only their own."""
    if not hosting.is_hosted():
        return None
    key = visitor_key(request)
    return lambda run_dir: key is not None and owner_of(run_dir) == key


def may_use(run_dir: Path, request: Any = None) -> bool:
    """May the visitor list, stop, resume, pick or download ``run_dir``?"""
    visible = run_filter(request)
    return visible is None or visible(run_dir)


def runs_of(runs: Path, key: str | None) -> list[Path]:
    """The run folders in ``runs`` owned by ``key`` (none for None)."""
    if key is None or not Path(runs).is_dir():
        return []
    return [p for p in Path(runs).iterdir() if p.is_dir() and owner_of(p) == key]
