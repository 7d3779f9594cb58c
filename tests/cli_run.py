"""Running the ``diffvision`` command in a subprocess, as a user would."""

import subprocess
import sys


def run(*args):
    """``python -m diffvision ARGS``: the completed process (stdout, stderr as text)."""
    return subprocess.run(
        [sys.executable, "-m", "diffvision", *args], capture_output=True, text=True, timeout=300
    )
