"""float32 against bf16 inference (`--bf16`, `Denoiser.autocast`) in the restoration bench:
one table from runs of `bench/restoration.py` made alternately with and without `--bf16` on the
same machine.

Run (each run about 5-9 min on 2 CPU cores):
    S='denoise:mmse,inpaint:ddnm+warm0.3*8,superres:ddnm,deblur:repaint'
    for run in off1 on1 off2 on2; do   # alternate, so a slow phase of the machine hits both
        python bench/restoration.py --model runs/photos/model --tasks denoise,inpaint,superres,\
deblur --solvers "$S" $([[ $run == on* ]] && echo --bf16) --out runs/bf16_$run
    done
    python bench/restoration_bf16.py --fp32 runs/bf16_off1 runs/bf16_off2 \
        --bf16 runs/bf16_on1 runs/bf16_on2    -> bench/results/restoration_bf16.{json,md}
(the four runs' restoration.json files are kept in bench/results/restoration_bf16/)
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from restoration import RESULTS
from run_header import machine_words, save_result

RUN_FIELDS = ("command", "date", "machine", "device", "cpu_bf16", "torch", "threads", "seconds")


def load(paths: list[Path]) -> list[dict]:
    """Results of `bench/restoration.py`: its --out folders, or the JSON files themselves."""
    return [json.loads((p / "restoration.json" if p.is_dir() else p).read_text()) for p in paths]


def diffvision_rows(run: dict) -> dict[tuple[str, str, str], dict]:
    """(task, method, photo) -> row, for the diffvision rows of one run."""
    return {
        (r["task"], r["method"], r["photo"]): r
        for r in run["rows"]
        if r["method"].startswith("diffvision")
    }


def compare(fp32: list[dict], bf16: list[dict]) -> list[dict]:
    """Per (task, method): PSNR and SSIM of each mode averaged over photos (from its first run),
    the largest PSNR change on one photo over all run pairs, and seconds per image (the mean over
    photos of each photo's median over runs) with their ratio."""
    runs = {"fp32": [diffvision_rows(r) for r in fp32], "bf16": [diffvision_rows(r) for r in bf16]}
    keys = list(runs["fp32"][0])
    out = []
    for task, method in dict.fromkeys((t, m) for t, m, _ in keys):
        photos = [p for t, m, p in keys if (t, m) == (task, method)]
        row = {"task": task, "method": method}
        for mode, rows in runs.items():
            first = rows[0]
            row[f"psnr_{mode}"] = statistics.mean(first[task, method, p]["psnr"] for p in photos)
            row[f"ssim_{mode}"] = statistics.mean(first[task, method, p]["ssim"] for p in photos)
            row[f"seconds_{mode}"] = statistics.mean(
                statistics.median(r[task, method, p]["seconds"] for r in rows) for p in photos
            )
        row["max_psnr_change"] = max(
            abs(a[task, method, p]["psnr"] - b[task, method, p]["psnr"])
            for a in runs["fp32"]
            for b in runs["bf16"]
            for p in photos
        )
        row["speedup"] = row["seconds_fp32"] / row["seconds_bf16"]
        out.append(row)
    return out


def markdown(result: dict) -> str:
    first = result["fp32_runs"][0]
    lines = [
        "# Restoration with the network in bf16 (`--bf16`) against float32",
        "",
        f"{len(result['fp32_runs'])} runs of each mode of `bench/restoration.py`, made "
        f"alternately on {machine_words(first)}, finished between {result['dates'][0]} and "
        f"{result['dates'][-1]}; "
        f"the float32 command: `{first['command']}`. PSNR (dB) and SSIM averaged over the "
        "held-out photos; largest |PSNR change| on one photo between any float32 and any bf16 "
        "run; seconds per image: mean over photos of each photo's median over runs.",
        "",
        "| task | method | PSNR fp32 | PSNR bf16 | max change | SSIM fp32 | SSIM bf16 "
        "| s / image fp32 | s / image bf16 | speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['task']} | {r['method']} | {r['psnr_fp32']:.2f} | {r['psnr_bf16']:.2f} "
            f"| {r['max_psnr_change']:.3f} | {r['ssim_fp32']:.3f} | {r['ssim_bf16']:.3f} "
            f"| {r['seconds_fp32']:.1f} | {r['seconds_bf16']:.1f} | {r['speedup']:.2f}x |"
        )
    totals = [f"{s:.0f}" for s in result["total_seconds_fp32"]]
    totals_bf16 = [f"{s:.0f}" for s in result["total_seconds_bf16"]]
    lines += [
        "",
        f"Whole runs (classical baselines included): float32 {', '.join(totals)} s; bf16 "
        f"{', '.join(totals_bf16)} s.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fp32", type=Path, nargs="+", required=True, help="runs without --bf16")
    parser.add_argument("--bf16", type=Path, nargs="+", required=True, help="runs with --bf16")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    fp32, bf16 = load(args.fp32), load(args.bf16)
    if any(r.get("bf16") for r in fp32) or not all(r.get("bf16") for r in bf16):
        parser.error("--fp32 runs must be without --bf16 and --bf16 runs with it")
    result = {
        "benchmark": "restoration_bf16",
        "fp32_runs": [{k: r[k] for k in RUN_FIELDS if k in r} for r in fp32],
        "bf16_runs": [{k: r[k] for k in ("command", "date", "seconds")} for r in bf16],
        "dates": sorted(r["date"] for r in fp32 + bf16),
        "total_seconds_fp32": [r["seconds"] for r in fp32],
        "total_seconds_bf16": [r["seconds"] for r in bf16],
        "rows": compare(fp32, bf16),
    }
    save_result(args.out, "restoration_bf16", result, markdown(result))


if __name__ == "__main__":
    main()
