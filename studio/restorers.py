"""Which restorer (or prior) a dropdown means, loaded, and run on one image; a ``gr.Error`` saying what to do when
there is none, it is gone, or it does not fit the task."""

from __future__ import annotations

import gradio as gr
import torch

from diffloss import nets
from diffloss.checkpoint import CheckpointError
from diffloss.prior import PriorLoadError
from studio import visitors
from studio.models import Registry, RestorerEntry, get_registry

TILE = 512  # restore larger images in overlapping tiles (bounded memory)


def restorer_choices(task: str, registry: Registry | None = None,
                     request: gr.Request | None = None) -> tuple[list[str], str | None, str | None]:
    """Dropdown choices for a task and the labels to preselect for the L2 and DiffLoss arms (on a hosted studio:
    the shipped restorers and the visitor's own runs, ``studio.visitors``)."""
    reg = registry or get_registry()
    visible = visitors.run_filter(request)
    labels = [e.label for e in reg.restorers(task, visible, partial=True)]  # a stopped pair's arms too, marked so
    l2, dl = reg.default_pair(task, visible)
    return labels, l2 or (labels[0] if labels else None), dl or (labels[-1] if labels else None)


def trained_pair_choices(task: str, registry: Registry | None = None,
                         request: gr.Request | None = None) -> tuple[list[str], str | None, str | None]:
    """Like ``restorer_choices``, but the newest Train-tab run's two arms preselected (runs are listed newest
    first): after training, Compare shows what was just trained, not the shipped pair."""
    reg = registry or get_registry()
    labels, l2, dl = restorer_choices(task, reg, request)
    runs = [e for e in reg.restorers(task, visitors.run_filter(request), partial=True) if e.source == "run"]
    newest = {arm: next((e.label for e in runs if e.arm == arm), None) for arm in ("l2", "diffloss")}
    return labels, newest["l2"] or l2, newest["diffloss"] or dl


FRESH_START = "a fresh restorer (the identity)"


def start_choices(task: str, registry: Registry | None = None, request: gr.Request | None = None) -> tuple[list[str], str]:
    """The Train tab's "Start from" choices for a task and the one to preselect: the task's first L2 arm when there
    is one (fine-tuning, as the paper and the zoo do: a few hundred CPU steps from scratch teach little), else a
    fresh restorer."""
    reg = registry or get_registry()
    visible = visitors.run_filter(request)
    l2, _ = reg.default_pair(task, visible)
    return [FRESH_START, *(e.label for e in reg.restorers(task, visible))], l2 or FRESH_START


def start_entry(start: str | None, task: str, registry: Registry) -> RestorerEntry | None:
    """The restorer both arms start from (None: a fresh one)."""
    if not start or start == FRESH_START:
        return None
    return restorer_entry(start, task, "start of both arms", registry)


def restorer_entry(label: str | None, task: str, arm_name: str, registry: Registry) -> RestorerEntry:
    """The registry entry behind a dropdown label, or a gr.Error that says what to do."""
    if not label:
        raise gr.Error(
            f"No restorer chosen for the {arm_name} (and none found for task '{task}'). No shipped restorers yet: "
            "train a pair in the Train tab, or build the pretrained zoo (see the README)."
        )
    entry = registry.find(label, task)  # on a hosted studio, another visitor's run is not found
    if entry is None:
        raise gr.Error(f"'{label}' is not a restorer for task '{task}' (press Refresh to update the list).")
    return entry


def load_restorer(entry: RestorerEntry, registry: Registry) -> nets.Restorer:
    """The entry's restorer (cached by the registry), or a gr.Error naming what is wrong with its checkpoint."""
    try:
        return registry.load_restorer(entry.path)
    except CheckpointError as err:
        raise gr.Error(f"Cannot load {entry.label}: {err}") from err


def load_named_restorer(label: str | None, task: str, arm_name: str, registry: Registry) -> nets.Restorer:
    """The restorer behind a dropdown label; ``arm_name`` says which box the message is about."""
    return load_restorer(restorer_entry(label, task, arm_name, registry), registry)


def load_prior(source: str | None, registry: Registry):
    """The prior (shipped, a folder or a hub id; cached by the registry), or a gr.Error with the reason."""
    try:
        return registry.load_prior(source)
    except PriorLoadError as err:
        raise gr.Error(f"Prior not loadable: {err}") from err


def run_restorer(model: nets.Restorer, net_input: torch.Tensor) -> torch.Tensor:
    """Restore one image; tiled when it is large so memory stays bounded on a CPU."""
    if model.config.in_channels != net_input.shape[0]:
        raise gr.Error(f"This restorer takes {model.config.in_channels} channels but the task gives "
                       f"{net_input.shape[0]}: pick a restorer trained for this task.")
    tile = TILE if max(net_input.shape[-2:]) > TILE else None
    return nets.restore(model, net_input, tile=tile).cpu()
