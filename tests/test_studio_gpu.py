"""Spaces: handlers are wrapped in spaces.GPU with an explicit duration only where the package exists."""

import sys
import types

from studio import gpu


def test_without_spaces_functions_run_unchanged(monkeypatch):
    monkeypatch.setitem(sys.modules, "spaces", None)  # makes the import fail like a missing package
    fn = lambda x: x + 1  # noqa: E731
    assert gpu.on_gpu("compare")(fn) is fn


def test_with_spaces_each_handler_gets_its_duration(monkeypatch):
    calls = []

    def GPU(duration):
        def wrap(fn):
            calls.append(duration)
            return lambda *a, **k: ("on gpu", fn(*a, **k))
        return wrap

    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=GPU))
    wrapped = gpu.on_gpu("train")(lambda x: x * 2)
    assert wrapped(3) == ("on gpu", 6) and calls == [gpu.DURATIONS["train"]]
