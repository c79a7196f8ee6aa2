"""One Gradio component tweak the studio needs: uploads that reach the handlers untouched.

A stock ``gr.Image(type="filepath")`` opens every upload with PIL before the handler runs, so a corrupt file
fails inside Gradio with a generic error, and with an ``image_mode`` it converts colour modes on its own terms
(RGBA over black, 16-bit squeezed to 8). ``UploadImage`` hands the uploaded file's path straight to the handler,
where ``diffloss.images.load_image`` converts every mode in one documented way and names what it cannot read.
"""

from __future__ import annotations

import gradio as gr


class UploadImage(gr.Image):
    """``gr.Image`` (same front end) whose value is the uploaded file's path, never re-encoded.

    Build it as ``UploadImage(type="filepath", image_mode=None, label=...)``: Gradio reads a component's settings
    from its ``__init__`` signature, so this class keeps ``gr.Image``'s rather than wrapping it.
    """

    is_template = True  # Gradio's template mechanism: use the parent's (Image's) front end

    def preprocess(self, payload):  # noqa: ANN001, ANN201  (Gradio's signature)
        if payload is not None and payload.path and not (payload.url or "").startswith("data:"):
            return str(payload.path)
        return super().preprocess(payload)
