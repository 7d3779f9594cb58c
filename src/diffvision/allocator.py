"""glibc's malloc tuned for a process that allocates and frees large tensors over and over.

By default glibc hands every block above its mmap threshold (128 KiB, raised as blocks are
freed, up to 32 MiB) to the kernel when it is freed, and gives back the top of its heap above
128 KiB. A network's activations are allocated and freed every call, so each call maps them
afresh and the kernel zeroes every page on first touch. On this project's 2-core CPU
(``bench/results/allocator.md``) a float32 forward pass of the ``photos`` U-Net on 128 tiles
took 1.66x as long by glibc's defaults (1.28x with channels-last weights, 1.18x in bf16), and
``sample``, ``restore`` and ``train`` 1.03-1.21x. :func:`tune_malloc` keeps freed memory in
the process for reuse instead: blocks up to 32 MiB (glibc's largest mmap threshold on 64-bit)
come from the heap, and the heap's top is trimmed only above 2 GiB. The price is a higher peak
RSS (2-17% in those commands: freed blocks are held, not returned); the memory checks count
the held blocks as free (:func:`held_free_bytes`, in :func:`diffvision.memory.available_bytes`),
as they count PyTorch's cached blocks on CUDA.

The ``diffvision`` command calls :func:`tune_malloc` as it starts; a library user may call it
once, early. It leaves the allocator as it is where the user has chosen one: a ``MALLOC_*_``
or ``GLIBC_TUNABLES`` setting of glibc's, another allocator in ``LD_PRELOAD`` (jemalloc,
tcmalloc), or ``DIFFVISION_MALLOC=default``. Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import platform

#: mallopt's parameter numbers (glibc's malloc.h).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: The settings :func:`tune_malloc` makes: blocks up to 32 MiB from the heap (the largest mmap
#: threshold glibc takes on 64-bit, HEAP_MAX_SIZE / 2) and the heap's top kept up to 2 GiB (the
#: largest ``int``). The top is not padded (``M_TOP_PAD``): padding would be memory that
#: :func:`held_free_bytes` counts as free but that was never touched, so counted twice.
SETTINGS = {M_MMAP_THRESHOLD: 32 * 2**20, M_TRIM_THRESHOLD: 2**31 - 1}


class _MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (2.33 on), every field a ``size_t``."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                     "uordblks", "fordblks", "keepcost")
    ]  # fmt: skip


#: Environment variables by which glibc's malloc is set, or another allocator put in its place.
USER_SETTINGS = (
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_MMAP_MAX_",
    "MALLOC_ARENA_MAX",
)


def left_alone_because(environ: dict[str, str] | None = None) -> str | None:
    """Why :func:`tune_malloc` would leave the allocator alone (a few words), or None."""
    env = os.environ if environ is None else environ
    if env.get("DIFFVISION_MALLOC") == "default":
        return "DIFFVISION_MALLOC=default"
    chosen = [name for name in USER_SETTINGS if name in env]
    if chosen:
        return f"{chosen[0]} is set"
    if "glibc.malloc" in env.get("GLIBC_TUNABLES", ""):
        return "GLIBC_TUNABLES sets glibc.malloc"
    if env.get("LD_PRELOAD", "").strip():
        return "LD_PRELOAD is set (another allocator, perhaps)"
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "not glibc"
    return None


def _libc():
    """The C library this process runs on (``ctypes``), or None where it cannot be opened."""
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


def held_free_bytes() -> int:
    """The bytes that glibc's malloc holds free for this process (in all its arenas, the tops
    of the heaps included): memory a new tensor can take although the system does not count it
    as available. 0 where that is not known (not glibc, or glibc before 2.33)."""
    libc = _libc()
    mallinfo2 = getattr(libc, "mallinfo2", None) if libc is not None else None
    if mallinfo2 is None:
        return 0
    mallinfo2.argtypes, mallinfo2.restype = [], _MallInfo2
    return int(mallinfo2().fordblks)


def tune_malloc() -> bool:
    """Make glibc's malloc keep freed memory for reuse (see the module's doc). Returns whether it
    did: False where :func:`left_alone_because` gives a reason, or glibc refused a setting."""
    if left_alone_because() is not None:
        return False
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all([mallopt(param, value) == 1 for param, value in SETTINGS.items()])
