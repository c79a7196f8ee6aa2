"""Compare's metrics table: the perceptual metrics beside PSNR/SSIM with their directions, and how far to trust
each one (the blind A/B's agreement) above the conventions."""

import torch

from studio.metrics_table import metrics_table, start_metrics


def test_the_table_shows_haarpsi_and_ms_gmsd_with_their_directions_and_the_trust_line():
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(3, 64, 64, generator=g)
    noisy = (gt + 0.1 * torch.randn(3, 64, 64, generator=g)).clamp(0, 1)
    rows = {"input": start_metrics(noisy, gt), "truth": start_metrics(gt, gt)}
    text = metrics_table(rows, gt, (64, 64), trust="How far to trust each number: PSNR 75 %.")
    assert "HaarPSI ↑" in text and "MS-GMSDc ↓" in text and "NIQE ↓ (no reference)" in text
    truth = [line for line in text.splitlines() if line.startswith("| truth |")][0].split("|")
    assert truth[4].strip() == "1.0000" and truth[5].strip() == "0.0000"  # identical: the perfect scores
    assert text.index("How far to trust each number") < text.index("Conventions:")


def test_without_a_ground_truth_the_perceptual_columns_say_why():
    img = torch.rand(3, 64, 64)
    text = metrics_table({"upload": start_metrics(img, None)}, None, (64, 64))
    row = [line for line in text.splitlines() if line.startswith("| upload |")][0]
    assert row.count("n/a (no ground truth)") == 4  # PSNR, SSIM, HaarPSI, MS-GMSDc
