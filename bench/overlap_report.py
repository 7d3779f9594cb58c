"""Table of the tile-overlap study: the mean PSNR and seconds per image of each diffvision solver
of `bench/restoration.py` runs that differ only in `--overlap`, against the run at the
command's default overlap (a quarter of the tile: 8 px for 32 px tiles).

Run: python bench/overlap_report.py bench/results/restoration_overlap*/restoration.json
     -> bench/results/restoration_overlap.md
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from run_header import machine_words

#: The overlap the ratios and differences are taken against: `diffvision restore`'s default for
#: the 32 px tiles of the photos prior (tile // 4).
REFERENCE = 8


def overlap(result: dict) -> int:
    """The run's overlap: recorded in results since this report; before, read from the command
    (the bench's default, 8, where it is not written)."""
    if "overlap" in result:
        return result["overlap"]
    found = re.search(r"--overlap (\d+)", result["command"])
    return int(found.group(1)) if found else 8


def ours(result: dict) -> dict[tuple[str, str], dict[str, tuple[float, float]]]:
    """(task, method) -> photo -> (PSNR, seconds), the diffvision rows."""
    cells: dict[tuple[str, str], dict[str, tuple[float, float]]] = {}
    for row in result["rows"]:
        if row["method"].startswith("diffvision"):
            key = (row["task"], row["method"])
            cells.setdefault(key, {})[row["photo"]] = (row["psnr"], row["seconds"])
    return cells


def cell(photos: dict[str, tuple[float, float]], ref: dict[str, tuple[float, float]]) -> str:
    """Mean PSNR (its difference from ``ref``'s; on how many photos it is lower), mean seconds
    (``ref``'s over these: the speed-up)."""
    n = len(photos)
    psnr, sec = (sum(v[i] for v in photos.values()) / n for i in (0, 1))
    psnr0, sec0 = (sum(v[i] for v in ref.values()) / n for i in (0, 1))
    lower = sum(photos[p][0] < ref[p][0] for p in photos)
    return f"{psnr:.2f} ({psnr - psnr0:+.2f}; {lower}/{n} lower), {sec:.1f} s ({sec0 / sec:.2f}x)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path, nargs="+", help="restoration.json files")
    parser.add_argument("--out", type=Path, default=Path("results/restoration_overlap.md"))
    args = parser.parse_args()
    runs = {overlap(r): r for r in (json.loads(p.read_text()) for p in args.results)}
    if REFERENCE not in runs:
        parser.error(f"no run at the reference overlap {REFERENCE}")
    ref = ours(runs[REFERENCE])
    keys = list(ref)
    head = "| overlap | " + " | ".join(f"{t} `{m.removeprefix('diffvision ')}`" for t, m in keys)
    lines = [head + " | all four, s |", "|---" * (len(keys) + 2) + "|"]
    for ov in sorted(runs, reverse=True):
        run = ours(runs[ov])
        total = sum(sum(s for _, s in photos.values()) / len(photos) for photos in run.values())
        cells = " | ".join(cell(run[key], ref[key]) for key in keys)
        lines.append(f"| {ov} px | {cells} | {total:.1f} |")
    first = runs[REFERENCE]
    command = re.sub(r"(--overlap |_overlap)\d+", r"\1N", first["command"])
    text = "\n".join(
        [
            "# Tile overlap: quality against speed",
            "",
            f"`python bench/overlap_report.py` over {len(runs)} runs of `bench/restoration.py` "
            f"(the command of each: `{command}`"
            f"), on {machine_words(first)}, {min(r['date'] for r in runs.values())} to "
            f"{max(r['date'] for r in runs.values())}. The four held-out photos whole, "
            f"{first['steps']} solver steps, one sample, the same seeds; 32 px tiles. Each cell: "
            f"mean PSNR (dB) over the photos (difference from {REFERENCE} px, the default; on how "
            "many photos it is lower), mean seconds per image (speed-up against "
            f"{REFERENCE} px).",
            "",
            *lines,
            "",
        ]
    )
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
