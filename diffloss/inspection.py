"""What the Inspect view computes: the middle of the DiffLoss flow, opened up for one pair of images.

Why a module of its own: the app has to *teach* what the loss sees (x_t, the two noise predictions, the one-step
x0 estimates, the h maps, how the terms depend on t, where their gradient lands on the restored image), and every
number it shows must be the number DiffLoss trains with. So each function here goes through the same pieces the
loss uses (``prior.view``, ``loss.output_distances``, ``DiffLoss``) and draws nothing; ``viz`` turns the results
into pictures.

Seed convention (shared with ``DiffLoss`` when it is given ``t``): ``g = torch.Generator().manual_seed(seed)``,
then ``eps = torch.randn((1, 3, H, W), generator=g)`` on the CPU. So ``inspect_pair(..., t, seed).l_nat`` equals
``DiffLoss(prior, cfg)(a, b, generator=torch.Generator().manual_seed(seed), t=t).nat``, and one seed of
``loss_curves`` at one t is that same number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from diffloss.loss import (TERMS, DiffLoss, DiffLossConfig, LossTerms, cap_scale, output_distances, prior_term,
                           shares_of, term_weights)
from diffloss.prior import DiffusionPrior, PriorOutput

DEFAULT_CURVE_POINTS = 12


def _as_batch(x: torch.Tensor, name: str) -> torch.Tensor:
    """One image as (1,3,H,W): the Inspect view looks at a single pair at a time."""
    if x.dim() == 3:
        x = x[None]
    if x.dim() != 4 or x.shape[0] != 1 or x.shape[1] != 3:
        raise ValueError(f"{name} must be one RGB image, (3,H,W) or (1,3,H,W); got {tuple(x.shape)}")
    return x


def _as_pair(a: torch.Tensor, b: torch.Tensor, prior: DiffusionPrior) -> tuple[torch.Tensor, torch.Tensor]:
    if a.shape != b.shape:
        raise ValueError(f"the two images differ in shape: a {tuple(a.shape)} vs b {tuple(b.shape)}")
    dev = prior.device
    return _as_batch(a, "a").detach().to(dev, torch.float32), _as_batch(b, "b").detach().to(dev, torch.float32)


def seeded_noise(shape: Sequence[int], seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The shared eps for a seed, drawn on the CPU (as DiffLoss does) so a seed means the same noise everywhere."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.randn(tuple(shape), generator=g).to(device)


# ------------------------------------------------------------------------------------------------ one pair
@dataclass(frozen=True)
class PairInspection:
    """Everything the prior sees of a pair (a = restored or degraded, b = ground truth) at one (t, eps).

    Images are (3,H,W): x_t and x0 in [0,1] for display; eps, eps_hat and their difference on the model's scale.
    h maps keep their batch axis, (1,C,h,w). ``l_nat``/``l_sem`` are exactly DiffLoss's unweighted terms.
    """

    t: int
    seed: int
    eps: torch.Tensor
    x_t_a: torch.Tensor
    x_t_b: torch.Tensor
    eps_hat_a: torch.Tensor
    eps_hat_b: torch.Tensor
    eps_hat_diff: torch.Tensor  # eps_hat_a - eps_hat_b: what L_nat squares and averages
    x0_a: torch.Tensor
    x0_b: torch.Tensor
    h_a: torch.Tensor
    h_b: torch.Tensor
    h_error: torch.Tensor  # (h, w): mean over channels of (h_a - h_b)^2, where L_sem comes from
    l_nat: float
    l_sem: float
    gradient: "GradientMap | None" = None  # where the weighted prior terms push a (when a loss config was given)
    term_grads: "TermGradients | None" = None  # the same, unweighted: re-weight with term_grads.weighted(g, l)


def inspect_pair(
    prior: DiffusionPrior, a: torch.Tensor, b: torch.Tensor, t: int, seed: int, config: DiffLossConfig | None = None,
) -> PairInspection:
    """Noise a and b with the same eps at t and show what the prior makes of each (see the module's seed rule).

    With a loss ``config`` the views come out of DiffLoss's own forward (a with its graph), which then also gives
    the gradient map: one prior pass per image for everything the Inspect view shows.
    """
    a, b = _as_pair(a, b, prior)
    tt = torch.full((1,), int(t), dtype=torch.long, device=a.device)
    gradient, raw = None, None
    if config is None:
        eps = seeded_noise(a.shape, seed, a.device)
        # Separate forwards for a and b: identical inputs then give bit-identical outputs (a zero error map).
        va, vb = prior.view(a, tt, eps), prior.view(b, tt, eps)
    else:
        raw, terms = _gradient(prior, a, b, config, seed, t)
        gradient = raw.weighted(config.gamma, config.lam, config.grad_cap)
        eps = terms.eps
        out_a, out_b = terms.outputs
        va = prior.view_of(prior.add_noise(a, tt, eps), tt, eps, out_a)
        vb = prior.view_of(prior.add_noise(b, tt, eps), tt, eps, out_b)
    nat, sem = output_distances(va.eps_hat, va.h, vb.eps_hat, vb.h)  # DiffLoss's own formula, no second forward
    return PairInspection(
        t=int(t), seed=int(seed), eps=eps[0],
        x_t_a=va.x_t[0], x_t_b=vb.x_t[0],
        eps_hat_a=va.eps_hat[0], eps_hat_b=vb.eps_hat[0], eps_hat_diff=(va.eps_hat - vb.eps_hat)[0],
        x0_a=va.x0_hat[0], x0_b=vb.x0_hat[0],
        h_a=va.h, h_b=vb.h, h_error=(va.h.float() - vb.h.float()).pow(2).mean(dim=1)[0],
        l_nat=float(nat), l_sem=float(sem), gradient=gradient, term_grads=raw,
    )


# ------------------------------------------------------------------------------------------------ L(t) curves
@dataclass(frozen=True)
class CurveStats:
    """One term for one pair: ``samples`` is (len(timesteps), len(seeds)); mean and std over seeds per t."""

    samples: np.ndarray
    mean: np.ndarray
    std: np.ndarray  # population std (ddof=0), so a single seed gives 0 rather than NaN

    @classmethod
    def from_samples(cls, samples: np.ndarray) -> "CurveStats":
        return cls(samples=samples, mean=samples.mean(axis=1), std=samples.std(axis=1))


@dataclass(frozen=True)
class LossCurves:
    """L_nat(t) and L_sem(t) for each named pair: which timesteps carry the signal, and how noisy it is."""

    timesteps: list[int]
    seeds: list[int]
    nat: dict[str, CurveStats]
    sem: dict[str, CurveStats]

    @property
    def names(self) -> list[str]:
        return list(self.nat)


def join_curves(parts: Sequence[LossCurves]) -> LossCurves:
    """The curves of consecutive timestep ranges (same pairs, same seeds) as one: what ``loss_curves`` gives for
    all of their timesteps at once, since each (t, seed) is measured on its own."""
    if not parts:
        raise ValueError("join_curves needs at least one part")
    first = parts[0]
    for part in parts[1:]:
        if part.seeds != first.seeds or part.names != first.names:
            raise ValueError("curves to join must have the same seeds and pairs")

    def joined(term: str, name: str) -> CurveStats:
        return CurveStats.from_samples(np.concatenate([getattr(p, term)[name].samples for p in parts]))

    return LossCurves(
        timesteps=[t for p in parts for t in p.timesteps], seeds=list(first.seeds),
        nat={name: joined("nat", name) for name in first.names},
        sem={name: joined("sem", name) for name in first.names},
    )


def default_timesteps(num_timesteps: int, count: int = DEFAULT_CURVE_POINTS) -> list[int]:
    """About ``count`` timesteps evenly spread over the whole schedule [0, T-1]."""
    return sorted({int(v) for v in torch.linspace(0, num_timesteps - 1, count).round().long().tolist()})


@torch.no_grad()
def loss_curves(
    prior: DiffusionPrior, pairs: dict[str, tuple[torch.Tensor, torch.Tensor]],
    timesteps: Sequence[int] | None = None, seeds: Sequence[int] = (0, 1, 2), batch_size: int = 8,
) -> LossCurves:
    """L_nat(t), L_sem(t) for each (a, b) pair, mean and std over seeds (seed rule as in ``inspect_pair``).

    All (t, seed) combinations go through the prior in chunks of ``batch_size`` samples, and each distinct image
    goes through once per chunk: pairs that share their ground truth (restored-vs-GT and degraded-vs-GT) share
    its forward, so two pairs cost three images' worth of prior passes, not four.
    """
    if not pairs:
        raise ValueError("loss_curves needs at least one named (a, b) pair")
    if not seeds:
        raise ValueError("loss_curves needs at least one seed")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    steps = default_timesteps(prior.num_timesteps) if timesteps is None else [int(v) for v in timesteps]
    combos = [(t, s) for t in steps for s in seeds]
    images: list[torch.Tensor] = []  # distinct images; pairs refer to them by index

    def index_of(x: torch.Tensor) -> int:
        for i, seen in enumerate(images):
            if seen.shape == x.shape and torch.equal(seen, x):
                return i
        images.append(x)
        return len(images) - 1

    refs: dict[str, tuple[int, int]] = {}
    for name, (a, b) in pairs.items():
        a, b = _as_pair(a, b, prior)
        refs[name] = (index_of(a), index_of(b))
    shapes = {tuple(x.shape) for x in images}
    noise = {(shape, s): seeded_noise(shape, s, prior.device) for shape in shapes for s in seeds}
    parts: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {name: [] for name in refs}
    for start in range(0, len(combos), batch_size):
        chunk = combos[start:start + batch_size]
        t = torch.tensor([c[0] for c in chunk], dtype=torch.long, device=prior.device)

        def forward(x: torch.Tensor) -> PriorOutput:
            eps = torch.cat([noise[(tuple(x.shape), c[1])] for c in chunk])
            return prior.predict(prior.add_noise(x.expand(len(chunk), -1, -1, -1), t, eps), t)

        outs = [forward(x) for x in images]
        for name, (ia, ib) in refs.items():
            parts[name].append(output_distances(outs[ia].eps, outs[ia].h, outs[ib].eps, outs[ib].h, per_sample=True))
    shape = (len(steps), len(seeds))

    def stats(values: list[torch.Tensor]) -> CurveStats:
        return CurveStats.from_samples(torch.cat(values).cpu().double().numpy().reshape(shape))

    return LossCurves(
        timesteps=steps, seeds=[int(s) for s in seeds],
        nat={name: stats([p[0] for p in ps]) for name, ps in parts.items()},
        sem={name: stats([p[1] for p in ps]) for name, ps in parts.items()},
    )


@dataclass(frozen=True)
class Separation:
    """Where one term tells two pairs apart best: the t at which ``far``'s mean is the largest multiple of
    ``near``'s, that multiple, and whether their +-1 std bands are apart there (a signal, not seed noise)."""

    t: int
    ratio: float  # mean(far) / mean(near) at t (inf where near is exactly 0 and far is not)
    apart: bool


def best_separation(curves: LossCurves, near: str, far: str) -> dict[str, Separation]:
    """For L_nat and L_sem: the timestep where the ``far`` pair (e.g. degraded vs GT) stands furthest, as a
    multiple, above the ``near`` pair (restored vs GT). What a learner should read off the L(t) plot: at which t
    the prior tells a better restoration from a worse one, and by how much."""
    for name in (near, far):
        if name not in curves.nat:
            raise ValueError(f"no pair named {name!r} in the curves (have {', '.join(curves.names)})")
    out = {}
    for term, stats in (("nat", curves.nat), ("sem", curves.sem)):
        a, b = stats[near], stats[far]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(a.mean > 0, b.mean / a.mean, np.where(b.mean > 0, np.inf, 1.0))
        i = int(np.argmax(ratio))
        apart = bool(b.mean[i] - b.std[i] > a.mean[i] + a.std[i])
        out[term] = Separation(t=int(curves.timesteps[i]), ratio=float(ratio[i]), apart=apart)
    return out


# ------------------------------------------------------------------------------------------------ gradient
@dataclass(frozen=True)
class GradientMap:
    """Where the prior terms push the restored image: |d gamma*(L_nat + lam*L_sem) / d restored| per pixel.

    ``grad_norms``/``grad_share`` cover all three weighted terms (fidelity, nat, sem), defined as DiffLoss's
    training log defines them (``LossTerms.grad_share``), so the view and the log agree.
    """

    magnitude: torch.Tensor  # (H, W): L2 over the three channels
    norm: float  # L2 norm of the whole prior-term gradient
    grad_norms: dict[str, float]
    grad_share: dict[str, float]
    t: int
    nat: float
    sem: float
    cap_scale: float = 1.0  # what the config's grad_cap multiplied the prior's gradient by (1.0: it did not bite)


@dataclass(frozen=True)
class TermGradients:
    """Each term's *unweighted* gradient on the restored image, (3,H,W): d fidelity, d L_nat and d L_sem.

    Why unweighted: gamma and lambda only scale these fields, so ``weighted`` gives the map and the shares for any
    weights without another pass through the prior; the Inspect view re-weights as fast as a user types. With the
    released code's no_grad (``detach_prior``) the prior fields are exactly zero, as measured, not assumed.
    """

    fidelity: torch.Tensor
    nat: torch.Tensor
    sem: torch.Tensor
    t: int
    l_nat: float
    l_sem: float

    def weighted(self, gamma: float, lam: float, grad_cap: float | None = None) -> GradientMap:
        """The map and shares at (gamma, lambda): gamma*d L_nat + gamma*lambda*d L_sem, beside d fidelity; with
        ``grad_cap``, the prior's part scaled down to at most that times the fidelity gradient's norm, as
        ``DiffLoss`` does in training (the shares then are those of the gradient actually applied)."""
        prior_grad = prior_term(self.nat, self.sem, gamma, lam)
        weights = term_weights(gamma, lam)
        norms = {k: abs(weights[k]) * float(getattr(self, k).norm()) for k in TERMS}
        scale = 1.0
        if grad_cap is not None:
            scale = cap_scale(float(prior_grad.norm()), float(self.fidelity.norm()), grad_cap)
            prior_grad = prior_grad * scale
            norms = {k: v * (scale if k != "fidelity" else 1.0) for k, v in norms.items()}
        return GradientMap(
            magnitude=prior_grad.norm(dim=0), norm=float(prior_grad.norm()), grad_norms=norms,
            grad_share=shares_of(norms),
            t=self.t, nat=self.l_nat, sem=self.l_sem, cap_scale=scale,
        )


def term_gradients(
    prior: DiffusionPrior, restored: torch.Tensor, gt: torch.Tensor, config: DiffLossConfig, seed: int,
    t: int | None = None,
) -> TermGradients:
    """The terms' gradients on ``restored`` for one seeded (t, eps) draw (weights of ``config`` not applied).

    With ``t`` given, eps follows the module's seed rule; otherwise DiffLoss draws t (from ``config``) and then
    eps from the same seeded generator, as in training. ``config.detach_prior=True`` gives exactly zero: the
    released code's no_grad bug, made visible.
    """
    restored, gt = _as_pair(restored, gt, prior)
    return _gradient(prior, restored, gt, config, seed, t)[0]


def gradient_map(
    prior: DiffusionPrior, restored: torch.Tensor, gt: torch.Tensor, config: DiffLossConfig, seed: int,
    t: int | None = None,
) -> GradientMap:
    """The prior terms' gradient on ``restored`` at ``config``'s weights (see ``term_gradients``)."""
    return term_gradients(prior, restored, gt, config, seed, t).weighted(config.gamma, config.lam, config.grad_cap)


def _gradient(
    prior: DiffusionPrior, restored: torch.Tensor, gt: torch.Tensor, config: DiffLossConfig, seed: int,
    t: int | None,
) -> tuple[TermGradients, LossTerms]:
    """DiffLoss at unit weights on the whole pair (no sub-crop: the map covers the image), gradients measured.

    Unit weights make DiffLoss's weighted gradients the raw ones; it runs the prior even when ``config.gamma`` is
    0 (a zero weight scales a real gradient to zero; only ``detach_prior`` cuts the graph).
    """
    z = restored.clone().requires_grad_(True)
    unit = replace(config, gamma=1.0, lam=1.0, report_grad_share=True, prior_crop=None, prior_samples=None,
                   track_when_off=True, grad_cap=None)  # the cap depends on the weights: TermGradients.weighted
    loss = DiffLoss(prior, unit)
    with torch.enable_grad():
        terms = loss(z, gt, generator=torch.Generator().manual_seed(int(seed)), t=t, measure_grad_share=True)
    grads = {name: terms.grads[name][0].float().cpu() for name in ("fidelity", "nat", "sem")}
    raw = TermGradients(**grads, t=int(terms.t[0]), l_nat=float(terms.nat.detach()),
                        l_sem=float(terms.sem.detach()))
    return raw, terms


# ------------------------------------------------------------------------------------------------ purification
def purification(
    prior: DiffusionPrior, images: dict[str, torch.Tensor], t_start: int, steps: int, seed: int,
) -> dict[str, torch.Tensor]:
    """DDIM round trip of each image with the same noise (a fresh generator per image, same seed).

    Same-size images thus see the same eps, so differences in the results come from the images, not the noise.
    Each output keeps its input's shape, (3,H,W) or (N,3,H,W).
    """
    out = {}
    for name, x in images.items():
        batch = x[None] if x.dim() == 3 else x
        g = torch.Generator().manual_seed(int(seed))
        result = prior.purify(batch.detach().to(prior.device, torch.float32), t_start, steps, generator=g)
        out[name] = result[0] if x.dim() == 3 else result
    return out
