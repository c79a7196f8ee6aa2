"""How long loading a restorer folder takes: ``nets.load_restorer`` against building with a random init and then
loading the weights (what loading would cost without any skip of the init).

    python bench/restorer_load.py [--width 32] [--repeats 20] [--json bench/results/restorer-load-cpu.json]

Why: a restorer is loaded on every Compare of a new model; drawing random weights that the checkpoint overwrites
next is wasted work, and this script says how much ``load_restorer`` saves by not drawing them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import torch  # noqa: E402

from bench.timing import median_times, write_json  # noqa: E402
from diffloss import nets  # noqa: E402
from diffloss.checkpoint import load_model_folder  # noqa: E402
from diffloss.machine import device_name  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python bench/restorer_load.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--width", type=int, default=nets.RestorerConfig().width)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--label", default="load_restorer", help="name of this code's load_restorer in the result")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = nets.save_restorer(nets.Restorer(nets.RestorerConfig(task="noise", width=args.width)), Path(tmp) / "r")

        def random_init_then_load() -> None:
            state, config, _ = load_model_folder(folder, expected_kind=nets.KIND)
            nets.Restorer(nets.RestorerConfig.from_dict(config)).load_state_dict(state)

        times = median_times({args.label: lambda: nets.load_restorer(folder),
                              "random_init_then_load": random_init_then_load}, args.repeats, torch.device("cpu"))
    result = {"device": device_name(torch.device("cpu")), "threads": torch.get_num_threads(), "width": args.width,
              "repeats": args.repeats, "torch": torch.__version__, "median_s": times,
              "ratio": times[args.label] / times["random_init_then_load"]}
    print(result)
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
