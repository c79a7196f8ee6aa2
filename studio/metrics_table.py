"""Compare's metrics table (PSNR, SSIM, HaarPSI, MS-GMSDc, NIQE, LPIPS per image), computed on background threads
while the restorers run, then laid out as markdown with its conventions, its gaps and how far each metric agreed
with blind judges."""

from __future__ import annotations

import functools
import math
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import torch

from diffloss.metrics import CONVENTIONS, full_reference_metrics, load_lpips, no_reference_metrics
from diffloss.niqe import min_side as niqe_min_side
from diffloss.perceptual import perceptual_metrics


LPIPS_MISSING = ("LPIPS is not shown: it needs the lpips package and its AlexNet weights on this machine, and "
                 "nothing is downloaded here.")


@functools.lru_cache(maxsize=1)
def lpips_metric():
    """(fn, reason): LPIPS loads once per process, offline only (see diffloss.metrics.load_lpips)."""
    return load_lpips()


@functools.lru_cache(maxsize=1)
def _metrics_pool() -> ThreadPoolExecutor:
    """Threads for the metrics table, created once per process (at most as many as torch may use)."""
    return ThreadPoolExecutor(max_workers=max(1, min(4, torch.get_num_threads())), thread_name_prefix="metrics")


def _fmt(value: float | None, digits: int, missing: str) -> str:
    if value is None:
        return missing
    if math.isinf(value):
        return "inf"
    return f"{value:.{digits}f}"


@dataclass
class PendingMetrics:
    """One image's metrics being computed on the metrics threads; ``result()`` waits for both halves."""

    full_reference: Future
    no_reference: Future
    perceptual: Future

    def result(self) -> dict[str, float | None]:
        return {**self.full_reference.result(), **self.no_reference.result(), **self.perceptual.result()}


def start_metrics(img: torch.Tensor, gt: torch.Tensor | None) -> PendingMetrics:
    """Begin one image's metrics in the background: SSIM/PSNR, NIQE and the perceptual metrics as three jobs.

    Why threads: their scipy filters release the GIL, so the jobs run beside each other and beside the restorers'
    forwards; on 2 cores this is what keeps Compare on a 512 px image under a second.
    """
    pool = _metrics_pool()
    lp_fn, _ = lpips_metric()
    return PendingMetrics(pool.submit(full_reference_metrics, img, gt, lp_fn), pool.submit(no_reference_metrics, img),
                          pool.submit(perceptual_metrics, img, gt))


def metrics_table(rows: dict[str, PendingMetrics], gt: torch.Tensor | None, size: tuple[int, int],
                  trust: str | None = None) -> str:
    """Markdown table of PSNR/SSIM/HaarPSI/MS-GMSDc/NIQE/LPIPS for each named image (its :func:`start_metrics`,
    begun earlier to overlap other work), then ``trust`` (how often each metric agreed with blind judges), the
    conventions line and any gaps; ``size`` is the images' (H, W)."""
    lp_fn, _ = lpips_metric()  # its reason is not shown: LPIPS_MISSING says what a user can do
    results = {name: pending.result() for name, pending in rows.items()}
    h, w = size
    niqe_min = niqe_min_side()
    small = min(h, w) < niqe_min
    niqe_missing = f"n/a (< {niqe_min} px)" if small else "n/a (flat image)"
    with_lpips = lp_fn is not None  # a column that could only ever say "unavailable" is left out
    lines = ["| image | PSNR (dB) ↑ | SSIM ↑ | HaarPSI ↑ | MS-GMSDc ↓ | NIQE ↓ (no reference) |"
             + (" LPIPS ↓ |" if with_lpips else ""),
             "| --- | --- | --- | --- | --- | --- |" + (" --- |" if with_lpips else "")]
    for name, m in results.items():
        no_ref = "n/a (no ground truth)"
        lines.append(
            f"| {name} | {_fmt(m['psnr'], 2, no_ref)} | {_fmt(m['ssim'], 4, no_ref)} | "
            f"{_fmt(m['haarpsi'], 4, no_ref)} | {_fmt(m['ms_gmsd'], 4, no_ref)} | "
            f"{_fmt(m['niqe'], 2, niqe_missing)} |" + (f" {_fmt(m['lpips'], 4, no_ref)} |" if with_lpips else "")
        )
    notes = ([trust] if trust else []) + [f"Conventions: {CONVENTIONS}."]
    if small:
        notes.append(f"NIQE needs at least {niqe_min}x{niqe_min} px; this image is {w}x{h}.")
    if not with_lpips and gt is not None:
        notes.append(LPIPS_MISSING)
    return "\n".join(lines) + "\n\n" + " ".join(notes)
