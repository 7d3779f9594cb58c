"""What every subcommand shares: one-line usage errors (exit code 2) and argument types."""

from __future__ import annotations

import argparse
import difflib
import math
import os
import sys
from pathlib import Path

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``diffvision CMD: error: ...`` and exit code 2 (said by
    rank 0 alone under torchrun)."""

    def error(self, message):
        from ..train.distributed import launched_main

        # Under torchrun every rank parses the same command line and finds the same error: rank
        # 0 says it, the others end with the same exit code without a word.
        said = f"{self.prog}: error: {message} (see --help)\n"
        self.exit(EXIT_USAGE, said if launched_main() else None)

    def parse_args(self, args=None, namespace=None):
        """As argparse's, but arguments that no parser took are refused by the subcommand that
        was chosen (``diffvision restore: error: ...``, whose ``--help`` lists its options; the
        top parser's would name ``diffvision``), with the nearest option where one was
        misspelt (``--sigam`` -> ``--sigma``)."""
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            chosen = self._chosen(parsed)
            chosen.error(f"unrecognized arguments: {' '.join(extra)}{chosen._nearest(extra)}")
        return parsed

    def _chosen(self, parsed: argparse.Namespace) -> argparse.ArgumentParser:
        """The innermost parser that ``parsed`` went through: the chosen subcommand's."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                name = getattr(parsed, action.dest, None)
                if name in action.choices:
                    chosen = action.choices[name]
                    return chosen._chosen(parsed) if isinstance(chosen, Parser) else chosen
        return self

    def _nearest(self, extra: list[str]) -> str:
        """``"; did you mean --sigma?"`` for the first of ``extra``'s options that is close to
        one of this parser's (by difflib's ratio, 0.75 or more), else ``""``."""
        options = [name for action in self._actions for name in action.option_strings]
        for word in extra:
            if word.startswith("--"):
                near = difflib.get_close_matches(word.split("=", 1)[0], options, n=1, cutoff=0.75)
                if near:
                    return f"; did you mean {near[0]}?"
        return ""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Examples kept as written; an option's default appended to its help where it has one
    (not None, nor the False of a flag; 0 is shown) and the help does not already state it."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (
            action.option_strings
            and default is not None
            and default is not argparse.SUPPRESS
            and action.nargs != 0  # a flag's False
            and "default" not in text
        ):
            text += " (default: %(default)s)" if text else "default: %(default)s"
        return text


def given_options(parser: argparse.ArgumentParser, argv: list[str]) -> frozenset[str]:
    """The names (``dest``) of the options that ``argv`` gives, whatever their values: an option
    given at its default is counted, one left out is not. ``parser``, a fresh one that this
    changes, parses ``argv`` again with every default suppressed, so that only what was given
    reaches the namespace."""
    parsers = [parser]
    while parsers:
        current = parsers.pop()
        current._defaults.clear()
        for action in current._actions:
            action.default = argparse.SUPPRESS
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
    return frozenset(vars(parser.parse_args(argv)))


#: Options whose ``dest`` is not their name.
OPTION_NAMES = {"label": "--class"}


def option_name(dest: str) -> str:
    """The option whose value ``args.<dest>`` holds, as typed: ``--start-sigma``, ``--class``."""
    return OPTION_NAMES.get(dest, "--" + dest.replace("_", "-"))


def given_names(args: argparse.Namespace, dests) -> list[str]:
    """The options of ``dests`` that the command line gave, at any value (``args.given``, which
    ``main`` sets from :func:`given_options`), by :func:`option_name`."""
    given = getattr(args, "given", frozenset())
    return [option_name(dest) for dest in dests if dest in given]


def _formatter(prog):
    return _HelpFormatter(prog, max_help_position=32)


def _number(kind, text: str):
    """``kind(text)``, or argparse's one-line "not a number" error ("not an integer" where an
    integer is asked for: 1.5 is a number)."""
    try:
        return kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None


def _finite(text: str) -> float:
    """A float argument that is a real number (argparse's float also takes nan and inf)."""
    value = _number(float, text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


#: Where ``--bf16`` pays (``hardware.native_bf16``), for every command's help.
BF16_WHERE = (
    "faster where the hardware computes in bf16 (CPUs with AVX-512 BF16, AMX or ARM BF16; GPUs "
    "from Ampere on), slower where it does not (a note says so)"
)


def add_bf16_inference(parser) -> None:
    """``--bf16`` of the commands that run a trained model (``Denoiser.autocast``)."""
    parser.add_argument(
        "--bf16",
        action="store_true",
        help=f"run the network in bfloat16 autocast: {BF16_WHERE}; results differ by rounding",
    )


def fast_inference(model, device, bf16: bool):
    """What ``sample``, ``restore`` and ``eval`` do to a loaded model before running it: on the
    CPU the network's weights in channels-last memory format (oneDNN's preferred layout; the same
    results up to float32 rounding; sampling 1.15x faster in float32, 1.40x in bf16, in
    bench/results/sample_speed.md), and with ``bf16`` the network in bfloat16 autocast
    (``Denoiser.autocast``)."""
    import torch

    if device.type == "cpu":
        model.to(memory_format=torch.channels_last)
    if bf16:
        note_emulated_bf16(device)
        model.autocast = torch.bfloat16
    return model


def note_emulated_bf16(device) -> None:
    """Say on stderr that ``--bf16`` will be slow where ``device`` has no native bfloat16
    (``hardware.native_bf16`` is False): autocast then converts to float32 and back around every
    operation, 2.2x slower per training step of the ``photos`` U-Net on a Xeon without AVX-512
    BF16 (README). Nothing is said where torch cannot tell."""
    import torch

    from ..hardware import native_bf16

    if native_bf16(device) is False:
        if device.type == "cuda":
            major, minor = torch.cuda.get_device_capability(device)
            what = (
                f"this GPU (compute capability {major}.{minor}) does not compute in bfloat16 "
                "natively (that takes 8.0, Ampere, or newer)"
            )
        else:
            what = (
                "this CPU does not compute in bfloat16 natively (no AVX-512 BF16, AMX or ARM BF16)"
            )
        print(
            f"note: {what}: --bf16 is emulated here and usually slower than float32",
            file=sys.stderr,
        )


def _positive(kind):
    def parse(text):
        value = _number(kind, text)
        if not (value > 0 and math.isfinite(value)):  # nan and inf are not positive numbers
            raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
        return value

    return parse


def _at_least(minimum: int):
    """The type of an integer argument of ``minimum`` or more."""

    def parse(text: str) -> int:
        value = _number(int, text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more: {text!r}")
        return value

    return parse


#: an integer argument that is 0 or more (0: none)
_count = _at_least(0)


def seed(text: str) -> int:
    """A seed of random numbers: an integer in 0..:data:`~diffvision.seeds.MAX_SEED`."""
    from ..seeds import MAX_SEED

    value = _number(int, text)
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"a seed is an integer in 0..2**63 - 1, not {text!r}")
    return value


def sampler_name(text: str) -> str:
    """The name of a sampler (:data:`~diffvision.samplers.SAMPLERS`)."""
    from ..samplers import get

    try:
        get(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def listed(kind, what: str):
    """The type of an argument of comma-separated values, each of the type ``kind`` (its
    errors said with the value), at least one and none twice (``--sweep-steps 5,5`` ran twice):
    a list. ``what``: the values, for the message (e.g. "integers")."""

    def parse(text: str) -> list:
        values = [kind(v.strip()) for v in text.split(",") if v.strip()]
        if not values:
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}")
        twice = next((v for i, v in enumerate(values) if v in values[:i]), None)
        if twice is not None:
            raise argparse.ArgumentTypeError(f"{twice} is listed twice in {text!r}")
        return values

    return parse


def model_classes(config: dict) -> list[str]:
    """The names of the classes of the model that ``config`` describes (its data's
    ``class_names``, e.g. class folders'; their indices as text where it names none); [] for an
    unconditional model."""
    count = config["net"].get("num_classes", 0)
    names = (config.get("data") or {}).get("class_names") or []
    return list(names) if len(names) == count else [str(i) for i in range(count)]


def class_index(text: str, config: dict, option: str) -> int:
    """The class ``text`` names of the model that ``config`` describes: a class name (a class
    folder's, e.g. ``cats``; a name wins over an index, with a note where it is also the index
    of another class: folders named 1, 2, 3) or an index from 0. UsageError, naming the
    classes, for one it lacks or an unconditional model."""
    names = model_classes(config)
    if not names:
        raise UsageError(f"this model is unconditional: {option} is not available")
    if text in names:
        index = names.index(text)
        if text.isdigit() and int(text) < len(names) and int(text) != index:
            print(f"note: {option} {text} is the class named {text} (index {index}), not the "
                  f"class of index {text} (named {names[int(text)]})")  # fmt: skip
        return index
    if text.isdigit() and int(text) < len(names):
        return int(text)
    indices = f"0..{len(names) - 1}"
    if names != [str(i) for i in range(len(names))]:  # named, e.g. by class folders
        indices = f"{first_names(names)} (or their indices {indices})"
    raise UsageError(f"{option} {text}: the model's classes are {indices}")


def first_names(names: list[str], limit: int = 20) -> str:
    """At most ``limit`` of ``names``, comma-separated, with ``...`` where there are more."""
    return ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")


def counted(n, noun: str) -> str:
    """``n`` and ``noun``, plural where ``n`` is not 1: ``1 image``, ``3 images``."""
    return f"{n} {noun}{'s' * (n != 1)}"


def require_null_class(config: dict, folder, what: str, instead: str = "") -> None:
    """Refuse (UsageError) ``what`` (a use of a class model's null class: guidance, sampling or
    scoring without a class, an unconditional prior) for a model that learnt no null class
    (:func:`~diffvision.io.model_folder.learnt_null_class`): its null branch is an untrained
    embedding, whose results were noise without a word. ``instead`` ends the line with what
    the user can do."""
    from ..io.model_folder import learnt_null_class

    if config["net"].get("num_classes", 0) and not learnt_null_class(config):
        raise UsageError(f"{what} needs the null class, which {folder} never learnt (trained "
                         f"with --label-dropout 0){instead}")  # fmt: skip


def add_guidance(parser) -> None:
    """``--guidance`` of the commands that draw a class (sample, eval)."""
    parser.add_argument(
        "--guidance",
        type=_finite,
        default=1.0,
        help="classifier-free guidance scale w, D_null + w (D_class - D_null) (Ho & Salimans "
        "2022): 1 is the class's own model, above 1 more typical of the class and less varied, "
        "0 the null class's",
    )


#: ``--unconditional``'s choices: how a class model's unconditional denoiser is made.
UNCONDITIONAL = ("auto", "mixture", "null")


def add_unconditional(parser, when: str) -> None:
    """``--unconditional`` of the commands that run a class model without a class (``when``
    says where, e.g. "without --class")."""
    parser.add_argument(
        "--unconditional",
        choices=UNCONDITIONAL,
        default="auto",
        help=f"{when}, for a class model: `mixture` mixes the class branches by the folder's "
        "noise classifier (see train --classifier-steps), `null` uses the null class; auto: "
        "mixture when the folder has a classifier",
    )


#: How a class model without a null class can still be made unconditional.
MIX_INSTEAD = ": train a noise classifier (train --classifier-steps) to mix the class branches"


def unconditional_kind(
    choice: str, config: dict, folder, what: str, instead: str = MIX_INSTEAD
) -> str:
    """How a class model's unconditional denoiser is made for ``what`` (the use, as the
    messages name it), decided before the model is loaded: "mixture", its class branches
    weighted by the folder's noise classifier (``choice`` "mixture", or "auto" where the
    folder has a classifier), else "null", its null class. Refuses (UsageError) a mixture
    without a classifier and a null class the model never learnt (:func:`require_null_class`;
    ``instead`` ends that line). The caller has refused ``--unconditional`` where no class
    model runs without a class."""
    from ..io.model_folder import classifier_file

    classifier = classifier_file(folder).is_file()
    if choice == "mixture" and not classifier:
        raise UsageError(f"{folder} has no noise classifier (train with --classifier-steps)")
    if choice == "null" or not classifier:
        asked = "--unconditional null" if choice == "null" else what
        require_null_class(config, folder, asked, instead if choice != "null" else "")
        return "null"
    return "mixture"


def unconditional_model(model, kind: str, folder, device):
    """The loaded class ``model`` as the unconditional denoiser :func:`unconditional_kind`
    chose: for "mixture" a :class:`~diffvision.ClassMixture` of it with the folder's noise
    classifier (said in a line), for "null" the model itself (without a condition its network
    runs the null class)."""
    if kind != "mixture":
        return model
    from ..denoiser import ClassMixture
    from ..io import load_classifier

    mixture = ClassMixture(model, load_classifier(folder, device=device))
    print("unconditional: class-posterior mixture of the class branches")  # once it is
    return mixture


def white_level(text: str) -> int:
    """The value of white in 16-bit image files: an integer in 1-65535."""
    from ..data.transforms import check_white

    value = _number(int, text)
    try:
        check_white(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return value


def _writable(text: str, folder: bool, model: bool = False) -> str:
    """``text``, an output path (a folder if ``folder``, else a file), unless it cannot be
    written: a file where a folder goes, on its way (``notes.txt/run``) or at its end, a folder
    where a file goes, a folder without write permission on its way, or a model folder on its
    way (``model``: a model folder's own path may be one, to be replaced). Checked when the
    arguments are parsed, not after the work that it would hold."""
    path = Path(text).absolute()
    holder = _model_folder_over(path.parent if model or not folder else path)
    if holder is not None:  # samples written into a model folder: it could no longer be replaced
        raise argparse.ArgumentTypeError(
            f"cannot write {text!r}: {holder} is a model folder, which holds its model's files "
            "only; write elsewhere"
        )
    if path.exists() and path.is_dir() != folder:
        there = "a folder" if path.is_dir() else "a file"
        raise argparse.ArgumentTypeError(f"{text!r} is {there}, not {'a' if folder else 'an'} "
                                         f"{'folder' if folder else 'output file'}")  # fmt: skip
    start = path if path.is_dir() else path.parent
    parent = next(p for p in (start, *start.parents) if p.exists())  # the root exists
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: {parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: no permission in {parent}")
    return text


def _model_folder_over(path: Path) -> Path | None:
    """The model folder (or checkpoint) that ``path`` is or lies in, if any."""
    from ..io.model_folder import is_model_folder

    return next((p for p in (path, *path.parents) if is_model_folder(p)), None)


def output_file(text: str) -> str:
    """An output file that can be written (see :func:`_writable`)."""
    return _writable(text, folder=False)


def output_folder(text: str) -> str:
    """An output folder that can be made or written in (see :func:`_writable`)."""
    return _writable(text, folder=True)


def model_output(text: str) -> str:
    """An output model folder: new, or a model folder to replace (see :func:`_writable`;
    :func:`~diffvision.io.model_folder.check_replaceable` says which it may replace)."""
    return _writable(text, folder=True, model=True)


def image_file(text: str) -> str:
    """An output path whose extension PIL can write (.png, .jpg, .tif, ...), and that can be
    written (:func:`output_file`)."""
    from ..io.images import image_format

    try:
        image_format(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return output_file(text)


def image_file_or_folder(text: str) -> str:
    """An output image file (see :func:`image_file`) or a folder (no extension), for commands
    that take one input image or a folder of them. A folder is told by its name, so one given
    with a file's extension (``x.png/``) is refused: it was written as the file ``x.png``."""
    if Path(text).suffix and text.endswith(("/", os.sep)):
        raise argparse.ArgumentTypeError(
            f"{text!r} ends in / as a folder does but has a file's extension: give the file "
            f"{text.rstrip('/' + os.sep)!r}, or a folder name without an extension"
        )
    return output_folder(text) if Path(text).suffix == "" else image_file(text)


def grid_or_folder(text: str) -> str:
    """``sample``'s output: a .png file (one grid), a .tif file (a TIFF stack of the images) or a
    folder (no extension)."""
    if Path(text).suffix.lower() not in ("", ".png", ".tif", ".tiff"):
        raise argparse.ArgumentTypeError(
            f"must be a .png file (a grid), a .tif file (a stack) or a folder, got {text!r}"
        )
    return image_file_or_folder(text)


def add_quiet(parser) -> None:
    """``--quiet`` of the commands that show a progress bar."""
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def step_bar(total: int, what: str, quiet: bool = False, checked: bool = True):
    """A progress bar on stderr for ``total`` sampler steps (none with ``quiet``, or with
    ``TQDM_DISABLE=1``); ``bar.step`` is a sampler callback. With ``total`` 0 (no sampling: one
    denoiser call, as ``mmse`` makes) it counts that call's tiles instead, fed by ``bar.tiles``,
    a :class:`~diffvision.restore.tiles.TiledDenoiser` ``progress`` callback. It goes away
    when done, so that stdout's report stays the output. ``checked`` False: the call it shows
    may still refuse to start (it checks its memory first), so the bar shows from the first
    step on, as a tile bar does."""
    from tqdm.auto import tqdm

    off = {"disable": True} if quiet else {}  # else tqdm's default (env: TQDM_*)
    unit = "step" if total else "tile"
    # A tile bar shows from its first update on (any delay > 0 does that): a refusal before
    # the call leaves no empty bar on stderr.
    delay = 0 if total and checked else 1e-9
    bar = tqdm(total=total or None, desc=what, unit=unit, leave=False, delay=delay, **off)
    bar.step = lambda info: bar.update(1)

    def tiles(done: int, count: int) -> None:
        bar.total = count
        bar.update(done - bar.n)

    bar.tiles = tiles
    return bar
