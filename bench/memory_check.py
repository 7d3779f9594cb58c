"""How close the memory checks' count comes to a real process's peak: for each case, in a fresh
process, the count (`diffvision.memory.batch_bytes`: every allocation followed while it lives,
on 1 and 2 images, extrapolated to the batch) against the rise of the process's peak resident
memory (VmHWM) over one real call at that batch. Cases: a sampling step's network call (no
gradient) of U-Nets with random weights, and one divergence evaluation of `eval --bpd` (the
network and a vector-Jacobian product). The count must stay below the rise (a lower bound),
and the closer the better.

Run: python bench/memory_check.py -> bench/results/memory_check.{json,md}
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from diffvision.denoiser import Denoiser
from diffvision.memory import GiB, batch_bytes
from diffvision.nets.unet import build_unet
from diffvision.process import get_schedule
from diffvision.samplers.likelihood import _divergence
from restoration import RESULTS
from run_header import machine_words, run_header, save_result

#: preset, image size, batch, what: "sample" (a network call) or "bpd" (a divergence)
CASES = [
    ("tiny", 32, 64, "sample"),
    ("small", 32, 64, "sample"),
    ("small", 64, 64, "sample"),
    ("small", 64, 256, "sample"),
    ("small", 128, 256, "sample"),
    ("small", 32, 64, "bpd"),
]


def peak_resident() -> int:
    """VmHWM: this process's peak resident memory in bytes."""
    status = Path("/proc/self/status").read_text().split("\n")
    return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))


def child(preset: str, size: int, batch: int, what: str) -> None:
    """In a fresh process: the count for ``batch`` images, then the real call; prints JSON."""
    torch.manual_seed(0)
    model = Denoiser(build_unet(preset, in_channels=3), "edm", get_schedule("edm")).eval()

    def run_on(n: int):
        x = torch.zeros(n, 3, size, size)
        if what == "bpd":
            return _divergence(model, x, 1.0, torch.ones(1, *x.shape))
        with torch.no_grad():
            return model(x, torch.ones(n))

    t0 = time.perf_counter()
    one, each = batch_bytes(run_on)
    count_s = time.perf_counter() - t0
    before = peak_resident()
    t0 = time.perf_counter()
    run_on(batch)
    call_s = time.perf_counter() - t0
    rise = peak_resident() - before
    counted = one + (batch - 1) * each
    print(json.dumps({"counted": counted, "rise": rise, "count_s": count_s, "call_s": call_s,
                      "per_image": each, "peak_before": before}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        preset, size, batch, what = args.child
        child(preset, int(size), int(batch), what)
        return
    rows = []
    for preset, size, batch, what in CASES:
        command = [sys.executable, __file__, "--child", preset, str(size), str(batch), what]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        row = {"preset": preset, "size": size, "batch": batch, "what": what,
               **json.loads(done.stdout)}  # fmt: skip
        rows.append(row)
        print(row, flush=True)
    result = {**run_header("memory_check"), "rows": rows}
    lines = [
        "# The memory checks' count against a real process's peak",
        "",
        f"`{result['command']}` on {machine_words(result)}, {result['date']}.",
        "",
        "Each row in a fresh process: U-Net with random weights, 3 x size x size images; "
        "counted: `memory.batch_bytes` on 1 and 2 images, extrapolated to the batch; rise: "
        "how far one real call at the batch raised the process's peak resident memory (VmHWM). "
        "sample: one network call without gradient (what a sampler step makes); bpd: one "
        "divergence evaluation of `eval --bpd` (the network and a vector-Jacobian product).",
        "",
        "| preset | size | batch | call | counted | rise | counted / rise | per image "
        "| count s | call s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['preset']} | {r['size']} | {r['batch']} | {r['what']} | "
            f"{r['counted'] / GiB:.2f} GiB | {r['rise'] / GiB:.2f} GiB | "
            f"{r['counted'] / r['rise']:.0%} | {r['per_image'] / 2**20:.1f} MiB | "
            f"{r['count_s']:.2f} | {r['call_s']:.2f} |"
        )
    lines.append("")
    save_result(args.out, "memory_check", result, "\n".join(lines))


if __name__ == "__main__":
    main()
