"""The Degradations tab's work: what each task does to a clean photo, and what its restorer is given.

The photo goes through the same checks as Compare's (``upload.prepare_case``): a missing, unreadable or too small
file is refused with a message, a huge one is downscaled, and what loading changed is said.
"""

from __future__ import annotations

import numpy as np

from diffloss import degrade
from diffloss.images import to_uint8_numpy
from studio.upload import MODES, prepare_case


def preview_degradation(image_path: str | None, task: str, seed: float) -> tuple[np.ndarray, np.ndarray, str]:
    """Degrade an uploaded photo with a task's seeded degradation; return (clean crop, degraded, note)."""
    case = prepare_case(image_path, task, MODES[0], int(seed or 0))
    spec = degrade.get_task(task)
    shown = case.shown
    note = (f"**{task}**: {spec.description} Restorer input: {spec.in_channels} channels, "
            f"{shown.shape[-1]}x{shown.shape[-2]} px.")
    return to_uint8_numpy(case.gt), to_uint8_numpy(shown), "\n".join([note] + [f"- {n}" for n in case.notes])
