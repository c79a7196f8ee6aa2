"""The app's process set-up (studio/boot.py): gradio imported without rewriting its type stubs (the hook patches one
function, once, and only when it can), and the app doing so before gradio is imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROBE = """
import json, sys
from studio import boot
acted = boot.skip_stub_rewrite()
import gradio as gr
import gradio.component_meta as meta
with gr.Blocks() as demo:  # components still build and wire as usual
    box = gr.Textbox(value="x")
    gr.Button("go").click(lambda s: s, box, box)
print(json.dumps({
    "acted": acted,
    "patched": meta.create_or_modify_pyi is boot._no_stub_rewrite,
    "hook_left": any(type(f).__name__ == "_SkipStubRewrite" for f in sys.meta_path),
    "again": boot.skip_stub_rewrite(),
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
    assert source.index("boot.before_imports()") < source.index("import gradio")


def test_importing_the_app_leaves_gradio_patched_and_openmp_passive():
    """What ``before_imports`` is for, seen from outside: ``import app`` alone sets both up."""
    probe = ("import json, os, app, gradio.component_meta as meta; from studio import boot; "
             "print(json.dumps([meta.create_or_modify_pyi is boot._no_stub_rewrite, os.environ['OMP_WAIT_POLICY']]))")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**env, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [True, "PASSIVE"]


def test_a_users_mistake_prints_no_traceback_and_the_console_says_share_as_the_app_spells_it():
    """``import app`` makes a gr.Error quiet by default (one that asks still prints); gradio's own launch hint
    ("set share=True in launch()") is replaced by the app's ``--share``."""
    probe = ("import json, app, gradio as gr; from studio import boot; "
             "print(json.dumps([gr.Error('x').print_exception, gr.Error('x', print_exception=True).print_exception, "
             "gr.Error('x').message, boot.quiet_user_errors(), boot.served_message('http://h:1/', False), "
             "boot.served_message('http://h:1/', True)]))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr[-2000:]
    quiet, asked, message, again, local, shared = json.loads(out.stdout.strip().splitlines()[-1])
    assert quiet is False and asked is True and message == "x"
    assert again is False  # once is enough: a second call does not wrap the wrapper
    assert local.startswith("* Running on local URL:  http://h:1/") and "python app.py --share" in local
    assert "share=True" not in local and "--share" not in shared
