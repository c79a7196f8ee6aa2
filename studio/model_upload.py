"""Restorers uploaded as a zip (what the Train tab's download holds) added to ``runs/``, so they appear in Compare.

Why: a hosted Space forgets ``runs/`` when it restarts, but the user keeps the zip they downloaded; uploading it
brings the comparison back. The zip is read member by member (never ``extractall``, so no path in it can write
outside the new run folder), only model files are taken, and every model is loaded once before it is listed: a
zip that is not a model, a prior instead of a restorer, or weights that do not match their config are refused
with the reason, and nothing of them is left behind.
"""

from __future__ import annotations

import shutil
import time
import zipfile
from pathlib import Path, PurePosixPath

import gradio as gr

from diffloss.checkpoint import CARD_FILE, CONFIG_FILE, MODEL_FILE, CheckpointError
from diffloss.paths import ARMS, MODEL_DIR
from diffloss.safe_zip import ZipMemberError, check_compression, read_member
from studio import run_budget, visitors
from studio.inputs import file_stem
from studio.models import Registry, RestorerEntry, get_registry

MAX_UNPACKED_BYTES = 64 * 2**20  # a studio restorer pair is a few MB (3.3 MB an arm); far beyond is not one
MODEL_FILES = (MODEL_FILE, CONFIG_FILE, CARD_FILE)


class ModelZipError(ValueError):
    """A zip that holds no restorer the studio can add; the message says what it holds instead."""


def model_folders(names: list[str]) -> dict[str, dict[str, str]]:
    """{folder inside the zip: {file name: member}} for every folder holding model files, at most two deep.

    Folders are posix paths ("" for the zip's root); members with absolute paths or ".." are ignored.
    """
    found: dict[str, dict[str, str]] = {}
    for name in names:
        path = PurePosixPath(name)
        if path.is_absolute() or ".." in path.parts or path.name not in MODEL_FILES or len(path.parts) > 3:
            continue
        found.setdefault(str(path.parent) if path.parent != PurePosixPath(".") else "", {})[path.name] = name
    return {folder: files for folder, files in found.items() if MODEL_FILE in files and CONFIG_FILE in files}


def layout(folders: list[str]) -> dict[str, str]:
    """{folder inside the zip: where it goes in the run} ("l2/model", "diffloss/model" or "model").

    Accepted: the Train tab's download (``l2/`` and/or ``diffloss/``, at the root or inside one folder) or one
    model folder; anything else is a ModelZipError saying what was found.
    """
    if not folders:
        raise ModelZipError(f"no model folder in it (a folder with {MODEL_FILE} and {CONFIG_FILE})")
    arms = {f: PurePosixPath(f).name for f in folders if PurePosixPath(f).name in ARMS}
    if len(arms) == len(folders) and len(set(arms.values())) == len(arms):
        return {f: f"{arm}/{MODEL_DIR}" for f, arm in arms.items()}
    if len(folders) == 1:
        return {folders[0]: MODEL_DIR}
    raise ModelZipError(f"{len(folders)} model folders ({', '.join(sorted(f or '(root)' for f in folders))}): "
                        "upload one model, or a pair in l2/ and diffloss/ folders")


def unpack(zip_path: Path, run_dir: Path) -> list[Path]:
    """The zip's model folders written into ``run_dir`` (laid out as a Train-tab run); returns them."""
    if not zipfile.is_zipfile(zip_path):
        raise ModelZipError("not a zip file")
    with zipfile.ZipFile(zip_path) as archive:
        folders = model_folders(archive.namelist())
        targets = layout(list(folders))
        size = sum(archive.getinfo(m).file_size for files in folders.values() for m in files.values())
        if size > MAX_UNPACKED_BYTES:
            raise ModelZipError(f"its models unpack to {size / 2**20:.0f} MB, more than the "
                                f"{MAX_UNPACKED_BYTES / 2**20:.0f} MB a studio restorer could need")
        for files in folders.values():  # before anything is written: a bzip2 member is refused unread
            for member in files.values():
                check_compression(archive.getinfo(member))
        written, left = [], MAX_UNPACKED_BYTES
        for folder, target in targets.items():
            out = run_dir / target
            out.mkdir(parents=True, exist_ok=True)
            for file_name, member in folders[folder].items():
                data = read_member(archive, member, left)  # counted as it streams: the declared sizes may lie
                left -= len(data)
                (out / file_name).write_bytes(data)
            written.append(out)
    return written


def add_restorers(zip_path: str | None, registry: Registry | None = None) -> tuple[str, str]:
    """(markdown, task): the zip's restorers added as a new run in ``runs/``; gr.Error with the reason when the zip
    holds none the studio can load (and then nothing is kept). On a hosted studio the run belongs to the uploader
    (the visitor of the gradio event, ``studio.visitors``: no ``gr.Request`` parameter here, since callers pass
    ``registry`` by position) and counts in their share of runs/ (``studio.run_budget``)."""
    reg = registry or get_registry()
    if not zip_path:
        raise gr.Error("Choose a zip first: the one the Train tab's download gives (l2/ and diffloss/ folders).")
    path = Path(zip_path)
    stem = file_stem(path.stem) or "models"  # at most 80 characters: a 255-character upload name is a valid one
    run_dir = reg.runs / f"upload-{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    if run_dir.exists():
        raise gr.Error(f"{run_dir.name} already exists in {reg.runs}: upload it again in a second.")
    with run_budget.in_use(run_dir):
        evicted = run_budget.room_for_visitor(reg.runs)  # hosted: the oldest runs over the caps go first
        try:
            folders = unpack(path, run_dir)
            tasks = {reg.load_restorer(folder).config.task for folder in folders}
            if len(tasks) > 1:
                raise ModelZipError(f"its models are for different tasks ({', '.join(sorted(tasks))}): a pair "
                                    "compares two restorers of one task")
        except (ModelZipError, ZipMemberError, CheckpointError, ValueError, zipfile.BadZipFile, OSError) as err:
            shutil.rmtree(run_dir, ignore_errors=True)
            reason = str(err).replace(f"{run_dir}/", "")  # the folder is gone: name files as the zip's layout
            raise gr.Error(f"Cannot add restorers from {path.name}: {reason}") from err
        visitors.claim(run_dir)  # hosted: the uploader's alone, as a run they trained
    entries = _entries_in(run_dir, reg)
    task = tasks.pop()
    return (f"Added {', '.join(f'`{e.label}`' for e in entries)} for **{task}** (in `{run_dir}`); "
            "now chosen above." + (f" Note: {evicted}." if evicted else ""), task)


def _entries_in(run_dir: Path, registry: Registry) -> list[RestorerEntry]:
    return [e for e in registry.restorers() if run_dir in e.path.parents]
