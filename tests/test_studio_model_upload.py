"""Restorers uploaded as a zip: the Train tab's download comes back into Compare; anything else is refused with the
reason and leaves nothing behind."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import gradio as gr
import pytest

from studio import model_upload, restorers
from studio.models import Registry
from tests.studio_helpers import make_world, save_pair


STUDIO_CONFIG = {"kind": "restorer", "task": "noise", "in_channels": 3, "out_channels": 3, "width": 32,
                 "enc_blocks": [0, 1, 2], "middle_blocks": 2, "dec_blocks": [1, 1, 1]}


@pytest.fixture
def world(tmp_path):
    return make_world(tmp_path / "world", with_restorers=False)


def _zip(path: Path, files: dict[str, Path | bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in files.items():
            if isinstance(content, Path):
                archive.write(content, name)
            else:
                archive.writestr(name, content)
    return path


def _pair(tmp_path: Path, task: str = "noise", in_channels: int = 3) -> dict[str, Path]:
    """{zip member: file} of an l2/diffloss pair laid out as the Train tab's download."""
    save_pair(tmp_path / "made", task, in_channels)
    arms = tmp_path / "made" / "restorers" / task
    return {f"{arm}/{f.name}": f for arm in ("l2", "diffloss") for f in sorted((arms / arm).iterdir())}


def _runs(world) -> list[Path]:
    return sorted(world.registry.runs.iterdir()) if world.registry.runs.is_dir() else []


def test_the_train_tabs_download_comes_back_as_a_pair_for_its_task(world, tmp_path):
    archive = _zip(tmp_path / "studio-sr4-run.zip", _pair(tmp_path, "sr4"))
    message, task = model_upload.add_restorers(str(archive), world.registry)
    assert task == "sr4"
    labels, l2, dl = restorers.trained_pair_choices("sr4", world.registry)
    assert l2.startswith("run upload-studio-sr4-run-") and l2.endswith(" l2") and dl.endswith(" diffloss")
    assert f"`{l2}`" in message and f"`{dl}`" in message and "for **sr4**" in message
    (run,) = _runs(world)
    assert sorted(p.name for p in (run / "l2" / "model").iterdir()) == ["card.json", "config.json", "model.safetensors"]
    assert world.registry.load_restorer(run / "diffloss" / "model").config.task == "sr4"


def test_a_pair_inside_one_folder_and_a_single_model_are_accepted(world, tmp_path):
    nested = {f"my-run/{name}": f for name, f in _pair(tmp_path).items()}
    assert model_upload.add_restorers(str(_zip(tmp_path / "nested.zip", nested)), world.registry)[1] == "noise"
    single = {f"model/{Path(name).name}": f for name, f in _pair(tmp_path / "b").items() if name.startswith("l2/")}
    message, _ = model_upload.add_restorers(str(_zip(tmp_path / "one.zip", single)), world.registry)
    assert "run upload-one-" in message and "(l2)" in message  # one model: its arm is read from its card
    assert len(world.registry.restorers("noise")) == 3


@pytest.mark.parametrize("content, reason", [
    (b"just text", "not a zip file"),
    ({"readme.txt": b"hello"}, "no model folder in it"),
    ({"l2/config.json": b"{}"}, "no model folder in it"),
    ({"a/model.safetensors": b"x", "a/config.json": b"{}", "b/model.safetensors": b"x", "b/config.json": b"{}"},
     "2 model folders \\(a, b\\)"),
    ({"l2/model.safetensors": b"not weights", "l2/config.json": b'{"kind": "restorer"}'}, "its task is None"),
    ({"l2/model.safetensors": b"not weights", "l2/config.json": json.dumps(dict(STUDIO_CONFIG)).encode()},
     "l2/model/model.safetensors is not a readable"),
])
def test_what_is_not_a_restorer_is_refused_with_the_reason_and_leaves_nothing(world, tmp_path, content, reason):
    path = tmp_path / "upload.zip"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        _zip(path, content)
    with pytest.raises(gr.Error, match=f"Cannot add restorers from upload.zip: .*{reason}"):
        model_upload.add_restorers(str(path), world.registry)
    assert _runs(world) == []


def test_weights_that_do_not_fit_their_config_or_a_prior_are_refused(world, tmp_path):
    files = _pair(tmp_path)
    other = _pair(tmp_path / "wide", "inpaint", in_channels=4)  # 4 input channels: other shapes
    mixed = {**files, "diffloss/model.safetensors": other["diffloss/model.safetensors"]}
    with pytest.raises(gr.Error, match="do not match its config.json"):
        model_upload.add_restorers(str(_zip(tmp_path / "mixed.zip", mixed)), world.registry)
    prior = world.root / "pretrained" / "prior"
    as_prior = {f"model/{f.name}": f for f in prior.iterdir() if f.name in ("config.json",)}
    as_prior["model/model.safetensors"] = next(prior.glob("*.safetensors"))
    with pytest.raises(gr.Error, match="Cannot add restorers from prior.zip"):
        model_upload.add_restorers(str(_zip(tmp_path / "prior.zip", as_prior)), world.registry)
    assert _runs(world) == []


def test_a_pair_of_two_tasks_is_refused(world, tmp_path):
    noise, sr4 = _pair(tmp_path / "n"), _pair(tmp_path / "s", "sr4")
    mixed = {**{k: v for k, v in noise.items() if k.startswith("l2/")},
             **{k: v for k, v in sr4.items() if k.startswith("diffloss/")}}
    with pytest.raises(gr.Error, match="different tasks \\(noise, sr4\\)"):
        model_upload.add_restorers(str(_zip(tmp_path / "two.zip", mixed)), world.registry)
    assert _runs(world) == []


def test_paths_that_climb_out_are_ignored_and_nothing_is_written_outside_the_run(world, tmp_path):
    files = _pair(tmp_path)
    evil = {**files, "../../escaped/model.safetensors": files["l2/model.safetensors"],
            "/abs/config.json": files["l2/config.json"]}
    model_upload.add_restorers(str(_zip(tmp_path / "evil.zip", evil)), world.registry)
    assert not (world.registry.runs.parent / "escaped").exists() and not (tmp_path / "escaped").exists()
    assert model_upload.model_folders(list(evil)).keys() == {"l2", "diffloss"}


def test_a_zip_far_larger_than_a_restorer_is_refused_before_unpacking(world, tmp_path, monkeypatch):
    monkeypatch.setattr(model_upload, "MAX_UNPACKED_BYTES", 1000)
    with pytest.raises(gr.Error, match="more than the 0 MB a studio restorer pair needs"):
        model_upload.add_restorers(str(_zip(tmp_path / "big.zip", _pair(tmp_path))), world.registry)
    assert _runs(world) == []


def test_no_zip_asks_for_one(world):
    with pytest.raises(gr.Error, match="Choose a zip first"):
        model_upload.add_restorers(None, world.registry)


def test_the_zip_the_train_tab_writes_is_one_this_accepts(world, tmp_path):
    from diffloss.pair import zip_models as _zip_models

    run = tmp_path / "runs-elsewhere" / "studio-noise-x"
    for member, file in _pair(tmp_path).items():
        (run / member.split("/")[0] / "model").mkdir(parents=True, exist_ok=True)
        shutil.copy(file, run / member.split("/")[0] / "model" / Path(member).name)
    archive = _zip_models(run)
    message, task = model_upload.add_restorers(str(archive), Registry(world.root / "pretrained", world.root / "runs"))
    assert task == "noise" and "run upload-studio-noise-x-" in message


def test_on_a_hosted_studio_an_uploaded_pair_is_its_uploaders_alone(world, tmp_path, hosted):
    """The zip's run is claimed for the visitor of the gradio event that uploaded it: another visitor's lists,
    pickers and resume never show it."""
    from types import SimpleNamespace

    from gradio.context import LocalContext

    from studio import visitors

    alice, bob = SimpleNamespace(session_hash="alice-session"), SimpleNamespace(session_hash="bob-session")
    token = LocalContext.request.set(alice)
    try:
        model_upload.add_restorers(str(_zip(tmp_path / "mine.zip", _pair(tmp_path))), world.registry)
    finally:
        LocalContext.request.reset(token)
    (run,) = _runs(world)
    assert visitors.owner_of(run) == visitors.visitor_key(alice)
    seen = {who: [e.label for e in world.registry.restorers("noise", visible=visitors.run_filter(req))
                  if e.source != "shipped"] for who, req in (("alice", alice), ("bob", bob))}
    assert len(seen["alice"]) == 2 and all("upload-mine" in label for label in seen["alice"])
    assert seen["bob"] == []


# ------------------------------------------------------------------------------- crafted configs (issue 25)
def _with_config(tmp_path: Path, config: bytes | dict, name: str = "crafted.zip") -> Path:
    """A real l2 model folder whose config.json is replaced by ``config``."""
    files = {k: v for k, v in _pair(tmp_path / "made-l2").items() if k.startswith("l2/")}
    data = config if isinstance(config, bytes) else json.dumps(config).encode()
    return _zip(tmp_path / name, {**files, "l2/config.json": data})


@pytest.mark.parametrize("change, reason", [
    ({"task": ["noise"]}, "its task is \\['noise'\\]; one of"),
    ({"task": {"noise": 1}}, "its task is \\{'noise': 1\\}; one of"),
    ({"task": "denoise"}, "its task is 'denoise'; one of"),
    ({"width": "32"}, "its width is '32'; a studio restorer has a whole number from 2 to"),
    ({"width": True}, "its width is True"),
    ({"width": 32.5}, "its width is 32.5"),
    ({"width": 10**30}, "its width is 1000000000000000000000000000000"),
    ({"in_channels": 4}, "its in_channels is 4; .* from 3 to 3"),
    ({"out_channels": None}, "its out_channels is None"),
    ({"enc_blocks": [0, 1, "2"]}, "its enc_blocks is \\[0, 1, '2'\\]"),
    ({"enc_blocks": [[0]] * 3}, "its enc_blocks is"),
    ({"dec_blocks": [1, 1]}, "need one entry per level"),
    ({"middle_blocks": -1}, "its middle_blocks is -1"),
    ({"kind": "prior"}, "describes a 'prior' model, not a restorer"),
    ({"extra": 1}, "has fields no restorer config has: 'extra'"),
    ({"width": 64, "enc_blocks": [8, 8, 8], "dec_blocks": [8, 8, 8], "middle_blocks": 8},
     "26.1 M parameters; the studio's have under 2 M"),
])
def test_every_config_field_is_checked_for_type_and_range_and_nothing_is_left(world, tmp_path, change, reason):
    """Issue 25, High 1: ``"task": ["noise"]`` was a TypeError that left an ownerless run folder behind."""
    archive = _with_config(tmp_path, {**STUDIO_CONFIG, **change})
    with pytest.raises(gr.Error, match=f"Cannot add restorers from crafted.zip: .*{reason}") as caught:
        model_upload.add_restorers(str(archive), world.registry)
    assert "\n" not in caught.value.message and len(caught.value.message) < 400
    assert _runs(world) == []


@pytest.mark.parametrize("config, reason", [
    (b"[" * 200_000 + b"]" * 200_000, "l2/config.json unpacks to more than 0 MB"),  # refused while it streams
    (b"[" * 2000 + b"]" * 2000, "nested 2000 levels deep, more than the 8 accepted"),
    (b'{"kind": "restorer", "task": "noise",', "l2/config.json is not valid JSON"),
    (b"[1, 2]", "l2/config.json holds a JSON list, not an object"),
    (b"\xff\xfe{}", "l2/config.json is not UTF-8 text"),
])
def test_a_config_too_deep_too_large_or_not_an_object_is_one_line_and_leaves_nothing(world, tmp_path, config, reason):
    with pytest.raises(gr.Error, match=f"Cannot add restorers from crafted.zip: .*{reason}") as caught:
        model_upload.add_restorers(str(_with_config(tmp_path, config)), world.registry)
    assert "\n" not in caught.value.message and "Recursion" not in caught.value.message
    assert _runs(world) == []


def test_a_card_that_is_not_a_small_json_object_is_refused(world, tmp_path):
    files = {k: v for k, v in _pair(tmp_path).items() if k.startswith("l2/")}
    for card, reason in ((b"[" * 50 + b"]" * 50, "card.json is nested 50 levels deep"),
                         (b'"a string"', "card.json holds a JSON str, not an object"),
                         (b"{" + b" " * 70_000 + b"}", "card.json unpacks to more than")):
        with pytest.raises(gr.Error, match=reason):
            model_upload.add_restorers(str(_zip(tmp_path / "c.zip", {**files, "l2/card.json": card})), world.registry)
    assert _runs(world) == []


def test_weights_larger_than_their_config_needs_are_refused_while_they_stream(world, tmp_path):
    """Issue 25, Medium 4: a zip may hold at most the bytes its (checked) config's parameters need."""
    files = {k: v for k, v in _pair(tmp_path).items() if k.startswith("l2/")}
    small = {**STUDIO_CONFIG, "width": 8}  # the pair's real width: ~0.1 M parameters
    padded = files["l2/model.safetensors"].read_bytes() + b"\0" * (8 * 2**20)  # compresses to a few KB
    archive = tmp_path / "padded.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("l2/config.json", json.dumps(small))
        z.writestr("l2/model.safetensors", padded)
    assert archive.stat().st_size < 2**20  # a zip under 1 MB that would write 9 MB
    with pytest.raises(gr.Error, match="l2/model.safetensors unpacks to more than"):
        model_upload.add_restorers(str(archive), world.registry)
    assert _runs(world) == []


def test_a_zip_of_many_entries_is_refused_from_its_end_record(world, tmp_path):
    """Issue 25, Low 11: 300,000 empty entries took 8.8 s to open; the count is read before opening."""
    path = tmp_path / "many.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for i in range(3000):
            archive.writestr(f"e{i}", b"")
    with pytest.raises(gr.Error, match="it holds 3000 files; a restorer zip holds a few \\(at most 64\\)"):
        model_upload.add_restorers(str(path), world.registry)
    assert _runs(world) == []


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), RuntimeError("a bug"),
                                     RecursionError("maximum recursion depth exceeded"), KeyError("x")])
def test_any_failure_after_the_first_byte_removes_the_run_and_says_why_in_one_line(world, tmp_path, monkeypatch,
                                                                                  failure):
    def broken(folder):
        assert (Path(folder) / "config.json").is_file()  # the folder was written: the failure comes after
        raise failure

    monkeypatch.setattr(world.registry, "load_restorer", broken)
    with pytest.raises(gr.Error, match="Cannot add restorers from pair.zip: ") as caught:
        model_upload.add_restorers(str(_zip(tmp_path / "pair.zip", _pair(tmp_path))), world.registry)
    assert "\n" not in caught.value.message and str(tmp_path) not in caught.value.message
    assert _runs(world) == []


def test_a_hosted_upload_belongs_to_its_uploader_from_its_first_byte(world, tmp_path, hosted, monkeypatch):
    """Whatever an upload writes is counted in the uploader's cap while it is written (then removed if refused)."""
    from types import SimpleNamespace

    from gradio.context import LocalContext

    from studio import visitors

    alice = SimpleNamespace(session_hash="alice-session")
    owners = []
    real_unpack = model_upload.unpack

    def watched(zip_path, run_dir):
        owners.append(visitors.owner_of(run_dir))
        return real_unpack(zip_path, run_dir)

    monkeypatch.setattr(model_upload, "unpack", watched)
    token = LocalContext.request.set(alice)
    try:
        model_upload.add_restorers(str(_zip(tmp_path / "mine.zip", _pair(tmp_path))), world.registry)
    finally:
        LocalContext.request.reset(token)
    assert owners == [visitors.visitor_key(alice)]


def test_the_studios_own_restorers_fit_the_upload_limits(world):
    """The caps are the sizes the studio's restorers need: every task's fresh restorer passes check_config."""
    from diffloss import degrade
    from diffloss.train_config import new_restorer_config

    for task in degrade.TASKS:
        config = json.dumps({"kind": "restorer", **new_restorer_config(task).to_dict()}).encode()
        _, parameters = model_upload.check_config(config, "config.json")
        assert 1_000_000 < parameters <= model_upload.MAX_RESTORER_PARAMS


def test_a_zip64_entry_count_is_reported_as_a_lower_bound(tmp_path):
    """Over 65,535 members a zip's end record says 0xFFFF (the real count is in its zip64 record)."""
    from diffloss.safe_zip import entry_count

    path = tmp_path / "many.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for i in range(70_000):
            archive.writestr(f"e{i}", b"")
    assert entry_count(path) == 0xFFFF
    with pytest.raises(gr.Error, match="it holds at least 65535 files"):
        model_upload.add_restorers(str(path), Registry(tmp_path / "p", tmp_path / "runs"))
