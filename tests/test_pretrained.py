"""Every weight in pretrained/ loads, has a card, and does its job on a small synthetic sample."""

import json
from pathlib import Path

import pytest
import torch

from diffloss import degrade, zoo
from diffloss.images import centre_crop, load_image
from diffloss.metrics import psnr
from diffloss.nets import load_restorer, restore

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "clean_mcmaster_05.png"  # shipped with the repo

SHIPPED = [(task, arm, folder) for task, arms in family.shipped_restorers().items() for arm, folder in arms.items()]
CARD_KEYS = ("command", "data", "steps", "wall_time_s", "device")


def _sample_image() -> torch.Tensor:
    """A 128 px crop of a real photo from examples/ (in every clone; a smooth synthetic image is too easy for sr4:
    bicubic already restores it to 46 dB)."""
    return centre_crop(load_image(EXAMPLE), 128)


@pytest.mark.skipif(not SHIPPED, reason="no restorers shipped in pretrained/restorers yet (python -m diffloss.zoo build)")
@pytest.mark.parametrize("task,arm,folder", SHIPPED, ids=[f"{t}-{a}" for t, a, _ in SHIPPED])
def test_shipped_restorer_beats_its_input(task, arm, folder):
    card = json.loads((folder / "card.json").read_text())
    assert all(key in card for key in CARD_KEYS)
    model = load_restorer(folder)
    clean = _sample_image()
    pair = degrade.make_pair(task, clean, seed=1)
    out = restore(model, pair.net_input)[0]
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert psnr(out, clean) > psnr(pair.net_input[0, :3], clean)


@pytest.mark.skipif(not (family.ZooPaths().prior_dir() / "config.json").is_file(), reason="no prior shipped yet")
def test_shipped_prior_loads_with_its_card_and_samples():
    from diffloss.prior import DiffusionPrior

    folder = family.ZooPaths().prior_dir()
    prior = DiffusionPrior.from_pretrained(folder)
    card = json.loads((folder / "card.json").read_text())
    assert all(key in card for key in CARD_KEYS) and "validation" in card
    assert (folder / "samples.png").is_file()
    assert sum(f.stat().st_size for f in folder.iterdir()) < 40 * 2**20
    assert prior.predict(torch.zeros(1, 3, 16, 16), 10).eps.isfinite().all()


def test_pretrained_stays_under_100_mb():
    total = sum(f.stat().st_size for f in family.ZooPaths().pretrained.rglob("*") if f.is_file())
    assert total < 100 * 2**20
