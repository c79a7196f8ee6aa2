"""Every weight in pretrained/ loads, has a card, and does its job on a small synthetic sample."""

import json
from pathlib import Path

import pytest
import torch

from diffloss import degrade, family
from diffloss.images import centre_crop, load_image
from diffloss.metrics import psnr
from diffloss.nets import load_restorer, restore
from diffloss.zoo_report import REPORT_JSON, synthetic_source

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
    if psnr(out, clean) > psnr(pair.net_input[0, :3], clean):
        return
    # A prior arm may trade PSNR for naturalness down below the input's PSNR (a result the issue asks to show,
    # not hide): allowed only for a prior arm whose trade the shipped report measured on clean/val, PSNR under the
    # input's and NIQE better than the L2 arm's. The L2 arm always beats its input.
    assert family.family_arm(arm).uses_prior, f"{task}/{arm} does not beat its input"
    report = json.loads((family.ZooPaths().pretrained / REPORT_JSON).read_text())
    means = synthetic_source(report, task)["means"]
    assert means[arm]["psnr"] < means["input"]["psnr"] and means[arm]["niqe"] < means["l2"]["niqe"]


@pytest.mark.skipif(not (family.ZooPaths().prior_dir() / "config.json").is_file(), reason="no prior shipped yet")
def test_shipped_prior_loads_with_its_card_and_samples():
    from diffloss.prior import DiffusionPrior

    folder = family.ZooPaths().prior_dir()
    prior = DiffusionPrior.from_pretrained(folder)
    card = json.loads((folder / "card.json").read_text())
    assert all(key in card for key in CARD_KEYS) and "validation" in card
    assert (folder / "samples.png").is_file()
    assert card["storage"] == "float16" and prior.unet.dtype == torch.float32  # stored small, computed in float32
    assert sum(f.stat().st_size for f in folder.iterdir()) < 40 * 2**20
    assert prior.predict(torch.zeros(1, 3, 16, 16), 10).eps.isfinite().all()


def test_pretrained_stays_under_120_mb():
    total = sum(f.stat().st_size for f in family.ZooPaths().pretrained.rglob("*") if f.is_file())
    assert total <= 120 * 10**6  # issue #13: fp16 weights, at most 120 MB in all (decimal, the stricter reading)


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
REAL_PAIRS = sorted(p for p in EXAMPLES.glob("*_*.png") if (EXAMPLES / "ground_truth" / p.name).is_file())


@pytest.mark.parametrize("photo", REAL_PAIRS, ids=[p.stem for p in REAL_PAIRS])
def test_the_shipped_l2_arm_beats_the_input_on_every_shipped_real_pair(photo):
    """Issue #13: the base is better than the input on every shipped example (real hazy and rainy pairs)."""
    from diffloss.images import load_image

    task = photo.name.split("_", 1)[0]
    arms = family.shipped_restorers().get(task, {})
    if "l2" not in arms:
        pytest.skip(f"no shipped {task} L2 arm")
    lq, gt = load_image(photo), load_image(EXAMPLES / "ground_truth" / photo.name)
    out = restore(load_restorer(arms["l2"]), degrade.prepare_input(task, lq))
    out = out[0] if out.dim() == 4 else out
    assert psnr(out.clamp(0, 1), gt) > psnr(lq, gt) + 0.5


CLEAN_EXAMPLES = sorted(EXAMPLES.glob("clean_*.png"))
L2_ARMS = sorted((task, arms["l2"]) for task, arms in family.shipped_restorers().items() if "l2" in arms)


@pytest.mark.parametrize("photo", CLEAN_EXAMPLES, ids=[p.stem for p in CLEAN_EXAMPLES])
@pytest.mark.parametrize("task,folder", L2_ARMS, ids=[t for t, _ in L2_ARMS])
def test_the_shipped_l2_arm_beats_the_input_on_every_shipped_clean_example(task, folder, photo):
    """Issue #13: better than the input on every shipped example; a clean example degraded as Compare opens it
    (seed 0)."""
    clean = degrade.crop_to_multiple(load_image(photo), 16)
    pair = degrade.make_pair(task, clean[None], seed=0)
    out = restore(load_restorer(folder), pair.net_input)[0].clamp(0, 1)
    assert psnr(out, clean) > psnr(pair.net_input[0, :3], clean) + 0.5


FAMILY_ARMS = [(t, a, f) for t, a, f in SHIPPED if a in family.FAMILY_ARMS and a != "l2"]


@pytest.mark.parametrize("task,arm,folder", FAMILY_ARMS, ids=[f"{t}-{a}" for t, a, _ in FAMILY_ARMS])
def test_a_family_arm_says_its_share_and_weights_and_shares_the_l2_arms_start(task, arm, folder):
    card = json.loads((folder / "card.json").read_text())
    l2 = json.loads((folder.parent / "l2" / "card.json").read_text())
    spec = family.family_arm(arm)
    assert card["arm"]["name"] == arm and card["arm"]["nat_share"] == spec.nat_share
    assert card["arm"]["gamma"] == pytest.approx(card["config"]["loss"]["gamma"])
    assert card["data"]["init"] == l2["data"]["init"]  # the same base
    assert card["config"]["loop"]["seed"] == l2["config"]["loop"]["seed"] + spec.seed_offset  # the control: another
    assert card["steps"] == l2["steps"]
    assert card["storage"] == "float16"


def test_the_readme_table_is_the_shipped_reports_summary():
    """The README's results table is `python -m diffloss.zoo report --summary`, so it cannot drift from REPORT.md."""
    from diffloss.zoo_report import REPORT_JSON, summary_lines

    report = family.ZooPaths().pretrained / REPORT_JSON
    if not report.is_file():
        pytest.skip(f"no {REPORT_JSON} shipped in pretrained/ yet (python -m diffloss.zoo report)")
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "\n".join(summary_lines(json.loads(report.read_text()))) in readme
