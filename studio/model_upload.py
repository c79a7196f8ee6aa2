"""Restorers uploaded as a zip (what the Train tab's download holds) added to ``runs/``, so they appear in Compare.

Why: a hosted Space forgets ``runs/`` when it restarts, but the user keeps the zip they downloaded; uploading it
brings the comparison back. The zip is read member by member (never ``extractall``, so no path in it can write
outside the new run folder), only model files are taken, and every model is loaded once before it is listed: a
zip that is not a model, a prior instead of a restorer, or weights that do not match their config are refused
with the reason, and nothing of them is left behind.
"""

from __future__ import annotations

import secrets
import shutil
import time
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import gradio as gr
import torch

from diffloss import degrade, nets
from diffloss.checkpoint import CARD_FILE, CONFIG_FILE, MODEL_FILE, CheckpointError, atomic_write_json
from diffloss.paths import ARMS, MODEL_DIR
from diffloss.safe_json import JsonDocumentError, parse_object
from diffloss.safe_zip import ZipMemberError, check_compression, entry_count, read_member
from studio import run_budget, visitors
from studio.inputs import file_stem
from studio.models import Registry, RestorerEntry, get_registry

MAX_RESTORER_PARAMS = 2_000_000  # the studio's restorers have 1.43-1.71 M parameters; a little wider still fits
MAX_ENTRIES = 64  # a Train-tab download holds 6 files; counted from the zip's end record before it is opened
MAX_CONFIG_BYTES = 4096  # a restorer's config.json is ~210 bytes
MAX_CARD_BYTES = 64 * 1024  # the shipped cards are 6-14 KB
MAX_JSON_DEPTH = 8  # the shipped cards nest 4 deep, configs 2
WEIGHTS_HEADER_BYTES = 256 * 1024  # a safetensors header beside the float32 weights (~20 KB for a restorer)
MAX_MODEL_BYTES = 4 * MAX_RESTORER_PARAMS + WEIGHTS_HEADER_BYTES
MAX_UNPACKED_BYTES = 2 * (MAX_MODEL_BYTES + MAX_CONFIG_BYTES + MAX_CARD_BYTES)  # a pair, at most
MODEL_FILES = (MODEL_FILE, CONFIG_FILE, CARD_FILE)
CONFIG_FIELDS = ("kind", "task", "in_channels", "out_channels", "width", "enc_blocks", "middle_blocks", "dec_blocks")


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


def _whole_in(config: dict[str, Any], field: str, low: int, high: int) -> int:
    value = config.get(field)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ModelZipError(f"its {field} is {_shown(value)}; a studio restorer has a whole number from {low} to {high}")
    return value


def _blocks(config: dict[str, Any], field: str) -> list[int]:
    value = config.get(field)
    if (not isinstance(value, list) or not 1 <= len(value) <= nets.MAX_LEVELS
            or any(isinstance(b, bool) or not isinstance(b, int) or not 0 <= b <= nets.MAX_BLOCKS for b in value)):
        raise ModelZipError(f"its {field} is {_shown(value)}; a studio restorer has a list of 1 to {nets.MAX_LEVELS} "
                            f"block counts, each 0 to {nets.MAX_BLOCKS}")
    return value


def _shown(value: Any) -> str:
    """A field's value for a message: short whatever was sent."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def restorer_parameters(config: nets.RestorerConfig) -> int:
    """How many numbers a restorer of ``config`` holds, counted on torch's meta device (nothing allocated)."""
    with torch.device("meta"):
        model = nets.Restorer(config)
    return sum(t.numel() for t in model.state_dict().values())


def check_config(data: bytes, where: str) -> tuple[nets.RestorerConfig, int]:
    """(config, parameters) of an uploaded ``config.json``, every field checked for its type and range before
    anything is built or written; ModelZipError naming the field otherwise. ``where``: the member, for messages."""
    try:
        config = parse_object(data, where, MAX_CONFIG_BYTES, MAX_JSON_DEPTH)
    except JsonDocumentError as err:
        raise ModelZipError(str(err)) from err
    unknown = sorted(set(config) - set(CONFIG_FIELDS))
    if unknown:
        raise ModelZipError(f"{where} has fields no restorer config has: {', '.join(_shown(k) for k in unknown[:5])}")
    kind = config.get("kind")
    if kind != nets.KIND:
        raise ModelZipError(f"{where} describes a {_shown(kind)} model, not a restorer")
    task = config.get("task")
    if not isinstance(task, str) or task not in degrade.TASKS:
        raise ModelZipError(f"its task is {_shown(task)}; one of {', '.join(degrade.TASKS)}")
    channels = degrade.TASKS[task].in_channels
    _whole_in(config, "in_channels", channels, channels)
    _whole_in(config, "out_channels", 3, 3)
    _whole_in(config, "width", 2, nets.MAX_WIDTH)
    _whole_in(config, "middle_blocks", 0, nets.MAX_BLOCKS)
    enc, dec = _blocks(config, "enc_blocks"), _blocks(config, "dec_blocks")
    if len(enc) != len(dec):
        raise ModelZipError(f"its enc_blocks {enc} and dec_blocks {dec} need one entry per level")
    try:
        restorer = nets.RestorerConfig.from_dict(config)
    except (TypeError, ValueError) as err:  # the architecture's own bounds (channels at the lowest level)
        raise ModelZipError(f"{where} is not a restorer config ({err})") from err
    parameters = restorer_parameters(restorer)
    if parameters > MAX_RESTORER_PARAMS:
        raise ModelZipError(f"{where} describes a restorer of {parameters / 1e6:.1f} M parameters; the studio's "
                            f"have under {MAX_RESTORER_PARAMS / 1e6:.0f} M")
    return restorer, parameters


def unpack(zip_path: Path, run_dir: Path) -> list[Path]:
    """The zip's model folders written into ``run_dir`` (laid out as a Train-tab run); returns them.

    Each folder's ``config.json`` is read and checked first (``check_config``); its weights are then read with a cap
    of the bytes that config needs, so a small zip cannot write or hold more than one studio restorer's worth.
    """
    if not zipfile.is_zipfile(zip_path):
        raise ModelZipError("not a zip file")
    entries = entry_count(zip_path)
    if entries > MAX_ENTRIES:
        count = f"at least {entries}" if entries >= 0xFFFF else str(entries)  # 0xFFFF: a zip64 count, larger
        raise ModelZipError(f"it holds {count} files; a restorer zip holds a few (at most {MAX_ENTRIES})")
    with zipfile.ZipFile(zip_path) as archive:
        folders = model_folders(archive.namelist())
        targets = layout(list(folders))
        size = sum(archive.getinfo(m).file_size for files in folders.values() for m in files.values())
        if size > MAX_UNPACKED_BYTES:
            raise ModelZipError(f"its models unpack to {size / 2**20:.0f} MB, more than the "
                                f"{MAX_UNPACKED_BYTES / 2**20:.0f} MB a studio restorer pair needs")
        for files in folders.values():  # before anything is written: a bzip2 member is refused unread
            for member in files.values():
                check_compression(archive.getinfo(member))
        checked = {}
        for folder, files in folders.items():  # every config checked before any file is written
            config_member = files[CONFIG_FILE]
            checked[folder] = check_config(read_member(archive, config_member, MAX_CONFIG_BYTES), config_member)
        written = []
        for folder, target in targets.items():
            files, (config, parameters) = folders[folder], checked[folder]
            out = run_dir / target
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_json(out / CONFIG_FILE, {"kind": nets.KIND, **config.to_dict()})  # as checked, re-encoded
            if CARD_FILE in files:
                card = read_member(archive, files[CARD_FILE], MAX_CARD_BYTES)
                try:
                    parse_object(card, files[CARD_FILE], MAX_CARD_BYTES, MAX_JSON_DEPTH)
                except JsonDocumentError as err:
                    raise ModelZipError(str(err)) from err
                (out / CARD_FILE).write_bytes(card)
            weights = read_member(archive, files[MODEL_FILE], 4 * parameters + WEIGHTS_HEADER_BYTES)
            (out / MODEL_FILE).write_bytes(weights)
            del weights
            written.append(out)
    return written


def _one_line(err: BaseException, run_dir: Path) -> str:
    """The reason of a failed upload in one line, naming files as the zip lays them out (the folder is gone)."""
    if isinstance(err, (ModelZipError, ZipMemberError, CheckpointError)):
        text = str(err)
    elif isinstance(err, RecursionError):
        text = "it is nested too deeply to read"
    elif isinstance(err, zipfile.BadZipFile):
        text = f"not a readable zip ({err})"
    elif isinstance(err, MemoryError):
        text = "it needs more memory than this studio gives one upload"
    else:
        text = f"it holds no restorer the studio can load ({type(err).__name__}: {err})"
    text = text.replace(f"{run_dir}/", "").replace(str(run_dir), "")
    line = " ".join(text.split())
    return line if len(line) <= 300 else f"{line[:297]}..."


def add_restorers(zip_path: str | None, registry: Registry | None = None) -> tuple[str, str]:
    """(markdown, task): the zip's restorers added as a new run in ``runs/``; gr.Error with the reason when the zip
    holds none the studio can load (and then nothing is kept). On a hosted studio the run belongs to the uploader
    (the visitor of the gradio event, ``studio.visitors``: no ``gr.Request`` parameter here, since callers pass
    ``registry`` by position) from its first byte, and counts in their share of runs/ (``studio.run_budget``).

    Every failure (a refused zip, a full disk, a bug) removes the run folder before the one-line reason is raised:
    nothing half-written is left for anyone's cap."""
    reg = registry or get_registry()
    if not zip_path:
        raise gr.Error("Choose a zip first: the one the Train tab's download gives (l2/ and diffloss/ folders).")
    path = Path(zip_path)
    stem = file_stem(path.stem) or "models"  # at most 80 characters: a 255-character upload name is a valid one
    run_dir = reg.runs / f"upload-{stem}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    if run_dir.exists():
        raise gr.Error(f"{run_dir.name} already exists in {reg.runs}: upload it again in a second.")
    with run_budget.in_use(run_dir):
        evicted = run_budget.room_for_visitor(reg.runs)  # hosted: gr.Error when runs/ is full of others' new runs
        try:
            run_dir.mkdir(parents=True)
            visitors.claim(run_dir)  # hosted: the uploader's from the start, as a run they trained
            folders = unpack(path, run_dir)
            tasks = {reg.load_restorer(folder).config.task for folder in folders}
            if len(tasks) > 1:
                raise ModelZipError(f"its models are for different tasks ({', '.join(sorted(tasks))}): a pair "
                                    "compares two restorers of one task")
            entries = _entries_in(run_dir, reg)
            if len(entries) != len(folders):
                raise ModelZipError("the studio cannot list its models")
        except BaseException as err:  # noqa: BLE001  (everything, even a KeyboardInterrupt: clean up, then say why)
            shutil.rmtree(run_dir, ignore_errors=True)
            if not isinstance(err, Exception):
                raise
            raise gr.Error(f"Cannot add restorers from {path.name}: {_one_line(err, run_dir)}") from err
    task = tasks.pop()
    return (f"Added {', '.join(f'`{e.label}`' for e in entries)} for **{task}** (in `{run_dir}`); "
            "now chosen above." + (f" Note: {evicted}." if evicted else ""), task)


def _entries_in(run_dir: Path, registry: Registry) -> list[RestorerEntry]:
    return [e for e in registry.restorers() if run_dir in e.path.parents]
