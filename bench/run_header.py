"""The fields every bench result starts with: what ran, when, where."""

from __future__ import annotations

import platform
import sys
import time

import torch


def run_header(benchmark: str) -> dict:
    """``benchmark``, the command as typed (``python bench/<script>.py ...``), the date, machine,
    torch version and thread count."""
    return {
        "benchmark": benchmark,
        "command": " ".join([f"python bench/{benchmark}.py", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
