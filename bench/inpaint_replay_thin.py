"""Probe: the random-pixel inpainting replay on a thin random sample of the observed pixels.

`replay_holes` hides one copy of a random-pixel hole (moved 1.5 times its bounding box, which
wraps around the image), which hides about half of y's observed pixels at 50% missing: the
replay then solves a 75%-missing problem for a 50%-missing one. This probe replaces
`diffvision.restore.replay.replay_holes`, for this process only, by a sample of --thin of the
observed pixels (seed 0), and otherwise runs `bench/restoration.py` with the options after it,
so that the two replays can be compared on the same draws (same seeds).

Run: python bench/inpaint_replay_thin.py --thin 0.1 --model runs/photos/model --crop 256
--steps 10 --tasks inpaint --random 0.5 --solvers 'inpaint:ddnm*4' --out OUT
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import diffvision.restore.replay as replay
import restoration  # bench/, next to this script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--thin", type=float, default=0.1, help="fraction of observed pixels hidden"
    )
    args, rest = parser.parse_known_args()
    if not 0 < args.thin < 1:
        parser.error("--thin must be in (0, 1)")

    def thin_holes(hole: np.ndarray, copies: int = replay.REPLAY_COPIES) -> np.ndarray:
        return ~hole & (np.random.default_rng(0).random(hole.shape) < args.thin)

    replay.replay_holes = thin_holes  # _inpainting_replay looks it up at call time
    save = restoration.save_result

    def save_probe(out, name, result, markdown):  # the command that really ran
        command = result["command"].replace("restoration.py", Path(__file__).name, 1)
        result["command"] = command.replace(".py", f".py --thin {args.thin:g}", 1)
        save(out, name, result, restoration.markdown(result))

    restoration.save_result = save_probe
    sys.argv = [sys.argv[0], *rest]
    restoration.main()


if __name__ == "__main__":
    main()
