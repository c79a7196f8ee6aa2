"""DiffLoss: fidelity + gamma * (L_nat + lambda * L_sem), measured through a frozen diffusion prior.

- L_nat: restored z and ground truth x are noised with THE SAME eps and t; the squared distance between the
  prior's two noise predictions says how differently the prior "reads" them (naturalness).
- L_sem: the squared distance between the two mid-block (h-space) feature maps (semantics).

The ground-truth branch runs without grad (it is a target, as in a perceptual loss); the restored branch keeps
its graph so both terms send a gradient through the frozen prior into the restorer. The authors' released code
ran both branches under ``torch.no_grad()``: the terms were logged but never trained anything. ``detach_prior``
reproduces that on purpose, for teaching; a test proves its gradient is exactly zero.

Every call can also report each term's share of the gradient on the restored image, because a weight on its own
says little: at the released weights the DiffLoss terms were ~0.06 % of the loss here and changed nothing.

The dose (how much the prior can push, and where): a band of timesteps (the prior's own, measured where it
predicts well: ``diffloss.prior_band``; or ``t_min``/``t_max``), a weight per t
(``t_weight``: uniform as in the paper, or sigma^2 / x0-space as score-distillation work does), each sample's
prior gradient scaled to one direction (``per_sample_norm``), a cap on the prior's gradient norm relative to the
fidelity gradient (``grad_cap``), and the Jacobian-free score-distillation gradient (``gradient="sds"``) beside
the paper's full gradient through the UNet. Defaults reproduce the paper, except that t is drawn from the prior's
band (the whole schedule for a prior without one; ``band="all"`` and ``released()`` draw from all of it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
import torch.nn.functional as F

from diffloss import schedule
from diffloss.prior import DiffusionPrior, PriorOutput

Fidelity = Literal["mse", "l1", "charbonnier"]
TWeight = Literal["uniform", "sigma2", "x0"]
Gradient = Literal["full", "sds"]
BandChoice = Literal["prior", "all"]
BANDS = ("prior", "all")
TERMS = ("fidelity", "nat", "sem")
GRADIENTS = ("full", "sds")
GRADIENT_NAMES = {"full": "full", "sds": "Jacobian-free"}  # what labels and cards call each gradient form
# The largest gamma or lambda: calibrated doses here stay under 10; 1e30 overflowed the gradient shares to "nan%".
MAX_WEIGHT = 1e6


def dose_form_words(t_weight: str, gradient: str) -> str:
    """The weight of each t and the gradient's form in words, as the Train tab and its presets say them."""
    return f"{t_weight} weights, {GRADIENT_NAMES.get(gradient, gradient)} gradient"


@dataclass(frozen=True)
class DiffLossConfig:
    """Weights and sampling of the DiffLoss terms.

    ``gamma`` scales the whole prior term, ``lam`` the semantic term inside it. The fidelity loss is computed on
    [0, 1] images; the prior terms on its own [-1, 1] input scale (as the released code did).
    """

    gamma: float = 0.05
    lam: float = 0.1
    fidelity: Fidelity = "mse"
    charbonnier_eps: float = 1e-3
    # Where t is drawn: "prior" = the band stored with the prior (diffloss.prior_band; the whole schedule for a
    # prior without one), "all" = the whole schedule (the paper and its released code). t_min/t_max override
    # either end.
    band: BandChoice = "prior"
    t_min: int | None = None
    t_max: int | None = None
    fixed_t: int | None = None  # overrides the range: every sample uses this t
    detach_prior: bool = False  # reproduce the released code's no_grad mistake (no gradient from the prior)
    report_grad_share: bool = True  # measure each term's gradient norm on the restored image
    track_when_off: bool = True  # with gamma == 0 still compute L_nat/L_sem (no grad) so curves are comparable
    prior_crop: int | None = None  # prior terms on one random square sub-crop of this side (None: the whole crop)
    prior_samples: int | None = None  # prior terms on a random subset of this many batch items (None: all)
    t_weight: TWeight = "uniform"  # weight of each sample's prior terms by its t (schedule.t_weight)
    per_sample_norm: bool = False  # each sample's prior gradient scaled to unit length before weighting
    grad_cap: float | None = None  # the prior's gradient norm at most this times the fidelity gradient's
    gradient: Gradient = "full"  # "sds": the score-distillation gradient, no backward through the UNet

    @classmethod
    def released(cls, **overrides: object) -> "DiffLossConfig":
        """The released code's effective weights: 1e-3 on the noise term and 1e-6 on the h term, t over the whole
        schedule."""
        return replace(cls(gamma=1e-3, lam=1e-3, band="all"), **overrides)

    @classmethod
    def off(cls, **overrides: object) -> "DiffLossConfig":
        """Fidelity only (the L2 arm); the prior terms are still tracked for the log unless turned off."""
        return replace(cls(gamma=0.0), **overrides)

    def validate(self, num_timesteps: int, prior_band: tuple[int, int] | None = None) -> tuple[int, int]:
        """Check the weights and return the inclusive timestep range (``prior_band``: the prior's ``t_band()``)."""
        for name in ("gamma", "lam"):
            value = getattr(self, name)
            if not math.isfinite(value) or not 0 <= value <= MAX_WEIGHT:
                raise ValueError(f"{name} must be a number from 0 to {MAX_WEIGHT:g}, got {value}")
        if self.band not in BANDS:
            raise ValueError(f"unknown band {self.band!r}; choose one of {list(BANDS)}")
        if self.fixed_t is not None:
            lo = hi = self.fixed_t
        else:
            lo, hi = self.band_range(num_timesteps, prior_band)
        if self.prior_crop is not None and self.prior_crop < 8:
            raise ValueError(f"prior_crop must be at least 8 px (the prior downsamples by 8), got {self.prior_crop}")
        if self.prior_samples is not None and self.prior_samples < 1:
            raise ValueError(f"prior_samples must be at least 1, got {self.prior_samples}")
        if not 0 <= lo <= hi < num_timesteps:
            raise ValueError(f"timestep range [{lo}, {hi}] must lie within [0, {num_timesteps - 1}] with min <= max")
        if self.t_weight not in schedule.T_WEIGHTINGS:
            raise ValueError(f"unknown t weighting {self.t_weight!r}; choose one of {list(schedule.T_WEIGHTINGS)}")
        if self.gradient not in GRADIENTS:
            raise ValueError(f"unknown gradient {self.gradient!r}; choose one of {list(GRADIENTS)}")
        if self.grad_cap is not None and not (math.isfinite(self.grad_cap) and self.grad_cap > 0):
            raise ValueError(f"grad_cap must be a finite number > 0 (or None for no cap), got {self.grad_cap}")
        return lo, hi

    def band_range(self, num_timesteps: int, prior_band: tuple[int, int] | None = None) -> tuple[int, int]:
        """The inclusive range t is drawn from, before checks: the band, each end overridden when given."""
        lo, hi = prior_band if self.band == "prior" and prior_band is not None else (0, num_timesteps - 1)
        return (lo if self.t_min is None else self.t_min), (hi if self.t_max is None else self.t_max)


@dataclass
class LossTerms:
    """The loss of one batch, term by term, plus what each term contributes to the gradient."""

    total: torch.Tensor
    fidelity: torch.Tensor
    nat: torch.Tensor
    sem: torch.Tensor
    t: torch.Tensor
    eps: torch.Tensor | None = field(default=None, repr=False)  # the shared noise (None when the prior was off)
    outputs: tuple[PriorOutput, PriorOutput] | None = field(default=None, repr=False)  # (restored, gt), detached
    grad_norms: dict[str, float] | None = None  # ||d(weighted term)/d restored|| for fidelity, nat, sem
    grads: dict[str, torch.Tensor] | None = field(default=None, repr=False)  # those gradients themselves
    cap_scale: float | None = None  # what grad_cap multiplied the prior's gradient by (1.0: the cap did not bite)
    _restored: torch.Tensor | None = field(default=None, repr=False)
    _grad: torch.Tensor | None = field(default=None, repr=False)

    @property
    def grad_share(self) -> dict[str, float] | None:
        """Each term's gradient norm over the sum of the three: what the weights really do."""
        return None if self.grad_norms is None else shares_of(self.grad_norms)

    def backward(self) -> None:
        """Backpropagate the total into the restorer.

        When the per-term gradients on the restored image were measured, their sum *is* the gradient of the total,
        so only the restorer part of the graph is traversed again (no second pass through the prior).
        """
        if self._grad is not None and self._restored is not None:
            self._restored.backward(self._grad)
        else:
            self.total.backward()

    def as_floats(self) -> dict[str, float]:
        """Plain numbers for logs and tables: loss terms, then ``share_*`` when measured."""
        out = {name: float(getattr(self, name).detach()) for name in ("total", "fidelity", "nat", "sem")}
        for name, share in (self.grad_share or {}).items():
            out[f"share_{name}"] = share
        if self.cap_scale is not None:
            out["cap_scale"] = self.cap_scale
        return out


def fidelity_loss(restored: torch.Tensor, gt: torch.Tensor, kind: Fidelity = "mse", eps: float = 1e-3) -> torch.Tensor:
    """The restorer's usual loss; Charbonnier is a smooth L1 that many restoration papers use."""
    if kind == "mse":
        return F.mse_loss(restored, gt)
    if kind == "l1":
        return F.l1_loss(restored, gt)
    if kind == "charbonnier":
        return torch.sqrt((restored - gt) ** 2 + eps**2).mean()
    raise ValueError(f"unknown fidelity loss {kind!r}; choose mse, l1 or charbonnier")


def sample_timesteps(n: int, lo: int, hi: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """One integer t per sample, uniform on [lo, hi] inclusive (drawn on the CPU so seeds match across devices)."""
    return torch.randint(lo, hi + 1, (n,), generator=generator)


def part_or_all(part: int | None, whole: int) -> int | None:
    """A sub-crop side or batch subset as ``DiffLossConfig.prior_crop``/``prior_samples`` take it: ``part`` when
    it is a real part (0 < part < whole), else None (all of it), so a form's 0 or a size as large as the crop or the
    batch means the whole."""
    return part if part is not None and 0 < part < whole else None


def sub_batch(
    restored: torch.Tensor, gt: torch.Tensor, t: torch.Tensor, count: int | None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random subset of ``count`` batch items (with their timesteps), or everything unchanged.

    Why: the prior terms are a mean over samples, so a random subset is an unbiased, noisier estimate of it at a
    fraction of the prior's cost; the fidelity term still sees the whole batch. Seeded like ``sub_crop``.
    """
    n = restored.shape[0]
    if count is None or count >= n:
        return restored, gt, t
    keep = torch.randperm(n, generator=generator)[:count].sort().values.to(restored.device)
    return restored[keep], gt[keep], t[keep]


def sub_crop(
    restored: torch.Tensor, gt: torch.Tensor, side: int | None, generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random square of both images (one location per batch), or both unchanged.

    Why: the prior's cost grows with the pixels it sees, the fidelity term's does not need the prior at all; a
    sub-crop makes DiffLoss several times cheaper per step while the restorer still trains on the full crop.
    The location comes from ``generator`` (on the CPU), so a seed fixes it; no draw happens when nothing is cut.
    """
    h, w = restored.shape[-2:]
    if side is None or (side >= h and side >= w):
        return restored, gt
    ch, cw = min(side, h), min(side, w)
    top = int(torch.randint(0, h - ch + 1, (1,), generator=generator))
    left = int(torch.randint(0, w - cw + 1, (1,), generator=generator))
    return restored[..., top:top + ch, left:left + cw], gt[..., top:top + ch, left:left + cw]


def prior_outputs(
    prior: DiffusionPrior, restored: torch.Tensor, gt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor,
    detach: bool = False,
) -> tuple[PriorOutput, PriorOutput]:
    """The prior's reading of both images at one shared (t, eps); only the restored branch keeps a graph."""
    with torch.set_grad_enabled(torch.is_grad_enabled() and not detach):
        pred = prior.predict(prior.add_noise(restored, t, eps), t)
    with torch.no_grad():
        target = prior.predict(prior.add_noise(gt, t, eps), t)
    return pred, target


def dosed_distances(
    prior: DiffusionPrior, restored: torch.Tensor, gt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor,
    cfg: "DiffLossConfig", detach: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, tuple[PriorOutput, PriorOutput]]:
    """(L_nat, L_sem, outputs) as the config doses them: batch means of per-sample distances, each sample weighted
    by its t and, with ``per_sample_norm``, divided by its own (detached) root distance, so that every sample
    pushes with the same strength whatever its t or how wrong the restorer is.

    ``gradient="sds"``: the restored branch runs without a graph, and L_nat's gradient is the score-distillation
    one, 2 (eps_hat(z_t) - eps_hat(x_t)) / n passed straight to z_t as if the UNet's Jacobian were the identity
    (half the cost of a step through the UNet; the value logged is still L_nat). L_sem has no such form: in that
    mode it is measured but sends no gradient.
    """
    sds = cfg.gradient == "sds" and not detach
    pred, target = prior_outputs(prior, restored, gt, t, eps, detach=detach or sds)
    nat, sem = output_distances(pred.eps, pred.h, target.eps, target.h, per_sample=True)
    if sds and torch.is_grad_enabled() and restored.requires_grad:
        z_t = prior.add_noise(restored, t, eps)  # cheap, and carries the graph back to the restored image
        delta = (pred.eps - target.eps).detach().float()
        pull = (2 * delta * z_t.float()).flatten(1).mean(dim=1)
        nat = nat + pull - pull.detach()
    w = schedule.t_weight(prior.alphas_cumprod, t, cfg.t_weight).to(nat.device)
    if cfg.per_sample_norm:
        nat = nat / nat.detach().clamp_min(1e-12).sqrt()
        sem = sem / sem.detach().clamp_min(1e-12).sqrt()
    return (w * nat).mean(), (w * sem).mean(), (pred, target)


def prior_distances(
    prior: DiffusionPrior, restored: torch.Tensor, gt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor,
    detach: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_nat, L_sem) for one shared (t, eps): the heart of DiffLoss, kept separate so the app can call it too."""
    pred, target = prior_outputs(prior, restored, gt, t, eps, detach)
    return output_distances(pred.eps, pred.h, target.eps, target.h)


def output_distances(eps_a: torch.Tensor, h_a: torch.Tensor, eps_b: torch.Tensor, h_b: torch.Tensor,
                     per_sample: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_nat, L_sem) from two sets of prior outputs: mean squared distance of the noise predictions and h maps.

    ``per_sample=True`` keeps one number per batch item (the L(t) curves need one per (t, seed)); the batch mean
    of those is exactly the training value.
    """
    nat = (eps_a.float() - eps_b.float()).pow(2)
    sem = (h_a.float() - h_b.float()).pow(2)
    if per_sample:
        return nat.flatten(1).mean(dim=1), sem.flatten(1).mean(dim=1)
    return nat.mean(), sem.mean()


class DiffLoss:
    """``loss(restored, gt) -> LossTerms``. Holds a frozen prior and a config; owns no trainable weights."""

    def __init__(self, prior: DiffusionPrior, config: DiffLossConfig | None = None) -> None:
        self.prior = prior
        self.config = config or DiffLossConfig()
        self.t_range = self.config.validate(prior.num_timesteps, prior.t_band())

    def __call__(
        self, restored: torch.Tensor, gt: torch.Tensor, generator: torch.Generator | None = None,
        t: torch.Tensor | int | None = None, measure_grad_share: bool | None = None,
    ) -> LossTerms:
        """All terms for a batch; ``measure_grad_share`` overrides the config (training measures on log steps)."""
        if restored.shape != gt.shape:
            raise ValueError(f"restored {tuple(restored.shape)} and ground truth {tuple(gt.shape)} differ in shape")
        cfg = self.config
        n = restored.shape[0]
        if t is None:
            t = sample_timesteps(n, *self.t_range, generator=generator)
        t = torch.as_tensor(t).long().reshape(-1).expand(n).to(restored.device)
        fid = fidelity_loss(restored, gt, cfg.fidelity, cfg.charbonnier_eps)
        zero = fid.new_zeros(())
        eps, outputs = None, None
        if cfg.gamma > 0 or cfg.track_when_off:
            z, x, t_prior = sub_batch(restored, gt.detach(), t, cfg.prior_samples, generator)
            z, x = sub_crop(z, x, cfg.prior_crop, generator)
            eps = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
            nat, sem, (pred, target) = dosed_distances(self.prior, z, x, t_prior, eps, cfg,
                                                       detach=cfg.detach_prior or cfg.gamma == 0)
            outputs = (PriorOutput(pred.eps.detach(), pred.h.detach()), target)
        else:
            nat, sem = zero, zero
        weights = term_weights(cfg.gamma, cfg.lam)
        weighted = {"fidelity": weights["fidelity"] * fid, "nat": weights["nat"] * nat, "sem": weights["sem"] * sem}
        total = weighted["fidelity"] + weighted["nat"] + weighted["sem"]
        terms = LossTerms(total=total, fidelity=fid, nat=nat, sem=sem, t=t, eps=eps, outputs=outputs)
        measure = cfg.report_grad_share if measure_grad_share is None else measure_grad_share
        if restored.requires_grad and torch.is_grad_enabled():
            if measure:
                self._measure_gradients(terms, weighted, restored)
            if cfg.grad_cap is not None and weighted["nat"].requires_grad:
                self._cap_prior_gradient(terms, weighted, restored, cfg.grad_cap)
        return terms

    @staticmethod
    def _cap_prior_gradient(terms: LossTerms, weighted: dict[str, torch.Tensor], restored: torch.Tensor,
                            cap: float) -> None:
        """Scale the prior's gradient on the restored image down to at most ``cap`` times the fidelity gradient's
        norm (batch-wide), so no dose, t or image can make the prior outvote the data (OSEDiff clips at 1).
        ``backward`` then sends the capped sum; the logged losses stay unscaled."""
        if terms.grads is not None:
            g_fid = terms.grads["fidelity"]
            g_prior = terms.grads["nat"] + terms.grads["sem"]
        else:
            g_fid = _grad_or_zero(weighted["fidelity"], restored)
            g_prior = _grad_or_zero(weighted["nat"] + weighted["sem"], restored)
        scale = cap_scale(float(g_prior.float().norm()), float(g_fid.float().norm()), cap)
        terms.cap_scale = scale
        terms._restored = restored
        terms._grad = g_fid + scale * g_prior

    @staticmethod
    def _measure_gradients(terms: LossTerms, weighted: dict[str, torch.Tensor], restored: torch.Tensor) -> None:
        """Gradient of each weighted term on the restored image; their sum is kept for ``LossTerms.backward``."""
        grads = {name: _grad_or_zero(weighted[name], restored) for name in TERMS}
        total_grad = grads["fidelity"] + grads["nat"] + grads["sem"]
        terms.grads = grads
        terms.grad_norms = {name: float(g.float().norm()) for name, g in grads.items()}
        terms._restored = restored
        terms._grad = total_grad


def cap_scale(prior_norm: float, fidelity_norm: float, cap: float) -> float:
    """What ``grad_cap`` multiplies the prior's gradient by: 1 within ``cap`` times the fidelity gradient's norm,
    else the factor that brings it back to that limit (the loss in training and Inspect's map alike)."""
    limit = cap * fidelity_norm
    return 1.0 if prior_norm <= limit or prior_norm == 0 else limit / prior_norm


def _grad_or_zero(term: torch.Tensor, restored: torch.Tensor) -> torch.Tensor:
    """d term / d restored, zeros where the term does not depend on it; the graph is kept for later passes."""
    if not term.requires_grad:
        return torch.zeros_like(restored)
    (grad,) = torch.autograd.grad(term, restored, retain_graph=True, allow_unused=True)
    return torch.zeros_like(restored) if grad is None else grad.detach()


# ------------------------------------------------------------------------------------------ weighting arithmetic
# One place for how gamma and lambda weigh the terms and what share of the gradient that gives each term: the loss,
# calibration (``diffloss.calibrate``), the Inspect view (``diffloss.inspection``) and the app all call these.
def term_weights(gamma: float, lam: float) -> dict[str, float]:
    """Each term's weight in the total: fidelity + gamma * L_nat + gamma * lambda * L_sem."""
    return {"fidelity": 1.0, "nat": gamma, "sem": gamma * lam}


def prior_term(nat, sem, gamma: float, lam: float):
    """gamma * (L_nat + lambda * L_sem): the prior's part of the total, for numbers, tensors or gradients alike."""
    weights = term_weights(gamma, lam)
    return weights["nat"] * nat + weights["sem"] * sem


def shares_of(norms: dict[str, float]) -> dict[str, float]:
    """Each term's gradient norm over the sum of all terms' norms (0 everywhere when there is no gradient)."""
    total = sum(norms.values())
    return {k: (v / total if total > 0 else 0.0) for k, v in norms.items()}


def shares_for_weights(norms: dict[str, float], gamma: float, lam: float) -> dict[str, float]:
    """Each term's share of the gradient at these weights, from unit-weight gradient norms (``weights_for_shares``
    inverts it). Why: a user who types a gamma should see what it does, e.g. that the released 1e-3 leaves the prior
    a fraction of a percent. Same sum-of-norms convention as ``LossTerms.grad_share``."""
    weights = term_weights(gamma, lam)
    return shares_of({k: abs(weights[k]) * norms[k] for k in TERMS})


def weights_for_shares(norms: dict[str, float], nat_share: float, sem_share: float) -> tuple[float, float]:
    """(gamma, lambda) that give L_nat and L_sem these shares of the gradient, from unit-weight gradient norms.

    Solves w_nat * n_nat = s_nat * T and w_sem * n_sem = s_sem * T with n_fid = (1 - s_nat - s_sem) * T, then
    gamma = w_nat and lambda = w_sem / w_nat (the loss's parameterisation). Why: a weight is meaningful only
    relative to the gradient scale of the prior it multiplies, so calibration measures instead of guessing.
    """
    if nat_share <= 0 or sem_share < 0 or nat_share + sem_share >= 1:
        raise ValueError("shares must be > 0 (nat), >= 0 (sem) and sum to less than 1")
    if norms["nat"] <= 0 or (sem_share > 0 and norms["sem"] <= 0):
        raise ValueError("a prior term has no gradient; is the prior detached?")
    total = norms["fidelity"] / (1 - nat_share - sem_share)
    w_nat = nat_share * total / norms["nat"]
    w_sem = sem_share * total / norms["sem"] if sem_share > 0 else 0.0
    return w_nat, w_sem / w_nat
