"""How much memory does a hosted studio take when visitors send it a 49-megapixel photo? (issue 25, High 2)

    python bench/hosted_memory.py [--side 7000] [--json bench/results/hosted-memory-cpu.json]

Starts ``python app.py --public`` (hosted mode, the shipped models) in its own process and measures that process
from /proc (VmRSS now, VmHWM the peak; the peak is reset between phases through ``/proc/PID/clear_refs``):

- ``start_rss_mb``: after one warm-up Compare of a shipped example (models loaded, as a visited Space is);
- ``compare_peak_rise_mb``: one Compare of a ``side`` x ``side`` PNG (~150 KB, 49 MP), its peak over the start
  (goal: <= 500 MB);
- ``burst_peak_mb``: the same file sent at once to Compare twice, Inspect, the Degradations preview, L(t) and
  Purify (separate concurrency groups, so they overlap), the peak of the whole process (goal: < 3 GB);
- ``idle_rss_mb``: 10 s after the burst, beside ``start_rss_mb`` (goal: within 1 GB of it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
GOALS_MB = {"compare_peak_rise_mb": 500, "burst_peak_mb": 3 * 1024, "idle_above_start_mb": 1024}


def big_png(path: Path, side: int) -> Path:
    """A ``side`` x ``side`` RGB PNG that compresses to ~150 KB (a repeating pattern), as the audit sent."""
    y, x = np.mgrid[0:side, 0:side]
    Image.fromarray(np.stack([x % 256, y % 256, (x + y) % 256], -1).astype(np.uint8)).save(path)
    return path


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak since start or the last reset) of ``pid``, in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # "5": reset the peak RSS (VmHWM) to the current RSS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def hosted_studio(runs: Path) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = {**os.environ, "DIFFLOSS_RUNS": str(runs)}
    proc = subprocess.Popen([sys.executable, "app.py", "--public", "--port", str(port)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def connect(url: str, deadline_s: float = 180.0):
    from gradio_client import Client

    start = time.time()
    while True:
        try:
            return Client(url, verbose=False)
        except Exception:  # noqa: BLE001  (not serving yet)
            if time.time() - start > deadline_s:
                raise
            time.sleep(1.0)


def burst(url: str, photo: str) -> dict[str, str]:
    """The audit's six requests at once, each from its own client; returns how each ended."""
    from gradio_client import handle_file

    calls = {"compare-1": "/compare", "compare-2": "/compare", "inspect": "/inspect",
             "degradations": "/preview_degradation", "curves": "/curves", "purify": "/purify"}
    ended: dict[str, str] = {}

    def one(name: str, api: str) -> None:
        try:
            connect(url).predict(handle_file(photo), api_name=api)
            ended[name] = "ok"
        except Exception as err:  # noqa: BLE001
            ended[name] = f"error: {str(err)[:120]}"

    threads = [threading.Thread(target=one, args=item) for item in calls.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return ended


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=7000)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    from gradio_client import handle_file

    with tempfile.TemporaryDirectory() as tmp:
        photo = str(big_png(Path(tmp) / "big.png", args.side))
        png_kb = round(Path(photo).stat().st_size / 1024)
        example = str(next((REPO / "examples").glob("clean_*.png")))
        with hosted_studio(Path(tmp) / "runs") as (url, pid):
            client = connect(url)
            client.predict(handle_file(example), api_name="/compare")  # warm: the models loaded
            time.sleep(2)
            start = memory_mb(pid)["VmRSS"]
            reset_peak(pid)
            t0 = time.time()
            client.predict(handle_file(photo), api_name="/compare")
            compare_s = time.time() - t0
            compare_peak = memory_mb(pid)["VmHWM"]
            time.sleep(2)
            reset_peak(pid)
            t0 = time.time()
            ended = burst(url, photo)
            burst_s = time.time() - t0
            burst_peak = memory_mb(pid)["VmHWM"]
            time.sleep(10)
            idle = memory_mb(pid)["VmRSS"]
    result = {
        "side": args.side, "png_kb": png_kb,
        "start_rss_mb": round(start), "compare_peak_rise_mb": round(compare_peak - start), "compare_s": round(compare_s, 1),
        "burst_peak_mb": round(burst_peak), "burst_s": round(burst_s, 1), "burst_ended": ended,
        "idle_rss_mb": round(idle), "idle_above_start_mb": round(idle - start), "goals_mb": GOALS_MB,
        "threads": os.environ.get("OMP_NUM_THREADS"),
    }
    result["met"] = {k: result[k] <= v for k, v in GOALS_MB.items()}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
