"""Probe: the random-pixel inpainting replay on other hidden pixels than the library's, on the
same draws.

`replay_holes` hides one copy of a random-pixel hole (moved 1.5 times its bounding box, which
wraps around the image). Whole, that copy hides about half of y's observed pixels at 50% missing:
the replay then solves a 75%-missing problem for a 50%-missing one. Since 2026-12-04 the library
thins it until its pixels are as far from the observed ones as the hole's are (the mean gap
rule of `replay_holes`). This probe replaces `diffvision.restore.replay.replay_holes`, for this
process only, by
- --thin P: a sample of P of the observed pixels (seed 0), the probe that came before the rule;
- --whole: the copy unthinned, the library's replay before the rule;
and otherwise runs `bench/restoration.py` with the options after it, so that the replays can be
compared on the same draws (same seeds).

Run: python bench/inpaint_replay_thin.py --thin 0.1 --model runs/photos/model --crop 256
--steps 10 --tasks inpaint --random 0.5 --solvers 'inpaint:ddnm*4' --out OUT
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import numpy as np

import diffvision.restore.replay as replay
import restoration  # bench/, next to this script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--thin", type=float, help="fraction of observed pixels hidden")
    how.add_argument("--whole", action="store_true", help="the copies unthinned")
    args, rest = parser.parse_known_args()
    if args.thin is not None and not 0 < args.thin < 1:
        parser.error("--thin must be in (0, 1)")
    whole_copies = functools.partial(replay.replay_holes, min_pixels=sys.maxsize)

    def thin_holes(hole: np.ndarray, copies: int = replay.REPLAY_COPIES) -> np.ndarray:
        return ~hole & (np.random.default_rng(0).random(hole.shape) < args.thin)

    # _inpainting_replay looks it up at call time
    replay.replay_holes = whole_copies if args.whole else thin_holes
    flag = "--whole" if args.whole else f"--thin {args.thin:g}"
    save = restoration.save_result

    def save_probe(out, name, result, markdown):  # the command that really ran
        command = result["command"].replace("restoration.py", Path(__file__).name, 1)
        result["command"] = command.replace(".py", f".py {flag}", 1)
        save(out, name, result, restoration.markdown(result))

    restoration.save_result = save_probe
    sys.argv = [sys.argv[0], *rest]
    restoration.main()


if __name__ == "__main__":
    main()
