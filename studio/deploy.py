"""Deploy the studio to a Hugging Face Space: ``python -m studio.deploy OWNER/SPACE [--dry-run]``.

Why not ``git push``: Spaces refuse files over 10 MB and binary files pushed without LFS/Xet, and the prior alone
is 17 MB. ``huggingface_hub.create_commit`` stores large and binary files the way the Hub wants. What goes up is
the files git tracks that match an explicit list (the app, the library, the shipped weights and examples), so runs,
caches, tests, local data and anything merely placed in those folders (a token file, an untracked module) never
leave the machine; a symbolic link is never followed, nor a file under one (it could point anywhere on the disk).
The commit holds exactly the listed files: ``--dry-run`` prints that list without any network access.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# README.md goes up: its front matter holds the Space's settings (sdk, app_file)
ALLOW = ["app.py", "requirements.txt", "README.md", "diffloss/*.py", "studio/*.py", "examples/**",
         "pretrained/**"]
IGNORE = ["**/__pycache__/**", "**/*.pyc", "runs/**", "tests/**", "bench/**", "**/.*", ".*/**", "**/*.tmp"]


class DeployError(ValueError):
    """Nothing can be deployed from here (not a git checkout, no git); the message says why."""


def tracked_files(root: Path) -> list[str]:
    """The repo-relative posix paths git tracks under ``root`` (its index)."""
    git = shutil.which("git")
    if git is None:
        raise DeployError("git is needed to list the files to deploy (only tracked files go up)")
    done = subprocess.run([git, "-C", str(root), "ls-files", "-z", "--cached"], capture_output=True, check=False)
    if done.returncode != 0:
        raise DeployError(f"{root} is not a git checkout: only files git tracks are deployed")
    return [p for p in done.stdout.decode("utf-8", "surrogateescape").split("\0") if p]


def is_plain_file(root: Path, relative: str) -> bool:
    """``relative`` is a regular file inside ``root`` reached through no symbolic link (itself or a folder above)."""
    path = root
    for part in Path(relative).parts:
        path = path / part
        if os.path.islink(path):
            return False
    return path.is_file()


def files_to_upload(root: Path = REPO, allow: list[str] = ALLOW, ignore: list[str] = IGNORE) -> list[str]:
    """The repo-relative posix paths that go up, sorted: tracked by git, matching ``allow`` and not ``ignore`` (the
    Hub's own pattern filter), plain files reached through no link."""
    from huggingface_hub.utils import filter_repo_objects

    root = Path(root)
    chosen = filter_repo_objects(tracked_files(root), allow_patterns=allow, ignore_patterns=ignore)
    return sorted(p for p in chosen if is_plain_file(root, p))


def deploy(space: str, root: Path = REPO, dry_run: bool = False) -> list[str]:
    """Upload the studio to ``space`` (a Gradio Space, created if missing); returns the files sent."""
    from studio.hosting import check_hub_id

    check_hub_id(space)
    files = files_to_upload(root)
    if dry_run:
        return files
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi()
    api.create_repo(space, repo_type="space", space_sdk="gradio", exist_ok=True)
    operations = [CommitOperationAdd(path_in_repo=f, path_or_fileobj=str(Path(root) / f)) for f in files]
    api.create_commit(repo_id=space, repo_type="space", operations=operations, commit_message="Deploy DiffLoss Studio")
    return files


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Upload DiffLoss Studio to a Hugging Face Space")
    parser.add_argument("space", help="OWNER/SPACE")
    parser.add_argument("--dry-run", action="store_true", help="list what would be uploaded; upload nothing")
    args = parser.parse_args(argv)
    try:
        files = deploy(args.space, dry_run=args.dry_run)
    except ValueError as err:
        parser.error(str(err))
    size = sum((REPO / f).stat().st_size for f in files)
    for f in files:
        print(f)
    verb = "would upload" if args.dry_run else "uploaded"
    print(f"{verb} {len(files)} files, {size / 2**20:.1f} MB, to https://huggingface.co/spaces/{args.space}")


if __name__ == "__main__":
    main()
