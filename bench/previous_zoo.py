"""The previous zoo's L2 arms measured as the family report measures (same sources, sizes and seeds), so the
report can say how much the new L2 base gained over them (issue #13, item 1).

    git show 59adc02:pretrained/restorers/TASK/l2/FILE > OLD/TASK/FILE   (for card.json, config.json, model.safetensors)
    python bench/previous_zoo.py --old OLD --datasets PATH      # writes bench/results/zoo-previous-l2.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.timing import write_json  # noqa: E402
from diffloss.evaluate import evaluate  # noqa: E402
from diffloss.family import ZooPaths  # noqa: E402
from diffloss.paths import BENCH_RESULTS, TASK_ORDER  # noqa: E402
from diffloss.zoo_report import sources_for  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--old", required=True, help="folder with TASK/ model folders of the previous zoo's L2 arms")
    p.add_argument("--datasets", required=True)
    p.add_argument("--commit", default="59adc02", help="the commit they came from (recorded)")
    args = p.parse_args(argv)
    paths = ZooPaths(datasets=Path(args.datasets))
    out = {"note": f"the previous zoo's L2 arms (commit {args.commit}) on the family report's sources; median over "
                   "images of PSNR(l2) - PSNR(input)", "tasks": {}}
    for task in TASK_ORDER:
        folder = Path(args.old) / task
        if not folder.is_dir():
            continue
        for rs in sources_for(task, paths):
            if rs.source.mode == "unpaired":
                continue
            report = evaluate({"l2": folder}, rs.source, lpips=False)
            l2, inp = report.row("l2").images, report.row("identity").images
            gains = [a["psnr"] - b["psnr"] for a, b in zip(l2, inp)]
            out["tasks"].setdefault(task, {})[rs.label] = {
                "median_gain_db": round(statistics.median(gains), 3), "images": len(gains),
                "mean_psnr_l2": round(report.row("l2").means()["psnr"], 3)}
            print(task, rs.label, out["tasks"][task][rs.label], flush=True)
    write_json(BENCH_RESULTS / "zoo-previous-l2.json", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
