"""``diffvision restore TASK MODEL FOLDER --out FOLDER``: a folder of images (or the frames of a
TIFF stack) restored one by one, with a record (``restore.json`` in the output folder) of the
settings and of each image done, so a rerun after an interruption restores only the images not
done yet. ``--out STACK.tif`` for a stack: its frames restored so into a folder beside it, then
joined into one TIFF stack."""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from tqdm import tqdm

from ..data.transforms import keep_open
from ..io.digest import file_digest
from ..io.images import frames_folder
from .common import EXIT_USAGE, UsageError
from .record import read_record, typed_prior, write_record
from .record import settings_of as record_settings

RECORD = "restore.json"
#: Options that do not change a result: where it is written, how it is shown, where it is run
#: (and what the --mask file and the input, recorded, decide: whether each frame has its mask).
NOT_SETTINGS = ("command", "out", "side_by_side", "quiet", "device", "batch", "mask_per_frame")
#: Options of one task: for the other tasks they change nothing.
TASK_OPTIONS = {
    "inpaint": ("mask", "box", "random", "strokes", "stroke_width", "fill"),
    "superres": ("factor", "method"),
    "deblur": ("kernel",),
}


class Input(NamedTuple):
    """One image to restore: the file ``path``, the ``name`` its results take in the output
    folders, for a frame of a stack the ``frame`` (from 0; None: a file's only image), and its
    own inpainting ``mask`` file where it has one (of a ``--mask`` folder, or a ``--mask``
    stack of a mask per frame; None: ``--mask`` as given), ``mask_frames`` where that file's
    frames are the stack's, one per frame (else its first frame is the mask)."""

    path: Path
    name: Path
    frame: int | None = None
    mask: Path | None = None
    mask_frames: bool = False


def mask_file(args: argparse.Namespace) -> Path | None:
    """The ``--mask`` of an inpainting run as a path (None: none, or ``alpha``)."""
    return Path(args.mask) if args.mask not in (None, "alpha") else None


def kernel_file(kernel: str | None) -> Path | None:
    """A ``--kernel`` that names a file (a measured PSF: an image or ``.npy``, by its suffix, or
    any file there), not a form (``gauss:STD``, ``motion:LENGTH:ANGLE``); else None."""
    from ..data.folder import EXTENSIONS

    if kernel is None or kernel.partition(":")[0] in ("gauss", "motion"):
        return None
    path = Path(kernel)
    return path if path.suffix.lower() in {*EXTENSIONS, ".npy"} or path.is_file() else None


def mask_folder(args: argparse.Namespace) -> Path | None:
    """The ``--mask`` folder of masks named as the images (None where ``--mask`` is no folder)."""
    mask = mask_file(args)
    return mask if mask is not None and mask.is_dir() else None


def masks_by_name(folder: Path, source: Path, files: list[Path]) -> dict[Path, Path]:
    """The mask of each of ``files`` (images under the input folder ``source``) in the mask
    folder ``folder``: the image file of the same name and sub-folder, of any image type
    (``a/b.jpg``'s is ``a/b.png``, say). Raises UsageError, once and before any work, where an
    image has none or two."""
    from ..data.folder import find_images

    found: dict[Path, list[Path]] = {}
    for mask in find_images(folder):
        found.setdefault(mask.relative_to(folder).with_suffix(""), []).append(mask)
    masks, missing = {}, []
    for file in files:
        candidates = found.get(file.relative_to(source).with_suffix(""), [])
        if len(candidates) > 1:
            raise UsageError(
                f"--mask {folder} holds {len(candidates)} masks for {file.relative_to(source)}: "
                f"{', '.join(p.name for p in candidates)}: keep one"
            )
        if candidates:
            masks[file] = candidates[0]
        else:
            missing.append(str(file.relative_to(source)))
    if missing:
        named = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise UsageError(
            f"--mask {folder} has no mask for {len(missing)} of {len(files)} images ({named}): a "
            "mask is named as its image, in the same sub-folder (any image type)"
        )
    return masks


def settings_of(args: argparse.Namespace) -> dict:
    """What the results of a restore depend on (:func:`record.settings_of`): the options but
    those of other tasks, with the input folder's absolute path. ``args.solver`` and
    ``args.resample`` are the ones used (a default given by name is the same setting)."""
    others = tuple(o for task, opts in TASK_OPTIONS.items() if task != args.task for o in opts)
    settings = record_settings(args, NOT_SETTINGS + others)
    if args.task == "inpaint" and mask_file(args) is not None and mask_folder(args) is None:
        settings["mask_sha256"] = file_digest(args.mask)  # its content; a folder's: per image
    if args.task == "deblur" and kernel_file(args.kernel) is not None:
        settings["kernel_sha256"] = file_digest(args.kernel)  # a PSF file: its content
    return {**settings, "input": str(Path(args.input).resolve())}


#: The record of a folder's results is written after a result at most this often (seconds), and
#: after the last, or where the run stops: written after each, a record of every image done
#: made a stack of N frames cost N squared (1,000 frames of 8 x 8 px: 43% of the run in JSON).
RECORD_EVERY_S = 1.0
#: ... and at most this share of the run's time: the longest of the two waits is kept.
RECORD_SHARE = 0.05

#: Settings that records from before 2026-12-07 lack (:func:`read_record`'s ``since``).
SINCE = ("mask_sha256",)


def _digest_or_none(path: Path) -> str | None:
    """The SHA-256 of the input file ``path``, or None where it cannot be read (restoring it
    then names the error)."""
    try:
        return file_digest(path)
    except OSError:
        return None


def _inputs_digest(inputs: list[Input], digest: Callable[[Path], str | None]) -> str:
    """One SHA-256 of the files that ``inputs`` are read from (each file and own mask, by path
    and content, in order; ``digest``: of a file): what a stack made of them records."""
    joined = hashlib.sha256()
    for item in dict.fromkeys((i.path, i.mask) for i in inputs):
        for file in (f for f in item if f is not None):
            joined.update(f"{file}\0{digest(file)}\n".encode())
    return joined.hexdigest()


def _digests(item: Input, digest: Callable[[Path], str | None]) -> dict[str, str | None]:
    """What a record holds of the files that ``item``'s result was made from: the SHA-256 of
    its input file, and of its own mask file where it has one (``digest``: of a file)."""
    read = {"sha256": digest(item.path)}
    if item.mask is not None:
        read["mask_sha256"] = digest(item.mask)
    return read


def _changed(entry: dict, item: Input, digest: Callable[[Path], str | None]) -> bool:
    """Whether a file that the record ``entry`` of ``item``'s result holds a digest of has
    changed since (a record from before 2026-12-07 holds none: its result is kept)."""
    return any(entry.get(key, now) != now for key, now in _digests(item, digest).items())


def std_map_path(out: Path, joined: bool = False) -> Path:
    """Where the uncertainty map of the result ``out`` is written (``--samples`` > 1): beside
    it as ``STEM_std.png``; for ``joined`` frames (``out`` a TIFF stack) the maps are one too,
    ``STEM_std.tif``."""
    return out.with_name(out.stem + "_std" + (out.suffix if joined else ".png"))


def restore_into_stack(
    args: argparse.Namespace,
    inputs: list[Input],
    restore_one: Callable[[argparse.Namespace], dict],
) -> int:
    """Restore ``inputs`` (the frames of a stack, or a folder's images and frames, in order) as
    :func:`restore_folder` does, into :func:`frames_folder` of ``args.out`` (and of
    ``args.side_by_side``), then join each kind of file into one multi-page TIFF: the results
    into ``args.out``, their std maps (``--samples``) into ``STEM_std.tif`` beside it, the
    side-by-sides into ``args.side_by_side``; the folders go once the stacks are written. Until
    then, the same command continues an interrupted or partly failed run. Each stack keeps a
    record of what made it (the settings and the SHA-256 of the input files), so that the same
    command run again once it is written leaves it as it is. Returns the exit code."""
    from ..io.images import holds_record, join_into_stack

    out = Path(args.out)
    parts = argparse.Namespace(**vars(args))
    parts.out = str(frames_folder(out))
    stacks = [out]
    if args.samples > 1:
        stacks.append(std_map_path(out, joined=True))
    if args.side_by_side:
        parts.side_by_side = str(frames_folder(Path(args.side_by_side)))
        stacks.append(Path(args.side_by_side))
    what = "images" if Path(args.input).is_dir() else "frames"  # of a folder, of a stack
    digest = functools.cache(_digest_or_none)  # each input file read once, here and below
    made = {  # what the stacks keep
        "settings": settings_of(args), "inputs_sha256": _inputs_digest(inputs, digest),
        "frames": len(inputs),
    }  # fmt: skip
    if not Path(parts.out).exists() and all(holds_record(s, made) for s in stacks):
        print(f"{out} holds the {len(inputs)} {what} restored by an earlier run with the same "
              "settings from the same input (its record): nothing to do")  # fmt: skip
        return 0
    code = restore_folder(parts, inputs, restore_one, digest, made["settings"])  # parts': the
    # same, as they differ in where they write (NOT_SETTINGS)
    if code != 0:
        if code == EXIT_USAGE and Path(parts.out).is_dir():  # failed frames: the others wait
            print(f"diffvision restore: {out} is written once all {len(inputs)} {what} are "
                  f"restored; the others are in {parts.out}/", file=sys.stderr)  # fmt: skip
        return code
    files = [_targets(parts, item.name) for item in inputs]  # per frame: result, map, strip
    for kind, stack in enumerate(stacks):
        join_into_stack(stack, [targets[kind] for targets in files], made)
    for folder in {parts.out, parts.side_by_side} - {None}:
        shutil.rmtree(folder)
    print(f"wrote {len(inputs)} {what} into the TIFF stack{'s' * (len(stacks) > 1)} "
          f"{', '.join(map(str, stacks))}")  # fmt: skip
    return 0


def _targets(args: argparse.Namespace, name: Path) -> list[Path]:
    """The files that restoring the input ``name`` (relative to the input folder) writes."""
    targets = [Path(args.out) / name]
    if args.samples > 1:
        targets.append(std_map_path(targets[0]))
    if args.side_by_side:
        targets.append(Path(args.side_by_side) / name.with_suffix(".png"))
    return targets


def _check_distinct(args: argparse.Namespace, names: list[Path]) -> None:
    """Raise UsageError where two inputs would write the same file (``a.png`` and ``a.jpg``
    both make the side-by-side ``a.png``; ``a_std.png`` is also ``a.png``'s map)."""
    written: dict[Path, Path] = {}
    for name in names:
        for target in _targets(args, name):
            if target in written:
                raise UsageError(
                    f"{written[target]} and {name} would both write {target}: rename one, or "
                    "restore them into separate folders"
                )
            written[target] = name


def _earlier_results(args, names: list[Path], settings: dict) -> dict[str, dict]:
    """The images that an earlier run into ``--out`` restored with the same settings (name ->
    {"psnr": dB or None, and "sigma" for --sigma auto}); raises UsageError where ``--out``
    holds results of other settings, or files a result would overwrite without a record of
    them."""
    there = [t for name in names for t in _targets(args, name) if t.exists()]
    record = read_record(Path(args.out) / RECORD, settings, "results", bool(there),
                         typed_prior(args.model), SINCE)  # fmt: skip
    if record is None:
        if there:
            raise UsageError(
                f"{there[0]} is already there ({len(there)} results would be overwritten), not "
                f"written by a restore that left a record ({RECORD}): give another --out"
            )
        return {}
    return record.get("images", {})


def time_left(started: float, begun: int, todo: int) -> str:
    """``" about 1:05 left"``: how long the ``todo - begun`` restores that remain (the next
    included) take at the pace of the ``begun`` ones this run has done since ``started`` (a
    ``time.monotonic`` reading); ``""`` before one is done."""
    if begun == 0:
        return ""
    pace = (time.monotonic() - started) / begun
    return f" about {tqdm.format_interval(pace * (todo - begun))} left"


def restore_folder(
    args: argparse.Namespace,
    inputs: list[Input],
    restore_one: Callable[[argparse.Namespace], dict],
    digest: Callable[[Path], str | None] | None = None,
    settings: dict | None = None,
) -> int:
    """Restore each of ``inputs`` (the files under the folder ``args.input``, or the frames of
    the stack ``args.input``) with ``restore_one`` (which takes the arguments of one, with
    ``frame`` set for a frame, and returns what the record keeps of it: its PSNR or None, and
    the sigma --sigma auto estimated), skipping those that an earlier
    run with the same settings restored from the same file (the record holds each input
    file's SHA-256: an input changed since is restored again; ``digest``: of a file, and
    ``settings``: :func:`settings_of` ``args``, where the caller has them already, so that the
    model and the --mask or --kernel file are not hashed again); returns the exit code (2 if
    any failed)."""

    out = Path(args.out)
    names = [item.name for item in inputs]
    what = "images" if Path(args.input).is_dir() else "frames"  # of a folder, of a stack
    _check_distinct(args, names)
    settings = settings or settings_of(args)
    done = _earlier_results(args, names, settings)
    digest = digest or functools.cache(_digest_or_none)  # each file read once (a stack's too)
    earlier = [item for item in inputs if str(item.name) in done]
    earlier = [item for item in earlier if all(t.exists() for t in _targets(args, item.name))]
    changed = [item.name for item in earlier if _changed(done[str(item.name)], item, digest)]
    skipped = [item.name for item in earlier if item.name not in changed]
    if skipped:
        print(f"{len(skipped)} of {len(names)} {what} restored by an earlier run into {out}/ "
              f"with the same settings (its {RECORD}): skipped")  # fmt: skip
    if changed:
        print(f"{len(changed)} of {len(names)} {what} changed since an earlier run restored "
              f"{'it' if len(changed) == 1 else 'them'} into {out}/: restored again")  # fmt: skip
    failed = []  # the folder is made by the first result: a run that restores none leaves none
    # The stack whose frames are being restored is held open, and its mask stack of one mask per
    # frame likewise: PIL walks a TIFF's pages to find one, and remembers them only while open.
    held = contextlib.ExitStack()
    held_files = None
    todo = len(inputs) - len(skipped)  # this run's restores, for the time left
    started, begun = time.monotonic(), 0  # skipped inputs take no time
    written_at, wait, behind = -float("inf"), 0.0, False  # the record's last write

    def record(now: bool = False) -> None:  # once a result is in the folder (or it was there)
        nonlocal written_at, wait, behind
        behind = True
        if out.is_dir() and (now or time.monotonic() - written_at >= max(RECORD_EVERY_S, wait)):
            start = time.monotonic()
            write_record(out / RECORD, settings, images=done)
            written_at, behind = time.monotonic(), False
            wait = (written_at - start) / RECORD_SHARE

    try:
        for position, item in enumerate(inputs, 1):
            path, name, frame = item.path, item.name, item.frame
            if name in skipped:
                continue
            files = (path, item.mask) if item.mask_frames else (path,)
            if frame is not None and files != held_files:  # its frames come one after another
                held.close()
                for file in files:
                    held.enter_context(keep_open(file))
                held_files = files
            one = argparse.Namespace(**vars(args))
            one.input = str(path)
            if frame is not None:
                one.frame = frame
            if item.mask is not None:
                one.mask, one.mask_per_frame = str(item.mask), item.mask_frames
            targets = _targets(args, name)  # the result, its std map, its side-by-side
            one.out = str(targets[0])
            one.side_by_side = str(targets[-1]) if args.side_by_side else None
            label = str(path) if frame is None else f"{path} frame {frame}"
            print(f"[{position}/{len(inputs)}] {label}:{time_left(started, begun, todo)}")
            begun += 1
            try:
                read = _digests(item, digest)  # before it is read: changed after, it is redone
                done[str(name)] = {**restore_one(one), **read}
            except (UsageError, ValueError) as err:  # named, and the others still restored
                said = str(err) if str(path) in str(err) else f"{path}: {err}"  # named once
                said = said if frame is None else f"{said} (frame {frame})"
                print(f"diffvision restore: error: {said}", file=sys.stderr)
                failed.append(name)
                done.pop(str(name), None)  # not done (again): an earlier result is not kept
            record()
    except KeyboardInterrupt:
        count = sum(str(n) in done for n in names)
        print(f"interrupted; {count} of {len(names)} {what} are restored in {out}/ (the same "
              "command restores the others)", file=sys.stderr)  # fmt: skip
        return 130
    finally:
        held.close()
        if behind:  # the last results, or those done before an interruption
            record(now=True)
    restored = [n for n in names if str(n) in done]
    took = f" in {tqdm.format_interval(time.monotonic() - started)}" if begun else ""
    print(f"restored {len(restored)} of {len(names)} {what}" + f" into {out}/" * out.is_dir()
          + took)  # fmt: skip
    scores = [done[str(n)]["psnr"] for n in restored if done[str(n)].get("psnr") is not None]
    if args.simulate and scores:
        print(f"mean PSNR {sum(scores) / len(scores):.2f} dB over the {len(scores)} {what}")
    if failed:
        noun = what[:-1] if len(failed) == 1 else what
        print(f"diffvision restore: {len(failed)} {noun} failed (above)", file=sys.stderr)
        return EXIT_USAGE
    return 0
