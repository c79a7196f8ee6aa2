"""The training loop: fair arms, exact resume, clean stops, NaN detection, atomic checkpoints, DDP on CPU."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from diffloss import checkpoint, run_folder, train, train_cli
from diffloss.images import save_image
from diffloss.loss import DiffLossConfig
from diffloss.paths import RunFolder
from diffloss.nets import load_restorer
from diffloss.prior import DiffusionPrior
from tests.helpers import tiny_prior

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clean_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clean")
    g = torch.Generator().manual_seed(0)
    for i in range(3):
        base = torch.rand(3, 6, 8, generator=g)
        img = torch.nn.functional.interpolate(base[None], size=(48, 64), mode="bilinear", align_corners=False)[0]
        save_image(img, folder / f"img{i}.png")
    return folder


@pytest.fixture(scope="module")
def prior_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("prior")
    tiny_prior().save_pretrained(folder)
    return folder


def restorer_cfg(out: Path, clean_dir: Path, prior_dir: Path, diffloss: bool = True, steps: int = 4, **loop) -> train.RestorerTrainConfig:
    return train.RestorerTrainConfig(
        task="noise", clean=[str(clean_dir)], crop=32, width=8, prior=str(prior_dir), diffloss=diffloss,
        loss=DiffLossConfig(gamma=0.5, lam=0.5),
        loop=train.LoopConfig(out=str(out), steps=steps, batch_size=2, lr=1e-3, warmup=1, log_every=1,
                              save_every=2, threads=1, **loop),
    )


def _stop_at(events, step: int) -> None:
    """Close a training loop once it has logged ``step``, as the app's Stop button does (the loop saves there)."""
    for event in events:
        if event.kind == "step" and event.step == step:
            events.close()
            return
    raise AssertionError(f"the run ended before step {step}")


def _tiny_prior_cfg(out: Path, clean_dir: Path) -> train.PriorTrainConfig:
    return train.PriorTrainConfig(clean=[str(clean_dir)], preset="tiny", crop=16, loop=train.LoopConfig(
        out=str(out), steps=4, batch_size=2, warmup=1, log_every=1, threads=1))


def _final_state(out: Path) -> dict[str, torch.Tensor]:
    return checkpoint.load_tensors(RunFolder(out).checkpoint)


def test_prior_training_writes_a_loadable_prior_with_a_card(clean_dir, tmp_path):
    cfg = _tiny_prior_cfg(tmp_path, clean_dir)
    cfg.loop.steps = 3
    events = list(train.train_prior(cfg))
    assert [e.kind for e in events][-1] == "done"
    prior = DiffusionPrior.from_pretrained(tmp_path / "model")
    assert prior.num_timesteps == 100
    card = json.loads((tmp_path / "model" / "card.json").read_text())
    for key in ("command", "data", "steps", "wall_time_s", "device", "final_loss"):
        assert key in card
    assert card["steps"] == 3 and card["data"]["images"] == 3 and card["final_loss"] > 0


def test_restorer_run_logs_every_term_and_exports(clean_dir, prior_dir, tmp_path):
    events = list(train.train_restorer(restorer_cfg(tmp_path, clean_dir, prior_dir)))
    steps = [e for e in events if e.kind == "step"]
    assert len(steps) == 4 and events[-1].kind == "done"
    with open(tmp_path / "log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    for key in ("total", "fidelity", "nat", "sem", "share_fidelity", "share_nat", "share_sem", "lr"):
        assert all(r[key] != "" for r in rows), key
    assert float(rows[-1]["share_nat"]) > 0
    model = load_restorer(tmp_path / "model")
    assert model.config.task == "noise"


def test_both_arms_see_the_same_batches_and_noise(clean_dir, prior_dir, tmp_path, monkeypatch):
    from diffloss import data

    seen: dict[bool, list] = {True: [], False: []}
    original = data.SyntheticPairSampler.batch
    arm = {"on": True}

    def spy(self, batch_size, seed):
        batch = original(self, batch_size, seed)
        seen[arm["on"]].append(batch.gt.clone())
        return batch

    monkeypatch.setattr(data.SyntheticPairSampler, "batch", spy)
    for diffloss in (True, False):
        arm["on"] = diffloss
        list(train.train_restorer(restorer_cfg(tmp_path / str(diffloss), clean_dir, prior_dir, diffloss=diffloss, steps=3)))
    assert len(seen[True]) == len(seen[False]) == 3
    assert all(torch.equal(a, b) for a, b in zip(seen[True], seen[False]))
    on, off = _final_state(tmp_path / "True"), _final_state(tmp_path / "False")
    assert any(not torch.equal(on[k], off[k]) for k in on if k.startswith("model."))  # only the loss differed


def test_stop_and_resume_gives_the_same_weights_as_one_run(clean_dir, prior_dir, tmp_path):
    list(train.train_restorer(restorer_cfg(tmp_path / "straight", clean_dir, prior_dir, steps=4)))
    _stop_at(train.train_restorer(restorer_cfg(tmp_path / "resumed", clean_dir, prior_dir, steps=4)), 1)  # the app's Stop button: the loop saves where it stopped
    stopped = _final_state(tmp_path / "resumed")
    assert not (tmp_path / "resumed" / "model").exists()
    list(train.train_restorer(restorer_cfg(tmp_path / "resumed", clean_dir, prior_dir, steps=4)))
    a, b = _final_state(tmp_path / "straight"), _final_state(tmp_path / "resumed")
    assert set(a) == set(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert any(not torch.equal(stopped[k], b[k]) for k in stopped if k.startswith("model."))
    with open(tmp_path / "resumed" / "log.csv") as handle:
        assert [int(r["step"]) for r in csv.DictReader(handle)] == [1, 2, 3, 4]


def test_a_run_resumes_from_its_checkpoint_alone_to_the_same_weights(clean_dir, prior_dir, tmp_path):
    """No command to rerun (a Train-tab run): the settings come back from the checkpoint, also from a moved folder."""
    list(train.train_restorer(restorer_cfg(tmp_path / "straight", clean_dir, prior_dir, steps=4)))
    _stop_at(train.train_restorer(restorer_cfg(tmp_path / "first", clean_dir, prior_dir, steps=4)), 1)
    (tmp_path / "first").rename(tmp_path / "moved")
    step, cfg = run_folder.checkpoint_settings(tmp_path / "moved")
    assert step == 1 and cfg.loop.out == str(tmp_path / "moved") and cfg.loop.resume
    assert cfg == replace(restorer_cfg(tmp_path / "moved", clean_dir, prior_dir, steps=4), loop=cfg.loop)
    assert cfg.loss == DiffLossConfig(gamma=0.5, lam=0.5) and cfg.loop.steps == 4 and cfg.loop.batch_size == 2
    assert [e.kind for e in train.train_restorer(cfg)][-1] == "done"
    a, b = _final_state(tmp_path / "straight"), _final_state(tmp_path / "moved")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_resume_command_continues_a_run_and_may_extend_it(clean_dir, prior_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train_cli, "stop_on_signals", lambda: None)
    _stop_at(train.train_restorer(restorer_cfg(tmp_path / "run", clean_dir, prior_dir, steps=4)), 2)
    assert train_cli.main(["resume", str(tmp_path / "run"), "--steps", "5"]) == 0
    card = json.loads((tmp_path / "run" / "model" / "card.json").read_text())
    assert card["steps"] == 5 and card["config"]["loop"]["steps"] == 5 and card["config"]["diffloss"] is True
    # no first command; a folder outside the datasets and runs folders is named, not located (diffloss.provenance)
    assert card["command"] == "resumed with: python -m diffloss.train resume run"
    with open(tmp_path / "run" / "log.csv") as handle:
        assert [int(r["step"]) for r in csv.DictReader(handle)] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("damage, message", [
    ("none", "no checkpoint to resume in"),
    ("torn", "is not a readable training checkpoint"),
    ("no settings", "holds no training settings"),
    ("newer", "settings this version does not know \\(warp_factor\\)"),
])
def test_resuming_a_missing_or_foreign_checkpoint_says_why(damage, message, tmp_path, monkeypatch, capsys):
    ckpt = RunFolder(tmp_path).checkpoint
    ckpt.parent.mkdir()
    info = {"config": {"task": "noise", "loop": {"steps": 3}, "loss": {}}}
    if damage == "torn":
        ckpt.write_bytes(b"\x10\x00 not a safetensors file")
    elif damage == "no settings":
        info = {}
    elif damage == "newer":
        info["config"]["warp_factor"] = 9
    if damage in ("no settings", "newer"):
        checkpoint.atomic_save_tensors(ckpt, {"model.w": torch.zeros(1)}, metadata={"step": "1", "info": json.dumps(info)})
    if damage == "none":
        ckpt.parent.rmdir()
    with pytest.raises(checkpoint.CheckpointError, match=message):
        run_folder.checkpoint_settings(tmp_path)
    monkeypatch.setattr(train_cli, "stop_on_signals", lambda: None)
    assert train_cli.main(["resume", str(tmp_path)]) == 2
    assert "error:" in capsys.readouterr().err


def test_time_limit_stops_with_a_checkpoint(clean_dir, prior_dir, tmp_path):
    events = list(train.train_restorer(restorer_cfg(tmp_path, clean_dir, prior_dir, steps=50, time_limit_min=0.0)))
    assert events[-1].kind == "stopped" and "resume" in events[-1].message


def test_nan_loss_stops_with_a_clear_message(clean_dir, prior_dir, tmp_path, monkeypatch):
    from diffloss import data

    original = data.SyntheticPairSampler.batch

    def poisoned(self, batch_size, seed):
        batch = original(self, batch_size, seed)
        batch.gt[0, 0, 0, 0] = float("nan")
        return batch

    monkeypatch.setattr(data.SyntheticPairSampler, "batch", poisoned)
    with pytest.raises(train.TrainingDiverged, match=r"loss became nan at step 0.*no checkpoint"):
        list(train.train_restorer(restorer_cfg(tmp_path, clean_dir, prior_dir)))


def test_a_crash_while_saving_leaves_the_old_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "c.safetensors"
    checkpoint.atomic_save_tensors(path, {"w": torch.ones(3)})
    import diffloss.checkpoint as ck

    def dying_save(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a fi")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(ck, "save_file", dying_save)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.atomic_save_tensors(path, {"w": torch.zeros(3)})
    assert torch.equal(checkpoint.load_tensors(path)["w"], torch.ones(3))
    assert list(tmp_path.iterdir()) == [path]


def test_init_from_a_restorer_of_another_task_is_refused(clean_dir, prior_dir, tmp_path):
    from diffloss.nets import Restorer, RestorerConfig, save_restorer

    save_restorer(Restorer(RestorerConfig(task="haze", width=8)), tmp_path / "haze")
    cfg = replace(restorer_cfg(tmp_path / "run", clean_dir, prior_dir), init=str(tmp_path / "haze"))
    with pytest.raises(ValueError, match="'haze' restorer, not 'noise'"):
        train.train_restorer(cfg)


def test_learning_rate_warms_up_then_decays():
    loop = train.LoopConfig(steps=100, lr=1.0, warmup=10, min_lr_ratio=0.1)
    lrs = [train.learning_rate(s, loop) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[99] == pytest.approx(0.1, abs=1e-3) and all(a >= b for a, b in zip(lrs[9:], lrs[10:]))


def test_torchrun_two_cpu_ranks_hold_identical_weights(clean_dir, prior_dir, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "diffloss.train", "restorer", "--task", "noise", "--diffloss", "on", "--clean", str(clean_dir),
           "--prior", str(prior_dir), "--crop", "32", "--width", "8", "--steps", "2", "--batch", "2",
           "--log-every", "1", "--threads", "1", "--device", "cpu", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    card = json.loads((out / "model" / "card.json").read_text())
    assert card["world_size"] == 2
    sums = card["rank_weight_checksums"]
    assert len(sums) == 2 and sums[0] == sums[1]


def test_resuming_with_other_settings_is_refused(clean_dir, prior_dir, tmp_path):
    list(train.train_restorer(restorer_cfg(tmp_path, clean_dir, prior_dir, steps=2)))
    longer = restorer_cfg(tmp_path, clean_dir, prior_dir, steps=3)
    assert [e.kind for e in train.train_restorer(longer)][-1] == "done"  # extending a run is fine
    other_arm = restorer_cfg(tmp_path, clean_dir, prior_dir, diffloss=False, steps=4)
    with pytest.raises(checkpoint.CheckpointError, match="diffloss: True -> False"):
        list(train.train_restorer(other_arm))


def test_export_of_a_stopped_run_is_loadable_and_marked_partial(clean_dir, prior_dir, tmp_path):
    _stop_at(train.train_restorer(restorer_cfg(tmp_path / "run", clean_dir, prior_dir, steps=6)), 3)
    dest = run_folder.export_checkpoint(tmp_path / "run")
    model = load_restorer(dest)
    card = json.loads((dest / "card.json").read_text())
    assert card["partial"] is True and card["steps"] == 3 and card["planned_steps"] == 6
    assert card["device"].startswith("cpu") and card["final_loss"] > 0
    saved = _final_state(tmp_path / "run")
    exported = model.state_dict()
    assert exported and all(torch.equal(exported[k], saved[f"ema.{k}"]) for k in exported)  # the EMA, exactly


def test_export_of_a_prior_run(clean_dir, tmp_path):
    cfg = _tiny_prior_cfg(tmp_path, clean_dir)
    _stop_at(train.train_prior(cfg), 2)
    dest = run_folder.export_checkpoint(tmp_path, tmp_path / "exported")
    prior = DiffusionPrior.from_pretrained(dest)
    assert prior.num_timesteps == 100
    assert json.loads((dest / "card.json").read_text())["partial"] is True


def test_a_prior_run_resumes_from_its_checkpoint_alone(clean_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(train_cli, "stop_on_signals", lambda: None)
    cfg = _tiny_prior_cfg(tmp_path, clean_dir)
    _stop_at(train.train_prior(cfg), 2)
    step, settings = run_folder.checkpoint_settings(tmp_path)
    assert step == 2 and isinstance(settings, train.PriorTrainConfig)
    assert settings == replace(cfg, loop=replace(cfg.loop, resume=True))
    assert train_cli.main(["resume", str(tmp_path)]) == 0
    assert DiffusionPrior.from_pretrained(tmp_path / "model").num_timesteps == 100
    assert json.loads((tmp_path / "model" / "card.json").read_text())["steps"] == 4


def test_sigterm_stops_the_cli_with_a_checkpoint(clean_dir, prior_dir, tmp_path):
    import signal
    import time

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "diffloss.train", "restorer", "--task", "noise", "--diffloss", "off", "--no-track",
           "--clean", str(clean_dir), "--crop", "32", "--width", "8", "--steps", "100000", "--batch", "2",
           "--log-every", "1", "--save-every", "100000", "--threads", "1", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "log.csv").is_file() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    stdout, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert "stopped at step" in stdout + err
    step = int(run_folder.read_checkpoint_meta(RunFolder(out).checkpoint)["step"])
    assert step >= 1


def test_a_setting_added_since_the_checkpoint_keeps_old_runs_resumable():
    saved = {"task": "noise", "loss": {"gamma": 0.05, "lam": 0.1}}
    newer_code = {"task": "noise", "loss": {"gamma": 0.05, "lam": 0.1, "prior_crop": None}}
    run_folder.check_same_run(Path("ckpt"), saved, newer_code)  # a new option left off: same run
    with pytest.raises(checkpoint.CheckpointError, match="prior_crop"):
        run_folder.check_same_run(Path("ckpt"), saved, {**newer_code, "loss": {**newer_code["loss"], "prior_crop": 64}})
    with pytest.raises(checkpoint.CheckpointError, match="gamma"):
        run_folder.check_same_run(Path("ckpt"), saved, {**newer_code, "loss": {**newer_code["loss"], "gamma": 0.1}})


def test_an_interrupt_between_steps_still_saves_a_checkpoint(clean_dir, tmp_path, monkeypatch, capsys):
    """Ctrl-C while the CLI draws its progress bar (outside the loop's own try) must not lose the run."""
    import tqdm

    calls = {"n": 0}
    original = tqdm.tqdm.refresh

    def refresh(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt("signal 15")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(tqdm.tqdm, "refresh", refresh)
    monkeypatch.setattr(train_cli, "stop_on_signals", lambda: None)  # keep pytest's own handlers
    out = tmp_path / "run"
    code = train_cli.main(["restorer", "--task", "noise", "--diffloss", "off", "--no-track", "--clean", str(clean_dir),
                       "--crop", "32", "--width", "8", "--steps", "50", "--batch", "2", "--log-every", "1",
                       "--save-every", "1000", "--threads", "1", "--device", "cpu", "--out", str(out)])
    assert code == 0
    captured = capsys.readouterr()
    assert "stopped at step 3" in captured.out + captured.err
    assert int(run_folder.read_checkpoint_meta(RunFolder(out).checkpoint)["step"]) == 3
