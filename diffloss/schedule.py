"""Pure diffusion maths on tensors: forward noising, the one-step x0 estimate, a DDIM step.

No model lives here (as in diffusers, a schedule is tensor maths only), so each formula can be tested alone.
All functions take ``alphas_cumprod`` (the schedule's a_t, shape (T,)) and per-sample integer timesteps ``t``
of shape (N,), and work on images in the model's [-1, 1] scale.
"""

from __future__ import annotations

import torch


def _per_sample(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Pick a_t for each sample and shape it (N,1,1,1) to broadcast over an image batch."""
    picked = values.to(device=like.device, dtype=torch.float32)[t.to(like.device).long()]
    return picked.reshape(-1, *([1] * (like.dim() - 1))).to(like.dtype)


def add_noise(x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps, the closed-form forward process."""
    a = _per_sample(alphas_cumprod, t, x0)
    return a.sqrt() * x0 + (1 - a).sqrt() * eps


def x0_from_eps(x_t: torch.Tensor, eps_hat: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Invert the forward process with the predicted noise: what the model thinks the clean image is."""
    a = _per_sample(alphas_cumprod, t, x_t)
    return (x_t - (1 - a).sqrt() * eps_hat) / a.sqrt()


def ddim_step(
    x_t: torch.Tensor, eps_hat: torch.Tensor, t: torch.Tensor, t_prev: torch.Tensor, alphas_cumprod: torch.Tensor,
    clip: bool = True,
) -> torch.Tensor:
    """Deterministic DDIM (eta = 0) move from t to t_prev < t; ``t_prev = -1`` means "to the clean image"."""
    x0 = x0_from_eps(x_t, eps_hat, t, alphas_cumprod)
    if clip:
        x0 = x0.clamp(-1, 1)
        # Re-derive eps from the clipped x0 so the step stays on the DDIM trajectory.
        a = _per_sample(alphas_cumprod, t, x_t)
        eps_hat = (x_t - a.sqrt() * x0) / (1 - a).sqrt()
    # a at t_prev = -1 is 1: the clean image has no noise left.
    padded = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod])
    a_prev = _per_sample(padded, t_prev + 1, x_t)
    return a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps_hat


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
