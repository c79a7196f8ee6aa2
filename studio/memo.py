"""A small thread-safe memo of the last few results, keyed explicitly by the caller.

Why: in the Inspect tab a user moves one control at a time (t, the noise seed, gamma, lambda) on the same image.
Remembering the last few cases (loaded, degraded and restored crops) and prior passes lets each move pay only
for what it changed: a new t re-runs the prior, new weights re-run nothing (see ``TermGradients.weighted``).
Values are shared between calls, so whoever gets one must treat it as read-only.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Generic, TypeVar

V = TypeVar("V")


class Memo(Generic[V]):
    """Least-recently-used memo of at most ``size`` values; ``make`` runs outside the lock (errors are not kept)."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"a memo needs room for at least one value, got size {size}")
        self.size = size
        self._values: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, make: Callable[[], V]) -> V:
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                self.hits += 1
                return self._values[key]
            self.misses += 1
        value = make()  # two threads asking for one new key may both make it: harmless, and no one waits
        with self._lock:
            self._values[key] = value
            self._values.move_to_end(key)
            while len(self._values) > self.size:
                self._values.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._values.clear()

    def __len__(self) -> int:
        return len(self._values)


def file_stamp(path: str | os.PathLike | None) -> tuple[str, int, int] | None:
    """(path, size, mtime in ns) for a memo key: a file replaced under the same name is a new key."""
    if path is None:
        return None
    try:
        st = Path(path).stat()
    except OSError:
        return (str(path), -1, -1)  # missing: the loader reports it; the key only has to differ from a real file's
    return (str(path), st.st_size, st.st_mtime_ns)
