"""How fast is the studio on this machine? Cold start, Compare, Inspect and the L(t) curve, as a user meets them.

    python bench/studio_speed.py [--threads 2] [--repeats 3] [--json bench/results/studio-cpu.json]

- cold start: a fresh Python process imports the app and loads every shipped weight (restorers and prior); also
  reported: ``ui_ready_s``, the part before the prior (diffusers is imported only with it), i.e. when Compare
  can run while ``python app.py`` is still warming the prior up in a background thread; and ``cold_start_parts_s``,
  what each step of the median run adds (torch, gradio, our modules, restorers, diffusers, the prior), so a miss
  shows its cause;
- page ready: ``python app.py`` until its first page is served (it loads the prior after, in the background);
- Compare: one 512x512 photo through both arms of a task (the shipped pair, else two randomly initialised
  restorers of the shipped architecture: time depends on the architecture, not the weights);
- Inspect: one 256x256 crop at one t (views, h maps, gradient map) with the shipped prior (else a random "small"),
  each call a new degradation seed, so every call degrades, restores and runs the prior (the goal's figure);
  also reported: a new t on the same crop (the prior pass only; the case is remembered) and new weights (nothing
  but drawing: the pass is remembered without its weights);
- L(t): the curve plot (handler defaults: a 64 px crop on a CPU);
- calibrate, evaluate (no goals): the Train tab's calibration and Compare's evaluation of both arms on 8 clean
  validation photos (the benchmark's clean/val when it is beside the repo, else the clean examples).
Each figure is the median of ``--repeats`` runs after one warm-up. ``thread_scaling`` (diffloss.machine) records
what a second thread gave at the start: near x1 the VM lent one core's worth, and every figure reads slow. Goals (issue 4, 2 CPU cores): cold start < 10 s,
Compare < 1 s, Inspect < 2 s, L(t) < 5 s.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
GOALS = {"cold_start_s": 10.0, "compare_512_s": 1.0, "inspect_256_s": 2.0, "curves_s": 5.0}

COLD_START = """
import json, time
from studio import boot; boot.before_imports()  # as app.py does, before torch and gradio are imported
t0 = time.perf_counter()
marks = {}
def mark(name):
    marks[name] = time.perf_counter() - t0
import torch; mark("torch")
import gradio; mark("gradio")
import app; mark("app")
from studio.models import get_registry
reg = get_registry()
for entry in reg.restorers():
    reg.load_restorer(entry.path)
mark("restorers")
if reg.has_shipped_prior():
    import diffusers.models.unets.unet_2d; mark("diffusers")
    reg.load_prior(None)
mark("prior")
print(json.dumps(marks))
"""
# What each step of the cold start adds (seconds), in the order the script above takes them.
COLD_PARTS = {"torch": "import torch", "gradio": "import gradio", "app": "import the app (our modules)",
              "restorers": "load every shipped restorer", "diffusers": "import diffusers' UNet2DModel",
              "prior": "build the prior and load its weights"}


def cold_start_parts(marks: dict[str, float]) -> dict[str, float]:
    """Cumulative marks -> the seconds each step added (a step that did not run adds nothing)."""
    parts, last = {}, 0.0
    for name in COLD_PARTS:
        if name in marks:
            parts[name] = marks[name] - last
            last = marks[name]
    return parts


@contextlib.contextmanager
def served_app(env: dict[str, str], timeout: float = 180.0) -> Iterator[tuple[str, float, subprocess.Popen]]:
    """``python app.py`` on a free port, as a user starts it: yields (url, seconds to its first page, process)
    once a page is served, and kills the process after unless it has already stopped. RuntimeError, with the app's
    output, when it exits first or serves nothing within ``timeout`` seconds."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    with tempfile.TemporaryFile("w+") as log:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=REPO, env=env, stdout=log,
                                stderr=subprocess.STDOUT, text=True)
        try:
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"app.py exited with {proc.returncode} before serving a page:\n{log.read()}")
                try:
                    urllib.request.urlopen(url, timeout=2)
                    break
                except OSError:
                    if time.perf_counter() - start > timeout:
                        raise RuntimeError(f"app.py served no page within {timeout:.0f} s") from None
                    time.sleep(0.05)
            yield url, time.perf_counter() - start, proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def page_ready(env: dict[str, str]) -> float:
    """Seconds from ``python app.py`` to its first page served: what a user waits for after the command."""
    with served_app(env) as (_, seconds, _):
        return seconds


def timed(fn, repeats: int) -> float:
    """Median seconds of ``fn`` after one warm-up call (the bench suite's own timer, for one function)."""
    import torch

    from bench.timing import median_times

    return median_times({"fn": fn}, repeats, torch.device("cpu"))["fn"]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--task", default="noise")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from diffloss import nets
    from diffloss.images import save_image
    from bench.timing import write_json
    from diffloss.machine import device_description, thread_scaling
    from diffloss.prior import PRIOR_PRESETS
    from studio import compare_tab, inspect_tab, train_tab, upload
    from studio.models import Registry

    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    scaling = thread_scaling(args.threads)
    runs = [json.loads(subprocess.run([sys.executable, "-c", COLD_START], cwd=REPO, env=env, capture_output=True,
                                      text=True, check=True).stdout.strip().splitlines()[-1])
            for _ in range(args.repeats)]
    ui_ready, cold = [r["restorers"] for r in runs], [r["prior"] for r in runs]
    page = statistics.median(page_ready(env) for _ in range(args.repeats))
    # The steps of the median run (by total), so they add up to a real cold start; medians per step would not.
    parts = cold_start_parts(sorted(runs, key=lambda r: r["prior"])[len(runs) // 2])

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shipped = Registry()
        l2, dl = shipped.default_pair(args.task)
        notes = []
        if l2 is None or dl is None:
            for arm in ("l2", "diffloss"):
                nets.save_restorer(nets.Restorer(nets.RestorerConfig(task=args.task)),
                                   tmp / "pretrained" / "restorers" / args.task / arm)
            notes.append("no shipped restorers: random ones of the shipped architecture")
        else:
            (tmp / "pretrained").mkdir()
            (tmp / "pretrained" / "restorers").symlink_to(shipped.pretrained / "restorers")
        if shipped.has_shipped_prior():
            (tmp / "pretrained" / "prior").symlink_to(shipped.shipped_prior_path)
        else:
            torch.manual_seed(0)
            PRIOR_PRESETS["small"].build().save_pretrained(tmp / "pretrained" / "prior")
            notes.append("no shipped prior: a random 'small' prior")
        reg = Registry(tmp / "pretrained", tmp / "runs", examples=REPO / "examples")
        l2, dl = reg.default_pair(args.task)
        g = torch.Generator().manual_seed(0)
        photo = torch.nn.functional.interpolate(torch.rand(1, 3, 32, 32, generator=g), size=(512, 512),
                                                mode="bicubic", align_corners=False).clamp(0, 1)[0]
        path = save_image(photo, tmp / "photo.png")
        compare = timed(lambda: compare_tab.compare(str(path), args.task, upload.MODES[0], 0, l2, dl, registry=reg), args.repeats)
        # Inspect three ways, each call a setting not seen before (the handlers remember recent ones): a new
        # degradation seed (a new case: degrade, restore, prior pass), a new t (the prior pass only), new weights.
        fresh = itertools.count(1)

        def inspect(seed_image: int = 0, t: int = 200, gamma: float = 0.05) -> None:
            inspect_tab.inspect(str(path), args.task, seed_image, dl, inspect_tab.PAIRS[0], t, 0, None, gamma=gamma, side=256,
                      registry=reg)

        inspect_first = timed(lambda: inspect(seed_image=next(fresh)), args.repeats)
        inspect_new_t = timed(lambda: inspect(t=200 + next(fresh)), args.repeats)
        inspect_reweight = timed(lambda: inspect(gamma=0.05 * (1 + next(fresh))), args.repeats)
        curves = timed(lambda: inspect_tab.inspect_curves(str(path), args.task, 0, dl, None, registry=reg), max(1, args.repeats // 2))
        # No goals, quoted in the README: the Train tab's calibration (from the L2 arm, as the tab preselects) and
        # Compare's evaluation of both arms, on the clean validation photos the app would use.
        photos = reg.calibration_images()
        calibrate = evaluate = None
        if photos:
            notes.append(f"calibration and evaluation photos from {photos[0].parent}")
            calibrate = timed(lambda: train_tab.calibrate_weights(args.task, 64, 0, 999, None, 0.05, 0.1, start=l2,
                                                          registry=reg), max(1, args.repeats // 2))
            evaluate = timed(lambda: compare_tab.evaluate_pair(args.task, l2, dl, 8, registry=reg), max(1, args.repeats // 2))

    result = {
        "device": device_description(torch.device("cpu")), "thread_scaling": scaling, "torch": torch.__version__,
        "cold_start_parts_s": parts,
        "cold_start_s": statistics.median(cold), "ui_ready_s": statistics.median(ui_ready), "page_ready_s": page,
        "compare_512_s": compare,
        "inspect_256_s": inspect_first, "inspect_256_new_t_s": inspect_new_t, "inspect_256_reweight_s": inspect_reweight,
        "curves_s": curves, "calibrate_s": calibrate, "evaluate_8_photos_s": evaluate, "goals": GOALS, "notes": notes,
    }
    for key, goal in GOALS.items():
        verdict = "ok" if result[key] < goal else "OVER GOAL"
        print(f"{key:<16}{result[key]:8.2f} s   goal < {goal:g} s   {verdict}")
    print(f"{'ui_ready_s':<16}{result['ui_ready_s']:8.2f} s   (import the app and load the restorers: Compare can run;"
          " the app loads the prior in the background meanwhile)")
    print(f"{'page_ready_s':<16}{result['page_ready_s']:8.2f} s   (python app.py until its first page is served; the "
          "prior loads after)")
    print(f"{'inspect, new t':<16}{result['inspect_256_new_t_s']:8.2f} s   (same photo and restorer: the prior pass only)")
    print(f"{'inspect, weights':<16}{result['inspect_256_reweight_s']:8.2f} s   (new gamma: no pass at all, drawing only)")
    if calibrate is not None:
        print(f"{'calibrate':<16}{calibrate:8.2f} s   (Train tab: gamma and lambda from 8 validation photos, 64 px)")
        print(f"{'evaluate':<16}{evaluate:8.2f} s   (Compare: both arms and the input on 8 validation photos)")
    print("cold start of the median run, step by step (s): " + ", ".join(f"{COLD_PARTS[k]} {v:.2f}" for k, v in parts.items()))
    print(f"thread scaling at the start: x{scaling['speedup']} on {args.threads} threads (matmul)")
    if notes:
        print("notes: " + "; ".join(notes))
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
