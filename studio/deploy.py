"""Deploy the studio to a Hugging Face Space: ``python -m studio.deploy OWNER/SPACE [--dry-run]``.

Why not ``git push``: Spaces refuse files over 10 MB and binary files pushed without LFS/Xet, and the prior alone
is 17 MB. ``huggingface_hub.upload_folder`` stores large and binary files the way the Hub wants. What goes up is
listed explicitly (the app, the library, the shipped weights and examples), so runs, caches, tests and local
data never leave the machine; ``--dry-run`` prints that list without any network access.
"""

from __future__ import annotations

import argparse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# README.md goes up: its front matter holds the Space's settings (sdk, app_file)
ALLOW = ["app.py", "requirements.txt", "README.md", "diffloss/*.py", "studio/*.py", "examples/**",
         "pretrained/**"]
IGNORE = ["**/__pycache__/**", "**/*.pyc", "runs/**", "tests/**", "bench/**", "**/.*", ".*/**", "**/*.tmp"]


def files_to_upload(root: Path = REPO, allow: list[str] = ALLOW, ignore: list[str] = IGNORE) -> list[str]:
    """The repo-relative posix paths ``upload_folder`` would send with these patterns, sorted (filtered by the
    same function upload_folder uses, so the dry run cannot disagree with the upload)."""
    from huggingface_hub.utils import filter_repo_objects

    paths = (p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    return sorted(filter_repo_objects(paths, allow_patterns=allow, ignore_patterns=ignore))


def deploy(space: str, root: Path = REPO, dry_run: bool = False) -> list[str]:
    """Upload the studio to ``space`` (a Gradio Space, created if missing); returns the files sent."""
    from studio.hosting import check_hub_id

    check_hub_id(space)
    files = files_to_upload(root)
    if dry_run:
        return files
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(space, repo_type="space", space_sdk="gradio", exist_ok=True)
    api.upload_folder(folder_path=str(root), repo_id=space, repo_type="space", allow_patterns=ALLOW,
                      ignore_patterns=IGNORE, commit_message="Deploy DiffLoss Studio")
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
