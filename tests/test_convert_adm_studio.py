"""A converted ADM checkpoint (small, random) is a prior like any other: Inspect shows it, Train trains through it."""

from __future__ import annotations

import csv

import pytest
import torch

from diffloss import train
from diffloss.convert_adm import ADMConfig, convert_checkpoint
from diffloss.loss import DiffLossConfig
from studio import inspect_tab
from tests.studio_helpers import make_world
from tests.test_convert_adm import random_reference

SMALL_ADM = ADMConfig(image_size=32, num_channels=32, num_res_blocks=1, channel_mult=(1, 2, 2),
                      attention_resolutions=(16, 8), num_head_channels=16)


@pytest.fixture(scope="module")
def converted_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("adm")
    checkpoint = root / "adm.pt"
    torch.save(random_reference(SMALL_ADM).state_dict(), checkpoint)
    return convert_checkpoint(checkpoint, root / "prior", SMALL_ADM)


def test_inspect_uses_the_converted_prior(converted_folder, tmp_path):
    world = make_world(tmp_path, with_restorers=False)
    steps, message = inspect_tab.prior_timesteps(str(converted_folder), registry=world.registry)
    assert steps == 1000 and "1000 timesteps" in message
    r = inspect_tab.inspect(str(world.photo), "noise", 0, None, inspect_tab.PAIRS[1], 500, 0, str(converted_folder),
                            side=32, registry=world.registry)
    assert "t = 500 of 999" in r.values and f"prior: `{converted_folder.name}`" in r.values  # named, no machine path
    assert str(converted_folder) not in r.values
    assert "L_nat = **" in r.values and "L_sem = **" in r.values
    assert r.x_t.ndim == 3 and r.h_error.ndim == 3


def test_a_restorer_trains_through_the_converted_prior(converted_folder, tmp_path):
    world = make_world(tmp_path / "world", with_prior=False, with_restorers=False)
    cfg = train.RestorerTrainConfig(
        task="noise", clean=[str(world.clean)], crop=32, width=8, prior=str(converted_folder), diffloss=True,
        loss=DiffLossConfig(gamma=0.5, lam=0.5),
        loop=train.LoopConfig(out=str(tmp_path / "run"), steps=2, batch_size=2, lr=1e-3, warmup=1, log_every=1,
                              save_every=2, threads=1),
    )
    events = list(train.train_restorer(cfg))
    assert events[-1].kind == "done"
    with open(tmp_path / "run" / "log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [1, 2]
    assert all(float(r["share_nat"]) > 0 and float(r["share_sem"]) > 0 for r in rows)
