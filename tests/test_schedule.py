"""The noise maths, checked against its closed forms."""

import pytest
import torch

from diffloss import schedule

AC = torch.linspace(0.9999, 0.01, 1000)


def test_add_noise_matches_formula():
    x, eps = torch.rand(2, 3, 4, 4) * 2 - 1, torch.randn(2, 3, 4, 4)
    t = torch.tensor([10, 900])
    out = schedule.add_noise(x, eps, t, AC)
    a = AC[t].reshape(2, 1, 1, 1)
    assert torch.allclose(out, a.sqrt() * x + (1 - a).sqrt() * eps)


def test_x0_from_true_eps_recovers_the_image():
    x, eps, t = torch.rand(3, 3, 8, 8) * 2 - 1, torch.randn(3, 3, 8, 8), torch.tensor([0, 500, 999])
    x_t = schedule.add_noise(x, eps, t, AC)
    assert torch.allclose(schedule.x0_from_eps(x_t, eps, t, AC), x, atol=1e-4)


def test_ddim_with_an_oracle_walks_back_to_the_image():
    x, eps = torch.rand(1, 3, 8, 8) * 2 - 1, torch.randn(1, 3, 8, 8)
    steps = schedule.ddim_timesteps(600, 5)
    assert steps[0] == 600 and steps[-1] == 0 and steps == sorted(steps, reverse=True)
    x_t = schedule.add_noise(x, eps, torch.tensor([600]), AC)
    for i, t in enumerate(steps):
        t_prev = steps[i + 1] if i + 1 < len(steps) else -1
        x_t = schedule.ddim_step(x_t, eps, torch.tensor([t]), torch.tensor([t_prev]), AC)
    assert torch.allclose(x_t, x, atol=1e-4)


def test_ddim_timesteps_rejects_negative_start():
    with pytest.raises(ValueError, match="t_start"):
        schedule.ddim_timesteps(-1, 3)
