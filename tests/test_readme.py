"""The README stays true to the code: its library example runs as written (with the tiny test
model for its model folder), its command lines parse, and the files it names are there."""

import glob
import re
import shlex
from pathlib import Path

from tests.cli_run import example_commands, parse_status

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
RESTORATION = ROOT / "docs" / "restoration.md"
DEMO = ROOT / "docs" / "demo.md"


def test_library_example_runs(tiny_digits_model):
    text = README.read_text()
    section = text[text.index("## Use it as a library") :]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert '"runs/digits/model"' in code
    scope = {}
    exec(code.replace('"runs/digits/model"', repr(str(tiny_digits_model))), scope)
    assert scope["images"].shape == (16, 1, 8, 8) and scope["x"].shape == (1000, 2)
    assert scope["ll"].log_prob.shape == (10,) and scope["ll"].log_prob.isfinite().all()


def _code_blocks(text, language):
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def test_command_lines_parse():
    """Every ``diffvision`` (and ``torchrun -m diffvision``) line of the README's shell blocks
    parses with the command's own parser: an option renamed or removed fails here."""
    commands = [c for b in _code_blocks(README.read_text(), "bash") for c in example_commands(b)]
    tasks = {c[1] for c in commands if c[0] == "restore"}
    assert {c[0] for c in commands} == {"demo", "train", "sample", "info", "eval", "restore"}
    assert tasks == {"denoise", "inpaint", "superres", "deblur", "colorize"}
    assert not [shlex.join(c) for c in commands if parse_status(c) != 0]


def _expanded(path):
    """``a{1,2}b`` -> ``a1b``, ``a2b`` (one brace, as the README writes them)."""
    head, brace, tail = path.partition("{")
    if not brace:
        return [path]
    options, _, rest = tail.partition("}")
    return [p for o in options.split(",") for p in _expanded(head + o + rest)]


def test_named_files_exist():
    """Every file or folder of this repository that the README, the architecture notes or the
    restoration and demo studies name (``bench/...``, ``tests/...``, ``src/...``, ``docs/...``,
    ``.ci/...``; braces expanded, ``*`` matched) is there."""
    named = []
    for doc in (README, ARCHITECTURE, RESTORATION, DEMO):
        for path in re.findall(
            r"(?<![\w/.])((?:bench|src|tests|docs|\.ci)/[\w./{},*-]*)", doc.read_text()
        ):
            named += _expanded(path.rstrip(".,"))
    assert "bench/results/restoration.md" in named and "docs/restoration.md" in named
    assert "docs/demo.md" in named and "bench/results/demo_variants.md" in named
    missing = [
        p for p in named if not (glob.glob(p, root_dir=ROOT) if "*" in p else (ROOT / p).exists())
    ]
    assert not missing
