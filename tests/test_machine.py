"""One description of the machine for cards and benchmarks, and a measure of what its threads give right now."""

import pytest
import torch

from diffloss import machine


def test_cards_and_benchmarks_name_the_cpu_the_same_way():
    name = machine.device_name(torch.device("cpu"))
    assert name and name == machine.cpu_name()
    assert machine.device_description(torch.device("cpu")) == f"cpu: {name}, {torch.get_num_threads()} threads"


def test_thread_scaling_measures_both_thread_counts_and_restores_the_setting():
    before = torch.get_num_threads()
    result = machine.thread_scaling(threads=2, size=64, seconds=0.02)
    assert torch.get_num_threads() == before
    assert result["threads"] == 2 and result["gflops_1_thread"] > 0 and result["gflops_2_threads"] > 0
    assert result["speedup"] == pytest.approx(result["gflops_2_threads"] / result["gflops_1_thread"], rel=0.05)
