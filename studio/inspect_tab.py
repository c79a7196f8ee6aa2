"""The Inspect tab's work: what the frozen prior sees of a (restored or degraded, ground truth) pair at one t and
noise, the L(t) curves across timesteps, and the DDIM purification round trip.

Cases and prior passes are remembered (``CASES``, ``PASSES``): moving t re-runs only the prior, new weights nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import gradio as gr
import numpy as np
import torch

from diffloss import schedule, side_by_side
from diffloss.checkpoint import MODEL_FILE
from diffloss.images import centre_crop
from diffloss.inspection import (
    PairInspection, best_separation, default_timesteps, inspect_pair, purification,
)
from diffloss.loss import DiffLossConfig, prior_term
from diffloss.paths import shown_path
from diffloss.prior import PriorLoadError
from diffloss.viz import (
    heatmaps_on_one_scale, loss_curve_figure, pca_basis, pca_rgb, shared_scale, signed_to_image, to_image,
)
from diffloss.viz import grid as image_grid
from studio.readable import HALF, below_toolbar, label_px
from studio.memo import Memo, file_stamp
from studio.models import Registry, get_registry
from studio.restorers import load_prior, load_restorer, restorer_entry, run_restorer
from studio.toasts import warn
from studio.upload import MODES, prepare_case

# Inspect works on a centre crop: every view is a few prior forwards (and one backward), slow at 256 px on a
# small CPU (inspect_256_s in bench/results/studio-cpu.json), so the CPU default is 128 px.
INSPECT_SIDE = 256 if torch.cuda.is_available() else 128
INSPECT_MAX_SIDE = 512 if torch.cuda.is_available() else 256
DISPLAY_SIDE = 256  # Inspect's pictures are shown at least this large: a 128 px crop's pixels twice over
CURVE_POINTS = 8  # timesteps on the L(t) plot
CURVE_SIDE = 128 if torch.cuda.is_available() else 64  # the curve's crop: 8 x 3 x 3 prior passes must stay quick
PAIRS = ("restored vs ground truth", "degraded vs ground truth")


@dataclass(frozen=True)
class InspectCase:
    """The crops one Inspect setting looks at; shared between calls through ``CASES``, so never changed in place."""

    a: torch.Tensor  # restored or degraded, (3,H,W)
    b: torch.Tensor  # ground truth
    restored: torch.Tensor | None
    degraded: torch.Tensor
    notes: tuple[str, ...]
    key: tuple  # what it was made from (files by size and time): the prior passes are remembered under it


# The last few cases and prior passes (see studio/memo.py): moving t re-runs only the prior, new weights nothing.
CASES: Memo[InspectCase] = Memo(8)
PASSES: Memo[PairInspection] = Memo(16)


def inspect_case(
    image: str | None, task: str, seed: int, restorer_label: str | None, pair: str, registry: Registry,
    side: int = INSPECT_SIDE, ground_truth: str | None = None,
) -> InspectCase:
    """The pair the prior looks at, on a centre crop of at most ``side`` px: a clean photo degraded with ``seed``,
    or, given its ``ground_truth``, a degraded photo taken as it is (a real pair)."""
    if pair not in PAIRS:
        raise gr.Error(f"Choose one of: {', '.join(PAIRS)}.")
    side = max(16, min(int(side or INSPECT_SIDE), INSPECT_MAX_SIDE))
    entry = registry.find(restorer_label, task) if restorer_label else None
    # The registry itself, not its id(): a key keeps its objects alive, so an id can never be reused under it.
    key = (file_stamp(image), task, int(seed), restorer_label,
           file_stamp(entry.path / MODEL_FILE) if entry else None, pair, side, registry, file_stamp(ground_truth))

    def make() -> InspectCase:
        mode = MODES[2] if ground_truth else MODES[0]
        case = prepare_case(image, task, mode, int(seed), gt_path=ground_truth)
        gt, shown, net_input = (centre_crop(x, side) for x in (case.gt, case.shown, case.net_input))
        notes = list(case.notes)
        if ground_truth:
            notes.append("A real pair: the photo is taken as it is (degraded), against its uploaded ground truth.")
        if max(case.gt.shape[-2:]) > side:
            notes.append(f"Inspect looks at the centre {gt.shape[-1]}x{gt.shape[-2]} px (at most {side} px per side).")
        # The restored image is needed for its pair, and by the L(t) curves whenever a restorer is chosen.
        restored, found = None, entry
        if pair == PAIRS[0] and found is None:
            found = restorer_entry(restorer_label, task, "restored image", registry)  # says why there is none
        if found is not None:
            restored = run_restorer(load_restorer(found, registry), net_input)
        a = restored if pair == PAIRS[0] else shown
        return InspectCase(a=a, b=gt, restored=restored, degraded=shown, notes=tuple(notes), key=key)

    return CASES.get(key, make)


def display_scale(height: int, width: int) -> int:
    """Whole-number enlargement that shows a crop at about ``DISPLAY_SIDE`` px (1 for crops that large)."""
    return max(1, DISPLAY_SIDE // max(height, width, 1))


def check_t(t: float, prior) -> int:
    last = prior.num_timesteps - 1
    t = int(t)
    if not 0 <= t <= last:
        clamped = min(max(t, 0), last)
        warn(f"t={t} is outside this prior's schedule [0, {last}]; using t={clamped}.")
        return clamped
    return t


@dataclass
class InspectResult:
    x_t: np.ndarray
    eps: np.ndarray
    x0: np.ndarray
    h_pca: np.ndarray
    h_error: np.ndarray
    gradient: np.ndarray
    values: str
    # What the page shows of the two heat maps: both branches (restored and degraded) on one scale with its bar;
    # ``h_error`` and ``gradient`` are the chosen pair's tiles of them.
    h_error_view: np.ndarray | None = None
    gradient_view: np.ndarray | None = None

    def as_tuple(self) -> tuple:
        h_error = self.h_error if self.h_error_view is None else self.h_error_view
        gradient = self.gradient if self.gradient_view is None else self.gradient_view
        return (self.x_t, self.eps, self.x0, self.h_pca, h_error, gradient, self.values)


# The dose controls' choices as (what the page says, DiffLossConfig's value); the first is the paper's.
T_WEIGHT_CHOICES = [("uniform (the paper)", "uniform"), ("sigma^2 = 1 - alpha_bar (DreamFusion)", "sigma2"),
                    ("x0 space: (1 - alpha_bar) / alpha_bar", "x0")]
GRADIENT_CHOICES = [("full, through the UNet (the paper)", "full"), ("Jacobian-free (score distillation)", "sds")]


def dose_config(gamma: float, lam: float, detach_prior: bool, t_weight: str, gradient: str, per_sample_norm: bool,
                grad_cap: float | None, num_timesteps: int) -> DiffLossConfig:
    """The loss config of Inspect's controls; a cap of 0 or empty means none. Bad values: a message, not a trace."""
    cap = float(grad_cap) if grad_cap else None
    config = DiffLossConfig(gamma=float(gamma), lam=float(lam), detach_prior=bool(detach_prior),
                            t_weight=t_weight or "uniform", gradient=gradient or "full",
                            per_sample_norm=bool(per_sample_norm), grad_cap=cap)
    try:
        config.validate(num_timesteps)
    except ValueError as err:
        raise gr.Error(str(err)) from err
    return config


def dose_line(config: DiffLossConfig, prior, t: int, cap_scale: float, band: tuple[int, int]) -> str:
    """The dose in words: the weight this t gets, the gradient's form, the normalisation and whether the cap bit."""
    w = float(schedule.t_weight(prior.alphas_cumprod, torch.tensor([t]), config.t_weight)[0])
    inside = band[0] <= t <= band[1]
    where = "" if inside else f"; **outside the band [{band[0]}, {band[1]}]: training never draws this t**"
    parts = [f"weight at t = {t}: **{w:.4g}** ({config.t_weight}){where}",
             "Jacobian-free gradient (L_sem sends none)" if config.gradient == "sds" else "full gradient"]
    if config.per_sample_norm:
        parts.append("per-sample normalised")
    if config.grad_cap is not None:
        parts.append(f"cap {config.grad_cap:g} x the fidelity gradient: "
                     + ("not reached" if cap_scale >= 1 else f"bit, prior gradient x {cap_scale:.3g}"))
    return "- dose: " + "; ".join(parts)


def inspect(
    image: str | None, task: str, seed_image: float, restorer_label: str | None, pair: str, t: float, seed: float,
    prior_source: str | None, detach_prior: bool = False, gamma: float = 0.05, lam: float = 0.1,
    side: float = INSPECT_SIDE, t_weight: str = "uniform", gradient: str = "full", per_sample_norm: bool = False,
    grad_cap: float | None = None, t_min: float = 0, t_max: float | None = None, ground_truth: str | None = None,
    registry: Registry | None = None,
) -> InspectResult:
    """What the prior sees of (a, ground truth) at one (t, eps): x_t, eps_hat, x0, h maps, terms, gradient on a."""
    reg = registry or get_registry()
    prior = load_prior(prior_source, reg)
    case = inspect_case(image, task, int(seed_image or 0), restorer_label, pair, reg, int(side or INSPECT_SIDE),
                        ground_truth)
    t = check_t(t, prior)
    seed = int(seed or 0)
    config = dose_config(gamma, lam, detach_prior, t_weight, gradient, per_sample_norm, grad_cap, prior.num_timesteps)
    band = dose_band(t_min, t_max, prior)
    # One prior pass per image serves every view; it is remembered without the weights and the cap, which only
    # scale it; the rest of the dose changes the pass.
    dose = (config.detach_prior, config.t_weight, config.gradient, config.per_sample_norm)
    p = PASSES.get((case.key, prior, t, seed, *dose),
                   lambda: inspect_pair(prior, case.a, case.b, t, seed, config=config))
    g = p.term_grads.weighted(config.gamma, config.lam, config.grad_cap)
    name_a = "restored" if pair == PAIRS[0] else "degraded"
    h, w = case.b.shape[-2:]
    k = display_scale(h, w)
    two, three = (label_px(n * (w * k + 4) + 4, HALF) for n in (2, 3))  # labels >= 11 px shown two to a row
    x_t = image_grid([to_image(p.x_t_a), to_image(p.x_t_b)], [f"x_t {name_a}", "x_t GT"], 2, scale=k, font_size=two)
    scale = shared_scale(p.eps_hat_a, p.eps_hat_b)
    eps = image_grid(
        [signed_to_image(p.eps_hat_a, scale), signed_to_image(p.eps_hat_b, scale), signed_to_image(p.eps_hat_diff)],
        [f"eps_hat {name_a}", "eps_hat GT", "difference"], 3, scale=k, font_size=three)
    x0 = image_grid([to_image(p.x0_a), to_image(p.x0_b)], [f"x0 {name_a}", "x0 GT"], 2, scale=k, font_size=two)
    basis = pca_basis(p.h_a, p.h_b)
    pca = image_grid([pca_rgb(p.h_a, basis, size=(h, w))[0], pca_rgb(p.h_b, basis, size=(h, w))[0]],
                     [f"h {name_a}", "h GT"], 2, scale=k, font_size=two)
    # Both branches (restored and degraded, each against the ground truth) on one colour scale per map.
    branches = [(name_a, p, case.a)]
    other = _other_branch(case, pair)
    if other is not None:
        other_name, other_image = other
        other_pass = PASSES.get((case.key, other_name, prior, t, seed, *dose),
                                lambda: inspect_pair(prior, other_image, case.b, t, seed, config=config))
        branches.append((other_name, other_pass, other_image))
    branches.sort(key=lambda b: BRANCH_ORDER.index(b[0]))
    shown = [name for name, _, _ in branches].index(name_a)
    labels = [f"{name} vs GT" for name, _, _ in branches]
    maps_px = label_px(len(branches) * (w * k + 4) + 70, HALF)  # the maps and their colour bar
    h_view, h_tiles, _ = heatmaps_on_one_scale([b.h_error for _, b, _ in branches], [case.b] * len(branches), labels,
                                               scale=k, mode="bilinear", font_size=maps_px)
    pushes = [b.term_grads.weighted(config.gamma, config.lam, config.grad_cap).magnitude for _, b, _ in branches]
    grad_view, grad_tiles, _ = heatmaps_on_one_scale(pushes, [img for _, _, img in branches],
                                                     [f"on the {name} image" for name, _, _ in branches], scale=k,
                                                     font_size=maps_px)
    h_err, grad = h_tiles[shown], grad_tiles[shown]
    weighted = prior_term(g.nat, g.sem, config.gamma, config.lam)  # the dosed terms, as training weighs them
    if detach_prior:
        push = (f"Gradient norm **{g.norm:.3g}**: with the released code's `torch.no_grad()` the prior terms are "
                "computed but send **exactly zero** gradient to the restorer.")
    else:
        push = f"Gradient norm of gamma*(L_nat + lambda*L_sem) on the {name_a} image: **{g.norm:.4g}**."
    shares = ", ".join(f"{k} {v:.1%}" for k, v in g.grad_share.items()) if g.grad_share else "n/a"
    high_t = noise_note(t, float(prior.alphas_cumprod[t]))
    values = "\n".join([
        f"t = {t} of {prior.num_timesteps - 1}, seed {seed}, pair: {pair}, prior: `{shown_path(prior.source)}`",
        *([f"\n**{high_t}**"] if high_t else []),
        "",
        f"- L_nat = **{p.l_nat:.5g}** (mean squared difference of the two noise predictions)",
        f"- L_sem = **{p.l_sem:.5g}** (mean squared difference of the two h-space maps)",
        f"- gamma*(L_nat + lambda*L_sem) = {weighted:.4g} (gamma {config.gamma:g}, lambda {config.lam:g})",
        f"- {push}",
        f"- share of the gradient on the image (fidelity/nat/sem): {shares}",
        dose_line(config, prior, t, g.cap_scale, band),
        *([branch_comparison(branches)] if len(branches) > 1 else []),
    ] + [f"- {n}" for n in case.notes])
    # Each view with a white band on top: gradio's buttons over its top right corner then cover none of it.
    x_t, eps, x0, pca, h_view, grad_view = map(below_toolbar, (x_t, eps, x0, pca, h_view, grad_view))
    return InspectResult(x_t=x_t, eps=eps, x0=x0, h_pca=pca, h_error=h_err, gradient=grad, values=values,
                         h_error_view=h_view, gradient_view=grad_view)


BRANCH_ORDER = ("restored", "degraded")  # the heat maps' left-to-right order, whichever pair is chosen


def _other_branch(case: InspectCase, pair: str) -> tuple[str, torch.Tensor] | None:
    """The branch the chosen pair does not show (restored or degraded), when there is one to show beside it."""
    if pair == PAIRS[0]:
        return "degraded", case.degraded
    return ("restored", case.restored) if case.restored is not None else None


def branch_comparison(branches: list) -> str:
    """The two branches' terms in one line: what the shared colour scale shows, in numbers."""
    parts = [f"{name}: L_nat {b.l_nat:.3g}, L_sem {b.l_sem:.3g}" for name, b, _ in branches]
    return f"- both images against the ground truth, as the heat maps below show them: {'; '.join(parts)}"


NOISE_DOMINATES = 0.5  # alpha_bar below this: x_t holds more noise than image (by variance)


def noise_note(t: int, alpha_bar: float) -> str | None:
    """A word for a learner where t is high: x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps is then mostly
    noise, and a one-step x0 estimate a blur or colour noise, by design (None where the image still dominates)."""
    if alpha_bar >= NOISE_DOMINATES:
        return None
    return (f"At t = {t}, x_t is {math.sqrt(alpha_bar):.2f} x image + {math.sqrt(1 - alpha_bar):.2f} x noise: the "
            "pictures of x_t and the one-step x0 estimates are mostly noise or blur by design (the prior sees only "
            "coarse structure here). Lower t to see detail.")


def inspect_curves(
    image: str | None, task: str, seed_image: float, restorer_label: str | None, prior_source: str | None,
    seeds: float = 3, side: float = CURVE_SIDE, t_weight: str = "uniform", t_min: float = 0,
    t_max: float | None = None, ground_truth: str | None = None, registry: Registry | None = None,
) -> tuple[np.ndarray, str]:
    """L_nat(t), L_sem(t) for restored-vs-GT (when a restorer is chosen) and degraded-vs-GT, mean and band; and
    what to read off them: where each term tells the restored image from the degraded one best."""
    reg = registry or get_registry()
    prior = load_prior(prior_source, reg)
    lo, hi = dose_band(t_min, t_max, prior)  # bad dose settings: a message before any pass through the prior
    if t_weight not in schedule.T_WEIGHTINGS:
        raise gr.Error(f"unknown t weighting {t_weight!r}; choose one of {list(schedule.T_WEIGHTINGS)}")
    case = inspect_case(image, task, int(seed_image or 0), restorer_label, PAIRS[1], reg, int(side or CURVE_SIDE),
                        ground_truth)
    pairs = {}
    if case.restored is not None:
        pairs["restored vs GT"] = (case.restored, case.b)
    pairs["degraded vs GT"] = (case.degraded, case.b)
    steps = default_timesteps(prior.num_timesteps, CURVE_POINTS)
    curves = side_by_side.loss_curves(prior, pairs, timesteps=steps, seeds=tuple(range(max(1, min(int(seeds), 8)))))
    h, w = case.b.shape[-2:]
    weights = schedule.band_weights(prior.alphas_cumprod, t_weight, lo, hi).numpy()
    figure = loss_curve_figure(curves, note=f"{w}x{h} px centre crop", dose=(weights, f"{t_weight}, t in [{lo}, {hi}]"))
    return figure, curves_reading(curves)


def dose_band(t_min: float | None, t_max: float | None, prior) -> tuple[int, int]:
    """The dose's timestep band as integers within the prior's schedule (an empty box: the prior's band there,
    the whole schedule for a prior without one; beyond the schedule: its last, with a note); a negative or reversed
    band: a message."""
    last = prior.num_timesteps - 1
    band_lo, band_hi = prior.t_band()
    lo = band_lo if t_min in (None, "") else int(t_min)
    hi = band_hi if t_max in (None, "") else int(t_max)
    if hi > last >= lo:
        warn(f"the t band ends at {hi}, beyond this prior's schedule [0, {last}]; using {last}.")
        hi = last
    if not 0 <= lo <= hi <= last:
        raise gr.Error(f"the t band [{lo}, {hi}] must lie within this prior's schedule [0, {last}], low <= high")
    return lo, hi


def curves_reading(curves) -> str:
    """The L(t) plot in words, for a learner: at which t each term separates degraded from restored, how much."""
    if "restored vs GT" not in curves.nat:
        return "Choose a restorer to see where the prior tells a restored image from the degraded one."
    best = best_separation(curves, "restored vs GT", "degraded vs GT")
    lines = []
    for term, name in (("nat", "L_nat"), ("sem", "L_sem")):
        b = best[term]
        if b.ratio <= 1:
            lines.append(f"- {name} does not tell them apart: at no t does the restored image score closer to the "
                         "ground truth than the degraded one.")
            continue
        how = "infinitely" if math.isinf(b.ratio) else f"{b.ratio:.3g}x"
        verdict = ("apart beyond the seeds' spread" if b.apart
                   else "within the seeds' spread: more seeds, or no signal at this crop")
        lines.append(f"- {name} tells them apart best at **t = {b.t}**: the degraded image scores {how} the restored "
                     f"one's ({verdict}).")
    return "\n".join(lines)


def inspect_purify(
    image: str | None, task: str, seed_image: float, restorer_label: str | None, pair: str, t: float, seed: float,
    prior_source: str | None, steps: float = 10, side: float = INSPECT_SIDE, ground_truth: str | None = None,
    registry: Registry | None = None,
) -> np.ndarray:
    """The few-step DDIM round trip from t, for the compared image and the ground truth (same noise)."""
    reg = registry or get_registry()
    prior = load_prior(prior_source, reg)
    case = inspect_case(image, task, int(seed_image or 0), restorer_label, pair, reg, int(side or INSPECT_SIDE),
                        ground_truth)
    t = check_t(t, prior)
    steps = max(1, min(int(steps), 50))
    out = purification(prior, {"a": case.a, "gt": case.b}, t, steps, int(seed or 0))
    name_a = "restored" if pair == PAIRS[0] else "degraded"
    return image_grid(
        [to_image(case.a), to_image(out["a"]), to_image(case.b), to_image(out["gt"])],
        [name_a, f"{name_a} purified from t={t}", "ground truth", f"ground truth purified ({steps} DDIM steps)"], 4,
        scale=display_scale(*case.b.shape[-2:]))


DEFAULT_T_FRACTION = 0.2  # the Inspect slider starts at t = 200 of 1000: noisy enough to matter, not pure noise


def timestep_in_schedule(t: float, num_timesteps: int) -> int:
    """The slider's t for a prior with ``num_timesteps``: kept when the schedule has it, else the same default
    fraction of the new schedule (t = 200 of a 1000-step prior is 20 of a 100-step one), never out of range.

    Why: a slider whose value lies beyond its new maximum refuses every request ("Value 200 is greater than
    maximum value 99"), so switching to a shorter schedule must move t too.
    """
    last = max(0, int(num_timesteps) - 1)
    t = int(t)
    return t if 0 <= t <= last else round(DEFAULT_T_FRACTION * last)


def prior_timesteps(source: str | None, registry: Registry | None = None) -> tuple[int, str]:
    """(T, message) for the prior box: how many timesteps the slider may use, or why the prior does not load."""
    reg = registry or get_registry()
    try:
        prior = reg.load_prior(source)
    except PriorLoadError as err:
        return 1000, f"Prior not loadable: {err}"
    size = f"{prior.num_timesteps} timesteps, {prior.parameter_count() / 1e6:.2f} M parameters"
    return prior.num_timesteps, f"Prior `{prior.source}`: {size}."
