"""How the prior is trained: a band of timesteps, min-SNR weighting, continuing from a prior, augmentation and
held-out photos. Each setting changes what the loop draws or weighs, checked on a tiny prior."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from diffloss import schedule, train
from diffloss.data import CleanCropSampler, holdout_split, random_crop_flip, with_downscaled_copies
from diffloss.images import save_image
from diffloss.prior import DiffusionPrior
from tests.helpers import tiny_prior


@pytest.fixture(scope="module")
def clean_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clean")
    g = torch.Generator().manual_seed(0)
    for i in range(4):
        save_image(torch.rand(3, 40, 48, generator=g), folder / f"img{i}.png")
    return folder


def _cfg(out: Path, clean_dir: Path, **changes) -> train.PriorTrainConfig:
    cfg = train.PriorTrainConfig(clean=[str(clean_dir)], preset="tiny", crop=16, loop=train.LoopConfig(
        out=str(out), steps=2, batch_size=4, warmup=1, log_every=1, threads=1))
    return replace(cfg, **changes)


class _Recorder(torch.nn.Module):
    """Stands in for the UNet: records the timesteps it is asked about and predicts zero noise."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x, t):
        self.seen.append(t.clone())
        return type("Out", (), {"sample": torch.zeros_like(x)})()


def test_holdout_split_leaves_out_every_kth_item():
    kept, held = holdout_split(list(range(20)), 10)
    assert held == [9, 19] and kept == [i for i in range(20) if i not in (9, 19)]
    assert holdout_split([1, 2, 3], 0) == ([1, 2, 3], [])
    with pytest.raises(ValueError, match="holdout_every"):
        holdout_split([1, 2], 1)


def test_downscaled_copies_are_added_and_tiny_ones_skipped():
    big, small = torch.zeros(3, 64, 96, dtype=torch.uint8), torch.zeros(3, 20, 20, dtype=torch.uint8)
    out = with_downscaled_copies([big, small], min_side=16)
    assert [tuple(im.shape) for im in out] == [(3, 64, 96), (3, 20, 20), (3, 32, 48)]
    assert out[-1].dtype == torch.uint8


def test_rotation_keeps_the_crops_and_turns_them():
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 40, 40, generator=g)]
    plain = CleanCropSampler(images, 16).batch(16, seed=3)
    turned = CleanCropSampler(images, 16, rotate=True).batch(16, seed=3)
    ks = []
    for p, r in zip(plain, turned):
        k = [k for k in range(4) if torch.equal(torch.rot90(p, k, dims=(-2, -1)), r)]
        assert k, "a rotated crop is a turn of the crop the unrotated sampler draws"
        ks.append(k[0])
    assert len(set(ks)) > 1


def test_unrotated_batches_are_the_crops_they_always_were():
    """Restorer batches come from the same sampler: its draws must not change with the new option off."""
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 30, 40, generator=g) for _ in range(3)]
    batch = CleanCropSampler(images, 16).batch(5, seed=7)
    g = torch.Generator().manual_seed(7)
    picks = torch.randint(3, (5,), generator=g).tolist()
    expected = torch.stack([random_crop_flip(images[i], 16, g) for i in picks])
    assert torch.equal(batch, expected)


def test_training_timesteps_stay_in_the_band(clean_dir, tmp_path):
    job = train.PriorJob(_cfg(tmp_path, clean_dir, t_min=20, t_max=30), torch.device("cpu"))
    model = _Recorder()
    for seed in range(20):
        job.compute(model, seed, measure=False)
    seen = torch.cat(model.seen)
    assert int(seen.min()) >= 20 and int(seen.max()) <= 30 and len(set(seen.tolist())) > 5


def test_min_snr_weighs_each_sample_by_min_snr_over_snr(clean_dir, tmp_path):
    cfg = _cfg(tmp_path, clean_dir, weighting="min-snr", snr_gamma=2.0)
    job = train.PriorJob(cfg, torch.device("cpu"))
    model = _Recorder()
    loss = job.compute(model, 5, measure=False).total
    t = model.seen[0]
    g = torch.Generator().manual_seed(5)  # the step's (t, eps) draws, as PriorJob.compute makes them
    torch.randint(0, 100, (4,), generator=g)
    eps = torch.randn((4, 3, 16, 16), generator=g)
    expected = (eps.pow(2).flatten(1).mean(1) * schedule.min_snr_weight(job.alphas, t, 2.0)).mean()
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize("band", [(50, 40), (0, 100), (-1, 10)])
def test_a_band_outside_the_schedule_is_refused(clean_dir, tmp_path, band):
    with pytest.raises(ValueError, match="training band"):
        train.PriorJob(_cfg(tmp_path, clean_dir, t_min=band[0], t_max=band[1]), torch.device("cpu"))


def test_unknown_weighting_is_refused(clean_dir, tmp_path):
    with pytest.raises(ValueError, match="unknown weighting"):
        train.PriorJob(_cfg(tmp_path, clean_dir, weighting="snr"), torch.device("cpu"))


def test_init_continues_from_a_priors_weights(clean_dir, tmp_path):
    start = tiny_prior(seed=3)
    start.save_pretrained(tmp_path / "start")
    job = train.PriorJob(_cfg(tmp_path / "run", clean_dir, init=str(tmp_path / "start")), torch.device("cpu"))
    for (name, a), b in zip(start.unet.state_dict().items(), job.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_banded_augmented_continued_run_exports_a_prior_whose_card_says_so(clean_dir, tmp_path):
    tiny_prior(seed=3).save_pretrained(tmp_path / "start")
    cfg = _cfg(tmp_path / "run", clean_dir, init=str(tmp_path / "start"), t_min=10, t_max=60, augment=True,
               holdout_every=2, weighting="min-snr")
    events = list(train.train_prior(cfg))
    assert events[-1].kind == "done"
    prior = DiffusionPrior.from_pretrained(tmp_path / "run" / "model")
    assert prior.num_timesteps == 100
    data = json.loads((tmp_path / "run" / "model" / "card.json").read_text())["data"]
    assert data["t_band"] == [10, 60] and data["weighting"] == "min-snr"
    assert data["images"] == 2 and data["held_out"] == 2 and data["augmented_images"] == 4
    assert data["init"] == str(tmp_path / "start") and data["preset"] is None
