"""glibc's malloc tuned for tensors: freed blocks kept for reuse, unless the user chose."""

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import diffvision.cli as cli
from diffvision import memory
from diffvision.allocator import USER_SETTINGS, left_alone_because

#: Allocates 32 float32 tensors of 8 MiB (touched), frees them, and prints whether the malloc
#: was tuned and how many MiB of them the process still holds.
HELD_AFTER_FREE = """
import os, sys, torch
from diffvision.allocator import held_free_bytes, tune_malloc
tuned = tune_malloc()
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
before, held_before = rss(), held_free_bytes()
blocks = [torch.ones(2**21) for _ in range(32)]
del blocks
print(tuned, (rss() - before) / 2**20, (held_free_bytes() - held_before) / 2**20)
"""

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def held_after_free(**env) -> tuple[bool, float, float]:
    clean = {k: v for k, v in os.environ.items() if k not in (*USER_SETTINGS, "LD_PRELOAD")}
    clean.pop("DIFFVISION_MALLOC", None)
    out = subprocess.run(
        [sys.executable, "-c", HELD_AFTER_FREE],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.split()
    return out[0] == "True", float(out[1]), float(out[2])


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_tuned_malloc_keeps_freed_blocks_for_reuse():
    """Tuned, 256 MiB of freed 8 MiB blocks stay in the process (the heap is not trimmed); by
    glibc's defaults each block is mapped and given back as it is freed. ``DIFFVISION_MALLOC=
    default`` and a glibc setting of the user's leave the defaults. ``held_free_bytes`` (and so
    the memory checks' free memory) counts the blocks held."""
    tuned, resident, held = held_after_free()
    assert tuned and resident >= 240 and held >= 240, (resident, held)
    for env in ({"DIFFVISION_MALLOC": "default"}, {"MALLOC_ARENA_MAX": "2"}):
        tuned, resident, held = held_after_free(**env)
        assert not tuned and resident < 64 and held < 64, (env, resident, held)


def test_the_allocator_is_left_alone_where_the_user_chose_one():
    assert left_alone_because({"DIFFVISION_MALLOC": "default"}) == "DIFFVISION_MALLOC=default"
    assert left_alone_because({"MALLOC_TRIM_THRESHOLD_": "0"}) == "MALLOC_TRIM_THRESHOLD_ is set"
    tunables = {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"}
    assert left_alone_because(tunables) == "GLIBC_TUNABLES sets glibc.malloc"
    jemalloc = {"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"}
    assert left_alone_because(jemalloc).startswith("LD_PRELOAD is set")
    assert left_alone_because({}) == (None if GLIBC else "not glibc")


def test_the_program_tunes_malloc_and_a_caller_of_main_is_left_alone(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(cli, "tune_malloc", lambda: calls.append(1))
    missing = str(tmp_path / "no-model")
    assert cli.main(["info", missing]) == 2 and calls == []
    monkeypatch.setattr(sys, "argv", ["diffvision", "info", missing])
    assert cli.main() == 2 and calls == [1]


@pytest.mark.skipif(not Path("/proc/meminfo").is_file(), reason="Linux's MemAvailable")
def test_the_free_memory_counts_what_malloc_holds(monkeypatch):
    """As CUDA's free memory counts PyTorch's cached blocks, the CPU's counts malloc's."""
    monkeypatch.setattr(memory, "held_free_bytes", lambda: 0)
    alone = memory.available_bytes(torch.device("cpu"))
    monkeypatch.setattr(memory, "held_free_bytes", lambda: 2**40)
    assert abs(memory.available_bytes(torch.device("cpu")) - alone - 2**40) < 2**30
