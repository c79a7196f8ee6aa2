"""Hosted mode: the studio served to strangers (a Hugging Face Space, or ``python app.py --public``).

Why a mode: on one's own machine the researcher owns the files, so typing a local prior folder or a folder of
training photos is a feature; on a public Space the same boxes would let any visitor probe and read the server's
filesystem. Hosted mode is on when ``SPACE_ID`` is set (Spaces set it) or ``--public`` is given. In it:

- the prior is the shipped one or a hub id of a valid form (downloaded with a size cap), never a local path: the
  text is checked by its form alone, no path is looked up;
- training photos come from uploads or the shipped examples, never a folder on the server;
- no absolute server path reaches a page: every message, markdown and textbox a handler sends out is rewritten
  (repo paths relative to the repo, runs as ``runs/...``, anything else by its file name);
- uploads are capped in size (gradio's ``max_file_size``), in number and bytes per client address an hour
  (``studio.upload_limits``), and deleted an hour old.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import re
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

from diffloss import heap
from diffloss.paths import public_text  # the one rule for paths a visitor may see; re-exported

PUBLIC_ENV = "DIFFLOSS_PUBLIC"  # "1": hosted mode without SPACE_ID (what ``--public`` sets)
MAX_UPLOAD = "50mb"  # gradio's max_file_size in hosted mode: photos and model zips are a few MB
MAX_HUB_PRIOR_BYTES = 300 * 2**20  # a hub prior larger than this is not downloaded (the shipped one is 17 MB)
HUB_PRIOR_FILES = ("*.json", "*.safetensors")  # what a diffusers UNet2DModel + DDPMScheduler need, nothing else

_HUB_PART = r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9])?"
_HUB_ID = re.compile(rf"{_HUB_PART}/{_HUB_PART}")


def is_hosted() -> bool:
    """True on a Space (``SPACE_ID``) or with ``--public`` (``DIFFLOSS_PUBLIC=1``)."""
    return bool(os.environ.get("SPACE_ID")) or os.environ.get(PUBLIC_ENV) == "1"


def enable_public() -> None:
    """``python app.py --public``: hosted mode on this machine (to try a Space's rules before deploying)."""
    os.environ[PUBLIC_ENV] = "1"


def check_hub_id(text: str) -> str:
    """``text`` when it has the form of a hub model id ``owner/name``; ValueError saying what is accepted otherwise.

    Only the form is checked: nothing on the server is looked up, so the answer says nothing about its files.
    """
    candidate = text.strip()
    if not _HUB_ID.fullmatch(candidate) or ".." in candidate:
        raise ValueError(f"{candidate[:80]!r} is not a hub id: on this hosted studio the prior is the shipped one or "
                         "a Hugging Face model id such as 'google/ddpm-cifar10-32' (owner/name; letters, digits, "
                         "'-', '_', '.'), never a path on the server")
    return candidate


def hosted_prior_source(text: str | None, shipped_label: str) -> str | None:
    """None for the shipped prior (empty or its label), else the checked hub id; ValueError for anything else."""
    candidate = (text or "").strip()
    if not candidate or candidate == shipped_label:
        return None
    return check_hub_id(candidate)


def fetch_hub_prior(repo_id: str, cap: int = MAX_HUB_PRIOR_BYTES, api: Any = None) -> Path:
    """The hub prior's files in the local hub cache (a folder ``DiffusionPrior.from_pretrained`` loads), after
    checking that the files it needs weigh at most ``cap`` bytes; ValueError otherwise.

    Why not hand the id to diffusers: it first tries the text as a local folder (a relative path such as
    ``runs/x`` has the form of an id), and it downloads without a size limit.
    """
    from fnmatch import fnmatch

    from huggingface_hub import HfApi, snapshot_download

    repo_id = check_hub_id(repo_id)
    info = (api or HfApi()).model_info(repo_id, files_metadata=True)
    wanted = [s for s in (info.siblings or []) if any(fnmatch(Path(s.rfilename).name, p) for p in HUB_PRIOR_FILES)]
    size = sum(int(s.size or 0) for s in wanted)
    if size > cap:
        raise ValueError(f"{repo_id} weighs {size / 2**20:.0f} MB, more than the {cap / 2**20:.0f} MB a prior may "
                         "have on this hosted studio")
    patterns = [p for p in HUB_PRIOR_FILES] + [f"*/{p}" for p in HUB_PRIOR_FILES]
    return Path(snapshot_download(repo_id, allow_patterns=patterns))


def _public_value(value: Any, roots: dict[Path, str]) -> Any:
    if isinstance(value, str):
        return public_text(value, roots)
    if isinstance(value, dict) and isinstance(value.get("value"), str):  # a gr.update(value=...)
        return {**value, "value": public_text(value["value"], roots)}
    return value


def _text_outputs(outputs: list) -> list[bool]:
    import gradio as gr

    return [isinstance(o, (gr.Markdown, gr.Textbox)) for o in outputs]


def _public_result(result: Any, texts: list[bool], roots: dict[Path, str]) -> Any:
    if len(texts) == 1:
        return _public_value(result, roots) if texts[0] else result
    if isinstance(result, (tuple, list)) and len(result) == len(texts):
        return type(result)(_public_value(v, roots) if t else v for v, t in zip(result, texts))
    return result


def _public_error(err: Exception, roots: dict[Path, str]) -> Exception:
    import gradio as gr

    if isinstance(err, gr.Error):
        err.message = public_text(str(err.message), roots)
        err.args = (err.message,)
        return err
    # Anything else would reach the page as gradio's generic error; say what it was, in one line, without its paths
    if isinstance(err, MemoryError):
        return gr.Error("The server ran out of memory for this request: try a smaller photo or crop, or retry later.")
    if isinstance(err, RecursionError):
        return gr.Error("This input is nested too deeply to read.")
    line = " ".join(str(err).split())
    line = line if len(line) <= 300 else f"{line[:297]}..."
    return gr.Error(public_text(f"{type(err).__name__}: {line}", roots))


_ACTIVE = [0]  # handlers running now, in every thread
_ACTIVE_LOCK = threading.Lock()


@contextlib.contextmanager
def _counted() -> Iterator[None]:
    """Count a running handler; the last one to end gives the freed memory back (``diffloss.heap.trim``), so a
    burst of large requests leaves the process near its idle size."""
    with _ACTIVE_LOCK:
        _ACTIVE[0] += 1
    try:
        yield
    finally:
        with _ACTIVE_LOCK:
            _ACTIVE[0] -= 1
            last = _ACTIVE[0] == 0
        if last:
            heap.trim()


def guarded(fn: Callable, texts: list[bool], roots: dict[Path, str]) -> Callable:
    """``fn`` whose text outputs and error messages carry no absolute server path (same kind: plain or generator,
    same signature, so gradio still injects ``gr.Request`` and builds the same API); the last handler of a burst
    to end returns the freed memory to the system."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            with _counted():
                try:
                    for item in fn(*args, **kwargs):
                        yield _public_result(item, texts, roots)
                except Exception as err:  # noqa: BLE001
                    raise _public_error(err, roots) from err
        return gen_wrapper

    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        return fn  # the studio has none; gradio's own helpers carry no paths

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _counted():
            try:
                return _public_result(fn(*args, **kwargs), texts, roots)
            except Exception as err:  # noqa: BLE001
                raise _public_error(err, roots) from err
    return wrapper


def guard_demo(demo: Any, roots: dict[Path, str]) -> Any:
    """Every handler of ``demo`` wrapped by ``guarded`` (the training slot's also by ``studio.turns.fair_turns``),
    and every Markdown/Textbox's first value rewritten too."""
    import gradio as gr

    for block in demo.blocks.values():
        if isinstance(block, (gr.Markdown, gr.Textbox)) and isinstance(getattr(block, "value", None), str):
            block.value = public_text(block.value, roots)
    from studio.turns import TURN_APIS, fair_turns

    for block_fn in demo.fns.values():
        if block_fn.fn is not None:
            fn = fair_turns(block_fn.fn) if block_fn.api_name in TURN_APIS else block_fn.fn
            block_fn.fn = guarded(fn, _text_outputs(block_fn.outputs), roots)
    return demo


def launch_options() -> dict[str, Any]:
    """Extra ``launch()`` arguments: in hosted mode an upload size limit and the per-address upload budget
    (``studio.upload_limits``); none on one's own machine."""
    if not is_hosted():
        return {}
    from starlette.middleware import Middleware

    from studio.upload_limits import UploadLimit

    return {"max_file_size": MAX_UPLOAD, "app_kwargs": {"middleware": [Middleware(UploadLimit)]},
            "blocked_paths": served_non_images()}


def served_non_images() -> list[str]:
    """Every file in the examples folder (which gradio serves whole) that is not an image: its scripts and README
    are the repository's business, not a visitor's (gradio's ``blocked_paths`` win over ``allowed_paths``)."""
    from diffloss.images import IMAGE_EXTENSIONS
    from studio.models import get_registry

    examples = get_registry().example_images()
    if not examples:
        return []
    folder = examples[0].parent
    return sorted(str(p) for p in folder.rglob("*") if p.is_file() and p.suffix.lower() not in IMAGE_EXTENSIONS)


def hosted_training_photos(photos: list[str] | None, clean_folder: str | None, clean_examples: list[Path]) -> list[str]:
    """The photos a hosted Train run uses: the visitor's uploads, else the shipped clean examples; a typed folder
    is refused without looking at it (whether it exists is the server's business)."""
    if photos:
        return list(photos)
    if clean_folder and clean_folder.strip():
        raise ValueError("On this hosted studio the photos to train on are uploaded (the box above) or, with none "
                         "uploaded, the shipped example photos: a folder on the server cannot be used.")
    if not clean_examples:
        raise ValueError("Upload a few clean photos to train on (this studio ships no clean examples).")
    return [str(p) for p in clean_examples]


UPLOAD_MAX_AGE_S = 3600  # hosted: gradio deletes uploads and served copies an hour old, every ten minutes


def blocks_options() -> dict[str, Any]:
    """Extra ``gr.Blocks`` arguments: in hosted mode gradio deletes uploads and served copies an hour old."""
    return {"delete_cache": (600, UPLOAD_MAX_AGE_S)} if is_hosted() else {}
