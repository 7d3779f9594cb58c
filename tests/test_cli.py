"""The command line: help texts, one-line errors with exit code 2, and a train -> sample -> info
round trip on a tiny model."""

import argparse
import json
import re
import shlex
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffvision.cli import main
from diffvision.train.checkpoint import list_checkpoints
from tests.cli_run import (
    DIFFVISION,
    example_commands,
    logged,
    parse_status,
    run,
    run_here,
    signal_when,
)


@pytest.mark.parametrize("command", ["train", "sample", "info", "demo", "eval", "restore"])
def test_help_has_examples(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out and f"diffvision {command}" in out
    if command in ("sample", "eval"):  # what the guidance scale's values do
        assert "1 is the class's own model, above 1 more typical" in " ".join(out.split())


def _parsers(parser):
    """``parser`` and every subcommand's parser below it."""
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found += [p for sub in action.choices.values() for p in _parsers(sub)]
    return found


def test_help_examples_parse():
    """Every example command in every ``--help`` parses: an example left behind by a renamed
    option fails here."""
    from diffvision.cli import build_parser
    from diffvision.cli.evaluate import train_features_parser

    parsers = [*_parsers(build_parser()), train_features_parser()]
    commands = [c for p in parsers for c in example_commands(p.epilog or "")]
    assert len({c[0] for c in commands}) == 6 and ["eval", "train-features"] in [
        c[:2] for c in commands
    ]
    assert not [shlex.join(c) for c in commands if parse_status(c) != 0]


@pytest.mark.parametrize(
    "argv, said",
    [
        (["restore", "denoise", "m", "a.png", "--out", "b.png", "--sigam", "25"],
         "diffvision restore: error: unrecognized arguments: --sigam 25; did you mean --sigma?"),
        (["sample", "m", "--out", "g.png", "--sed=3"],
         "diffvision sample: error: unrecognized arguments: --sed=3; did you mean --seed?"),
        (["train", "--data", "digits", "--out", "r", "--bogus"],
         "diffvision train: error: unrecognized arguments: --bogus"),
        (["restore", "denoise", "m", "a.png", "b.png", "--out", "c.png"],
         "diffvision restore: error: unrecognized arguments: b.png"),
        (["eval", "train-features", "digits", "--out", "f", "--stepz", "3"],
         "diffvision eval train-features: error: unrecognized arguments: --stepz 3; did you "
         "mean --steps?"),
        (["--bogus"], "diffvision: error: unrecognized arguments: --bogus"),
    ],
)  # fmt: skip
def test_an_unknown_argument_is_refused_by_its_subcommand(argv, said):
    """An argument that no option takes is refused by the subcommand that was given, whose
    ``--help`` lists the options (it was ``diffvision: error:``, the top command's, whose help
    lists none of them), with the nearest option where one was misspelt; exit code 2, before
    any file is read (the model ``m`` does not exist)."""
    result = run_here(*argv)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [said + " (see --help)"]


def test_a_usage_error_is_said_once_under_torchrun(monkeypatch):
    """Every rank of a torchrun launch parses the same command line: rank 0 says what is wrong
    with it, the others exit with the same code without a word (a line per rank, before)."""
    argv = ["train", "--data", "digits", "--out", "r", "--steps", "0"]
    said = "diffvision train: error: argument --steps: must be positive: '0' (see --help)\n"
    for rank, expected in (("0", said), ("3", "")):
        monkeypatch.setenv("RANK", rank)
        result = run_here(*argv)
        assert (result.returncode, result.stderr) == (2, expected)


def test_a_diverging_run_ends_in_one_line(tmp_path):
    """A learning rate so high that the loss overflows (Adam's first update moves every weight
    by about the rate: 1e30) ends the run with the trainer's one line and exit code 2, not a
    traceback; the folder takes a new run."""
    args = ["train", "--data", "digits", "--preset", "tiny", "--batch", "8", "--quiet"]
    bad = run_here(*args, "--lr", "1e30", "--steps", "3", "--out", str(tmp_path))
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "diffvision train: error: loss is " in bad.stderr and "lower --lr" in bad.stderr
    fine = run_here(*args, "--steps", "1", "--out", str(tmp_path))
    assert fine.returncode == 0, fine.stderr


def test_a_damaged_run_is_named_on_resume(tmp_path):
    """--resume reads the run's run.json and its last checkpoint's training settings as input: a
    file that is not JSON, not of the run's form, or with a setting of a wrong type is named in
    one line with exit code 2 (they were tracebacks: a list's missing .get, a KeyError, a
    comparison of a string with a number); the repaired run resumes."""
    out = tmp_path / "run"
    args = ["train", "--data", "digits", "--preset", "tiny", "--batch", "8", "--quiet"]
    assert run_here(*args, "--steps", "2", "--stop-at", "1", "--out", str(out)).returncode == 0
    spec = out / "run.json"
    kept = spec.read_text()
    for text, message in [
        ("{bad", "run.json is not valid JSON"),
        ("[1]", "run.json holds a JSON list, not an object"),
        ('{"size": 8}', 'run.json does not name the run\'s data (a "data" entry)'),
        ('{"data": "digits", "size": "x"}', "size must be a positive integer or null, not 'x'"),
    ]:
        spec.write_text(text)
        bad = run_here("train", "--out", str(out), "--resume", "--quiet")
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
        assert message in bad.stderr
    spec.write_text(kept)
    config = list_checkpoints(out / "checkpoints")[-1] / "config.json"
    settings = json.loads(config.read_text())
    for change, message in [
        ({"lr": "x"}, "config.json holds no usable training settings"),
        ({"batch": 8.5}, "no usable training settings: batch must be an integer >= 1, not 8.5"),
    ]:
        config.write_text(json.dumps({**settings, "training": {**settings["training"], **change}}))
        bad = run_here("train", "--out", str(out), "--resume", "--quiet")
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
        assert message in bad.stderr
    config.write_text(json.dumps(settings))
    bad = run_here("train", "--out", str(tmp_path / "empty"), "--resume", "--quiet")
    assert bad.returncode == 2 and "nothing to resume in" in bad.stderr
    assert run_here("train", "--out", str(out), "--resume", "--quiet").returncode == 0
    assert (out / "model" / "config.json").is_file()


def test_an_allocation_refused_is_one_line(tmp_path, tiny_digits_model, monkeypatch):
    """What the checks before a run miss (they are lower bounds), the allocator refuses: said in
    one line with exit code 2, not a traceback. 10**13 steps ask for a schedule of 80 TB: the
    schedule's own check refuses it, and with that check off, the allocator does."""
    import torch

    import diffvision.samplers.steps
    from diffvision.cli import _failed_allocation

    out = tmp_path / "grid.png"
    args = ["sample", str(tiny_digits_model), "--n", "1", "--steps", str(10**13), "--quiet"]
    bad = run_here(*args, "--out", str(out))
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "a schedule of 10000000000000 steps needs at least 74505.8 GiB" in bad.stderr
    monkeypatch.setattr(diffvision.samplers.steps, "check_fits", lambda *args: None)
    bad = run_here(*args, "--out", str(out))
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "diffvision sample: error: out of memory: " in bad.stderr
    assert "GiB could not be allocated; ask for less" in bad.stderr and not out.exists()
    cuda = "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79 GiB"
    assert _failed_allocation(torch.OutOfMemoryError(cuda)) == "2.0 GiB"
    assert _failed_allocation(RuntimeError("DefaultCPUAllocator: can't allocate memory")) == (
        "memory"
    )
    assert _failed_allocation(RuntimeError("shape '[2, 3]' is invalid")) is None
    assert _failed_allocation(MemoryError()) == "memory"
    bad = run_here("eval", str(tiny_digits_model), "--data", "digits", "--seeds", str(10**13))
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "diffvision eval: error: out of memory: memory could not be allocated" in bad.stderr


def test_version(capsys):
    import diffvision

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(f"diffvision {diffvision.__version__} (torch ")


def test_given_options_are_those_the_command_line_names():
    """An option given at its default value counts as given (``--batch=64``), an abbreviated one
    by its full name, one left out does not (``--lr``)."""
    from diffvision.cli import build_parser
    from diffvision.cli.common import given_options

    argv = ["train", "--out", "x", "--batch=64", "--no-classes", "--bf16", "--checkpoint", "3"]
    given = given_options(build_parser(), argv)
    assert given == {"command", "out", "batch", "classes", "bf16", "checkpoint_every"}


def test_every_option_is_explained_with_its_default():
    """Each option of each command has a help text, and the text shows the default where there
    is one (a user should not need the source to learn --batch's or --seed's default)."""
    import argparse

    from diffvision.cli import build_parser
    from diffvision.cli.evaluate import train_features_parser

    def parsers(parser):
        yield parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from parsers(sub)

    for parser in [*parsers(build_parser()), train_features_parser()]:
        options = parser.format_help().split("\noptions:\n")[1].split("\n\n")[0]
        for action in parser._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS:
                continue
            name = action.option_strings[0]
            assert action.help, f"{parser.prog} {name} has no help"
            if action.default not in (None, argparse.SUPPRESS) and action.nargs != 0:  # 0 too
                start = re.search(rf"^  {re.escape(name)}[ ,\n]", options, re.MULTILINE).start()
                shown = options[start:].split("\n  -")[0]
                assert "default" in shown, f"{parser.prog} {name}: default not shown"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--data", "no/such/folder", "--out", "x"], "data not found"),
        (["train", "--data", " ", "--size", "8", "--out", "x"], "empty data spec"),
        (["train", "--data", "digits+", "--out", "x"], "'digits+' has an empty part next to a +"),
        (["train", "--data", "digits", "--size", "0", "--out", "x"], "must be positive"),
        (["train", "--data", "digits", "--preset", "huge", "--out", "x"], "unknown preset"),
        (["train", "--data", "digits", "--prediction", "x", "--out", "x"], "choose from eps, x0"),
        (["train", "--data", "digits", "--weighting", "l2", "--out", "x"], "from simple, snr, "),
        (["train", "--out", "x"], "--data is required"),
        (["sample", "no/such/model", "--out", "a.png"], "model folder not found"),
        (["info", "."], "not a diffvision model folder"),
        (["info", "notes.txt"], "notes.txt is a file; give the model folder that holds it"),
        (["train", "--data", "mnist", "--out", "x"], "mnist:FOLDER"),
        (["sample", "m", "--guidance", "nan", "--out", "a.png"], "not a finite number: 'nan'"),
        (["train", "--data", "digits", "--label-dropout", "inf", "--out", "x"], "finite"),
        (["train", "--data", "digits", "--warmup", "-1", "--out", "x"], "warmup must be"),
        (["train", "--data", "digits", "--seed", "-1", "--out", "x"], "a seed is an integer"),
        (["sample", "m", "--seed", str(2**63), "--out", "a.png"], "in 0..2**63 - 1, not"),
        (["restore", "denoise", "m", "a.png", "--seed", "-2", "--out", "b.png"], "a seed is"),
        (["eval", "m", "--data", "digits", "--bpd", "-1"], "must be 0 or more: '-1'"),
        (["eval", "m", "--data", "digits", "--n", "5"], "--n: must be 6 or more: '5'"),
        (["train", "--data", "digits", "--classifier-steps", "-5", "--out", "x"], "0 or more"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("not a model\n")
    code = exit_code(args)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1, err
    # nothing written (a refused --preset, --warmup, --prediction left x/run.json behind)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--data", "digits", "--out", "{f}/run"],
        ["train", "--data", "digits", "--out", "{f}"],
        ["demo", "--out", "{f}/demo"],
        ["sample", "m", "--out", "{f}/grid.png"],
        ["sample", "m", "--out", "{f}"],
        ["sample", "m", "--out", "{d}"],
        ["restore", "denoise", "m", "in.png", "--out", "{f}/out.png"],
        ["restore", "denoise", "m", "in.png", "--out", "x.png", "--side-by-side", "{f}/s.png"],
        ["eval", "m", "--data", "digits", "--json", "{f}/x.json"],
        ["eval", "m", "--data", "digits", "--json", "{d}"],
        ["eval", "m", "--data", "digits", "--plot", "{f}/x.png"],
        ["eval", "train-features", "digits", "--out", "{f}/features"],
    ],
)
def test_outputs_that_cannot_be_written_are_refused_first(args, capsys, tmp_path, monkeypatch):
    """An output under a file, or a file where a folder goes (and the reverse), is refused when
    the arguments are read: not with a traceback after the work it would hold."""
    monkeypatch.chdir(tmp_path)
    Path("notes").write_text("a file without an extension")
    Path("grid.png").mkdir()
    args = [a.format(f="notes", d="grid.png") for a in args]
    code = exit_code(args)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    messages = ("/notes is a file", "is a file, not a folder", "is a folder, not an output file")
    assert any(m in err for m in messages), err


@pytest.mark.parametrize(
    "args",
    [
        ["sample", "m", "--out", "{m}"],
        ["sample", "m", "--out", "{m}/grid.png"],
        ["sample", "m", "--out", "{m}/samples"],
        ["restore", "denoise", "m", "in.png", "--out", "{m}/out.png"],
        ["restore", "denoise", "m", "in.png", "--out", "x.png", "--side-by-side", "{m}/s.png"],
        ["train", "--data", "digits", "--out", "{m}"],
        ["demo", "--out", "{m}/demo"],
        ["eval", "m", "--data", "digits", "--json", "{m}/x.json"],
        ["eval", "m", "--data", "digits", "--plot", "{m}/x.png"],
        ["eval", "train-features", "digits", "--out", "{m}/features"],
        ["sample", "m", "--out", "run/checkpoints/step_00000010/grid.png"],
    ],
)
def test_nothing_is_written_into_a_model_folder(args, capsys, tmp_path, monkeypatch):
    """A model folder (or checkpoint) holds its model's files only: an output in it is refused
    when the arguments are read (samples written into one made it a folder that a later
    ``train`` or ``train-features`` would not replace)."""
    monkeypatch.chdir(tmp_path)
    for folder in (Path("run/model"), Path("run/checkpoints/step_00000010")):
        folder.mkdir(parents=True)
        for name in ("config.json", "model.safetensors"):
            (folder / name).write_text("")
    code = exit_code([a.format(m="run/model") for a in args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "is a model folder, which holds its model's files only; write elsewhere" in err, err


def test_a_model_folder_may_be_given_where_a_model_folder_is_written(tmp_path):
    """``eval train-features --out`` may name a model folder (replaced if it is a feature
    network's: :func:`~diffvision.io.model_folder.check_replaceable`), not a folder inside one."""
    from diffvision.cli.common import model_output

    model = tmp_path / "features"
    model.mkdir()
    for name in ("config.json", "model.safetensors"):
        (model / name).write_text("")
    assert model_output(str(model)) == str(model)
    with pytest.raises(argparse.ArgumentTypeError, match="is a model folder"):
        model_output(str(model / "inner"))


def test_a_record_names_the_options_that_differ(tmp_path):
    """Settings that differ from a folder's record are said as options with both values, not
    as the namespace's names ("label", "no_ema")."""
    from diffvision.cli.common import UsageError
    from diffvision.cli.record import read_record, write_record

    path = tmp_path / "sample.json"
    write_record(path, {"label": None, "no_ema": False, "steps": 20, "model": "a" * 64})
    now = {"label": 2, "no_ema": True, "steps": 20, "model": "b" * 64}
    with pytest.raises(UsageError) as refused:
        read_record(path, now, "samples")
    assert str(refused.value) == (
        f"{tmp_path} holds samples made with other settings (--class 2 (the folder's: none); "
        "another model (its files' SHA-256 differs); --no-ema on (the folder's: off)): give "
        "another --out, or delete that folder to start again"
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--data", "faces", "--classes"], "--data faces has no class labels (an image folder"),
        (["--data", "faces", "--label-dropout", "0.2"], "labels (an image folder takes them"),
        (["--data", "digits+faces", "--classifier-steps", "5"], "pooled data has none): --class"),
        (["--data", "digits", "--no-classes", "--classifier-steps", "5"], "--no-classes trains"),
        (["--data", "digits", "--no-classes", "--label-dropout", "0.2"], "--label-dropout would"),
        (["--data", "digits", "--label-dropout", "1"], "--label-dropout 1 drops every label"),
    ],
)
def test_class_options_a_run_would_not_use_are_refused(options, message, tmp_path):
    """``train --data faces --classes`` trained an unconditional model without a word; class
    options for a run without classes are refused in one line, before any training."""
    out = tmp_path / "run"
    bad = run_here("train", *options, "--size", "8", "--preset", "tiny", "--out", str(out))
    assert bad.returncode == 2 and message in bad.stderr, bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and not out.exists()


def test_a_run_its_trainer_refuses_leaves_nothing_behind(tmp_path):
    """A fresh run refused by its trainer before the first step (an EMA decay out of range, a
    batch that accumulation does not divide) left its folder with run.json behind; now the
    folder it made is removed, and a folder that was there keeps only what it held."""
    for extra, message in [
        (["--ema", "1.5"], "EMA decay must be in [0, 1)"),
        (["--batch", "8", "--accumulation", "3"], "batch 8 must be divisible by processes"),
    ]:
        out = tmp_path / "new" / "run"
        bad = run_here("train", "--data", "digits", "--preset", "tiny", "--steps", "1",
                       *extra, "--out", str(out))  # fmt: skip
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
        assert not out.exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    bad = run_here("train", "--data", "digits", "--preset", "tiny", "--ema", "1.5", "--out",
                   str(mine))  # fmt: skip
    assert bad.returncode == 2 and [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_a_white_level_without_16_bit_files_is_refused(tmp_path):
    """``train --white-level`` for data without 16-bit files was recorded in the model, and
    ``restore`` then read 16-bit inputs by it (values above it clipped): refused in one line."""
    images = tmp_path / "eight"
    images.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(images / "a.png")
    for data in (str(images), "digits"):
        out = tmp_path / "run"
        bad = run_here("train", "--data", data, "--size", "8", "--white-level", "4095",
                       "--preset", "tiny", "--out", str(out))  # fmt: skip
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
        assert f"--white-level is for 16-bit image files: --data {data} has none" in bad.stderr
        assert not out.exists()
    # restore --white-level for 8-bit inputs (a file, a folder) was unused without a word; a
    # folder that holds one 16-bit file takes it (refused here only for want of a model)
    for source, message in ((images / "a.png", "is not one"), (images, "holds none")):
        out = tmp_path / ("o.png" if source.suffix else "o")
        bad = run_here("restore", "denoise", "m", str(source), "--sigma", "5", "--white-level",
                       "4095", "--out", str(out))  # fmt: skip
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
        assert f"--white-level is for 16-bit inputs: {source} {message} (it would" in bad.stderr
    Image.fromarray(np.zeros((8, 8), np.uint16)).save(images / "deep.png")
    bad = run_here("restore", "denoise", "m", str(images), "--sigma", "5", "--white-level",
                   "4095", "--out", str(tmp_path / "o"))  # fmt: skip
    assert bad.returncode == 2 and "model folder not found: m" in bad.stderr


@pytest.mark.parametrize("command", [["sample", "m"], ["restore", "denoise", "m", "in.png"]])
def test_a_folder_with_a_file_extension_is_refused(command, capsys, tmp_path, monkeypatch):
    """``--out x.png/`` (a folder, by its slash) was written as the file ``x.png``, over one of
    that name: refused when the arguments are read."""
    monkeypatch.chdir(tmp_path)
    Path("x.png").write_bytes(b"kept")
    assert exit_code([*command, "--out", "x.png/"]) == 2
    err = capsys.readouterr().err
    assert "'x.png/' ends in / as a folder does but has a file's extension: give the file " in err
    assert Path("x.png").read_bytes() == b"kept"


def test_a_file_error_in_the_work_is_one_line(capsys, monkeypatch):
    """An OSError about a file met while working (disk full, say) is one line naming the file;
    one about no file is a fault, raised with its traceback."""
    from diffvision import cli

    def full(args):
        raise OSError(28, "No space left on device", "runs/x/model.safetensors")

    monkeypatch.setitem(cli.COMMANDS, "info", full)
    assert exit_code(["info", "m"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "diffvision info: error: [Errno 28] No space left on device: 'runs/x/model.safetensors'"
    )

    def fault(args):
        raise OSError("a socket closed")

    monkeypatch.setitem(cli.COMMANDS, "info", fault)
    with pytest.raises(OSError, match="a socket closed"):
        main(["info", "m"])


def test_a_warning_is_one_line(capsys, monkeypatch):
    """A warning raised under a command (PIL's for an image above 89 M pixels, say) is one line
    in the command's words, not the library's file, line and source; the caller's way of
    showing warnings is back after the command."""
    import warnings

    from diffvision import cli

    def warns(args):
        warnings.warn("Image size (108000000 pixels) exceeds limit", UserWarning, stacklevel=1)
        return 0

    monkeypatch.setitem(cli.COMMANDS, "info", warns)
    before = warnings.showwarning
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main(["info", "m"]) == 0
    err = capsys.readouterr().err
    assert err == "diffvision info: warning: Image size (108000000 pixels) exceeds limit\n"
    assert warnings.showwarning is before


def test_train_does_not_replace_a_model_folder_of_other_files(tmp_path):
    """A run's ``model/`` that holds someone's files is refused before the training, not
    replaced by the trained model at its end (a model folder is replaced whole)."""
    (tmp_path / "run" / "model").mkdir(parents=True)
    (tmp_path / "run" / "model" / "notes.txt").write_text("keep")
    result = run_here("train", "--data", "digits", "--preset", "tiny", "--steps", "1", "--batch",
                      "2", "--out", str(tmp_path / "run"), "--quiet")  # fmt: skip
    assert result.returncode == 2 and "holds 'notes.txt', which no model folder" in result.stderr
    assert (tmp_path / "run" / "model" / "notes.txt").read_text() == "keep"
    assert not (tmp_path / "run" / "checkpoints").exists()  # before the training
    images = tmp_path / "images"  # a run inside its data: its grids would be data on --resume
    images.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(images / "a.png")
    for out in (images, images / "run"):
        result = run_here("train", "--data", f"digits+{images}", "--size", "8", "--steps", "1",
                          "--out", str(out), "--quiet")  # fmt: skip
        assert result.returncode == 2 and f"--out {out} is inside --data {images}" in result.stderr
    assert sorted(p.name for p in images.iterdir()) == ["a.png"]
    run_folder = tmp_path / "x"  # and the data inside the folders a run writes (its grids there)
    for data, it in (("samples", "that folder"), ("checkpoints/mine", "inside it")):
        (run_folder / data).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(run_folder / data / "a.png")
        result = run_here("train", "--data", str(run_folder / data), "--size", "8", "--steps",
                          "1", "--out", str(run_folder), "--quiet")  # fmt: skip
        assert result.returncode == 2, result.stderr
        written = run_folder / data.split("/")[0]
        assert f"the run writes {written}/, and --data {run_folder / data} is {it}" in result.stderr
    assert sorted(p.name for p in (run_folder / "samples").iterdir()) == ["a.png"]


def test_train_says_what_it_makes_of_its_files(tmp_path):
    """Notes on stdout, in the singular where one file: an image smaller than --size is
    enlarged, each frame of a stack is an image."""
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8)) for _ in range(2)]
    frames[0].save(data / "stack.tif", save_all=True, append_images=frames[1:])
    Image.fromarray(rng.integers(0, 256, (6, 6), dtype=np.uint8)).save(data / "small.png")
    result = run_here("train", "--data", str(data), "--size", "8", "--preset", "tiny", "--steps",
                      "1", "--batch", "2", "--out", str(tmp_path / "run"), "--quiet")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (
        "note: 1 of the 3 images is smaller than --size 8 (its short side) and is" in result.stdout
    )
    assert (
        "note: 1 file holds several frames (TIFF stacks, animations): each frame is an image"
        in (result.stdout)
    )
    assert "beside the class" not in result.stdout  # no class folders here
    assert ("note: the warm-up (100 steps, --warmup) is longer than the run (1 step): the "
            "learning rate reaches 1% of --lr at most") in result.stdout  # fmt: skip
    for label in ("cats", "dogs"):  # class folders, and an image beside them: no classes, said
        (data / label).mkdir()
        Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8)).save(data / label / "a.png")
    result = run_here("train", "--data", str(data), "--size", "8", "--preset", "tiny", "--steps",
                      "1", "--batch", "2", "--warmup", "1", "--out", str(tmp_path / "run2"),
                      "--quiet")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "warm-up" not in result.stdout  # as long as the run: no note
    assert "note: 3 of the 5 images lie beside the class sub-folders, not in one, so the" in (
        result.stdout
    )


def test_a_folder_run_resumes_at_the_size_it_found(tmp_path):
    """``train --data FOLDER`` without --size trains at the images' shared size, and run.json
    records it: images of another size added before ``--resume`` are read at the run's size
    (the run did not stop on "shorter sides from 8 to 12 px")."""
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (8, 10), dtype=np.uint8)).save(data / f"{i}.png")
    run_ = tmp_path / "run"
    common = ("--preset", "tiny", "--batch", "2", "--checkpoint-every", "1", "--quiet")
    result = run_here("train", "--data", str(data), "--steps", "1", "--out", str(run_), *common)
    assert result.returncode == 0, result.stderr
    assert json.loads((run_ / "run.json").read_text())["size"] == 8
    Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8)).save(data / "big.png")
    result = run_here("train", "--out", str(run_), "--resume", "--steps", "2", "--quiet")
    assert result.returncode == 0, result.stderr
    assert json.loads((run_ / "model" / "config.json").read_text())["sample_shape"] == [1, 8, 8]


def exit_code(args):
    """main()'s return value, or the code of the SystemExit that argparse raises."""
    try:
        return main(args)
    except SystemExit as stop:
        return stop.code


def test_train_sample_info_round_trip(tmp_path):
    out = tmp_path / "run"
    result = run(
        "train",
        "--data",
        "digits",
        "--preset",
        "tiny",
        "--steps",
        "4",
        "--batch",
        "16",
        "--checkpoint-every",
        "2",
        "--classifier-steps",
        "3",
        "--out",
        str(out),
        "--quiet",
        "--stop-at",
        "2",
    )
    assert result.returncode == 0, result.stderr
    assert "--resume" in result.stdout
    spec = (out / "run.json").read_text()
    again = run_here("train", "--data", "shapes", "--out", str(out), "--quiet")  # no --resume
    assert again.returncode == 2 and "holds a run (checkpoints up to step 2)" in again.stderr
    assert "continue it with --resume" in again.stderr and (out / "run.json").read_text() == spec
    # --resume takes the run's settings: the same ones may be given again (--size 8: digits' own),
    # other ones are refused (they were ignored, silently), also one given at its default
    # (--checkpoint-every 500; the run's is 2), but not one left out (--seed).
    again = run_here("train", "--data", "digits", "--size", "8", "--preset", "tiny", "--batch",
                     "16", "--lr", "1e-2", "--no-classes", "--checkpoint-every", "500", "--out",
                     str(out), "--resume", "--quiet")  # fmt: skip
    assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1, again.stderr
    assert (
        "these differ: --lr 0.01 (the run's: 0.001), --classes False (the run's: True), "
        "--checkpoint-every 500 (the run's: 2);" in again.stderr
    )
    result = run("train", "--out", str(out), "--resume", "--quiet")
    assert result.returncode == 0, result.stderr
    model = out / "model"
    assert (model / "config.json").is_file() and (model / "ema.safetensors").is_file()
    # A finished run resumed again (a scheduler's requeue) is kept as it is, its classifier not
    # trained again; a run cannot go back to an earlier step (it wrote the model of step 4 as the
    # model of a 3-step run, or said it had stopped at step 2).
    written = {p.name: p.stat().st_mtime_ns for p in model.iterdir()}
    again = run_here("train", "--out", str(out), "--resume", "--quiet")
    assert again.returncode == 0 and f"{out} is complete at step 4: its model is" in again.stdout
    assert {p.name: p.stat().st_mtime_ns for p in model.iterdir()} == written
    for option in ("--steps", "--stop-at"):
        bad = run_here("train", "--out", str(out), "--resume", option, "3", "--quiet")
        assert (
            bad.returncode == 2 and f"is at step 4, past {option} 3: give 4 or more" in bad.stderr
        )
    (model / "classifier.safetensors").unlink()  # killed while fitting it: fitted again
    again = run_here("train", "--out", str(out), "--resume", "--quiet")
    assert again.returncode == 0 and "model written to" in again.stdout, again.stderr
    assert (model / "classifier.safetensors").is_file()

    grid = tmp_path / "grid.png"
    result = run(
        "sample",
        str(model),
        "--n",
        "6",
        "--steps",
        "3",
        "--class",
        "4",
        "--guidance",
        "2",
        "--out",
        str(grid),
    )
    assert result.returncode == 0, result.stderr
    assert grid.is_file()
    folder = tmp_path / "many"
    result = run("sample", str(model), "--n", "3", "--steps", "2", "--bf16", "--out", str(folder))
    assert result.returncode == 0, result.stderr
    assert len(list(folder.glob("*.png"))) == 3 and "2 steps, bf16)" in result.stdout
    again = run_here("sample", str(model), "--n", "2", "--steps", "2", "--out", str(folder))
    assert again.returncode == 2, again.stderr
    assert "samples made with other settings (--bf16 off (the folder's: on))" in again.stderr
    (folder / "sample.json").unlink()  # samples of unknown settings: no silent mix either
    again = run_here(
        "sample", str(model), "--n", "3", "--steps", "2", "--bf16", "--out", str(folder)
    )
    assert again.returncode == 2 and "without a record of their settings" in again.stderr
    empty = tmp_path / "empty"  # a record and no samples (stopped before its first batch):
    empty.mkdir()  # it binds nothing
    (empty / "sample.json").write_text('{"settings": {"steps": 99}}')
    again = run_here("sample", str(model), "--n", "2", "--steps", "2", "--out", str(empty))
    assert again.returncode == 0 and len(list(empty.glob("sample_*.png"))) == 2, again.stderr
    # The record holds the prior used: auto and the mixture it chose are one setting, and a
    # record that held --unconditional as typed (until 2026-12-07) reads as the prior it chose.
    same = run_here("sample", str(model), "--n", "2", "--steps", "2", "--unconditional",
                    "mixture", "--quiet", "--out", str(empty))  # fmt: skip
    assert same.returncode == 0 and "2 of the 2 images are in" in same.stdout, same.stderr
    record = json.loads((empty / "sample.json").read_text())
    assert record["settings"]["unconditional"] == "mixture"
    record["settings"]["unconditional"] = "auto"
    (empty / "sample.json").write_text(json.dumps(record))
    same = run_here("sample", str(model), "--n", "2", "--steps", "2", "--quiet", "--out",
                    str(empty))  # fmt: skip
    assert same.returncode == 0 and "2 of the 2 images are in" in same.stdout, same.stderr
    bad = run_here("sample", str(model), "--n", "2", "--steps", "2", "--unconditional", "null",
                   "--out", str(empty))  # fmt: skip
    assert "other settings (--unconditional null (the folder's: mixture))" in bad.stderr
    one = run_here("sample", str(model), "--n", "1", "--steps", "1", "--class", "0", "--quiet",
                   "--out", str(tmp_path / "one.png"))  # fmt: skip
    assert f"wrote a grid of 1 image to {tmp_path / 'one.png'} (unipc, 1 step)" in one.stdout
    # The resumed run kept --classifier-steps: the folder has a classifier, and unconditional
    # sampling uses the class-posterior mixture unless the null class is asked for.
    assert "class-posterior mixture" in result.stdout
    null = run_here(  # the rest in this process: no interpreter to start each time
        "sample",
        str(model),
        "--n",
        "2",
        "--steps",
        "2",
        "--unconditional",
        "null",
        "--out",
        str(tmp_path / "null.png"),
    )
    assert null.returncode == 0 and "mixture" not in null.stdout

    info = run_here("info", str(model))
    assert info.returncode == 0 and "classes:     10" in info.stdout
    assert "training:    4 steps, batch 16" in info.stdout
    checkpoint = run_here("info", str(out / "checkpoints" / "step_00000002"))  # a model too
    assert "training:    2 of 4 steps (a checkpoint), batch 16" in checkpoint.stdout
    assert "classifier:  noise-aware, 3 steps" in info.stdout

    bad = run_here("sample", str(model), "--sampler", "plms", "--out", str(grid))
    assert bad.returncode == 2 and "unknown sampler" in bad.stderr
    bad = run_here("sample", str(model), "--class", "12", "--out", str(grid))
    assert bad.returncode == 2 and "0..9" in bad.stderr
    bad = run_here("sample", str(model), "--out", str(tmp_path / "grid.jpg"))  # before work
    assert (
        bad.returncode == 2 and "argument --out: must be a .png file (a grid), a .tif" in bad.stderr
    )
    assert not (tmp_path / "grid.jpg").exists()
    assert Path(grid).stat().st_size > 0


def test_sample_checks_its_class_options(tiny_digits_model, tmp_path):
    """--class must name one of a conditional model's classes, --guidance needs it, and an
    unconditional model has neither; --unconditional is for a class model without --class (it
    was ignored): one line each, exit 2, no image written."""
    out = tmp_path / "x.png"
    for args, message in [
        (["--class", "10"], "--class 10: the model's classes are 0..9"),
        (["--class", "-1"], "--class -1: the model's classes are 0..9"),
        (["--guidance", "2"], "--guidance needs --class"),
        (
            ["--class", "1", "--unconditional", "mixture"],
            "without --class: --class draws that class",
        ),
    ]:
        bad = run_here("sample", str(tiny_digits_model), *args, "--out", str(out))
        assert bad.returncode == 2 and bad.stderr.strip().endswith(message), bad.stderr
    plain = tmp_path / "plain"
    made = run_here("train", "--data", "digits", "--preset", "tiny", "--steps", "1", "--batch",
                    "4", "--no-classes", "--out", str(plain), "--quiet")  # fmt: skip
    assert made.returncode == 0, made.stderr
    bad = run_here("sample", str(plain / "model"), "--class", "0", "--out", str(out))
    assert bad.returncode == 2 and "this model is unconditional: --class is not available" in (
        bad.stderr
    )
    bad = run_here("sample", str(plain / "model"), "--unconditional", "null", "--out", str(out))
    assert bad.returncode == 2 and "without --class: the model is unconditional" in bad.stderr
    assert not out.exists()


def test_a_class_name_that_is_another_class_index_is_taken_as_the_name_with_a_note(tmp_path):
    """Class folders named 1 and 2 are classes 0 and 1: ``--class 1`` is the class named 1
    (index 0), as a name wins over an index, and a note says so, as index 1 is another class;
    ``--class 2`` (no such index) and ``--class 0`` (no such name) need none."""
    rng = np.random.default_rng(0)
    for label in ("1", "2"):
        (tmp_path / "data" / label).mkdir(parents=True)
        for i in range(2):
            image = rng.integers(0, 256, (8, 8), dtype=np.uint8)
            Image.fromarray(image).save(tmp_path / "data" / label / f"{i}.png")
    made = run_here("train", "--data", str(tmp_path / "data"), "--preset", "tiny", "--steps", "1",
                    "--batch", "2", "--out", str(tmp_path / "run"), "--quiet")  # fmt: skip
    assert made.returncode == 0, made.stderr
    model, out = str(tmp_path / "run" / "model"), str(tmp_path / "x.png")
    for label, noted in (("1", True), ("2", False), ("0", False)):
        result = run_here("sample", model, "--class", label, "--n", "1", "--steps", "1",
                          "--quiet", "--out", out)  # fmt: skip
        assert result.returncode == 0, result.stderr
        note = ("note: --class 1 is the class named 1 (index 0), not the class of index 1 "
                "(named 2)")  # fmt: skip
        assert (note in result.stdout) == noted, result.stdout
        assert ("note: --class" in result.stdout) == noted, result.stdout


def test_classes_are_named_as_their_folders(tmp_path):
    """A model trained on class folders takes its classes by name (``sample --class dogs``,
    ``eval --classes dogs``; only an index was taken, the folders sorted) or index, and
    ``info`` lists them; a name it lacks is refused with its names. ``eval`` writes its
    per-class accuracy by name, and its JSON holds the names its indices stand for."""
    rng = np.random.default_rng(0)
    for label in ("cats", "dogs"):
        (tmp_path / "data" / label).mkdir(parents=True)
        for i in range(6):  # 12 images: eval's floor of N = 6 samples takes 2 N real ones
            image = rng.integers(0, 256, (8, 8), dtype=np.uint8)
            Image.fromarray(image).save(tmp_path / "data" / label / f"{i}.png")
    made = run_here("train", "--data", str(tmp_path / "data"), "--preset", "tiny", "--steps", "1",
                    "--batch", "2", "--out", str(tmp_path / "run"), "--quiet")  # fmt: skip
    assert made.returncode == 0, made.stderr
    model = str(tmp_path / "run" / "model")
    assert "classes:     2 (0 cats, 1 dogs)" in run_here("info", model).stdout
    grids = []
    for label in ("dogs", "1"):
        grids.append(tmp_path / f"{label}.png")
        result = run_here("sample", model, "--class", label, "--n", "2", "--steps", "1",
                          "--quiet", "--out", str(grids[-1]))  # fmt: skip
        assert result.returncode == 0, result.stderr
    assert grids[0].read_bytes() == grids[1].read_bytes()  # one class, by name and by index
    for args, message in [
        (["sample", model, "--class", "cows", "--out", str(tmp_path / "x.png")],
         "--class cows: the model's classes are cats, dogs (or their indices 0..1)"),
        (["eval", model, "--data", "digits", "--classes", "cows"],
         "--classes cows: the model's classes are cats, dogs (or their indices 0..1)"),
        (["eval", model, "--data", "digits", "--classes", "dogs,1"],
         "--classes names one class twice (dogs, 1)"),
    ]:  # fmt: skip
        bad = run_here(*args)
        assert bad.returncode == 2 and bad.stderr.strip().endswith(message), bad.stderr
    data, features = str(tmp_path / "data"), str(tmp_path / "features")
    made = run_here("eval", "train-features", data, "--steps", "2", "--out", features)
    assert made.returncode == 0, made.stderr
    scored = run_here("eval", model, "--data", data, "--features", features, "--n", "6", "--seeds",
                      "1", "--steps", "1", "--json", str(tmp_path / "e.json"))  # fmt: skip
    assert scored.returncode == 0, scored.stderr
    assert re.search(r"classifier accuracy [\d.]+ \(cats:[\d.]+  dogs:[\d.]+\)", scored.stdout)
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["class_names"] == ["cats", "dogs"] and set(result["class_accuracy"]) == {"0", "1"}
    # Data of two other classes: its labels are not the model's (its apples were taken for the
    # model's cats, the accuracy scored against them); said, and no accuracy.
    for old, new in (("cats", "apples"), ("dogs", "pears")):
        (tmp_path / "data" / old).rename(tmp_path / "data" / new)
    made = run_here("eval", "train-features", data, "--steps", "2", "--out", features)
    assert made.returncode == 0, made.stderr
    other = run_here("eval", model, "--data", data, "--features", features, "--n", "6", "--seeds",
                     "1", "--steps", "1", "--json", str(tmp_path / "e.json"))  # fmt: skip
    assert other.returncode == 0, other.stderr
    assert "has 2 classes (apples, pears), the model 2 (cats, dogs): its labels are not" in (
        other.stdout
    )
    assert "accuracy" not in json.loads((tmp_path / "e.json").read_text())


def test_what_needs_a_null_class_is_refused_for_a_model_without_one(tmp_path):
    """A class model trained with ``--label-dropout 0`` never learnt its null class: guidance,
    sampling without ``--class`` (no noise classifier to mix the classes), ``--unconditional
    null``, ``eval --classes none``, ``--guidance`` and ``--bpd``, and ``restore`` (whose prior
    is the unconditional model) each used its untrained embedding without a word; now refused
    in one line before any work. ``info`` says so, and ``--class`` still samples."""
    made = run_here("train", "--data", "digits", "--preset", "tiny", "--steps", "1", "--batch", "4",
                    "--label-dropout", "0", "--out", str(tmp_path / "run"), "--quiet")  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert (
        "note: --label-dropout 0 learns no null class: no guidance, and the model is used "
        "without a class (sample, restore, eval --classes none) only by a noise classifier's "
        "mixture, which --classifier-steps trains" in made.stdout
    )  # said when trained
    model, out = str(tmp_path / "run" / "model"), str(tmp_path / "x.png")
    Image.new("L", (8, 8)).save(tmp_path / "in.png")
    never = f"needs the null class, which {model} never learnt (trained with --label-dropout 0)"
    for args, what in [
        (["sample", model, "--class", "3", "--guidance", "2", "--out", out], "--guidance"),
        (["sample", model, "--out", out], "sampling without --class"),
        (["sample", model, "--unconditional", "null", "--out", out], "--unconditional null"),
        (["eval", model, "--data", "digits", "--classes", "none"], "--classes none"),
        (["eval", model, "--data", "digits", "--guidance", "2"], "--guidance"),
        (["eval", model, "--data", "digits", "--bpd", "5"], "--bpd"),
        (["restore", "denoise", model, str(tmp_path / "in.png"), "--sigma", "25", "--out", out],
         "restoring (its prior is the unconditional model)"),
    ]:  # fmt: skip
        bad = run_here(*args)
        assert bad.returncode == 2 and f"error: {what} {never}" in bad.stderr, bad.stderr
    assert not Path(out).exists()
    assert "10; no null class (trained with --label-dropout 0)" in run_here("info", model).stdout
    good = run_here("sample", model, "--class", "3", "--n", "2", "--steps", "1", "--quiet",
                    "--out", out)  # fmt: skip
    assert good.returncode == 0 and Path(out).is_file(), good.stderr


def test_mixture_needs_a_classifier(tiny_digits_model, tmp_path):
    bad = run(
        "sample",
        str(tiny_digits_model),
        "--unconditional",
        "mixture",
        "--out",
        str(tmp_path / "x.png"),
    )
    assert bad.returncode == 2 and "no noise classifier" in bad.stderr


def test_fast_inference_is_channels_last_on_cpu_and_keeps_the_results():
    """The commands' fast path changes the weights' memory layout (float32 rounding only: 1e-5
    is ~100 float32 ulps of outputs of size ~1) and, with bf16, only sets the autocast dtype."""
    import torch

    from diffvision import Denoiser
    from diffvision.cli.common import fast_inference
    from diffvision.nets.unet import build_unet

    torch.manual_seed(0)
    model = Denoiser(build_unet("tiny", in_channels=1), "edm").eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        x = torch.randn(3, 1, 16, 16)
        before = model(x, 0.5)
        fast_inference(model, torch.device("cpu"), bf16=False)
        convs = [p for p in model.parameters() if p.ndim == 4]
        assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
        assert model.autocast is None
        assert torch.allclose(model(x, 0.5), before, atol=1e-5)
    assert fast_inference(model, torch.device("cpu"), bf16=True).autocast == torch.bfloat16


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_training_saves_a_checkpoint_and_resumes(tmp_path, stop):
    """Ctrl-C (SIGINT) and a scheduler's SIGTERM both stop training with a checkpoint of the step
    reached (none is due before step 100000), and --resume continues from it."""
    out = tmp_path / "run"
    args = ["train", "--data", "digits", "--preset", "tiny", "--steps", "100000", "--batch", "8",
            "--checkpoint-every", "100000", "--quiet", "--out", str(out)]  # fmt: skip
    code, err = signal_when([*DIFFVISION, *args], logged(out), stop)
    assert code == 130 and "checkpoint was saved" in err, err
    (saved,) = list_checkpoints(out / "checkpoints")
    step = int(saved.name.removeprefix("step_"))
    assert step >= 10  # the logged step, at least, was trained before the signal
    result = run("train", "--out", str(out), "--resume", "--stop-at", str(step + 3), "--quiet")
    assert result.returncode == 0, result.stderr
    assert list_checkpoints(out / "checkpoints")[-1].name == f"step_{step + 3:08d}"


def test_interrupted_sampling_keeps_the_batches_written(tmp_path, tiny_digits_model):
    """Sampling into a folder writes each batch as it is done: Ctrl-C keeps them, and says how
    many there are. With --n 10**11 too: the batches are made as they come and the folder is
    listed once (listing 5e10 batches, or checking 1e11 files, hung before the first image)."""
    folder = tmp_path / "many"
    many = str(10**11)
    args = ["sample", str(tiny_digits_model), "--n", many, "--batch", "2", "--steps", "2",
            "--quiet", "--out", str(folder)]  # fmt: skip

    def begun():  # a batch written
        return any(folder.glob("sample_*.png"))

    code, err = signal_when([*DIFFVISION, *args], begun, signal.SIGINT)
    written = sorted(p.name for p in folder.glob("sample_*.png"))
    assert code == 130 and f"{len(written)} of the {many} images are in" in err, err
    assert written == [f"sample_{i:05d}.png" for i in range(len(written))]
    assert not list(folder.glob(".*"))  # each file is written whole, then renamed
    kept = {}
    for path in folder.glob("sample_*.png"):
        with Image.open(path) as image:
            image.load()  # decodes the whole file: a truncated one raises
            assert image.size == (8, 8)
        kept[path.name] = path.read_bytes(), path.stat().st_mtime_ns
    # The same command goes on (here to 4 images more): each batch draws its own noise, so the
    # folder ends as one uninterrupted run's would.
    n = str(len(written) + 4)
    args[args.index(many)] = n
    result = run_here(*args)
    assert result.returncode == 0, result.stderr
    assert f"of the {n} images are in {folder}/ from an earlier run" in result.stdout
    assert all((folder / name).read_bytes() == data for name, (data, _) in kept.items())
    whole = len(written) - len(written) % 2  # a batch cut short is made again, the others not
    assert all((folder / f"sample_{i:05d}.png").stat().st_mtime_ns == kept[f"sample_{i:05d}.png"][1]
               for i in range(whole))  # fmt: skip
    args[args.index(str(folder))] = str(tmp_path / "whole")
    assert run_here(*args).returncode == 0
    for path in (tmp_path / "whole").glob("sample_*.png"):
        assert path.read_bytes() == (folder / path.name).read_bytes(), path.name
    assert len(list(folder.glob("sample_*.png"))) == int(n)


def test_sampling_stopped_while_a_batch_is_written_counts_its_files(
    tmp_path, tiny_digits_model, monkeypatch
):
    """Ctrl-C while a batch's files are being written: the count says how many files are there,
    those of the batch cut short too."""
    import diffvision.io

    save = diffvision.io.save_images

    def cut_short(folder, images, start=0, white=None):  # the second batch: Ctrl-C after 3 files
        if start == 0:
            return save(folder, images, start=start, white=white)
        save(folder, images[:3], start=start, white=white)
        raise KeyboardInterrupt

    monkeypatch.setattr(diffvision.io, "save_images", cut_short)
    folder = tmp_path / "cut"
    result = run_here("sample", str(tiny_digits_model), "--n", "12", "--batch", "5", "--steps",
                      "1", "--quiet", "--out", str(folder))  # fmt: skip
    assert len(list(folder.glob("sample_*.png"))) == 8
    assert result.returncode == 130 and "interrupted; 8 of the 12 images are in" in result.stderr
    stack = tmp_path / "cut.tif"  # a stack's images wait in a folder beside it, and say so
    result = run_here("sample", str(tiny_digits_model), "--n", "12", "--batch", "5", "--steps",
                      "1", "--quiet", "--out", str(stack))  # fmt: skip
    assert result.returncode == 130 and not stack.exists()
    assert f"8 of the 12 images are in {tmp_path / 'cut.tif.frames'}/ (the same command makes " in (
        result.stderr
    )
    assert f"the others and joins them into {stack})" in result.stderr


def test_sample_into_a_tiff_stack(tmp_path, tiny_digits_model, monkeypatch):
    """--out FILE.tif: the images as the pages of one TIFF stack, each bit for bit the file that
    a folder --out gets; they wait in a folder beside it, with its record, until every one is
    made, so an interrupted run goes on from there."""
    import cv2

    args = ["sample", str(tiny_digits_model), "--n", "5", "--batch", "2", "--steps", "2",
            "--quiet", "--out"]  # fmt: skip
    folder, stack = tmp_path / "folder", tmp_path / "stack.tif"
    assert run_here(*args, str(folder)).returncode == 0
    result = run_here(*args, str(stack))
    assert result.returncode == 0, result.stderr
    assert f"wrote 5 images into the TIFF stack {stack} (unipc, 2 steps)" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "stack.tif"]  # no frames
    ok, pages = cv2.imreadmulti(str(stack), flags=cv2.IMREAD_UNCHANGED)
    assert ok and len(pages) == 5
    for i, page in enumerate(pages):
        file = cv2.imread(str(folder / f"sample_{i:05d}.png"), cv2.IMREAD_UNCHANGED)
        assert page.dtype == np.uint8 and np.array_equal(page, file), i
    import diffvision.io

    save = diffvision.io.save_images

    def stopped(folder, images, start=0, white=None):  # Ctrl-C before the second batch
        if start:
            raise KeyboardInterrupt
        return save(folder, images, start=start, white=white)

    partial = tmp_path / "partial.tif"
    monkeypatch.setattr(diffvision.io, "save_images", stopped)
    assert run_here(*args, str(partial)).returncode == 130 and not partial.exists()
    monkeypatch.setattr(diffvision.io, "save_images", save)
    result = run_here(*args, str(partial))
    assert result.returncode == 0, result.stderr
    assert (
        "2 of the 5 images are in" in result.stdout and "; 2 from an earlier run" in result.stdout
    )
    assert partial.read_bytes() == stack.read_bytes()
    assert not (tmp_path / "partial.tif.frames").exists()
    before = stack.stat().st_mtime_ns  # made: the same command leaves it as it is (its record)
    again = run_here(*args, str(stack))
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout
    assert f"{stack} holds the 5 images sampled by an earlier run" in again.stdout
    assert stack.stat().st_mtime_ns == before
    more = run_here(*args[:3], "6", *args[4:], str(stack))  # another --n: made again
    assert more.returncode == 0 and "wrote 6 images into the TIFF stack" in more.stdout


@pytest.mark.parametrize("channels", [1, 3])
def test_12_bit_files_are_read_alike_in_training_and_restoration(tmp_path, channels):
    """A folder of 12-bit files (0-4095 in 16 bits; grey, or colour in 48-bit PNGs): train finds
    and records white level 4095 (in run.json for --resume, in the model's config for info and
    restore), and restore reads and writes a 16-bit input on that scale, at 16 bits per channel,
    unless --white-level says otherwise."""
    import cv2

    def write16(path, pixels):  # OpenCV writes 16-bit grey and colour (BGR); PIL cannot colour
        cv2.imwrite(str(path), pixels if pixels.ndim == 2 else pixels[:, :, ::-1])

    shape = (8, 8) if channels == 1 else (8, 8, 3)
    rng, cells = np.random.default_rng(0), tmp_path / "cells"
    cells.mkdir()
    for i in range(4):
        write16(cells / f"cell_{i}.png", rng.integers(0, 4096, shape, dtype=np.uint16))
    out = tmp_path / "run"
    result = run("train", "--data", str(cells), "--size", "8", "--preset", "tiny", "--steps",
                 "2", "--batch", "4", "--warmup", "2", "--out", str(out), "--quiet")  # fmt: skip
    assert result.returncode == 0 and "note:" not in result.stdout, result.stderr
    assert json.loads((out / "run.json").read_text())["white_level"] == 4095
    info = run("info", str(out / "model"))
    assert "white level: 4095" in info.stdout and f"image:       {channels} x 8 x 8" in info.stdout
    image = np.full((16, 16, 3)[: len(shape)], 2000, np.uint16)
    image[:8] = 8000  # above the model's white: read as white
    if channels == 3:  # in colour (a grey input to a colour model is restored as grey)
        image[..., 2] += 100
    noisy = tmp_path / "noisy.png"
    write16(noisy, image)
    for extra in ([], ["--white-level", "65535"]):
        written = tmp_path / "out.png"
        result = run("restore", "denoise", str(out / "model"), str(noisy), "--sigma", "1",
                     "--out", str(written), "--quiet", *extra)  # fmt: skip
        assert result.returncode == 0, result.stderr
        restored = cv2.imread(str(written), cv2.IMREAD_UNCHANGED)
        assert restored.dtype == np.uint16 and restored.shape == image.shape
        restored = restored.astype(np.float64)
        # sigma 1 of 255: the result is y up to the denoiser's correction, c_out x the network's
        # output, with EDM's c_out = sigma sigma_data / sqrt(sigma^2 + sigma_data^2) ~ sigma =
        # 0.0078 on [-1, 1], 0.4% of white per unit of output: 1% allows outputs up to 2.5.
        white = 4095 if not extra else 65535
        expected = np.minimum(image, white).astype(np.float64)  # above white: read as white
        assert abs(restored[8:].mean() - expected[8:].mean()) < 0.01 * white
        assert abs(restored[:8].mean() - expected[:8].mean()) < 0.01 * white
    # sample writes files as the data came, 16 bits with white at 4095: the same images as
    # the 8-bit files of this network without the white level, to within a level of each
    eight = tmp_path / "eight"
    shutil.copytree(out / "model", eight)
    config = json.loads((eight / "config.json").read_text())
    del config["data"]["white_level"]
    (eight / "config.json").write_text(json.dumps(config))
    drawn = ["--n", "3", "--steps", "2", "--quiet", "--out"]
    for model, where, said in ((out / "model", "deep", ", 16 bits, white 4095)"),
                               (eight, "shallow", "(unipc, 2 steps)")):  # fmt: skip
        result = run_here("sample", str(model), *drawn, str(tmp_path / where))
        assert result.returncode == 0 and said in result.stdout, result.stderr
    for i in range(3):
        deep = cv2.imread(str(tmp_path / "deep" / f"sample_{i:05d}.png"), cv2.IMREAD_UNCHANGED)
        shallow = cv2.imread(
            str(tmp_path / "shallow" / f"sample_{i:05d}.png"), cv2.IMREAD_UNCHANGED
        )
        assert deep.dtype == np.uint16 and shallow.dtype == np.uint8 and deep.shape == shape
        # each the same value in [0, 1] rounded: to 1/4095 and to 1/255 of it
        assert np.abs(deep / 4095 * 255 - shallow).max() <= 0.5 + 0.5 * 255 / 4095 + 1e-6
        assert deep.max() > 255  # on the 12-bit scale, not the 8-bit one
    stack = tmp_path / "deep.tif"  # a stack of them: each page at 16 bits, its file bit for bit
    assert run_here("sample", str(out / "model"), *drawn, str(stack)).returncode == 0
    ok, pages = cv2.imreadmulti(str(stack), flags=cv2.IMREAD_UNCHANGED)
    assert ok and len(pages) == 3
    for i, page in enumerate(pages):
        file = cv2.imread(str(tmp_path / "deep" / f"sample_{i:05d}.png"), cv2.IMREAD_UNCHANGED)
        assert page.dtype == np.uint16 and np.array_equal(page, file), i
    record = json.loads((tmp_path / "deep" / "sample.json").read_text())
    del record["settings"]["bits"]  # a folder sampled at 8 bits before they were recorded
    (tmp_path / "deep" / "sample.json").write_text(json.dumps(record))
    bad = run_here("sample", str(out / "model"), *drawn, str(tmp_path / "deep"))
    assert bad.returncode == 2, bad.stdout
    assert "other settings (the files' bits per channel 16 (the folder's: 8))" in bad.stderr
    grid = tmp_path / "grid.png"  # a grid is to look at: 8 bits
    assert run_here("sample", str(out / "model"), *drawn, str(grid)).returncode == 0
    assert cv2.imread(str(grid), cv2.IMREAD_UNCHANGED).dtype == np.uint8
    bad = run("restore", "denoise", str(out / "model"), str(noisy), "--sigma", "1", "--out",
              str(written), "--white-level", "70000")  # fmt: skip
    assert bad.returncode == 2 and "1-65535" in bad.stderr
    if channels == 3:
        return
    # A level given to train is kept by --resume (found again, it would be 4095). A --size above
    # the files' is said.
    again = tmp_path / "again"
    result = run("train", "--data", str(cells), "--size", "16", "--preset", "tiny", "--steps",
                 "2", "--batch", "4", "--white-level", "65535", "--stop-at", "1", "--out",
                 str(again), "--quiet")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "note: 4 of the 4 images are smaller than --size 16" in result.stdout
    result = run("train", "--out", str(again), "--resume", "--quiet")
    assert result.returncode == 0, result.stderr
    config = json.loads((again / "model" / "config.json").read_text())
    assert config["data"]["white_level"] == 65535
