"""Train presets: the settings that made each shipped family arm, read from its card, for the Train form.

Why: a visitor who can make a family arm in the browser, and watch it move away from the L2 arm step by step,
sees what the shipped weights are rather than taking them on trust. The card is the record (``diffloss.zoo``
writes the recipe, the weights solved for the arm's shares and its timesteps there), so nothing is typed twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from diffloss.family import family_arm
from diffloss.loss import dose_form_words
from studio.family_view import weight_label
from studio.models import Registry

NONE = "none: the settings as they are"


@dataclass(frozen=True)
class Preset:
    """A family arm's recipe as Train form values, and what differs from the zoo's own run."""

    label: str
    values: dict[str, object]  # TrainSettings field -> value
    note: str


def _band_words(values: dict) -> str:
    lo, hi = values["t_min"], values["t_max"]
    if lo is None and hi is None:
        return "in the prior's band"
    return f"{'the band' if lo is None else lo}-{'the band' if hi is None else hi}"


def preset_for(task: str, arm: str, registry: Registry, caps: dict[str, int]) -> Preset | None:
    """The recipe of the shipped ``arm`` of ``task`` (None when it is not shipped or its card has no recipe)."""
    entry = registry.find(f"shipped {task} {arm}", task)
    card = registry.card(entry) if entry else None
    config = (card or {}).get("config") or {}
    loss, loop = config.get("loss") or {}, config.get("loop") or {}
    if not loss.get("gamma") or not loop:
        return None
    base = registry.find(f"shipped {task} l2", task)
    whole = loss.get("band", "all") == "all"  # a card from before the prior's band drew t over the whole schedule
    t_min, t_max = loss.get("t_min"), loss.get("t_max")
    values = {"start": base.label if base else None, "steps": loop["steps"], "batch": loop["batch_size"],
              "crop": config["crop"], "lr": loop["lr"], "gamma": float(f"{loss['gamma']:.4g}"),
              "lam": float(f"{loss['lam']:.4g}"), "t_min": 0 if t_min is None and whole else t_min,
              "t_max": 999 if t_max is None and whole else t_max, "t_weight": loss.get("t_weight") or "uniform",
              "gradient": loss.get("gradient") or "full", "seed": loop["seed"],
              "prior_crop": loss.get("prior_crop") or 0, "prior_samples": loss.get("prior_samples") or 0}
    capped = [f"{key} {values[key]} -> {caps[key]}" for key in ("steps", "batch", "crop") if values[key] > caps[key]]
    for key in ("steps", "batch", "crop"):
        values[key] = min(values[key], caps[key])
    note = [f"**{weight_label(arm)}**: {family_arm(arm).about}.",
            f"Set from `{entry.label}`'s card: {values['steps']} steps, batch {values['batch']}, "
            f"crop {values['crop']} px, lr {values['lr']:g}, gamma {values['gamma']:g}, lambda {values['lam']:g}, "
            f"t {_band_words(values)} ({dose_form_words(values['t_weight'], values['gradient'])}), "
            f"seed {values['seed']}, the prior on the whole crop of every photo (sub-crop 0, photos 0).",
            "Both arms start from the shipped L2 arm (the zoo started from the L2 base, which is not shipped: the L2 "
            "arm is that base after the same 200 steps without the prior), on the photos chosen below; the zoo "
            "trained on the benchmark's clean/train."]
    if capped:
        note.append(f"Capped on this machine: {', '.join(capped)}.")
    note.append("On a CPU the whole-crop prior makes each step several times dearer than a fidelity step; the "
                "cheaper sub-crop settings (More settings) trained worse in our checks.")
    return Preset(f"{arm} ({weight_label(arm)})", values, " ".join(note))


def presets(task: str, registry: Registry, caps: dict[str, int]) -> list[Preset]:
    """The task's shipped prior arms, lightest prior first (the L2 arm's recipe is the form without gamma)."""
    from diffloss.family import FAMILY

    found = [preset_for(task, arm.name, registry, caps) for arm in FAMILY if arm.shipped and arm.uses_prior]
    return [p for p in found if p is not None]
