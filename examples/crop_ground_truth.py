"""Write examples/ground_truth/: the clean partners of the real degraded examples, cropped as those were.

    python examples/crop_ground_truth.py [--datasets ../shared/datasets]

Each degraded example is the 256x256 centre crop of a benchmark input; its ground truth is the same crop of the
benchmark's clean image. The script checks that the input's crop reproduces the example exactly before writing,
so a pair can never be misaligned.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from diffloss.images import centre_crop, load_image, save_image  # noqa: E402

# example file -> (benchmark input, benchmark ground truth), relative to the datasets folder
PAIRS = {
    "haze_sots_1430_7.png": ("haze/sots_indoor/lq/1430_7.png", "haze/sots_indoor/gt/1430_7.png"),
    "rain_rain100l_1.png": ("rain/rain100l_sample/lq/1.png", "rain/rain100l_sample/gt/1.png"),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=str(HERE.parent.parent / "shared" / "datasets"))
    args = parser.parse_args(argv)
    root = Path(args.datasets)
    for name, (lq, gt) in PAIRS.items():
        example = load_image(HERE / name)
        side = example.shape[-1]
        if not centre_crop(load_image(root / lq), side).equal(example):
            raise SystemExit(f"{name} is not the {side} px centre crop of {root / lq}: not writing its ground truth")
        out = save_image(centre_crop(load_image(root / gt), side), HERE / "ground_truth" / name)
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
