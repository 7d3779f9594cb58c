"""Training and sampling throughput of diffvision's U-Net against diffusers' UNet2DModel.

Both networks have matched parameter counts (within 10%), run at 32x32x3 with the same batch and
threads, in fp32, bf16 autocast and channels-last. Each (network, mode) is measured in a fresh
subprocess (so peak memory is its own): median images/s over timed iterations after warm-up, and
the process's peak resident memory. Training = forward + backward + AdamW step on the MSE to a
random target; sampling = one forward pass under no_grad (one NFE).

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

RESULTS = Path(__file__).parent / "results"
MODES = ("fp32", "bf16", "channels_last", "bf16+channels_last")


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


def measure(which: str, mode: str, batch: int, iters: int, threads: int, device: str) -> dict:
    """Runs inside the subprocess."""
    import torch

    torch.set_num_threads(threads)
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

    def train_step():
        loss = (forward().float() - target).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def sample_step():
        with torch.no_grad():
            forward()

    def sync():
        if cuda:
            torch.cuda.synchronize()

    out = {"which": which, "mode": mode, "params": params, "batch": batch, "threads": threads}
    for name, fn in (("train", train_step), ("sample", sample_step)):
        net.train(name == "train")
        for _ in range(3):
            fn()
        sync()
        times = []
        for _ in range(iters):
            start = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - start)
        out[f"{name}_images_per_s"] = batch / statistics.median(times)
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if cuda:
        out["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def run_child(which, mode, args) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        which,
        mode,
        "--batch",
        str(args.batch),
        "--iters",
        str(args.iters),
        "--threads",
        str(args.threads),
        "--device",
        args.device,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description="U-Net throughput: diffvision vs diffusers")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="alternating repetitions")
    parser.add_argument("--child", nargs=2, metavar=("WHICH", "MODE"))
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.child:
        which, mode = args.child
        print(json.dumps(measure(which, mode, args.batch, args.iters, args.threads, args.device)))
        return
    import diffusers
    import torch

    cuda = args.device.startswith("cuda")
    runs = []
    for _ in range(args.rounds):
        for mode in MODES:
            for which in ("diffvision", "diffusers"):  # alternate, so drift hits both
                result = run_child(which, mode, args)
                runs.append(result)
                print(json.dumps(result), file=sys.stderr)
    rows = {}
    for mode in MODES:
        for which in ("diffvision", "diffusers"):
            mine = [r for r in runs if r["mode"] == mode and r["which"] == which]
            rows[f"{which} {mode}"] = {
                "which": which,
                "mode": mode,
                "params": mine[0]["params"],
                "train_images_per_s": statistics.median(r["train_images_per_s"] for r in mine),
                "sample_images_per_s": statistics.median(r["sample_images_per_s"] for r in mine),
                "peak_rss_mib": max(r["peak_rss_mib"] for r in mine),
                **({"peak_gpu_mib": max(r["peak_gpu_mib"] for r in mine)} if cuda else {}),
            }
    result = {
        "benchmark": "train_throughput",
        "command": " ".join(["python bench/train_throughput.py", *sys.argv[1:]]),
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": platform.machine(),
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
    gpu = "peak_gpu_mib" in rows["diffvision fp32"]
    memory = "peak_gpu_mib" if gpu else "peak_rss_mib"
    lines = [
        "# U-Net throughput: diffvision vs diffusers UNet2DModel",
        "",
        f"Made by `{result['command']}` on {result['date']} ({result['machine']}, "
        f"{result.get('device', 'cpu')}, {result['threads']} threads, "
        f"torch {result['versions']['torch']}, diffusers "
        f"{result['versions']['diffusers']}). Images 3x32x32, batch {result['batch']}, median of "
        f"{result['iters']} timed iterations, median over {result['rounds']} alternating rounds; "
        + (
            "peak memory is the GPU's peak allocation (torch.cuda.max_memory_allocated)."
            if gpu
            else "peak memory is the measuring process's peak RSS (includes the Python and torch "
            "runtime)."
        ),
        "",
        f"Parameters: diffvision {rows['diffvision fp32']['params'] / 1e6:.2f} M, diffusers "
        f"{rows['diffusers fp32']['params'] / 1e6:.2f} M.",
        "",
        "| mode | train img/s (ours / diffusers) | ratio | sample img/s (ours / diffusers) "
        f"| ratio | peak {'GPU' if gpu else 'RSS'} MiB (ours / diffusers) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for mode in MODES:
        a, b = rows[f"diffvision {mode}"], rows[f"diffusers {mode}"]
        lines.append(
            f"| {mode} | {a['train_images_per_s']:.0f} / {b['train_images_per_s']:.0f} | "
            f"{a['train_images_per_s'] / b['train_images_per_s']:.2f}x | "
            f"{a['sample_images_per_s']:.0f} / {b['sample_images_per_s']:.0f} | "
            f"{a['sample_images_per_s'] / b['sample_images_per_s']:.2f}x | "
            f"{a[memory]:.0f} / {b[memory]:.0f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
