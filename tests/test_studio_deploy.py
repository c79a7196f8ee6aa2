"""``python -m studio.deploy OWNER/SPACE --dry-run``: what would go to a Space, listed offline."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from studio import deploy


def _git(root, *args):
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


def _tree(root):
    """A git checkout where every file is tracked (runs and caches are too, as a careless commit would have them)."""
    files = ["app.py", "README.md", "requirements.txt", "diffloss/nets.py", "studio/hosting.py",
             "studio/__pycache__/hosting.cpython-311.pyc", "pretrained/prior/unet/diffusion_pytorch_model.safetensors",
             "examples/clean_a.png", "runs/studio-noise-1/l2/checkpoint/last.safetensors", "tests/test_x.py",
             "pretrained/prior/.last.safetensors.123-ab.tmp", "notes.txt", "bench/speed.py"]
    for f in files:
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        (root / f).write_bytes(b"x")
    _git(root, "init", "-q")
    _git(root, "add", "-f", *files)
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
                         text=True, cwd=deploy.REPO, check=True,
                         env={"HF_HUB_OFFLINE": "1", "PATH": os.path.dirname(shutil.which("git"))}).stdout
    lines = out.splitlines()
    assert "app.py" in lines and "studio/deploy.py" in lines and "README.md" in lines
    assert not any(line.startswith(("runs/", "tests/")) or "__pycache__" in line for line in lines)
    assert lines[-1].startswith("would upload ") and lines[-1].endswith("https://huggingface.co/spaces/someone/studio")


def test_only_tracked_plain_files_go_up_never_a_link_or_what_was_merely_placed_there(tmp_path, monkeypatch):
    """Issue 25, Low 10: a token file or a link placed under examples/ or pretrained/, and untracked modules, went
    up with the rest; a symbolic link (tracked or not, to a file or to a folder) is never followed."""
    _tree(tmp_path)
    secret = tmp_path.parent / "outside-secret.txt"
    secret.write_text("hf_token")
    (tmp_path / "examples" / "token.txt").write_text("hf_token")  # untracked
    (tmp_path / "studio" / "scratch.py").write_text("x = 1")  # untracked
    os.symlink(secret, tmp_path / "examples" / "tracked_link.png")
    os.symlink(secret, tmp_path / "pretrained" / "loose_link.safetensors")
    outside = tmp_path.parent / "outside-folder"
    outside.mkdir()
    (outside / "w.safetensors").write_text("secret weights")
    os.symlink(outside, tmp_path / "pretrained" / "linked_folder")
    _git(tmp_path, "add", "examples/tracked_link.png")
    files = deploy.files_to_upload(tmp_path)
    assert files == ["README.md", "app.py", "diffloss/nets.py", "examples/clean_a.png",
                     "pretrained/prior/unet/diffusion_pytorch_model.safetensors", "requirements.txt",
                     "studio/hosting.py"]
    sent = []

    class Api:
        def create_repo(self, *a, **k):
            pass

        def create_commit(self, repo_id, operations, **kw):
            sent.extend(op.path_in_repo for op in operations)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", Api)
    assert deploy.deploy("someone/studio", root=tmp_path) == files and sent == files  # exactly the listed files


def test_deploying_from_a_folder_that_is_not_a_git_checkout_is_refused(tmp_path):
    (tmp_path / "app.py").write_text("x")
    with pytest.raises(deploy.DeployError, match="not a git checkout: only files git tracks are deployed"):
        deploy.files_to_upload(tmp_path)
