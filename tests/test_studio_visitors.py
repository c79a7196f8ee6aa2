"""A hosted studio's runs belong to the browser session that made them, and runs/ is bounded: another visitor cannot
list, stop, resume, pick or download a run; the oldest runs go first when a visitor or runs/ is over its caps; a
finished hosted run keeps its models and zip, not its checkpoints and photos. On one's own machine nothing changes.
"""

from __future__ import annotations

import os
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pytest

from diffloss import pair
from studio import hosting, restorers, run_budget, train_tab, visitors
from studio.train_settings import TrainSettings
from tests.studio_helpers import make_world

ALICE, BOB = SimpleNamespace(session_hash="alice-session"), SimpleNamespace(session_hash="bob-session")


@pytest.fixture
def world(tmp_path):
    return make_world(tmp_path)


def _train(world, request, steps=2, **kw):
    """A tiny pair trained to its end (or its stop) for ``request``'s visitor; returns the last (status, _, zip)."""
    args = dict(task="noise", steps=steps, batch=1, crop=32, lr=1e-3, gamma=0.05, lam=0.1, t_min=0, t_max=99, seed=0,
                prior_source="", clean_folder="", start=restorers.FRESH_START, width=8)
    args.update(kw)
    return list(train_tab.train_pair(TrainSettings(**args), request, registry=world.registry))[-1]


def _stopped_run(world, name, request):
    """A run of ``request``'s visitor stopped after its first steps (Stop pressed by that visitor)."""
    clean = "" if hosting.is_hosted() else str(world.clean)  # hosted: the shipped examples
    job = train_tab.train_pair(TrainSettings("noise", 100, 1, 32, 1e-3, 0.05, 0.1, 0, 99, 0, "", clean, 0,
                                             restorers.FRESH_START, None, False, width=8, name=name), request,
                               registry=world.registry)
    next(job)
    next(job)
    assert train_tab.request_stop(request).startswith("Stopping")
    status = list(job)[-1][0]
    assert status.startswith("**Stopped**")
    return world.registry.runs / name


ZIPPED = [f"{arm}/{name}" for arm in ("diffloss", "l2") for name in ("card.json", "config.json", "model.safetensors")]


def _zipped_files(archive) -> list[str]:
    return sorted(n for n in zipfile.ZipFile(archive).namelist() if not n.endswith("/"))


# ------------------------------------------------------------------------------------------------ ownership
def test_a_hosted_run_is_listed_resumed_and_picked_by_its_owner_only(world, hosted):
    run = _stopped_run(world, "alices", ALICE)
    assert visitors.owner_of(run) == visitors.visitor_key(ALICE) and "alice" not in (run / visitors.OWNER_FILE).read_text()
    assert [name for _, name in train_tab.stopped_runs(world.registry, ALICE)] == ["alices"]
    assert train_tab.stopped_runs(world.registry, BOB) == [] and train_tab.stopped_runs(world.registry) == []
    with pytest.raises(gr.Error, match="No Train run named 'alices'"):  # answered as missing: not even confirmed
        next(train_tab.resume_pair("alices", BOB, registry=world.registry))
    *_, (status, _, archive, *_) = train_tab.resume_pair("alices", ALICE, registry=world.registry)
    assert status.startswith("**Done**") and _zipped_files(archive) == ZIPPED
    shipped = restorers.restorer_choices("noise", world.registry, BOB)[0]
    assert shipped == ["shipped noise l2", "shipped noise diffloss"]
    labels, l2, dl = restorers.trained_pair_choices("noise", world.registry, ALICE)
    assert labels == shipped + ["run alices l2", "run alices diffloss"] and (l2, dl) == ("run alices l2", "run alices diffloss")
    assert restorers.trained_pair_choices("noise", world.registry, BOB) == (shipped, *shipped)
    assert restorers.start_choices("noise", world.registry, BOB)[0] == [restorers.FRESH_START, *shipped]
    with pytest.raises(gr.Error, match="'run alices l2' is not a restorer"):  # Bob cannot pick it from Python either
        _train(world, BOB, start="run alices l2")
    assert "Trained runs" not in world.registry.status()  # no visitor in this call: no run is anyone's here


def test_only_the_owner_stops_a_hosted_run(world, hosted):
    job = train_tab.train_pair(TrainSettings("noise", 100, 1, 32, 1e-3, 0.05, 0.1, 0, 99, 0, "", "", 0,
                                             restorers.FRESH_START, None, False, width=8, name="busy"), ALICE,
                               registry=world.registry)
    next(job)
    next(job)
    assert train_tab.request_stop(BOB).startswith("No run of yours is going")
    assert train_tab.request_stop(None).startswith("No run of yours is going")
    next(job)  # still training
    assert not train_tab._STOP.is_set()
    assert train_tab.request_stop(ALICE).startswith("Stopping")
    assert list(job)[-1][0].startswith("**Stopped**")


def test_on_ones_own_machine_every_run_is_everyones(world, local):
    run = _stopped_run(world, "mine", ALICE)
    assert not (run / visitors.OWNER_FILE).exists()
    assert [name for _, name in train_tab.stopped_runs(world.registry, BOB)] == ["mine"]
    job = train_tab.resume_pair("mine", BOB, registry=world.registry)
    next(job)
    assert train_tab.request_stop(BOB).startswith("Stopping")  # anyone's Stop stops, as before
    assert list(job)[-1][0].startswith("**Stopped**")
    assert train_tab.train_caps() == train_tab.CPU_CAPS and train_tab.run_seconds() is None


# ------------------------------------------------------------------------------------------------ bounds
def _record(name, owner, age, size):
    return run_budget.RunRecord(Path(name), owner, 1000.0 - age, size)


def test_eviction_takes_the_visitors_oldest_runs_then_anyones_and_never_one_in_use():
    budget = run_budget.RunBudget(total_bytes=100, total_runs=5, visitor_bytes=40, visitor_runs=3)
    records = [_record("a-old", "a", 50, 10), _record("a-mid", "a", 40, 10), _record("a-new", "a", 10, 10),
               _record("b-old", "b", 60, 10), _record("b-new", "b", 5, 10)]
    # a holds 3 runs (the cap): its oldest goes; runs/ then holds 4 < 5 runs and 40 bytes: nothing else goes
    assert run_budget.to_evict(records, budget, "a", set()) == [Path("a-old")]
    # the oldest in use is skipped, the next oldest goes instead
    assert run_budget.to_evict(records, budget, "a", {Path("a-old")}) == [Path("a-mid")]
    # c has no run: runs/ is full (5 runs), so anyone's oldest goes: b's
    assert run_budget.to_evict(records, budget, "c", set()) == [Path("b-old")]
    # over the bytes: a's 3 runs weigh 60 > 40, so two go (then 20 bytes in 1 run); total is then fine
    heavy = [_record("a1", "a", 30, 20), _record("a2", "a", 20, 20), _record("a3", "a", 10, 20)]
    assert run_budget.to_evict(heavy, budget, "a", set()) == [Path("a1"), Path("a2")]
    # over the total bytes: the oldest of everyone, whoever owns them
    big = [_record("x", None, 30, 60), _record("y", "b", 20, 50), _record("z", "b", 10, 1)]
    assert run_budget.to_evict(big, budget, "c", set()) == [Path("x")]
    # nothing can go but the run in use: it stays, even over the caps
    assert run_budget.to_evict([_record("only", "a", 1, 500)], budget, "a", {Path("only")}) == []


def test_another_visitors_run_younger_than_an_hour_is_never_evicted_for_a_newcomer():
    """Issue 25, High 1: 90 uploads from fresh sessions filled runs/ and the oldest-first eviction took a trained run."""
    budget = run_budget.RunBudget(total_bytes=100, total_runs=3, visitor_bytes=100, visitor_runs=3)
    now = 10_000.0
    young = [_record("a-run", "a", 0, 1), _record("b-run", "b", 0, 1), _record("c-run", "c", 0, 1)]
    young = [run_budget.RunRecord(r.path, r.owner, now - age, r.size) for r, age in zip(young, (3000, 600, 60))]
    plan = run_budget.plan_room(young, budget, "newcomer", set(), now=now)
    assert plan.evict == [] and plan.retry_in == pytest.approx(600)  # a-run turns one hour old in 10 minutes
    # the newcomer's own runs, and runs owned by nobody, go by age alone; an hour-old visitor's run goes too
    own = young[:2] + [run_budget.RunRecord(Path("mine"), "newcomer", now - 10, 1)]
    assert run_budget.plan_room(own, budget, "newcomer", set(), now=now) == run_budget.RoomPlan([Path("mine")])
    nobody = young[:2] + [run_budget.RunRecord(Path("cli"), None, now - 10, 1)]
    assert run_budget.to_evict(nobody, budget, "newcomer", set(), now=now) == [Path("cli")]
    old = [run_budget.RunRecord(Path("a-old"), "a", now - 3601, 1)] + young[1:]
    assert run_budget.to_evict(old, budget, "newcomer", set(), now=now) == [Path("a-old")]


def test_a_full_store_of_young_runs_refuses_the_newcomer_with_when_to_retry(tmp_path, hosted, monkeypatch):
    runs = tmp_path / "runs"
    for name, owner in (("alices", "a"), ("bobs", "b")):
        (runs / name).mkdir(parents=True)
        (runs / name / visitors.OWNER_FILE).write_text(owner)
        (runs / name / "model.safetensors").write_bytes(b"w")
    os.utime(runs / "alices", (time.time() - 3000, time.time() - 3000))
    monkeypatch.setattr(run_budget, "BUDGET", run_budget.RunBudget(total_runs=2))
    with pytest.raises(gr.Error, match="run store is full of other visitors' recent runs .* try again in 10 minutes"):
        run_budget.room_for_visitor(runs, SimpleNamespace(session_hash="carol-session"))
    assert sorted(p.name for p in runs.iterdir()) == ["alices", "bobs"]


def test_make_room_removes_the_oldest_runs_from_disk_and_keeps_the_one_in_use(tmp_path):
    runs = tmp_path / "runs"
    for i, name in enumerate(["r0", "r1", "r2"]):
        (runs / name).mkdir(parents=True)
        (runs / name / "w.bin").write_bytes(b"x" * 100)
        (runs / name / visitors.OWNER_FILE).write_text("k")
        os.utime(runs / name, (1000 + i, 1000 + i))
    budget = run_budget.RunBudget(total_bytes=10**6, total_runs=10, visitor_bytes=10**6, visitor_runs=2)
    assert run_budget.folder_bytes(runs / "r0") == 101
    with run_budget.in_use(runs / "r0"):
        assert run_budget.make_room(runs, "k", budget) == ["r1", "r2"]  # r0 is in use: the next two go
    assert sorted(p.name for p in runs.iterdir()) == ["r0"]


def test_a_visitor_over_the_cap_loses_their_own_oldest_run_and_is_told(world, hosted, monkeypatch):
    monkeypatch.setattr(run_budget, "BUDGET", run_budget.RunBudget(visitor_runs=1))
    _train(world, BOB, name="bobs")
    status = _train(world, ALICE, name="first")[0]
    assert "removed" not in status
    time.sleep(0.01)
    status = _train(world, ALICE, name="second")[0]
    assert "your older run `first` removed to make room (at most 1 runs" in status
    assert sorted(p.name for p in world.registry.runs.iterdir()) == ["bobs", "second"]  # Bob's is not Alice's cap


def test_a_finished_hosted_run_keeps_its_models_and_zip_not_its_checkpoints_or_photos(world, hosted):
    status, _, archive, *_ = _train(world, ALICE, name="done")
    run = world.registry.runs / "done"
    assert status.startswith("**Done**") and Path(archive).is_file()
    assert _zipped_files(archive) == ZIPPED
    for arm in ("l2", "diffloss"):
        assert (run / arm / "model" / "model.safetensors").is_file()
        assert not (run / arm / "checkpoint").exists()
    assert not (run / "photos").exists()  # the visitor's photos (here the shipped examples, copied) are not kept


def test_a_finished_local_run_keeps_its_checkpoints_and_photos(world, local):
    _train(world, None, name="kept", clean_folder=None, photos=[str(p) for p in world.clean.glob("*.png")])
    run = world.registry.runs / "kept"
    assert (run / "l2" / "checkpoint" / "last.safetensors").is_file() and (run / "photos").is_dir()


def test_drop_training_state_spares_an_unfinished_arm(tmp_path):
    run = tmp_path / "run"
    for arm in ("l2", "diffloss"):
        (run / arm / "checkpoint").mkdir(parents=True)
        (run / arm / "checkpoint" / "last.safetensors").write_bytes(b"state")
    (run / "l2" / "model").mkdir()
    (run / "photos").mkdir()
    assert pair.drop_training_state(run) == [run / "l2" / "checkpoint"]
    assert (run / "diffloss" / "checkpoint" / "last.safetensors").is_file() and (run / "photos").is_dir()
    (run / "diffloss" / "model").mkdir()
    assert pair.drop_training_state(run) == [run / "diffloss" / "checkpoint", run / "photos"]


def test_a_hosted_cpu_run_is_capped_in_steps_and_in_time(world, hosted, monkeypatch):
    import torch

    if torch.cuda.is_available():
        pytest.skip("the CPU caps apply on a CPU")
    assert train_tab.train_caps() == train_tab.HOSTED_CPU_CAPS
    assert train_tab.HOSTED_CPU_CAPS["steps"] < train_tab.CPU_CAPS["steps"]
    assert train_tab.run_seconds() == train_tab.HOSTED_RUN_SECONDS
    monkeypatch.setattr(train_tab, "HOSTED_RUN_SECONDS", 0.5)
    status = _train(world, ALICE, steps=100000, name="long")[0]
    assert f"steps 100000 capped at {train_tab.HOSTED_CPU_CAPS['steps']}" in status
    assert status.startswith("**Stopped**") and "stopped after 0.00833333 minutes, the most one run" in status
    assert [name for _, name in train_tab.stopped_runs(world.registry, ALICE)] == ["long"]  # resumable


# ------------------------------------------------------------------------------------------------ over HTTP
def _update_value(answer):
    """A dropdown's value as gradio_client returns an update (a dict) or a plain value."""
    return answer.get("value") if isinstance(answer, dict) else answer


def test_over_http_a_second_visitor_cannot_see_stop_resume_pick_or_download_the_firsts_run(tmp_path, monkeypatch):
    """Two browser sessions (two gradio_client clients) on a hosted studio: the gradio.Request injected into the
    Train tab's handlers (and read by the dropdown functions of app.py) tells them apart."""
    from gradio_client import Client

    from studio import upload
    from tests.studio_helpers import launched_studio

    monkeypatch.setattr(train_tab, "HOSTED_RUN_SECONDS", 600)
    monkeypatch.setitem(train_tab.HOSTED_CPU_CAPS, "steps", 2000)  # long enough to be stopped while it runs
    with launched_studio(tmp_path / "w", hosted=True) as (url, world):
        alice, bob = Client(url, verbose=False), Client(url, verbose=False)
        job = alice.submit("noise", 2000, 1, 32, 1e-3, 0.05, 0.1, 0, 99, 0, "", "", 0, restorers.FRESH_START, [],
                           api_name="/train")
        deadline = time.time() + 120
        while len(job.outputs()) < 2 and time.time() < deadline:
            time.sleep(0.2)
        assert bob.predict(api_name="/stop").startswith("No run of yours is going")
        assert not job.done()
        assert alice.predict(api_name="/stop").startswith("Stopping")
        assert job.result(timeout=120)[0].startswith("**Stopped**")
        (run,) = world.registry.runs.iterdir()
        stopped_label = train_tab.stopped_runs(world.registry, None)  # a Python call is nobody: sees none
        assert stopped_label == []
        # The resume list of each (filled on page load by app.py's _stopped_runs)
        alice_list, bob_list = (c.predict(api_name="/_stopped_runs") for c in (alice, bob))
        assert run.name in str(alice_list) and run.name not in str(bob_list)
        with pytest.raises(Exception, match=f"No Train run named '{run.name}'"):
            bob.predict(run.name, api_name="/resume")
        monkeypatch.setitem(train_tab.HOSTED_CPU_CAPS, "steps", 1)  # the resume ends where it stopped: a model
        status, _, archive, *_ = alice.predict(run.name, api_name="/resume")
        assert status.startswith("**Done**")
        assert _zipped_files(archive) == ZIPPED  # Alice downloads her models
        with pytest.raises(Exception, match=f"No Train run named '{run.name}'"):  # no second way to its zip
            bob.predict(run.name, api_name="/resume")
        # Compare's dropdowns after a run (studio.widgets.trained_dropdowns): Alice's run preselected, Bob's the shipped
        l2_run, dl_run = f"run {run.name} l2", f"run {run.name} diffloss"
        assert [_update_value(v) for v in alice.predict("noise", api_name="/trained_dropdowns")] == [l2_run, dl_run]
        assert [_update_value(v) for v in bob.predict("noise", api_name="/trained_dropdowns")] == list(world.labels())
        assert "Trained runs" in alice.predict(api_name="/status") and "Trained runs" not in bob.predict(api_name="/status")
        photo = str(world.photo)
        from gradio_client import handle_file

        alice.predict(handle_file(photo), "noise", upload.MODES[0], 0, l2_run, dl_run, 0.5, 0.5, 32, api_name="/compare")
        # Refused by gradio (the run is not among Bob's choices) or, past it, by the handler (not Bob's run)
        refused = "is not (a restorer|in the list of choices)"
        with pytest.raises(Exception, match=refused):
            bob.predict(handle_file(photo), "noise", upload.MODES[0], 0, l2_run, dl_run, 0.5, 0.5, 32,
                        api_name="/compare")
        with pytest.raises(Exception, match=refused):
            bob.predict("noise", 32, 0, 99, "", 0.05, 0.1, 0.2, 0.1, l2_run, api_name="/calibrate")


def test_over_http_a_second_visitors_run_waits_in_the_queue_and_sees_its_place(tmp_path, monkeypatch):
    """One training slot serves everyone on a hosted CPU Space: Bob's run is queued (not refused) while Alice's
    holds it, his job reports its place in the line (gradio's status tracker shows it as "queue: 1/1" over the
    Train tab's outputs), and it starts once Alice's run ends."""
    from gradio_client import Client
    from gradio_client.utils import Status

    from tests.studio_helpers import launched_studio

    monkeypatch.setattr(train_tab, "HOSTED_RUN_SECONDS", 600)
    monkeypatch.setitem(train_tab.HOSTED_CPU_CAPS, "steps", 2000)
    args = ("noise", 2000, 1, 32, 1e-3, 0.05, 0.1, 0, 99, 0, "", "", 0, restorers.FRESH_START, [])
    with launched_studio(tmp_path / "w", hosted=True) as (url, _world):
        alice, bob = Client(url, verbose=False), Client(url, verbose=False)
        first = alice.submit(*args, api_name="/train")
        deadline = time.time() + 120
        while len(first.outputs()) < 2 and time.time() < deadline:
            time.sleep(0.2)
        second = bob.submit(*args, api_name="/train")
        deadline = time.time() + 60
        while second.status().code != Status.IN_QUEUE and time.time() < deadline:
            time.sleep(0.2)
        waiting = second.status()
        assert waiting.code == Status.IN_QUEUE and waiting.rank == 0  # first in line, nobody ahead
        assert not second.outputs()  # nothing of Alice's reaches Bob while he waits
        assert alice.predict(api_name="/stop").startswith("Stopping")
        assert first.result(timeout=120)[0].startswith("**Stopped**")
        deadline = time.time() + 120
        while len(second.outputs()) < 2 and time.time() < deadline:  # the slot passes to Bob
            time.sleep(0.2)
        assert second.outputs(), "the queued run never started"
        assert bob.predict(api_name="/stop").startswith("Stopping")
        assert second.result(timeout=120)[0].startswith("**Stopped**")


def test_over_http_crafted_zips_from_fresh_sessions_leave_nothing_and_never_push_out_a_visitors_run(tmp_path,
                                                                                                   monkeypatch):
    """Issue 25, High 1, as the audit ran it: a visitor's uploaded pair, then crafted zips (``"task": ["noise"]``)
    from fresh sessions (each a new gradio_client), then good zips until runs/ is full: the crafted ones leave no
    folder, and the newcomer who finds the store full of young runs is refused with when to retry."""
    import json

    from gradio_client import Client, handle_file

    from tests.studio_helpers import launched_studio, zip_pair

    monkeypatch.setattr(run_budget, "BUDGET", run_budget.RunBudget(total_runs=3))
    with launched_studio(tmp_path / "w", hosted=True) as (url, world):
        good = zip_pair(world, tmp_path / "pair.zip")
        crafted = tmp_path / "crafted.zip"
        with zipfile.ZipFile(good) as src, zipfile.ZipFile(crafted, "w") as dst:
            for name in src.namelist():
                data = src.read(name)
                if name.endswith("config.json"):
                    data = json.dumps({**json.loads(data), "task": ["noise"]}).encode()
                dst.writestr(name, data)
        Client(url, verbose=False).predict(handle_file(str(good)), api_name="/add_restorers")
        (alices,) = world.registry.runs.iterdir()
        for _ in range(4):
            with pytest.raises(Exception, match="its task is \\['noise'\\]; one of"):
                Client(url, verbose=False).predict(handle_file(str(crafted)), api_name="/add_restorers")
        assert list(world.registry.runs.iterdir()) == [alices]
        for _ in range(2):
            Client(url, verbose=False).predict(handle_file(str(good)), api_name="/add_restorers")
        with pytest.raises(Exception, match="run store is full .* try again in 60 minutes"):
            Client(url, verbose=False).predict(handle_file(str(good)), api_name="/add_restorers")
        assert alices.is_dir() and len(list(world.registry.runs.iterdir())) == 3


def test_one_address_has_a_cap_over_all_its_sessions():
    """Issue 25, Medium 3/5: fresh sessions are free (a new tab, a new gradio_client), so the per-visitor cap alone
    let one address fill runs/; its sessions together now have ``address_runs``. Its young runs of other sessions
    are not removed for a newer one (a shared address may be several people): the newcomer waits."""
    now = 10_000.0
    budget = run_budget.RunBudget(total_runs=100, visitor_runs=5, address_runs=2)
    runs = [run_budget.RunRecord(Path("s1"), "s1", now - 1800, 1, "home"),
            run_budget.RunRecord(Path("s2"), "s2", now - 60, 1, "home"),
            run_budget.RunRecord(Path("x"), "x", now - 60, 1, "elsewhere")]
    plan = run_budget.plan_room(runs, budget, "s3", set(), now=now, address="home")
    assert plan.evict == [] and plan.full == "address" and plan.retry_in == pytest.approx(1800)
    assert run_budget.plan_room(runs, budget, "s3", set(), now=now, address="far").evict == []  # no cap reached
    older = [run_budget.RunRecord(Path("s1"), "s1", now - 4000, 1, "home")] + runs[1:]
    assert run_budget.to_evict(older, budget, "s3", set(), now=now, address="home") == [Path("s1")]
    message = str(run_budget.StoreFull(1800, "address", budget))
    assert message == ("Your address already holds 2 recent runs or 800 MB here (other tabs or sessions), kept for "
                       "an hour: try again in 30 minutes.")


def test_over_http_fresh_sessions_from_one_address_share_its_cap(tmp_path, monkeypatch):
    from gradio_client import Client, handle_file

    from tests.studio_helpers import launched_studio, zip_pair

    monkeypatch.setattr(run_budget, "BUDGET", run_budget.RunBudget(address_runs=2))
    with launched_studio(tmp_path / "w", hosted=True) as (url, world):
        good = handle_file(str(zip_pair(world, tmp_path / "pair.zip")))
        for _ in range(2):
            Client(url, verbose=False).predict(good, api_name="/add_restorers")
        with pytest.raises(Exception, match="Your address already holds 2 recent runs .* try again in 60 minutes"):
            Client(url, verbose=False).predict(good, api_name="/add_restorers")
        runs = list(world.registry.runs.iterdir())
        assert len(runs) == 2 and len({visitors.address_of(r) for r in runs}) == 1
        assert len({visitors.owner_of(r) for r in runs}) == 2  # two sessions, one address


def test_a_run_that_failed_before_its_first_save_never_counts_in_anyones_cap(tmp_path, hosted):
    """Issue 25, Low 11: a failed Train start left a folder (photos, a log, no weights) that counted in its owner's
    cap and the store's. A visitor's run holding no weights and not in use is removed at the next make_room,
    whoever made it and however young; one in use (still starting) and one owned by nobody (a command-line run
    writing its first checkpoint) are left alone."""
    runs = tmp_path / "runs"
    for name, owner, weights in (("failed", "a", False), ("starting", "b", False), ("cli", None, False),
                                 ("trained", "c", True)):
        (runs / name / "l2").mkdir(parents=True)
        (runs / name / "log.txt").write_text("x")
        if owner:
            (runs / name / visitors.OWNER_FILE).write_text(owner)
        if weights:
            (runs / name / "l2" / "model.safetensors").write_bytes(b"w")
    records = {r.path.name: r for r in run_budget.scan(runs)}
    assert records["failed"].weightless and not records["trained"].weightless
    with run_budget.in_use(runs / "starting"):
        assert run_budget.make_room(runs, "newcomer", run_budget.RunBudget()) == ["failed"]
    assert sorted(p.name for p in runs.iterdir()) == ["cli", "starting", "trained"]
    # a full store of young runs still refuses the newcomer, but the weightless run goes all the same
    (runs / "starting" / "l2" / "last.safetensors").write_bytes(b"w")  # it saved its first checkpoint since
    (runs / "failed2").mkdir()
    (runs / "failed2" / visitors.OWNER_FILE).write_text("d")
    with pytest.raises(run_budget.StoreFull):
        run_budget.make_room(runs, "newcomer", run_budget.RunBudget(total_runs=2))
    assert sorted(p.name for p in runs.iterdir()) == ["cli", "starting", "trained"]


def test_an_address_that_just_trained_waits_for_the_others_already_waiting():
    from studio import turns

    last = {"home": 1000.0}
    assert turns.refusal("home", {"far"}, 1000.0 + 60, last).startswith("Your address had the training slot")
    assert turns.refusal("home", {"home"}, 1060.0, last) is None  # only its own tabs wait: no one to be fair to
    assert turns.refusal("home", set(), 1060.0, last) is None
    assert turns.refusal("home", {"far"}, 1000.0 + turns.TURN_GAP_S, last) is None  # not in a row any more
    assert turns.refusal("new", {"far"}, 1060.0, last) is None and turns.refusal(None, {"far"}, 1060.0, last) is None


def test_over_http_several_tabs_of_one_address_do_not_take_turns_in_a_row_while_another_waits(tmp_path,
                                                                                             monkeypatch):
    """Issue 25, Medium 5: one person with several tabs got consecutive 8-minute turns. On a Space (the address
    is the last X-Forwarded-For entry, the one the Hub's proxy adds), home's second tab, queued before far's run,
    is refused when its turn comes right after home's first; far's run then trains."""
    from gradio_client import Client

    from tests.studio_helpers import launched_studio

    monkeypatch.setenv("SPACE_ID", "someone/studio")
    monkeypatch.setattr(train_tab, "HOSTED_RUN_SECONDS", 600)
    monkeypatch.setitem(train_tab.HOSTED_CPU_CAPS, "steps", 2000)
    args = ("noise", 2000, 1, 32, 1e-3, 0.05, 0.1, 0, 99, 0, "", "", 0, restorers.FRESH_START, [])

    def running(job, deadline_s=120):
        deadline = time.time() + deadline_s
        while len(job.outputs()) < 2 and time.time() < deadline:
            time.sleep(0.2)
        assert len(job.outputs()) >= 2

    with launched_studio(tmp_path / "w", hosted=True) as (url, _world):
        tab1, tab2 = (Client(url, verbose=False, headers={"X-Forwarded-For": "198.51.100.7"}) for _ in range(2))
        far = Client(url, verbose=False, headers={"X-Forwarded-For": "203.0.113.9"})
        first = tab1.submit(*args, api_name="/train")
        running(first)
        second = tab2.submit(*args, api_name="/train")
        time.sleep(1.0)
        theirs = far.submit(*args, api_name="/train")
        time.sleep(1.0)
        assert tab1.predict(api_name="/stop").startswith("Stopping")
        assert first.result(timeout=120)[0].startswith("**Stopped**")
        with pytest.raises(Exception, match="Your address had the training slot until a moment ago"):
            second.result(timeout=120)
        running(theirs)
        assert far.predict(api_name="/stop").startswith("Stopping")
        assert theirs.result(timeout=120)[0].startswith("**Stopped**")
