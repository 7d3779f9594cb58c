"""glibc's malloc as it comes against tuned for tensors (`diffvision.allocator.tune_malloc`, what
the `diffvision` command does as it starts): the seconds and peak RSS of the commands users run,
and of the network's forward pass alone, each in a fresh process, the two settings alternated
over --rounds rounds.

The model is the `photos` prior's architecture (`train --data photos --size 32`) trained for 2
steps by this script: its speed is that of the trained prior, its images are not. The default
setting is had by `DIFFVISION_MALLOC=default`, which `tune_malloc` obeys.

Run: python bench/allocator.py -> bench/results/allocator.{json,md}
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from restoration import RESULTS
from run_header import machine_words, run_header, save_result

DEFAULTS = "glibc's defaults"
SETTINGS = {DEFAULTS: {"DIFFVISION_MALLOC": "default"}, "tuned": {}}

#: The network alone: the photos prior's U-Net on a batch of 128 tiles of 32 px (a `restore`
#: call's batch), median seconds of 7 calls after 2, in three modes.
FORWARD = """
import sys, time, torch
from diffvision.allocator import tune_malloc
tune_malloc()
import diffvision
den = diffvision.load(sys.argv[1]).eval()
x, sigma = torch.randn(128, 3, 32, 32), torch.full((128,), 0.5)
for name, layout, dtype in [("float32", torch.contiguous_format, None),
                            ("float32, channels-last", torch.channels_last, None),
                            ("bf16, channels-last", torch.channels_last, torch.bfloat16)]:
    den.to(memory_format=layout)
    den.autocast = dtype
    xx = x.contiguous(memory_format=layout)
    with torch.no_grad():
        times = []
        for i in range(9):
            t0 = time.perf_counter()
            den(xx, sigma)
            times.append(time.perf_counter() - t0)
    print(name, sorted(times[2:])[3], sep="=")
"""


def tasks(model: Path, small: Path, work: Path) -> dict[str, list[str]]:
    """Task name -> the `diffvision` arguments it runs."""
    sample = ["sample", str(model), "--n", "128", "--steps", "20", "--out", str(work / "s.png")]
    restore = ["restore", "superres", str(model), str(small), "--factor", "4", "--steps", "10"]
    restore += ["--out", str(work / "big.png")]
    train = ["train", "--data", "photos", "--size", "32", "--steps", "30", "--batch", "32"]
    return {
        "sample 128 images (unipc, 20 steps)": sample,
        "sample, --bf16": [*sample, "--bf16"],
        "restore superres 4x of chelsea (ddnm, 10 steps)": restore,
        "restore superres, --bf16": [*restore, "--bf16"],
        "train 30 steps of batch 32": train,
        "train, --bf16 --channels-last": [*train, "--bf16", "--channels-last"],
    }


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run ``argv`` with ``env`` added: (seconds, peak RSS in MiB, stdout); raises if it fails."""
    base = {k: v for k, v in os.environ.items() if k != "DIFFVISION_MALLOC"}
    t0 = time.perf_counter()
    child = subprocess.Popen(argv, env={**base, **env}, stdout=subprocess.PIPE, text=True)
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - t0
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({child.returncode})")
    return seconds, usage.ru_maxrss / 1024, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    cli = [sys.executable, "-m", "diffvision"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        small = work / "chelsea_small.png"
        subprocess.run(
            [sys.executable, "-c", "import skimage.data as d; from PIL import Image; "
             "im = Image.fromarray(d.chelsea()); "
             f"im.resize((im.width // 4, im.height // 4), Image.BICUBIC).save('{small}')"],
            check=True,
        )  # fmt: skip
        subprocess.run(
            [*cli, "train", "--data", "photos", "--size", "32", "--steps", "2", "--batch", "8",
             "--out", str(work / "prior"), "--quiet"],
            check=True,
        )  # fmt: skip
        model = work / "prior" / "model"
        runs = {name: [*cli, *argv, "--quiet"] for name, argv in tasks(model, small, work).items()}
        seconds = {task: {s: [] for s in SETTINGS} for task in runs}
        rss = {task: {s: [] for s in SETTINGS} for task in runs}
        forward = {}
        for _ in range(args.rounds):
            for task, argv in runs.items():
                for setting, env in SETTINGS.items():
                    out = ["--out", str(work / f"train{time.time_ns()}")]  # a fresh run folder
                    t, peak, _ = timed([*argv, *out] if task.startswith("train") else argv, env)
                    seconds[task][setting].append(t)
                    rss[task][setting].append(peak)
            for setting, env in SETTINGS.items():
                _, _, out = timed([sys.executable, "-c", FORWARD, str(model)], env)
                for line in out.splitlines():
                    name, value = line.split("=")
                    forward.setdefault(name, {s: [] for s in SETTINGS})[setting].append(
                        float(value)
                    )
    result = {
        **run_header("allocator"),
        "settings": {"rounds": args.rounds, "out": str(args.out)},
        "seconds": seconds,
        "peak_rss_mib": rss,
        "forward_seconds": forward,
    }
    save_result(args.out, "allocator", result, markdown(result))


def _ratio(times: dict[str, list[float]]) -> float:
    """The median over rounds of (seconds with glibc's defaults / seconds tuned)."""
    default, tuned = times[DEFAULTS], times["tuned"]
    return statistics.median(d / t for d, t in zip(default, tuned, strict=True))


def markdown(r: dict) -> str:
    med = statistics.median
    lines = [
        "# glibc's malloc as it comes, or tuned for tensors (`tune_malloc`)",
        "",
        f"`{r['command']}` on {machine_words(r)}, {r['date']}. Each row in a fresh process, "
        f"the two settings alternated over {r['settings']['rounds']} rounds; seconds and peak "
        "RSS are medians over rounds (the command's wall time includes starting Python and "
        "torch); speed-up: the median over rounds of default seconds / tuned seconds. The model: "
        "the `photos` prior's architecture, trained 2 steps (for timing only).",
        "",
        "| command | seconds, defaults | seconds, tuned | speed-up | peak RSS MiB, defaults "
        "| peak RSS MiB, tuned |",
        "|---|---|---|---|---|---|",
    ]
    for task, times in r["seconds"].items():
        peak = r["peak_rss_mib"][task]
        lines.append(
            f"| `{task}` | {med(times[DEFAULTS]):.1f} | {med(times['tuned']):.1f} "
            f"| {_ratio(times):.2f}x | {med(peak[DEFAULTS]):.0f} "
            f"| {med(peak['tuned']):.0f} |"
        )
    lines += [
        "",
        "The U-Net alone, one forward call on 128 tiles of 32 px (milliseconds; median of 7 "
        "calls after 2, then the median over rounds):",
        "",
        "| network | defaults | tuned | speed-up |",
        "|---|---|---|---|",
    ]
    for name, times in r["forward_seconds"].items():
        lines.append(
            f"| {name} | {1e3 * med(times[DEFAULTS]):.0f} "
            f"| {1e3 * med(times['tuned']):.0f} | {_ratio(times):.2f}x |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
