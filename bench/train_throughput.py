"""Training and sampling throughput of diffvision's U-Net against diffusers' UNet2DModel.

Both networks have matched parameter counts (within 10%), run at 32x32x3 with the same batch and
threads, in fp32, bf16 autocast and channels-last. Speed: for each mode, both networks live in one
fresh subprocess and their steps are timed in alternation, so that the drift of a shared machine
(often +-20% over minutes on a 2-core CPU) hits both alike; the ratio is the median over adjacent
pairs. Peak memory: each (network, mode) alone in a fresh subprocess. Training = forward +
backward + AdamW step on the MSE to a random target; sampling = one forward pass under no_grad
(one NFE).

Run: python bench/train_throughput.py  ->  bench/results/train_throughput.json and .md
On a GPU: python bench/train_throughput.py --device cuda --batch 256  ->  train_throughput_cuda.*
(timings synchronised with the device; peak memory is then the GPU's peak allocation).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from run_header import cpu_bf16  # bench/, next to this script

RESULTS = Path(__file__).parent / "results"
MODES = ("fp32", "bf16", "channels_last", "bf16+channels_last")
WHICH = ("diffvision", "diffusers")


def diffusers_unet():
    from diffusers import UNet2DModel

    # Shaped like our "small" preset: 3 levels, 2 res blocks, attention at the lowest level.
    return UNet2DModel(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        layers_per_block=2,
        dropout=0.1,  # as in our "small" preset (diffusers defaults to 0; dropout costs time)
        block_out_channels=(32, 64, 64),
        norm_num_groups=8,
        attention_head_dim=32,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    )


def our_unet():
    from diffvision.nets import build_unet

    return build_unet("small", in_channels=3)


def workload(which: str, mode: str, batch: int, device: str):
    """One network in one mode: ``(params, steps)`` with ``steps = {"train": fn, "sample": fn}``
    (each call runs one step and waits for the device)."""
    import torch

    torch.manual_seed(0)
    net = (our_unet() if which == "diffvision" else diffusers_unet()).to(device)
    cuda = device.startswith("cuda")
    if cuda:  # fp32 means fp32 on the GPU too (no TF32), as on the CPU
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    params = sum(p.numel() for p in net.parameters())
    bf16 = "bf16" in mode
    channels_last = "channels_last" in mode
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, 32, 32, device=device)
    target = torch.randn_like(x)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    t = torch.rand(batch, device=device) * 999

    def forward():
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            out = net(x, t)
            return out.sample if which == "diffusers" else out

    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def train_step():
        net.train()
        loss = (forward().float() - target).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()

    def sample_step():
        net.eval()
        with torch.no_grad():
            forward()
        sync()

    return params, {"train": train_step, "sample": sample_step}


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def paired(mode: str, batch: int, iters: int, threads: int, device: str) -> dict:
    """Both networks in one process, timed in alternation (ours, theirs, theirs, ours, ...), so
    that the machine's drift over seconds hits both: per-iteration seconds of each network and
    the ratio of each adjacent pair. Runs inside a subprocess."""
    import torch

    torch.set_num_threads(threads)
    nets = {which: workload(which, mode, batch, device) for which in WHICH}
    out = {"mode": mode, "params": {w: nets[w][0] for w in WHICH}}
    for name in ("train", "sample"):
        steps = {w: nets[w][1][name] for w in WHICH}
        for w in WHICH:  # warm-up
            for _ in range(3):
                steps[w]()
        seconds = {w: [] for w in WHICH}
        for i in range(iters):
            for w in WHICH if i % 2 == 0 else WHICH[::-1]:
                seconds[w].append(timed(steps[w]))
        out[name] = seconds
    return out


def memory(which: str, mode: str, batch: int, threads: int, device: str) -> dict:
    """Peak memory of one network alone (a few training then sampling steps) in a fresh
    subprocess: its peak RSS, and on a GPU its peak allocation."""
    import torch

    torch.set_num_threads(threads)
    _, steps = workload(which, mode, batch, device)
    for name in ("train", "sample"):
        for _ in range(3):
            steps[name]()
    out = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.startswith("cuda"):
        out["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def run_child(args, *child) -> dict:
    cmd = [sys.executable, __file__, "--child", *child, "--batch", str(args.batch)]
    cmd += ["--iters", str(args.iters), "--threads", str(args.threads), "--device", args.device]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description="U-Net throughput: diffvision vs diffusers")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--iters", type=int, default=10, help="timed steps per network and round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="paired subprocesses per mode")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "paired":
            result = paired(rest[0], args.batch, args.iters, args.threads, args.device)
        else:
            result = memory(rest[0], rest[1], args.batch, args.threads, args.device)
        print(json.dumps(result))
        return
    import diffusers
    import torch

    cuda = args.device.startswith("cuda")
    runs = {mode: [] for mode in MODES}
    for _ in range(args.rounds):
        for mode in MODES:
            runs[mode].append(run_child(args, "paired", mode))
            print(mode, "done", file=sys.stderr)
    rows = {}
    for mode in MODES:
        row = {"mode": mode, "params": runs[mode][0]["params"]}
        for name in ("train", "sample"):
            seconds = {w: [t for r in runs[mode] for t in r[name][w]] for w in WHICH}
            for w in WHICH:
                row[f"{w}_{name}_images_per_s"] = args.batch / statistics.median(seconds[w])
            ratios = [
                b / a for a, b in zip(seconds["diffvision"], seconds["diffusers"], strict=True)
            ]
            row[f"{name}_ratio"] = statistics.median(ratios)
            row[f"{name}_ratio_quartiles"] = statistics.quantiles(ratios, n=4)[::2]
        for w in WHICH:
            for key, value in run_child(args, "memory", w, mode).items():
                row[f"{w}_{key}"] = value
        rows[mode] = row
    result = {
        "benchmark": "train_throughput",
        "command": " ".join(["python bench/train_throughput.py", *sys.argv[1:]]),
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": platform.machine(),
        "cpu_bf16": cpu_bf16(),
        "threads": args.threads,
        "batch": args.batch,
        "iters": args.iters,
        "rounds": args.rounds,
        "image": [3, 32, 32],
        "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__},
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "train_throughput_cuda" if cuda else "train_throughput"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=1))
    (args.out / f"{stem}.md").write_text(markdown(result))
    print(markdown(result))


def markdown(result: dict) -> str:
    rows = result["rows"]
    gpu = "diffvision_peak_gpu_mib" in rows["fp32"]
    memory = "peak_gpu_mib" if gpu else "peak_rss_mib"
    lines = [
        "# U-Net throughput: diffvision vs diffusers UNet2DModel",
        "",
        f"Made by `{result['command']}` on {result['date']} ({result['machine']}, "
        f"{result.get('device', 'cpu')}, "
        + (f"{result['cpu_bf16']}, " if "cpu_bf16" in result else "")
        + f"{result['threads']} threads, "
        f"torch {result['versions']['torch']}, diffusers "
        f"{result['versions']['diffusers']}). Images 3x32x32, batch {result['batch']}. "
        f"Speed: both networks in one process, steps timed in alternation ({result['iters']} "
        f"per network and round, {result['rounds']} rounds in fresh processes, after 3 warm-up "
        "steps each); images/s from the median step time, ratio = median over adjacent pairs of "
        "(diffusers' step time / ours), with the quartiles of those pair ratios. Memory: each "
        "network alone in a fresh process; "
        + (
            "the GPU's peak allocation (torch.cuda.max_memory_allocated)."
            if gpu
            else "the process's peak RSS (includes the Python and torch runtime)."
        ),
        "",
        f"Parameters: diffvision {rows['fp32']['params']['diffvision'] / 1e6:.2f} M, diffusers "
        f"{rows['fp32']['params']['diffusers'] / 1e6:.2f} M.",
        "",
        "| mode | train img/s (ours / diffusers) | ratio (quartiles) "
        "| sample img/s (ours / diffusers) | ratio (quartiles) "
        f"| peak {'GPU' if gpu else 'RSS'} MiB (ours / diffusers) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for mode in MODES:
        r = rows[mode]
        cells = [mode]
        for name in ("train", "sample"):
            lo, hi = r[f"{name}_ratio_quartiles"]
            cells.append(
                f"{r[f'diffvision_{name}_images_per_s']:.0f} / "
                f"{r[f'diffusers_{name}_images_per_s']:.0f}"
            )
            cells.append(f"{r[f'{name}_ratio']:.2f}x ({lo:.2f}-{hi:.2f})")
        cells.append(f"{r[f'diffvision_{memory}']:.0f} / {r[f'diffusers_{memory}']:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
