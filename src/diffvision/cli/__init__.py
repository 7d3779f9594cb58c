"""The ``diffvision`` command: train, sample, info, demo, eval, restore.

No logic of its own: every subcommand parses arguments, calls the library and reports. Bad input
is one clear line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import textwrap
import warnings

from ..allocator import tune_malloc
from . import demo, evaluate, info, restore, sample, train
from .common import EXIT_USAGE, Parser, UsageError, _formatter, given_options


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="diffvision",
        description="Diffusion models for imaging and vision: train, sample, restore, evaluate.",
        formatter_class=_formatter,
        epilog=textwrap.dedent("""\
            examples:
              diffvision demo
              diffvision train --data digits --steps 3000 --out runs/digits
              diffvision sample runs/digits/model --n 64 --out grid.png
              diffvision info runs/digits/model
              diffvision eval runs/digits/model --data digits
              diffvision restore denoise runs/photos/model noisy.png --sigma 25 --out clean.png"""),
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    for command in (train, sample, info, demo):
        command.add_parser(sub)
    evaluate.add_parsers(sub)
    restore.add_parser(sub)
    return parser


def _version() -> str:
    """diffvision's version, with the torch it runs on (for bug reports)."""
    import torch

    from .. import __version__

    return f"diffvision {__version__} (torch {torch.__version__}, Python {sys.version.split()[0]})"


COMMANDS = {
    "train": train.cmd_train,
    "sample": sample.cmd_sample,
    "info": info.cmd_info,
    "demo": demo.cmd_demo,
    "eval": evaluate.cmd_eval,
    "restore": restore.cmd_restore,
}


def main(argv: list[str] | None = None) -> int:
    """The ``diffvision`` command: ``argv`` (default: the program's arguments) -> exit code. Run
    as the program (``argv`` None), it first tunes glibc's malloc for tensors
    (:func:`~diffvision.allocator.tune_malloc`); called with ``argv``, it leaves the caller's
    process as it is."""
    if argv is None:
        tune_malloc()
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:2] == ["eval", "train-features"]:
        command, run = "eval train-features", lambda: evaluate.cmd_train_features(argv[2:])
    else:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command in ("train", "eval", "restore"):  # the options given, at any value:
            # train --resume refuses other values than the run's, and all three refuse options
            # that the run would not use
            args.given = given_options(build_parser(), argv)
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        command, run = args.command, lambda: COMMANDS[args.command](args)
    # A scheduler's or torchrun's SIGTERM stops a command the way Ctrl-C does, so an interrupted
    # training run saves its checkpoint (the default action would end it where it stands).
    try:
        previous = signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:  # main() called outside the main thread: leave signals alone
        previous = None
    try:
        with warnings.catch_warnings():  # restores the caller's way of showing them
            warnings.showwarning = _one_line_warning(command)
            return run()
    except (UsageError, ValueError, FileNotFoundError, FloatingPointError) as err:  # the last: a
        # training loss that is no longer finite (a --lr too high), said as the trainer words it
        print(f"diffvision {command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as err:  # a file that cannot be written (disk full, say): named in one line
        if err.filename is None:  # not about a file: a fault to report with its traceback
            raise
        print(f"diffvision {command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except (RuntimeError, MemoryError) as err:  # an allocation refused: settings too large
        need = _failed_allocation(err)
        if need is None:
            raise
        print(
            f"diffvision {command}: error: out of memory: {need} could not be allocated; ask "
            "for less (fewer steps, samples or images, a smaller batch or image)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _one_line_warning(command: str):
    """A ``warnings.showwarning`` that says a warning in one line, as errors are said ("diffvision
    restore: warning: Image size (108000000 pixels) exceeds limit ..."), not with the file, line
    and source of the library that raised it."""

    def show(message, category, filename, lineno, file=None, line=None):
        print(
            f"diffvision {command}: warning: {message}", file=sys.stderr if file is None else file
        )

    return show


def _failed_allocation(err: Exception) -> str | None:
    """How much memory the allocation that raised ``err`` asked for ("745.1 GiB", or "memory"
    where the message does not say), or None where ``err`` is not an allocation refused: CUDA's
    out-of-memory error, the CPU allocator's "can't allocate memory" (a plain RuntimeError), or
    Python's MemoryError (``eval --seeds 1e11`` lists its seeds). The checks before a run
    (``memory.py``) are lower bounds: this catches what they miss."""
    import torch

    if isinstance(err, MemoryError):
        return "memory"
    text = str(err)
    if not isinstance(err, torch.OutOfMemoryError) and "can't allocate memory" not in text:
        return None
    found = re.search(r"allocate ([0-9.]+) (bytes|[KMGT]iB)", text)
    if found is None:
        return "memory"
    amount, unit = float(found[1]), found[2]
    if unit == "bytes":
        amount, unit = amount / 2**30, "GiB"
    return f"{amount:.1f} {unit}"


def _interrupt(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


if __name__ == "__main__":
    sys.exit(main())
