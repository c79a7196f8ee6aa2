"""How far two arms have moved apart: the gap's numbers, the readable amplification, the probe's cadence."""

from __future__ import annotations

import math

import pytest
import torch

from diffloss import nets
from diffloss.arm_gap import GAINS, SHOWN_LEVEL, ArmProbe, measure_gap, probe_every, readable_gain


def test_the_gap_is_psnr_between_the_outputs_and_their_difference_in_levels():
    a = torch.full((3, 8, 8), 0.5)
    b = a.clone()
    b[0, 0, 0] += 0.1  # one value 25.5 levels off
    gap = measure_gap(a, b, step=7)
    mse = 0.1**2 / a.numel()
    assert gap.step == 7 and gap.psnr == pytest.approx(10 * math.log10(1 / mse), abs=1e-3)
    assert gap.largest == pytest.approx(25.5, abs=1e-3) and gap.mean == pytest.approx(25.5 / a.numel(), abs=1e-4)
    assert math.isinf(measure_gap(a, a.clone()).psnr)  # identical outputs: the no_grad mistake's signature
    with pytest.raises(ValueError, match="differ in size"):
        measure_gap(a, b[:, :4])


def test_the_amplification_shows_a_small_gap_without_clipping_most_of_it():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(3, 64, 64, generator=g)
    b = a + (torch.rand(3, 64, 64, generator=g) - 0.5) * 2 * (2.3 / 255)  # about the default run's 2.3/255
    gain = readable_gain(a, b)
    level = float(torch.quantile((a - b).abs().flatten(), 0.99))
    assert gain in GAINS and gain * level <= SHOWN_LEVEL  # fits
    bigger = [g_ for g_ in GAINS if g_ > gain]
    assert not bigger or bigger[0] * level > SHOWN_LEVEL  # and is the largest that fits
    assert gain >= 20  # a 2/255 gap needs tens of times to be seen
    assert readable_gain(a, a) == 1


def test_the_probe_measures_every_nth_logged_step_and_the_last_and_leaves_the_nets_training():
    torch.manual_seed(0)
    l2, dl = (nets.Restorer(nets.RestorerConfig(task="noise", width=8)) for _ in range(2))
    for net in (l2, dl):
        net.train()
    probe = ArmProbe(torch.rand(3, 32, 32), source="photo.png", every=3)
    measured = [probe.observe(step, {"l2": l2, "diffloss": dl}, force=step == 7) for step in range(1, 8)]
    assert [g.step for g in probe.gaps] == [1, 4, 7]  # every third logged step, and the forced last one
    assert [m is not None for m in measured] == [True, False, False, True, False, False, True]
    assert l2.training and dl.training  # restored in eval mode, given back in train mode
    assert set(probe.outputs) == {"l2", "diffloss"} and probe.outputs["l2"].shape == (3, 32, 32)
    assert probe.observe(8, {"l2": l2}) is None  # one arm alone (the other finished): nothing to compare


def test_a_run_gets_about_thirty_measured_points():
    assert probe_every(100, 1) == 4  # 100 logged steps -> every 4th: 25 points
    assert probe_every(300, 5) == 2 and probe_every(10, 1) == 1
