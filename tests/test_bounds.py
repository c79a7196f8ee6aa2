"""Bounds for a studio served to strangers: each input that once cost gigabytes, crashed with a generic error or
was silently wrong is refused or capped with a message (the audit cases of issue 14)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

from diffloss import checkpoint, nets
from diffloss.divergence import diverged_reason
from diffloss.images import MAX_PIXELS, ImageLoadError, image_size, load_image
from diffloss.safe_zip import ZipMemberError, read_member
from studio import inputs, model_upload, restorers, train_tab
from studio.models import LruCache
from studio.train_settings import TrainSettings
from tests.studio_helpers import make_world, save_pair


# ----------------------------------------------------------------------------------------------------- images
def _huge_png(path: Path, side: int = 12000) -> Path:
    """A small file whose header declares side x side pixels (a 1-bit image compresses to almost nothing)."""
    Image.new("1", (side, side)).save(path)
    return path


def test_an_image_over_the_pixel_limit_is_refused_from_its_header_before_decoding(tmp_path):
    path = _huge_png(tmp_path / "bomb.png")
    assert path.stat().st_size < 1_000_000
    tracemalloc.start()
    try:
        with pytest.raises(ImageLoadError, match=r"12000x12000 px is 144 megapixels, more than the 50 megapixels"):
            load_image(path, max_side=1024)
        with pytest.raises(ImageLoadError, match="144 megapixels"):
            image_size(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5 * 2**20  # decoding would allocate 144 MB at least


def test_an_image_just_under_the_limit_still_loads(tmp_path):
    side = int(MAX_PIXELS ** 0.5) - 1
    path = tmp_path / "big.png"
    Image.new("1", (side, 16)).save(path)  # wide and short: a cheap decode
    assert load_image(path, max_side=64).shape[-1] == 64


def test_a_train_folder_with_a_huge_image_is_refused_with_its_name(tmp_path):
    world = make_world(tmp_path)
    _huge_png(world.clean / "huge.png")
    with pytest.raises(gr.Error, match="huge.png.*megapixels"):
        list(train_tab.train_pair(TrainSettings("noise", 1, 1, 16, 1e-3, 0.05, 0.1, 0, 99, 0, "", str(world.clean),
                                                start=restorers.FRESH_START), registry=world.registry))


def test_an_upload_over_the_pixel_limit_gets_a_message_in_compare(tmp_path):
    from studio import upload

    path = _huge_png(tmp_path / "bomb.png")
    with pytest.raises(gr.Error, match="megapixels"):
        upload.load_upload(path)


def test_a_float_tiff_with_an_infinite_pixel_is_refused_not_turned_black(tmp_path):
    values = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    values[3, 3] = np.inf
    path = tmp_path / "inf.tif"
    Image.fromarray(values, mode="F").save(path)
    with pytest.raises(ImageLoadError, match="1 pixel is infinite"):
        load_image(path)
    values[3, 3] = 0.5
    Image.fromarray(values, mode="F").save(path)
    assert float(load_image(path).max()) == pytest.approx(1.0)  # a finite one keeps its range


# ------------------------------------------------------------------------------------------------------- zips
def _lying_zip(path: Path, real: bytes, declared: int, method: int = zipfile.ZIP_DEFLATED) -> Path:
    """A zip of one member ``model.safetensors`` whose headers declare ``declared`` bytes, whatever it holds."""
    with zipfile.ZipFile(path, "w", compression=method) as archive:
        archive.writestr("model.safetensors", real)
    data = bytearray(path.read_bytes())
    # the uncompressed size sits at offset 22 of the local header and 24 of the central directory entry
    local = data.find(b"PK\x03\x04")
    central = data.find(b"PK\x01\x02")
    struct.pack_into("<I", data, local + 22, declared)
    struct.pack_into("<I", data, central + 24, declared)
    path.write_bytes(bytes(data))
    return path


def _peak_reading(path, refusal: str) -> int:
    """Peak traced memory (bytes) of reading a zip's model member with a 1 MB cap, which must be refused."""
    tracemalloc.start()
    try:
        with zipfile.ZipFile(path) as archive, pytest.raises(ZipMemberError, match=refusal):
            read_member(archive, "model.safetensors", 2**20)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_member_that_declares_a_huge_size_is_read_only_up_to_the_cap(tmp_path):
    """A deflate bomb that tells the truth about being huge: counted as it streams, stopped at the cap."""
    path = _lying_zip(tmp_path / "bomb.zip", bytes(200 * 2**20), 200 * 2**20)
    assert path.stat().st_size < 400_000
    assert _peak_reading(path, "more than 1 MB") < 4 * 2**20  # reading it whole would take 200 MB


def test_a_member_that_understates_its_size_is_refused_as_corrupt(tmp_path):
    path = _lying_zip(tmp_path / "liar.zip", bytes(50 * 2**20), 1000)
    assert _peak_reading(path, "corrupt") < 4 * 2**20


def test_a_bzip2_member_is_refused_unread(tmp_path, monkeypatch):
    path = tmp_path / "bz.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_BZIP2) as archive:
        archive.writestr("model.safetensors", bytes(2**20))
    opened = []
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda *a, **k: opened.append(a) or pytest.fail("decompressed"))
    with zipfile.ZipFile(path) as archive, pytest.raises(ZipMemberError, match="only stored and deflate"):
        read_member(archive, "model.safetensors", 2**30)
    assert opened == []


def test_the_bomb_in_add_restorers_keeps_memory_small_and_leaves_nothing(tmp_path):
    """The audit's case: a model zip whose member lies; the server's memory must not follow what it unpacks to."""
    world = make_world(tmp_path / "world", with_restorers=False)
    bomb = tmp_path / "pair.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("l2/config.json", json.dumps({"kind": "restorer", **nets.RestorerConfig(width=8).to_dict()}))
        archive.writestr("l2/model.safetensors", bytes(300 * 2**20))
    data = bytearray(bomb.read_bytes())
    for sig, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # the second member: declare 1 KB
        at = data.find(sig, data.find(sig) + 1)
        struct.pack_into("<I", data, at + offset, 1024)
    bomb.write_bytes(bytes(data))
    tracemalloc.start()
    try:
        with pytest.raises(gr.Error, match="Cannot add restorers from pair.zip: .*(corrupt|unpacks to more than)"):
            model_upload.add_restorers(str(bomb), registry=world.registry)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20
    assert not world.registry.runs.exists() or not any(world.registry.runs.iterdir())


# ---------------------------------------------------------------------------------------------- restorer configs
@pytest.mark.parametrize("fields, message", [
    ({"width": -8}, "width is -8; a restorer has 2 to 64"),
    ({"width": 65536}, "width is 65536"),
    ({"enc_blocks": [1] * 40, "dec_blocks": [1] * 40}, "levels .* is 40; a restorer has 1 to 4"),
    ({"middle_blocks": 10**9}, "middle_blocks is 1000000000"),
    ({"enc_blocks": [0, 1, 10**6]}, r"enc_blocks is \[0, 1, 1000000\]"),
    ({"width": 64, "enc_blocks": [1] * 4, "dec_blocks": [1] * 4}, "1024 channels at the lowest resolution"),
    ({"width": "wide"}, "width must be a whole number"),
    ({"width": float("nan")}, "width must be a whole number"),
])
def test_a_restorer_config_out_of_bounds_is_refused_before_anything_is_built(fields, message, monkeypatch):
    monkeypatch.setattr(nets.Restorer, "__init__", lambda *a: pytest.fail("built"))
    with pytest.raises(ValueError, match=message):
        nets.RestorerConfig.from_dict({"task": "noise", **fields})


def test_a_zip_with_a_crafted_config_gets_the_reason_and_leaves_no_arm_listed(tmp_path):
    world = make_world(tmp_path / "world", with_restorers=False)
    save_pair(tmp_path / "made")
    arm = tmp_path / "made" / "restorers" / "noise" / "l2"
    config = json.loads((arm / "config.json").read_text())
    path = tmp_path / "wide.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("l2/config.json", json.dumps({**config, "width": 65536}))
        archive.write(arm / "model.safetensors", "l2/model.safetensors")
    with pytest.raises(gr.Error, match="its width is 65536; a studio restorer has a whole number from 2 to 64"):
        model_upload.add_restorers(str(path), registry=world.registry)
    assert [e for e in world.registry.restorers() if e.source == "run"] == []


# --------------------------------------------------------------------------------------------------- the cache
def test_the_model_cache_forgets_the_least_recently_used(tmp_path):
    cache = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert "b" not in cache and "a" in cache and "c" in cache and len(cache) == 2


def test_the_registry_keeps_a_bounded_number_of_restorers(tmp_path, monkeypatch):
    from studio import models

    monkeypatch.setattr(models, "MAX_CACHED_RESTORERS", 2)
    world = make_world(tmp_path)
    for task in ("sr4", "rain"):
        save_pair(world.root / "pretrained", task)
    entries = world.registry.restorers()
    assert len(entries) == 6
    for entry in entries:
        world.registry.load_restorer(entry.path)
    assert len(world.registry._restorers) == 2


# ----------------------------------------------------------------------------------------- interrupted saves
def test_temp_files_of_a_save_killed_mid_write_are_removed_at_the_next_start(tmp_path):
    target = tmp_path / "run" / "l2" / "checkpoint" / "last.safetensors"
    code = ("import os, sys; from pathlib import Path; from diffloss import checkpoint\n"
            "checkpoint.atomic_write(Path(sys.argv[1]), lambda tmp: (tmp.write_bytes(b'x' * 1000), os._exit(9)))")
    proc = subprocess.run([sys.executable, "-c", code, str(target)], cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 9
    (left,) = target.parent.glob(".*.tmp")  # what a kill -9 during a save leaves
    checkpoint.atomic_write_bytes(tmp_path / "run" / "live.bin", b"ok")  # a live save leaves nothing
    mine = target.parent / f".other.{os.getpid()}-abc.tmp"  # a save still going in this process: kept
    mine.write_bytes(b"")
    assert checkpoint.remove_interrupted_saves(tmp_path) == [left]
    assert not left.exists() and mine.exists()


# ---------------------------------------------------------------------------------------------- typed values
@pytest.mark.parametrize("kwargs, message", [
    ({"steps": float("nan")}, "steps must be a finite number, got nan"),
    ({"steps": float("inf")}, "steps must be a finite number, got inf"),
    ({"steps": 0}, "steps must be at least 1"),
    ({"lr": 0}, "Learning rate must be above 0"),
    ({"lr": -1e-3}, "Learning rate must be above 0"),
    ({"lr": float("nan")}, "Learning rate must be a finite number"),
    ({"seed": 2**63}, f"Seed must be at least 0 and at most {2**63 - 1}"),
    ({"seed": -1}, "Seed must be at least 0"),
    ({"gamma": float("inf")}, "gamma must be a finite number"),
    ({"t_min": float("nan")}, "t min must be a finite number"),
])
def test_bad_train_numbers_get_a_message_naming_the_box(tmp_path, kwargs, message):
    world = make_world(tmp_path)
    args = {"steps": 1, "batch": 1, "crop": 16, "lr": 1e-3, "gamma": 0.05, "lam": 0.1, "t_min": 0, "t_max": 99,
            "seed": 0}
    args.update(kwargs)
    with pytest.raises(gr.Error, match=message):
        next(train_tab.train_pair(TrainSettings("noise", args["steps"], args["batch"], args["crop"], args["lr"],
                                                args["gamma"], args["lam"], args["t_min"], args["t_max"], args["seed"],
                                                "", str(world.clean)), registry=world.registry))
    assert not world.registry.runs.exists()


@pytest.mark.parametrize("name, message", [("..", "never a path"), (".", "never a path"),
                                           ("a/../../etc", "never a path"), ("x" * 256, "at most 255 bytes")])
def test_a_resume_name_that_is_not_a_run_name_gets_a_message(tmp_path, name, message):
    world = make_world(tmp_path)
    with pytest.raises(gr.Error, match=message):
        next(train_tab.resume_pair(name, registry=world.registry))


def test_upload_names_of_255_characters_make_valid_file_names(tmp_path):
    world = make_world(tmp_path)
    long_name = tmp_path / ("p" * 251 + ".png")
    long_name.write_bytes((world.clean / "0.png").read_bytes())
    kept, notes = train_tab.save_training_photos([str(long_name)], tmp_path / "photos")
    assert kept == 1 and notes == []
    assert inputs.file_stem("é" * 300) == "" and len(inputs.file_stem("a" * 300)) == inputs.MAX_STEM


def test_prior_slash_gets_a_message_not_a_walk_of_the_disk(tmp_path):
    world = make_world(tmp_path)
    with pytest.raises(gr.Error, match="holds no diffusers model"):
        restorers.load_prior("/", world.registry)


# ----------------------------------------------------------------------------------------------- divergence
def test_diverged_weights_are_recognised():
    sane = {"model.w": torch.ones(3), "optim.0.exp_avg_sq": torch.full((2,), 1e12)}
    assert diverged_reason(sane) is None
    assert "beyond 1e+06" in diverged_reason({**sane, "ema.w": torch.tensor([1.0, -1e30])})
    assert "non-finite" in diverged_reason({**sane, "model.b": torch.tensor([float("nan")])})


def test_a_diverged_run_is_not_offered_for_resume(tmp_path):
    from diffloss.paths import RunFolder

    world = make_world(tmp_path)
    job = train_tab.train_pair(TrainSettings("noise", 40, 1, 16, 1e-3, 0.05, 0.1, 0, 99, 0, "", str(world.clean),
                                             start=restorers.FRESH_START, name="r"), registry=world.registry)
    for _ in range(4):  # "Starting", then a step of each arm
        next(job)
    train_tab.request_stop()
    status = list(job)[-1][0]
    assert status.startswith("**Stopped**")
    assert [name for _, name in train_tab.stopped_runs(world.registry)] == ["r"]
    path = RunFolder(world.registry.runs / "r" / "diffloss").checkpoint
    tensors = checkpoint.load_tensors(path)
    key = next(k for k in tensors if k.startswith("model.") and tensors[k].is_floating_point())
    tensors[key] = torch.full_like(tensors[key], 1e30)
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    checkpoint.atomic_save_tensors(path, tensors, meta)
    assert train_tab.stopped_runs(world.registry) == []
    with pytest.raises(gr.Error, match="diffloss arm diverged before it stopped .*beyond 1e\\+06"):
        next(train_tab.resume_pair("r", registry=world.registry))
