"""The Inspect memo: a move of one control re-runs only what it changed, and a changed file is never served stale."""

from __future__ import annotations

import re
import threading
import time

import pytest
import torch

from diffloss.images import save_image
from studio import inspect_tab, restorers
from studio.memo import Memo, file_stamp
from tests.studio_helpers import make_world


def test_memo_keeps_the_most_recently_used_and_forgets_errors():
    memo: Memo[int] = Memo(2)
    made = []
    make = lambda v: (lambda: made.append(v) or v)  # noqa: E731
    assert memo.get("a", make(1)) == 1 and memo.get("b", make(2)) == 2
    assert memo.get("a", make(99)) == 1  # a hit: not made again, and now the most recent
    assert memo.get("c", make(3)) == 3  # evicts "b", the least recently used
    assert memo.get("b", make(4)) == 4 and len(memo) == 2
    assert made == [1, 2, 3, 4] and (memo.hits, memo.misses) == (1, 4)
    with pytest.raises(RuntimeError, match="boom"):
        memo.get("d", lambda: (_ for _ in ()).throw(RuntimeError("boom")))
    assert memo.get("d", make(5)) == 5  # the failure was not remembered
    with pytest.raises(ValueError, match="at least one"):
        Memo(0)


def test_memo_is_safe_under_threads():
    memo: Memo[int] = Memo(4)
    errors = []

    def work(i: int) -> None:
        try:
            for j in range(200):
                assert memo.get((i + j) % 7, lambda k=(i + j) % 7: k) == (i + j) % 7
        except Exception as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors and len(memo) <= 4


def test_file_stamp_changes_when_a_file_is_replaced(tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(b"one")
    first = file_stamp(path)
    time.sleep(0.01)
    path.write_bytes(b"other")
    assert file_stamp(path) != first
    assert file_stamp(tmp_path / "missing.png")[1:] == (-1, -1) and file_stamp(None) is None


@pytest.fixture
def counted(tmp_path, monkeypatch):
    """A tiny world with fresh memos, counting prior forwards and restorer runs."""
    world = make_world(tmp_path)
    monkeypatch.setattr(inspect_tab, "CASES", Memo(8))
    monkeypatch.setattr(inspect_tab, "PASSES", Memo(16))
    prior = world.registry.load_prior("")
    counts = {"forwards": 0, "restorer": 0}
    predict, run_restorer = prior.predict, restorers.run_restorer

    def counting_predict(x_t, t):
        counts["forwards"] += 1
        return predict(x_t, t)

    def counting_restorer(model, net_input):
        counts["restorer"] += 1
        return run_restorer(model, net_input)

    monkeypatch.setattr(prior, "predict", counting_predict)
    monkeypatch.setattr(inspect_tab, "run_restorer", counting_restorer)
    return world, counts


def _shares(values: str) -> dict[str, float]:
    line = next(x for x in values.splitlines() if x.startswith("- share of the gradient"))
    return {k: float(v) for k, v in re.findall(r"(fidelity|nat|sem) ([\d.]+)%", line)}


def test_new_weights_re_run_nothing_and_new_t_re_runs_only_the_prior(counted):
    world, counts = counted
    _, dl = world.labels()

    def inspect(t=40, gamma=0.05, lam=0.1, bug=False):
        return inspect_tab.inspect(str(world.photo), "noise", 0, dl, inspect_tab.PAIRS[0], t, 1, "", detach_prior=bug, gamma=gamma,
                         lam=lam, side=32, registry=world.registry)

    first = inspect()
    # both pairs (restored vs ground truth, degraded vs ground truth) go through the prior: their maps share a scale
    assert counts == {"forwards": 4, "restorer": 1}
    heavier = inspect(gamma=0.5)
    assert counts == {"forwards": 4, "restorer": 1}  # weights only: nothing ran again
    assert _shares(heavier.values)["nat"] > _shares(first.values)["nat"]
    assert "gamma 0.5," in heavier.values
    inspect(t=41)
    assert counts == {"forwards": 8, "restorer": 1}  # a new t: the prior again, not the restorer
    assert "Gradient norm **0**" in inspect(bug=True).values  # the no_grad mistake is a real pass of its own
    assert counts == {"forwards": 12, "restorer": 1}
    assert inspect().values == first.values  # back to the first setting: remembered, and the same numbers
    assert counts == {"forwards": 12, "restorer": 1}


def test_a_replaced_photo_is_inspected_anew(counted):
    world, counts = counted
    _, dl = world.labels()
    before = inspect_tab.inspect(str(world.photo), "noise", 0, dl, inspect_tab.PAIRS[0], 40, 1, "", side=32, registry=world.registry)
    time.sleep(0.01)
    save_image(torch.zeros(3, 48, 64), world.photo)  # same name, other pixels
    after = inspect_tab.inspect(str(world.photo), "noise", 0, dl, inspect_tab.PAIRS[0], 40, 1, "", side=32, registry=world.registry)
    assert counts == {"forwards": 8, "restorer": 2}  # two pairs through the prior per photo
    assert before.values != after.values
