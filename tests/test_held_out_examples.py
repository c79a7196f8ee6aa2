"""A Train run is never compared or calibrated on the photos it trained on (issue #27, points 1 and 3).

The repo as a fresh clone has it (no benchmark beside it): the Train tab's default photos are ``examples/train/``;
Compare's examples and Calibrate's photos are others, compared by their pixels, not their names.
"""

from __future__ import annotations

import hashlib

import pytest

from diffloss.images import load_image
from diffloss.paths import EXAMPLES
from studio import train_tab, upload
from studio.models import Registry


def _pixels(path) -> str:
    return hashlib.sha256(load_image(path).numpy().tobytes()).hexdigest()


@pytest.fixture
def fresh_clone(tmp_path, monkeypatch) -> Registry:
    monkeypatch.setenv("DIFFLOSS_DATASETS", str(tmp_path / "no-datasets"))
    return Registry(tmp_path / "pretrained", tmp_path / "runs", examples=EXAMPLES)


def test_the_default_train_run_trains_on_shipped_photos_compare_does_not_show(fresh_clone):
    trained = train_tab._shipped_examples_unless_given(None, "", fresh_clone)
    assert len(trained) >= 8  # enough that the arms do not just fit a handful
    compared = {row[0] for row in upload.example_rows(fresh_clone.example_images())}
    compared |= {row[3] for row in upload.example_rows(fresh_clone.example_images()) if row[3]}  # ground truths
    assert compared, "the repo ships Compare examples"
    assert {_pixels(p) for p in trained}.isdisjoint({_pixels(p) for p in compared})


def test_calibrate_measures_on_photos_the_default_run_does_not_train_on(fresh_clone):
    trained = {_pixels(p) for p in train_tab._shipped_examples_unless_given(None, "", fresh_clone)}
    calibration = fresh_clone.calibration_images()
    assert calibration
    assert trained.isdisjoint({_pixels(p) for p in calibration})


def test_a_hosted_run_without_uploads_trains_on_the_training_photos_too(fresh_clone, hosted):
    photos = train_tab._hosted_photos(None, "", fresh_clone)
    assert [p for p in photos] == [str(p) for p in fresh_clone.training_examples()]
    assert not set(photos) & {str(p) for p in fresh_clone.clean_examples()}
