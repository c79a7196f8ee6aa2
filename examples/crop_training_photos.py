"""Write examples/train/: the clean photos a fresh clone's Train tab trains on, apart from Compare's examples.

    python examples/crop_training_photos.py [--datasets ../shared/datasets]

Why apart: Compare's clean examples (examples/clean_*.png, from Set5/Set14/McMaster) must be photos no Train run
has seen, or a trained pair is compared on its own training photos. These are 160 px centre crops of photos of the
benchmark's training folder (clean/train: BSD100 and Urban100), the folder the shipped restorers trained on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from diffloss.images import centre_crop, load_image, save_image  # noqa: E402

SIDE = 160
SOURCES = ("bsd100_img_003.png", "bsd100_img_025.png", "bsd100_img_047.png", "bsd100_img_069.png",
           "bsd100_img_086.png", "urban100_img_005.png", "urban100_img_033.png", "urban100_img_061.png")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=str(HERE.parent.parent / "shared" / "datasets"))
    args = parser.parse_args(argv)
    for name in SOURCES:
        out = save_image(centre_crop(load_image(Path(args.datasets) / "clean" / "train" / name), SIDE),
                         HERE / "train" / name)
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
