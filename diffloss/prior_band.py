"""A prior's band: the timesteps where a DiffLoss dose should draw t, read off the prior's own error curve.

Why the band belongs to the prior: L_nat compares two noise predictions, so it only means something where the
prior predicts the noise well (at small t a small prior mostly guesses, and a noise-prediction distance weighs those
guesses most: issue #26), and where the noised image still holds the photo (at large t both one-step x0 estimates
are the same blur, and the term costs time for nothing). Each prior knows a different range, so the range is
measured on held-out photos when a prior is installed and stored beside its weights (``band.json``). A prior
without one (a hub model, a converted ADM model) gets the whole schedule, as the paper did.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping, Sequence

from diffloss import checkpoint

BAND_FILE = "band.json"
# The rule's two thresholds. eps MSE 0.1: the prior explains at least 90 % of the noise's power, so the gap between
# two of its predictions is more about the two images than about its own error. x0 PSNR 17 dB: the one-step x0
# estimate still shows the photo's shapes (below it, a blur of the mean colour: the images on the card's sheet).
MAX_EPS_MSE = 0.1
MIN_X0_PSNR = 17.0
RULE = (f"t_min: the first measured t from which on the held-out eps MSE stays <= {MAX_EPS_MSE:g}; t_max: the last "
        f"t whose one-step x0 estimate is >= {MIN_X0_PSNR:g} dB")
CURVE_STEP = 20  # the curve's spacing in timesteps (1000-step schedule): the band's ends are multiples of it


@dataclass(frozen=True)
class Band:
    """An inclusive timestep range and the reason it was chosen."""

    t_min: int
    t_max: int
    why: str = ""

    def __post_init__(self) -> None:
        if not 0 <= self.t_min <= self.t_max:
            raise ValueError(f"a band needs 0 <= t_min <= t_max, got [{self.t_min}, {self.t_max}]")

    def clipped(self, num_timesteps: int) -> tuple[int, int]:
        """The band on a schedule of this length (a shorter schedule ends the band at its last step)."""
        last = num_timesteps - 1
        return min(self.t_min, last), min(self.t_max, last)


def band_from_curve(curve: Mapping[int, Mapping[str, float]], max_eps_mse: float = MAX_EPS_MSE,
                    min_x0_psnr: float = MIN_X0_PSNR) -> Band:
    """The band a curve ``{t: {"eps_mse": .., "x0_psnr": ..}}`` allows.

    t_min: the first measured t from which on every eps MSE is at most ``max_eps_mse`` (the error falls with t,
    but a noisy curve may cross the line twice: the last crossing counts). t_max: the last t whose x0 estimate is
    at least ``min_x0_psnr`` dB. A curve where no t passes both raises: such a prior should not be a loss.
    """
    ts = sorted(int(t) for t in curve)
    if not ts:
        raise ValueError("an empty curve has no band")
    bad_eps = [t for t in ts if not curve[t]["eps_mse"] <= max_eps_mse]
    lo = next((t for t in ts if t > max(bad_eps, default=-1)), None)
    good_x0 = [t for t in ts if curve[t]["x0_psnr"] >= min_x0_psnr]
    hi = max(good_x0, default=None)
    if lo is None or hi is None or lo > hi:
        raise ValueError(f"no timestep has both an eps MSE <= {max_eps_mse:g} and an x0 estimate >= "
                         f"{min_x0_psnr:g} dB: this prior cannot tell restored from clean anywhere")
    why = (f"t from {lo}: every eps MSE from there on <= {max_eps_mse:g}; t to {hi}: the last x0 estimate >= "
           f"{min_x0_psnr:g} dB (measured every {ts[1] - ts[0] if len(ts) > 1 else 0} steps)")
    return Band(lo, hi, why)


def band_or_reason(curve: Mapping[int, Mapping[str, float]]) -> Band | str:
    """The curve's band by the rule, or why it allows none (a report records either)."""
    try:
        return band_from_curve(curve)
    except ValueError as err:
        return str(err)


def curve_timesteps(num_timesteps: int, step: int = CURVE_STEP) -> list[int]:
    """The timesteps a curve is measured at: every ``step`` from ``step`` (t = 0 is noise-free: nothing to predict),
    scaled to the schedule's length."""
    return sorted({min(num_timesteps - 1, round(t * num_timesteps / 1000)) for t in range(step, 1000, step)})


def read_band(folder: str | Path) -> Band | None:
    """The band stored beside a prior's weights, or None (no file: the whole schedule)."""
    path = Path(folder) / BAND_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        return Band(int(data["t_min"]), int(data["t_max"]), str(data.get("why", "")))
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{BAND_FILE} in the prior folder is not a band ({err})") from err


def write_band(folder: str | Path, band: Band, curve: Mapping[int, Mapping[str, float]] | None = None,
               data: str = "") -> Path:
    """Store the band (and the curve it came from, and on which photos) beside a prior's weights."""
    record: dict = asdict(band)
    if data:
        record["data"] = data
    if curve is not None:
        record["curve"] = {str(t): {k: round(float(v), 6) for k, v in row.items()} for t, row in sorted(curve.items())}
    path = Path(folder) / BAND_FILE
    checkpoint.atomic_write_json(path, record)
    return path
