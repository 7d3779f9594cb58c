"""Table of the GPU box-inpainting study (issue 4): per-photo PSNR of each prior's solvers, each
the mean of 32 posterior samples, against the biharmonic fill, from the `bench/restoration.py`
JSON files that `bench/inpaint_priors_gpu.sh` and `bench/inpaint_steps_gpu.sh` wrote.

Run: python bench/inpaint_priors_report.py bench/results/inpaint_priors_gpu
     -> bench/results/inpaint_priors_gpu.md
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

PHOTOS = ("camera", "astronaut", "coffee", "chelsea")
BASELINE = "skimage_biharmonic"


def prior(result: dict) -> str:
    """ "64 px, 2400 steps x batch 128, NVIDIA H200" from a result's model record (no hardware
    record: the 2-core bench CPU, where every older model was trained)."""
    m = result["model"]
    t, hw = m["training"], m.get("hardware") or {"device": "cpu"}
    where = hw["name"] if hw["device"] == "cuda" else "2-core CPU"
    return f"{m['data']['size']} px, {t['steps']} steps x batch {t['batch']}, {where}"


def solver_steps(result: dict) -> int:
    """The solver's steps: recorded in results since 2026-12-05; in the GPU study's files (run
    2026-11-27), read from the command, where the bench's default, 10, is not written."""
    if "steps" in result:
        return result["steps"]
    found = re.search(r"--steps (\d+)", result["command"])
    return int(found.group(1)) if found else 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="default: FOLDER.md")
    args = parser.parse_args()
    results = [json.loads(p.read_text()) for p in sorted(args.folder.glob("*.json"))]
    if not results:
        parser.error(f"no JSON results in {args.folder}")
    head = "| prior | solver steps | method | " + " | ".join(PHOTOS) + " | mean |"
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    base = None
    for r in sorted(results, key=lambda r: (prior(r), solver_steps(r))):
        by = {(x["method"], x["photo"]): x["psnr"] for x in r["rows"]}
        base = [by[BASELINE, p] for p in PHOTOS]
        for method in dict.fromkeys(x["method"] for x in r["rows"]):
            if not method.endswith("mean of 32"):
                continue
            v = [by[method, p] for p in PHOTOS]
            cells = " | ".join(f"{a:.2f} ({a - b:+.2f})" for a, b in zip(v, base, strict=True))
            name = method.removeprefix("diffvision ").removesuffix(", mean of 32")
            lines.append(
                f"| {prior(r)} | {solver_steps(r)} | {name} | {cells} | {sum(v) / 4:.2f} |"
            )
    lines.append(
        f"| - | - | biharmonic fill | {' | '.join(f'{b:.2f}' for b in base)} | "
        f"{sum(base) / 4:.2f} |"
    )
    r0 = results[0]
    gpu = r0.get("gpu") or next(  # older results: nvidia-smi's line in the run's log
        (
            m.group(1)
            for log in sorted(args.folder.glob("*.txt"))
            for m in [re.search(r"GPU 0: (.+?) \(UUID", log.read_text())]
            if m
        ),
        r0["device"],
    )
    text = "\n".join(
        [
            "# Box inpainting with larger priors and more samples (GPU study)",
            "",
            f"From {len(results)} `bench/restoration.py` runs on one {gpu} "
            f"(torch {r0['torch']}), {r0['date'][:10]}, by `bench/inpaint_priors_gpu.sh` and "
            "`bench/inpaint_steps_gpu.sh`. Held-out photos whole, central box of side "
            "min(H, W) / 4, noise-free; tiles of the prior's own size; every diffvision row is the "
            "mean of 32 posterior samples. PSNR in dB, in brackets the difference from the "
            "biharmonic fill (the best classical baseline on average).",
            "",
            *lines,
            "",
        ]
    )
    out = args.out or args.folder.with_suffix(".md")
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
