"""The fields every bench result starts with (what ran, when, where), and where it is written."""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import torch

from diffvision.hardware import native_bf16

#: How a result names the CPU's bfloat16 (``native_bf16``), which decides whether bf16 autocast
#: is faster than float32 or slower.
BF16_WORDS = {
    True: "CPU with native bf16",
    False: "CPU without native bf16",
    None: "CPU's bf16 unknown",
}


def run_header(benchmark: str) -> dict:
    """``benchmark``, the command as typed (``python bench/<script>.py ...``), the date, machine,
    torch version, thread count and whether the CPU computes in bfloat16 natively."""
    return {
        "benchmark": benchmark,
        "command": " ".join([f"python bench/{benchmark}.py", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_bf16": cpu_bf16(),
    }


def cpu_bf16() -> str:
    """Whether this machine's CPU computes in bfloat16 natively, in a result's words."""
    return BF16_WORDS[native_bf16("cpu")]


def machine_words(result: dict) -> str:
    """How a result's header names where it ran: ``x86_64 (cuda; CPU without native bf16), torch
    2.14.1, 2 threads``; the parenthesis holds the device and the CPU's bf16 where recorded."""
    known = [result[key] for key in ("device", "cpu_bf16") if result.get(key)]
    where = result["machine"] + (f" ({'; '.join(known)})" if known else "")
    return f"{where}, torch {result['torch']}, {result['threads']} threads"


def malloc_words(result: dict) -> str:
    """A sentence on the allocator a timing ran with, for results that record it (``malloc``:
    whether ``tune_malloc`` tuned it, as the ``diffvision`` command does); "" for older ones."""
    if "malloc" not in result:
        return ""
    if result["malloc"]:
        return " glibc's malloc tuned as the `diffvision` command tunes it (`tune_malloc`)."
    return " glibc's malloc not tuned (`tune_malloc` left it alone)."


def save_result(out: Path, name: str, result: dict, markdown: str) -> None:
    """Write ``out/name.json`` (the result) and ``out/name.md`` (its table), and print the table."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=1))
    (out / f"{name}.md").write_text(markdown)
    print(markdown)
