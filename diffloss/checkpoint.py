"""Model folders and training checkpoints, written atomically.

Every saved model is a folder: ``config.json`` + ``model.safetensors`` + ``card.json`` (DESIGN.md). Writes go to a
temporary file in the same directory, are fsync'd, then renamed over the target, so a run killed at any moment
leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CARD_FILE = "card.json"


_UMASK = os.umask(0)
os.umask(_UMASK)


class CheckpointError(RuntimeError):
    """A checkpoint or model folder is missing, torn or of the wrong kind; the message says which file and why."""


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Run ``write(tmp)`` on a temporary file beside ``path``, fsync it, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}{_PID_END}", suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; saved models should be readable like any file
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


TEMP_SUFFIX = ".tmp"
_PID_END = "-"  # ".<name>.<pid>-<random>.tmp": the writer's pid tells a live save from one a kill interrupted
_TEMP_NAME = re.compile(r"^\..+\.(\d+)-[^.]+\.tmp$")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_interrupted_saves(root: str | Path) -> list[Path]:
    """Delete the temporary files that saves killed mid-write left under ``root`` (their writer is gone); returns
    them. Why: each kill during a checkpoint save leaves a full-size temporary file that nothing else removes.
    A save still going (its writer's pid alive, this process included) is left alone."""
    root = Path(root)
    removed = []
    if not root.is_dir():
        return removed
    for tmp in root.rglob(f".*{TEMP_SUFFIX}"):
        match = _TEMP_NAME.match(tmp.name)
        if match and tmp.is_file() and not _process_alive(int(match.group(1))):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write a file so that readers never see half of it."""
    atomic_write(Path(path), lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, data: dict[str, Any]) -> None:
    """Write JSON so that readers never see half a file."""
    atomic_write(Path(path), lambda tmp: tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n"))


def atomic_save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """safetensors ``save_file`` made atomic; tensors are made contiguous CPU copies first."""
    flat = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    atomic_write(Path(path), lambda tmp: save_file(flat, str(tmp), metadata=metadata))


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file with an error that names the file when it is missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file ({err})") from err


def read_json(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"missing {path.name} in {path.parent}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is not valid JSON ({err})") from err


def stored_as(tensors: dict[str, torch.Tensor], dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """The floating-point tensors cast to ``dtype`` for storage (None: as they are); integer buffers untouched."""
    return {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v) for k, v in tensors.items()}


def save_model_folder(
    folder: str | Path,
    state_dict: dict[str, torch.Tensor],
    config: dict[str, Any],
    card: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Save weights + config (+ card) the way every model in ``pretrained/`` is stored.

    ``dtype`` (e.g. ``torch.float16``) stores floating-point weights smaller; loading casts back to float32.
    """
    folder = Path(folder)
    atomic_save_tensors(folder / MODEL_FILE, stored_as(state_dict, dtype))
    atomic_write_json(folder / CONFIG_FILE, config)
    if card is not None:
        atomic_write_json(folder / CARD_FILE, card)
    return folder


def load_model_folder(folder: str | Path, expected_kind: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any] | None]:
    """Load ``(state_dict, config, card)``; float weights come back as float32.

    ``expected_kind`` checks ``config["kind"]`` so that pointing the restorer loader at a prior (or the
    reverse) fails with a message instead of a shape error deep inside ``load_state_dict``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"model folder not found: {folder}")
    config = read_json(folder / CONFIG_FILE)
    if expected_kind is not None and config.get("kind") != expected_kind:
        raise CheckpointError(
            f"{folder} holds a {config.get('kind', 'unknown')!r} model, expected {expected_kind!r}"
        )
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in load_tensors(folder / MODEL_FILE).items()}
    card_path = folder / CARD_FILE
    card = read_json(card_path) if card_path.is_file() else None
    return state, config, card
