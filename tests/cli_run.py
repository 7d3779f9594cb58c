"""Running the ``diffvision`` command in a subprocess, as a user would."""

import contextlib
import io
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from diffvision.cli import build_parser, main
from diffvision.cli.evaluate import train_features_parser

#: The command line of ``diffvision`` in this interpreter.
DIFFVISION = [sys.executable, "-m", "diffvision"]


def run(*args):
    """``python -m diffvision ARGS``: the completed process (stdout, stderr as text)."""
    return subprocess.run([*DIFFVISION, *args], capture_output=True, text=True, timeout=300)


def run_here(*args):
    """``diffvision ARGS`` in this process, for the many quick refusals (no interpreter to start,
    about 3 s each): a result with the same fields as :func:`run`'s."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exit_:  # argparse's usage errors
            code = exit_.code
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def example_commands(text):
    """The ``diffvision`` command lines written in ``text`` (a README's code block or a help's
    examples) as argument lists: continued lines joined, ``&&`` chains split, comments dropped
    (``# ...``, and a help's ``   (...)`` after two spaces or more); ``torchrun ... -m diffvision
    ARGS`` gives ARGS."""
    commands = []
    for line in text.replace("\\\n", " ").splitlines():
        for part in line.split("&&"):
            part = re.sub(r"\s{2,}\(.*\)\s*$", "", part).strip()
            if not part.startswith(("diffvision ", "torchrun ")):  # prose, or another program
                continue
            words = shlex.split(part, comments=True)
            if words[:1] == ["diffvision"]:
                commands.append(words[1:])
            elif words[:1] == ["torchrun"] and "diffvision" in words:
                commands.append(words[words.index("diffvision") + 1 :])
    return commands


def parse_status(args):
    """The exit status of parsing ``diffvision ARGS`` (nothing run): 0 where it parses, else
    argparse's (2, with its one-line error on stderr)."""
    parser = build_parser()
    if args[:2] == ["eval", "train-features"]:  # parsed by its own parser (diffvision.cli.main)
        parser, args = train_features_parser(), args[2:]
    try:
        parser.parse_args(args)
    except SystemExit as exit_:
        return exit_.code
    return 0


def _default_sigint():
    # A shell running the tests in the background ignores SIGINT, and children inherit that: the
    # command would then not see Ctrl-C at all. A terminal's user has it at its default.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def signal_when(argv, ready, stop, env=None, target=None):
    """Run ``argv``, send ``stop`` once ``ready()`` holds (polled for up to 240 s) to it, or to
    the process ``target(pid)`` names (one of its children, say), and wait for it to end;
    returns its exit code and stderr. Neither it nor any process it started outlives this."""
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=_default_sigint,
        env=env,
        start_new_session=True,  # its own process group, killed whole below
    )
    try:
        deadline = time.monotonic() + 240
        while not ready():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.1)
        os.kill(proc.pid if target is None else target(proc.pid), stop)
        _, err = proc.communicate(timeout=120)
        return proc.returncode, err.decode()
    finally:  # only if any still runs (a failed check)
        left = _descendants(proc.pid)  # listed first: once it ends they are init's children
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in left:  # torchrun's workers, each in a session of its own
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _children(pid):
    """The children of process ``pid`` as ``(pid, environment variables)``, from /proc (Linux;
    none elsewhere)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            environ = (stat.parent / "environ").read_bytes().split(b"\0") if ppid == pid else []
        except (OSError, IndexError, ValueError):  # a process that ended while listed
            continue
        if ppid == pid:
            found.append((int(stat.parent.name), environ))
    return found


def _descendants(pid):
    children = [child for child, _ in _children(pid)]
    return children + [d for child in children for d in _descendants(child)]


def child_with(pid, variable):
    """The child of process ``pid`` whose environment holds ``variable`` (e.g. ``RANK=1``)."""
    for child, environ in _children(pid):
        if variable.encode() in environ:
            return child
    raise AssertionError(f"no child of {pid} has {variable}")


def logged(run_folder):
    """A ``ready`` for :func:`signal_when`: true once a training run has logged a step."""
    log = run_folder / "metrics.jsonl"
    return lambda: log.is_file() and log.read_text().count("\n") >= 1
