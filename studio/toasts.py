"""Toasts in the browser: ``gr.Warning`` where there is a request, nothing where there is none (tests, scripts)."""

from __future__ import annotations

import gradio as gr

from studio.public import public_message


def warn(message: str) -> None:
    """Show ``message`` as a warning toast; never raises (handlers call it from tests and scripts too)."""
    try:
        gr.Warning(public_message(message))
    except Exception:  # noqa: BLE001  (gradio versions differ in what they do outside a request)
        pass
