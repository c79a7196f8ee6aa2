"""``python -m studio.deploy OWNER/SPACE --dry-run``: what would go to a Space, listed offline."""

from __future__ import annotations

import subprocess
import sys

import pytest

from studio import deploy


def _tree(root):
    files = ["app.py", "README.md", "requirements.txt", "diffloss/nets.py", "studio/hosting.py",
             "studio/__pycache__/hosting.cpython-311.pyc", "pretrained/prior/unet/diffusion_pytorch_model.safetensors",
             "examples/clean_a.png", "runs/studio-noise-1/l2/checkpoint/last.safetensors", "tests/test_x.py",
             "pretrained/prior/.last.safetensors.123-ab.tmp", ".git/config", "notes.txt", "bench/speed.py"]
    for f in files:
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        (root / f).write_bytes(b"x")
    return files


def test_the_dry_run_lists_the_app_library_weights_and_examples_and_nothing_else(tmp_path):
    _tree(tmp_path)
    assert deploy.files_to_upload(tmp_path) == [
        "README.md", "app.py", "diffloss/nets.py", "examples/clean_a.png",
        "pretrained/prior/unet/diffusion_pytorch_model.safetensors", "requirements.txt", "studio/hosting.py"]


def test_a_dry_run_touches_no_network(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", lambda *a, **k: pytest.fail("network"))
    _tree(tmp_path)
    assert "app.py" in deploy.deploy("someone/studio", root=tmp_path, dry_run=True)
    with pytest.raises(ValueError, match="not a hub id"):
        deploy.deploy("../x", root=tmp_path, dry_run=True)


def test_the_command_line_dry_run_on_this_repo(tmp_path):
    out = subprocess.run([sys.executable, "-m", "studio.deploy", "someone/studio", "--dry-run"], capture_output=True,
                         text=True, cwd=deploy.REPO, env={"HF_HUB_OFFLINE": "1", "PATH": ""}, check=True).stdout
    lines = out.splitlines()
    assert "app.py" in lines and "studio/deploy.py" in lines and "README.md" in lines
    assert not any(line.startswith(("runs/", "tests/")) or "__pycache__" in line for line in lines)
    assert lines[-1].startswith("would upload ") and lines[-1].endswith("https://huggingface.co/spaces/someone/studio")
