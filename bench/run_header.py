"""The fields every bench result starts with (what ran, when, where), and where it is written."""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

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


def save_result(out: Path, name: str, result: dict, markdown: str) -> None:
    """Write ``out/name.json`` (the result) and ``out/name.md`` (its table), and print the table."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=1))
    (out / f"{name}.md").write_text(markdown)
    print(markdown)
