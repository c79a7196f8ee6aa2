"""Pictures with words in them, readable where the page shows them: at 1440x900 Compare's picture column is about
790 CSS px wide and Inspect's pictures, two to a row, about 390; a picture wider than its box is shown scaled down,
its baked-in labels with it. Labels are written large enough to show at >= 11 px (``LABEL_PX`` when the picture fits),
and a white band on top keeps gradio's buttons (over a picture's top right corner) off the picture itself.
"""

from __future__ import annotations

import numpy as np

COLUMN = 790  # Compare's picture column at 1440x900, CSS px (measured in chromium)
HALF = 390  # one of two pictures to a row (Inspect's views, Compare's family plot), CSS px
LABEL_PX = 13  # a label's size when its picture shows at its own size: 11 px and a margin
TOOLBAR_PX = 16  # the white band over a picture's labels, under gradio's download and full-screen buttons


def label_px(width: int, shown: int = COLUMN) -> int:
    """The size to write a picture's labels at so they show at >= ``LABEL_PX`` px * 11/13 once a picture ``width``
    px wide is scaled into a box ``shown`` px wide."""
    return max(LABEL_PX, -(-LABEL_PX * int(width) // int(shown)))


def below_toolbar(picture: np.ndarray) -> np.ndarray:
    """``picture`` with a white band on top, so the buttons gradio draws over its top right corner sit on white."""
    return np.pad(picture, ((TOOLBAR_PX, 0), (0, 0), (0, 0)), constant_values=255)
