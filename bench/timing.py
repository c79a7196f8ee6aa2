"""How every bench script times work and writes its result: interleaved medians, one JSON format."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch


def synchronize(device: torch.device) -> None:
    """CUDA runs asynchronously: without a sync the timer reads when work was queued, not when it finished."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_times(fns: dict[str, Callable[[], object]], repeats: int,
                      device: torch.device) -> dict[str, list[float]]:
    """Seconds of each call of each function, timed in rounds (one call of each per round) after one untimed
    warm-up each.

    Why interleaved: load from other processes drifts over minutes; alternating the arms spreads it over all of
    them, so their ratio stays fair even when the absolute numbers do not. The warm-up pays for lazy
    initialisation, allocator growth and kernel selection, which a training run pays once.
    """
    for fn in fns.values():
        fn()
    synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(max(1, repeats)):
        for name, fn in fns.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return times


def median_times(fns: dict[str, Callable[[], object]], repeats: int, device: torch.device) -> dict[str, float]:
    """Median seconds per call of each function, timed interleaved (``interleaved_times``)."""
    return {name: statistics.median(values) for name, values in interleaved_times(fns, repeats, device).items()}


def count_flops(fn: Callable[[], object]) -> int:
    """Floating-point operations of one call of ``fn`` (torch's FLOP counter: convolutions and matrix products,
    forward and backward). Why: a time ratio close to the FLOP ratio says the work itself sets the cost, so no
    kernel, layout or thread trick can bring it far below that."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: conv_backward_flops}
                         ) as counter:
        fn()
    return counter.get_total_flops()


def conv_backward_flops(grad_out_shape: list[int], x_shape: list[int], w_shape: list[int], _bias: object,
                        _stride: object, _padding: object, _dilation: object, transposed: bool,
                        _output_padding: object, _groups: int, output_mask: list[bool], out_shape: object = None,
                        **kwargs: object) -> int:
    """A convolution's backward (``aten.convolution_backward``'s arguments, as shapes): each gradient asked for
    (input, weight) costs what the forward costs.

    torch's own formula ignores ``groups`` here, so a depthwise convolution's backward counted ``groups`` times its
    work (a restorer step read 7x its forward instead of 3x). The forward count is right for any ``groups``: the
    weight's shape already holds the input channels of one group."""
    from torch.utils.flop_counter import conv_flop_count

    forward = conv_flop_count(list(x_shape), list(w_shape), list(grad_out_shape), bool(transposed))
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def median_ratio(slow: list[float], fast: list[float]) -> float:
    """The median over rounds of ``slow / fast``: a speed-up that a load change between rounds does not skew."""
    return statistics.median(s / f for s, f in zip(slow, fast, strict=True))


def write_json(path: str | Path, data: dict[str, Any]) -> Path:
    """Write a result file as every bench script does: its folder made, indented, a final newline."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path
