"""Import gradio without rewriting its type stubs: a large part of what ``import gradio`` costs on a small CPU
(figure in bench/results/figures-from-comments.md).

Why: every ``import gradio`` runs ``gradio.component_meta.create_or_modify_pyi`` once per component class (81 of
them): it reads the component's source, parses it with ``ast`` and rewrites the ``.pyi`` stub beside it in
site-packages when it differs. The stubs serve editors' type checkers only; the app never reads them, and where
site-packages is read-only gradio already skips the write silently. gradio has no switch for it, so this module
installs a one-shot import hook that replaces that function with a no-op right after ``gradio.component_meta``
runs and before any component class is made. Nothing else in gradio changes.

Safe by construction: a no-op when gradio is already imported (too late) or when a gradio version lacks the
function; ``DIFFLOSS_GRADIO_STUBS=1`` keeps gradio's own behaviour (e.g. to regenerate stubs for an editor).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
from types import ModuleType

TARGET = "gradio.component_meta"
KEEP_ENV = "DIFFLOSS_GRADIO_STUBS"


def _no_stub_rewrite(*args: object, **kwargs: object) -> None:
    """Stands in for gradio's create_or_modify_pyi: the component class is made, no stub file is touched."""


class _SkipStubRewrite(importlib.abc.MetaPathFinder):
    """Finds ``gradio.component_meta`` with the normal finders and patches the module once it has run."""

    def find_spec(self, name: str, path=None, target=None) -> importlib.machinery.ModuleSpec | None:
        if name != TARGET:
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
    if os.environ.get(KEEP_ENV) == "1" or TARGET in sys.modules:
        return False
    if not any(isinstance(finder, _SkipStubRewrite) for finder in sys.meta_path):
        sys.meta_path.insert(0, _SkipStubRewrite())
    return True
