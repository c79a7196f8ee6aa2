"""gradio imported without rewriting its type stubs: the hook patches one function, once, and only when it can."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROBE = """
import json, sys
from studio import gradio_startup
acted = gradio_startup.skip_stub_rewrite()
import gradio as gr
import gradio.component_meta as meta
with gr.Blocks() as demo:  # components still build and wire as usual
    box = gr.Textbox(value="x")
    gr.Button("go").click(lambda s: s, box, box)
print(json.dumps({
    "acted": acted,
    "patched": meta.create_or_modify_pyi is gradio_startup._no_stub_rewrite,
    "hook_left": any(type(f).__name__ == "_SkipStubRewrite" for f in sys.meta_path),
    "again": gradio_startup.skip_stub_rewrite(),
    "blocks": len(demo.blocks),
}))
"""


def _probe(**env: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(REPO), **env})
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_gradio_imports_with_the_stub_rewrite_skipped_and_works():
    result = _probe()
    assert result["acted"] is True and result["patched"] is True
    assert result["hook_left"] is False  # one shot: gone from sys.meta_path once gradio.component_meta is found
    assert result["again"] is False  # gradio is imported: too late to act, and says so
    assert result["blocks"] >= 2


def test_the_switch_keeps_gradios_own_behaviour():
    result = _probe(DIFFLOSS_GRADIO_STUBS="1")
    assert result["acted"] is False and result["patched"] is False


def test_the_app_installs_it_before_gradio_is_imported():
    source = (REPO / "app.py").read_text()
    assert source.index("skip_stub_rewrite()") < source.index("import gradio")
