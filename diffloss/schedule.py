"""Pure diffusion maths on tensors: forward noising, the one-step x0 estimate, a DDIM step.

No model lives here (as in diffusers, a schedule is tensor maths only), so each formula can be tested alone.
All functions take ``alphas_cumprod`` (the schedule's a_t, shape (T,)) and per-sample integer timesteps ``t``
of shape (N,), and work on images in the model's [-1, 1] scale.
"""

from __future__ import annotations

import math

import torch


def coefficients(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sqrt(a_t), sqrt(1 - a_t)) for each sample, shaped (N,1,1,1) to broadcast over an image batch.

    Computed in float64 on the CPU, then cast to the images' dtype and device: near t = 0, 1 - a_t is ~1e-4 and a
    float32 a_t loses its digits (8e-5 relative error in sqrt(1 - a_t) for linear-1000, 1.4e-3 for cosine-4000);
    guided-diffusion computes them in float64 too.
    """
    a = values.detach().to("cpu", torch.float64)[t.detach().to("cpu").long()]
    shape = (-1, *([1] * (like.dim() - 1)))
    return tuple(c.reshape(shape).to(device=like.device, dtype=like.dtype) for c in (a.sqrt(), (1 - a).sqrt()))


def add_noise(x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps, the closed-form forward process."""
    sqrt_a, sqrt_1ma = coefficients(alphas_cumprod, t, x0)
    return sqrt_a * x0 + sqrt_1ma * eps


def x0_from_eps(x_t: torch.Tensor, eps_hat: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Invert the forward process with the predicted noise: what the model thinks the clean image is."""
    sqrt_a, sqrt_1ma = coefficients(alphas_cumprod, t, x_t)
    return (x_t - sqrt_1ma * eps_hat) / sqrt_a


def ddim_step(
    x_t: torch.Tensor, eps_hat: torch.Tensor, t: torch.Tensor, t_prev: torch.Tensor, alphas_cumprod: torch.Tensor,
    clip: bool = True,
) -> torch.Tensor:
    """Deterministic DDIM (eta = 0) move from t to t_prev < t; ``t_prev = -1`` means "to the clean image"."""
    x0 = x0_from_eps(x_t, eps_hat, t, alphas_cumprod)
    if clip:
        x0 = x0.clamp(-1, 1)
        # Re-derive eps from the clipped x0 so the step stays on the DDIM trajectory.
        sqrt_a, sqrt_1ma = coefficients(alphas_cumprod, t, x_t)
        eps_hat = (x_t - sqrt_a * x0) / sqrt_1ma
    # a at t_prev = -1 is 1: the clean image has no noise left.
    padded = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod])
    sqrt_a_prev, sqrt_1ma_prev = coefficients(padded, t_prev + 1, x_t)
    return sqrt_a_prev * x0 + sqrt_1ma_prev * eps_hat


def ddim_timesteps(t_start: int, num_steps: int) -> list[int]:
    """Evenly spaced timesteps from ``t_start`` down to 0 (inclusive), at most ``t_start + 1`` of them."""
    if t_start < 0:
        raise ValueError(f"t_start must be >= 0, got {t_start}")
    num_steps = max(1, min(num_steps, t_start + 1))
    steps = torch.linspace(t_start, 0, num_steps).round().long().tolist()
    return sorted(set(steps), reverse=True)


def to_model_range(x01: torch.Tensor) -> torch.Tensor:
    """[0,1] images to the [-1,1] scale diffusion models are trained on."""
    return x01 * 2 - 1


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    return (x + 1) / 2


def snr(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio a_t / (1 - a_t) of each timestep."""
    a = alphas_cumprod.double()
    return (a / (1 - a)).float()


def min_snr_weight(alphas_cumprod: torch.Tensor, t: torch.Tensor, gamma: float = 5.0) -> torch.Tensor:
    """Per-sample weight min(SNR_t, gamma) / SNR_t of an eps-prediction MSE (Hang et al. 2023, "Min-SNR").

    Why: at small t the eps target is nearly unpredictable from a barely-noised image and its gradients fight the
    others'; capping the SNR spends the training on the noise levels where the error can still fall.
    """
    s = snr(alphas_cumprod).to(t.device)[t.long()]
    return s.clamp(max=gamma) / s


def x0_psnr_from_eps_mse(eps_mse: float, alpha_bar: float) -> float:
    """PSNR (dB, images in [0,1]) of the one-step x0 estimate implied by an eps MSE at a_t = alpha_bar.

    x0_hat - x0 = -sqrt((1 - a) / a) (eps_hat - eps) in the model's [-1, 1] scale, so the x0 error in [0,1] is
    (1 - a) / (4 a) times the eps error (before any clamping of the estimate).
    """
    x0_mse = eps_mse * (1 - alpha_bar) / (4 * alpha_bar)
    return 10 * math.log10(1 / x0_mse) if x0_mse > 0 else float("inf")


T_WEIGHTINGS = ("uniform", "sigma2", "x0")


def t_weight(alphas_cumprod: torch.Tensor, t: torch.Tensor, kind: str = "uniform") -> torch.Tensor:
    """Per-sample weight of a prior term at timestep t.

    - "uniform": 1 (the paper and its released code).
    - "sigma2": 1 - a_t, DreamFusion's w(t). Why: a noise-prediction distance weighs an image error by about
      a_t / (1 - a_t) (the noise a prior must "explain" shrinks with t), so uniform weights hand nearly all of the
      gradient to the smallest t, where a small prior predicts worst. sigma2 cancels most of that growth.
    - "x0": (1 - a_t) / a_t, the prior's part of the two one-step x0 estimates' distance: with one shared eps,
      x0_hat(z) - x0_hat(x) = (z - x) - sqrt((1 - a) / a) (eps_hat(z_t) - eps_hat(x_t)) in the model's scale, so
      the noise-prediction gap is weighed as the image correction it implies, alike at every t.
    """
    if kind not in T_WEIGHTINGS:
        raise ValueError(f"unknown t weighting {kind!r}; choose one of {list(T_WEIGHTINGS)}")
    a = alphas_cumprod.to(t.device, torch.float64)[t.long()]
    if kind == "uniform":
        return torch.ones_like(a, dtype=torch.float32)
    return ((1 - a) if kind == "sigma2" else (1 - a) / a).float()


def band_weights(alphas_cumprod: torch.Tensor, kind: str, t_min: int, t_max: int) -> torch.Tensor:
    """The weight a dose gives every timestep of the schedule: ``t_weight`` inside [t_min, t_max], 0 outside
    (training never draws t there). What Inspect's L(t) view plots."""
    t = torch.arange(len(alphas_cumprod))
    w = t_weight(alphas_cumprod, t, kind)
    return torch.where((t >= t_min) & (t <= t_max), w, torch.zeros_like(w))
