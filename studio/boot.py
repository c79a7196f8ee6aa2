"""How ``python app.py`` sets up its own process: every tweak of the process (not of the maths) in one place.

``before_imports()`` runs first, before torch and gradio are imported; ``quiet_user_errors()`` right after gradio is
imported; ``served_message()`` is what the console says once the server is up (gradio's own launch lines are turned
off: they advise ``share=True``, which a user of ``app.py`` types as ``--share``); ``stop_on_signals()`` once the
server is up; ``exit_without_teardown()`` last. None of them changes what the studio computes. This module imports
neither torch nor gradio at its top, so importing it is what makes the first one possible.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
from types import ModuleType

from diffloss import signals

GRADIO_META = "gradio.component_meta"
KEEP_STUBS_ENV = "DIFFLOSS_GRADIO_STUBS"  # "1": let gradio rewrite its stubs as usual (e.g. for an editor)


def before_imports() -> None:
    """The tweaks that must precede ``import torch`` and ``import gradio``."""
    # Idle OpenMP threads sleep instead of spinning: on a small shared CPU spinning made every torch call slower.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # gradio rewrites its components' .pyi stubs on every import, a large part of its import time (bench/).
    skip_stub_rewrite()


def quiet_user_errors() -> bool:
    """A ``gr.Error`` (a visitor's mistake, said in the page) prints no traceback on the console unless it asks to.

    Why: gradio's ``Error`` defaults to ``print_exception=True``, so every refused upload or bad number printed a
    traceback, burying real failures among a user's typos. Other exceptions (bugs) still print theirs. Returns True
    when it acted (False: already done). Call after ``import gradio``.
    """
    import functools

    import gradio.exceptions as exceptions

    init = exceptions.Error.__init__
    if getattr(init, "_quiet_by_default", False):
        return False

    @functools.wraps(init)
    def quiet_init(self, *args, print_exception: bool = False, **kwargs) -> None:
        init(self, *args, print_exception=print_exception, **kwargs)

    quiet_init._quiet_by_default = True  # type: ignore[attr-defined]
    exceptions.Error.__init__ = quiet_init  # type: ignore[method-assign]
    return True


def served_message(local_url: str, shared: bool) -> str:
    """The console's lines once the app serves: where, and how to share it as this app spells it (``--share``)."""
    lines = [f"* Running on local URL:  {local_url}"]
    if not shared:
        lines.append("* To create a temporary public gradio.live link, start it with `python app.py --share`.")
    return "\n".join(lines)


def stop_on_signals() -> None:
    """SIGTERM (a Space restart) and a SIGINT a background shell ignored end the app like Ctrl-C, with its saves."""
    signals.stop_on_signals()


def exit_without_teardown() -> None:
    """End the process once ``main()`` is done (Ctrl-C; Train runs already saved), skipping the interpreter's teardown.

    Why: gradio's worker threads are daemons and may still be inside torch when a normal shutdown destroys torch's
    C++ state; that aborted the process ("terminate called without an active exception", exit -6) in a CI run.
    Everything worth keeping is on disk by now (checkpoints are written atomically and fsync'd).
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


# --- gradio imported without rewriting its type stubs ---------------------------------------------------------
# Every ``import gradio`` runs ``gradio.component_meta.create_or_modify_pyi`` once per component class: it reads the
# component's source, parses it and rewrites the ``.pyi`` stub beside it when it differs. The stubs serve editors'
# type checkers only (where site-packages is read-only gradio already skips the write). gradio has no switch for
# it, so a one-shot import hook replaces that function with a no-op right after ``gradio.component_meta`` runs and
# before any component class is made. A no-op when gradio is already imported or a version lacks the function.


def _no_stub_rewrite(*args: object, **kwargs: object) -> None:
    """Stands in for gradio's create_or_modify_pyi: the component class is made, no stub file is touched."""


class _SkipStubRewrite(importlib.abc.MetaPathFinder):
    """Finds ``gradio.component_meta`` with the normal finders and patches the module once it has run."""

    def find_spec(self, name: str, path=None, target=None) -> importlib.machinery.ModuleSpec | None:
        if name != GRADIO_META:
            return None
        sys.meta_path.remove(self)  # one shot: ask the real finders, and never be consulted again
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run(module)
            if callable(getattr(module, "create_or_modify_pyi", None)):
                module.create_or_modify_pyi = _no_stub_rewrite

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def skip_stub_rewrite() -> bool:
    """Install the hook before ``import gradio``; True when it will act (gradio not imported yet, not switched off)."""
    if os.environ.get(KEEP_STUBS_ENV) == "1" or GRADIO_META in sys.modules:
        return False
    if not any(isinstance(finder, _SkipStubRewrite) for finder in sys.meta_path):
        sys.meta_path.insert(0, _SkipStubRewrite())
    return True
