"""Mixed precision: bf16 autocast is what CUDA runs under by default and a CPU run may choose; its DiffLoss terms
stay close to float32's and its gradient still reaches the restorer."""

import contextlib

import pytest
import torch

from diffloss import nets
from diffloss.loss import DiffLoss, DiffLossConfig
from diffloss.train import autocast_for
from tests.helpers import tiny_prior

REL_TOL = 0.05  # bf16 keeps 8 bits of mantissa: terms within 5 % of float32's on this tiny setting


def test_auto_means_bf16_on_cuda_and_float32_on_a_cpu():
    assert isinstance(autocast_for(torch.device("cpu")), contextlib.nullcontext)
    assert isinstance(autocast_for(torch.device("cpu"), "fp32"), contextlib.nullcontext)
    ctx = autocast_for(torch.device("cpu"), "bf16")
    with ctx:
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    assert isinstance(autocast_for(torch.device("cuda"), "auto"), torch.autocast)
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16, got 'fp16'"):
        autocast_for(torch.device("cpu"), "fp16")


def test_bf16_loss_terms_stay_within_tolerance_of_float32_and_still_train_the_restorer():
    prior = tiny_prior()
    torch.manual_seed(0)
    model = nets.Restorer(nets.RestorerConfig(task="noise", width=8))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    g = torch.Generator().manual_seed(1)
    gt = torch.rand(2, 3, 32, 32, generator=g)
    noisy = (gt + 0.1 * torch.randn(gt.shape, generator=g)).clamp(0, 1)
    loss = DiffLoss(prior, DiffLossConfig(gamma=1.0, lam=1.0, fixed_t=50))
    terms = {}
    for precision in ("fp32", "bf16"):
        model.zero_grad()
        with autocast_for(torch.device("cpu"), precision):
            out = loss(model(noisy).float(), gt, generator=torch.Generator().manual_seed(2))
        out.backward()
        grad = sum(float(p.grad.abs().sum()) for p in model.parameters() if p.grad is not None)
        terms[precision] = {**out.as_floats(), "grad": grad}
    for key in ("fidelity", "nat", "sem", "total", "grad"):
        assert terms["bf16"][key] == pytest.approx(terms["fp32"][key], rel=REL_TOL), key
    assert terms["bf16"]["grad"] > 0
