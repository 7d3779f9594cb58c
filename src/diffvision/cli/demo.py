"""``diffvision demo``: train on the built-in digits and write an HTML report."""

from __future__ import annotations

import sys
from pathlib import Path

from .common import _formatter, _positive, add_quiet, output_folder, seed


def add_parser(sub) -> None:
    """Add the ``demo`` subcommand and its options to ``sub`` (the subparsers)."""
    d = sub.add_parser(
        "demo",
        help="train on built-in digits on the CPU and write an HTML report",
        formatter_class=_formatter,
        epilog="example:\n  diffvision demo --out runs/demo",
    )
    d.add_argument("--out", default="runs/demo", type=output_folder, help="output folder")
    d.add_argument(
        "--steps",
        type=_positive(int),
        default=None,
        help="training steps (default: the demo's tuned value)",
    )
    d.add_argument("--seed", type=seed, default=0, help="seed of training and sampling")
    add_quiet(d)


def cmd_demo(args) -> int:
    from ..demo import run_demo

    try:
        report = run_demo(Path(args.out), steps=args.steps, seed=args.seed, progress=not args.quiet)
    except KeyboardInterrupt:
        print("interrupted; a checkpoint was saved if training had begun: the same command "
              "continues from it", file=sys.stderr)  # fmt: skip
        return 130
    print(f"demo report: {report}")
    return 0
