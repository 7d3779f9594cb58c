"""Running the ``diffvision`` command in a subprocess, as a user would."""

import contextlib
import io
import signal
import subprocess
import sys
import time

from diffvision.cli import main

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


def _default_sigint():
    # A shell running the tests in the background ignores SIGINT, and children inherit that: the
    # command would then not see Ctrl-C at all. A terminal's user has it at its default.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def signal_when(argv, ready, stop, env=None):
    """Run ``argv``, send it ``stop`` once ``ready()`` holds (polled for up to 240 s) and wait
    for it to end; returns its exit code and stderr. The process never outlives this."""
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=_default_sigint,
        env=env,
    )
    try:
        deadline = time.monotonic() + 240
        while not ready():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.1)
        proc.send_signal(stop)
        _, err = proc.communicate(timeout=120)
        return proc.returncode, err.decode()
    finally:
        proc.kill()  # only if it still runs (a failed check above)


def logged(run_folder):
    """A ``ready`` for :func:`signal_when`: true once a training run has logged a step."""
    log = run_folder / "metrics.jsonl"
    return lambda: log.is_file() and log.read_text().count("\n") >= 1
