"""Will a batch fit in memory? The memory free on a device, and the bytes that a network call
allocates, counted by running it on one and two images: so that a batch far too large for the
machine is refused with a message before any work, not ended by the kernel's out-of-memory kill
after minutes of swapping (seen: ``sample --batch 256`` of a 128 px model needs 8 GB on the CPU).
What autograd keeps for a backward pass is counted by :func:`saved_bytes` (training's check,
``train/memory.py``, and the tiled denoiser's choice to checkpoint, ``restore/tiles.py``)."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from .allocator import held_free_bytes

GiB = 2**30


def available_bytes(device: torch.device) -> int | None:
    """Memory free for a new allocation on ``device`` in bytes: CUDA's free memory plus the
    blocks that PyTorch holds cached, or on the CPU Linux's MemAvailable plus free swap plus
    the blocks that malloc holds free for this process (``allocator.held_free_bytes``); None
    where it is not known (other systems)."""
    if device.type == "cuda":
        # the caching allocator's reserved but unused blocks are free to PyTorch, not to the driver
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return torch.cuda.mem_get_info(device)[0] + cached
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        system = sum(int(fields[name].split()[0]) * 1024 for name in ("MemAvailable", "SwapFree"))
    except (OSError, KeyError, ValueError):
        return None
    return system + held_free_bytes()


class _LiveBytes(TorchDispatchMode):
    """Counts the storages that the operators run under it allocate, while they live: an
    operator's output whose storage is none of its inputs' (not a view, nor in place) is a new
    allocation, freed when the last tensor on it is (``weakref.finalize`` on the tensor, which
    CPython runs as soon as it is dropped). ``peak``: the most bytes alive together. Memory that
    a kernel uses inside itself (workspaces) is not seen, so ``peak`` is a lower bound of what
    the call adds to the allocator's peak."""

    def __init__(self):
        super().__init__()
        self.live: dict[int, int] = {}
        self.now = self.peak = 0

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # PyTorch otherwise wraps __torch_dispatch__ to keep torch.compile out of it, which
        # imports Dynamo on the first call (1.1 s here); nothing is compiled under this mode
        return False

    def _release(self, ptr: int) -> None:
        self.now -= self.live.pop(ptr)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {
            t.untyped_storage().data_ptr()
            for t in tree_leaves((args, kwargs))
            if isinstance(t, torch.Tensor)
        }
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            ptr = storage.data_ptr()
            if ptr and ptr not in inputs and ptr not in self.live:
                self.live[ptr] = storage.nbytes()
                self.now += storage.nbytes()
                self.peak = max(self.peak, self.now)
                weakref.finalize(t, self._release, ptr)
        return out


def peak_bytes(fn: Callable[[], object]) -> int:
    """The most bytes that ``fn()``'s own allocations hold at one time (a lower bound of the
    peak it adds; see :class:`_LiveBytes`). ``fn`` runs once; its result is dropped."""
    with _LiveBytes() as counter:
        fn()
    return counter.peak


def saved_bytes(loss_of: Callable[[], Tensor], exclude: nn.Module | None = None) -> int:
    """Bytes of the distinct tensors that autograd keeps for the backward pass of ``loss_of()``
    (activations, counted once per storage), less the parameters of ``exclude``, which exist
    anyway. The loss is computed and dropped; nothing is trained."""
    params = (
        set() if exclude is None else {p.untyped_storage().data_ptr() for p in exclude.parameters()}
    )
    kept: dict[int, int] = {}

    def pack(tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            kept[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss_of()
    return sum(kept.values())


def batch_bytes(
    run_on: Callable[[int], object], count: Callable[[Callable[[], object]], int] = peak_bytes
) -> tuple[int, int]:
    """``run_on(n)``'s bytes by ``count`` (default its peak, :func:`peak_bytes`) for one image,
    and what each further image adds, measured on one and two. Every operator's allocations are
    affine in the batch, so the peak, a maximum of such functions over time, is convex in it:
    the line through 1 and 2 is a lower bound of the peak at any batch of 2 or more."""
    one, two = count(lambda: run_on(1)), count(lambda: run_on(2))
    return one, max(two - one, 0)


def check_batch_fits(
    run_on: Callable[[int], object], batch: int, device: torch.device, what: str, advice: str
) -> None:
    """Raise ValueError when ``run_on(batch)`` surely does not fit: the lower bound of its peak
    (:func:`batch_bytes`) exceeds the memory available on ``device``. ``what`` names the call
    in the message ("sampling 256 images of 3 x 128 x 128"), ``advice`` says what to change."""
    if available_bytes(device) is None:
        return
    one, each = batch_bytes(run_on)
    check_fits(one + (batch - 1) * each, device, what, advice, f"{each / 2**20:.1f} MiB per image")


def check_fits(
    need: int, device: torch.device, what: str, advice: str, detail: str | None = None
) -> None:
    """Raise ValueError when ``need`` bytes (a lower bound of what ``what`` takes) exceed the
    memory available on ``device``; nothing where that memory is unknown. The message: "``what``
    needs at least X GiB (``detail``), and Y GiB is free: ``advice``"."""
    free = available_bytes(device)
    if free is not None and need > free:
        detail = f" ({detail})" if detail else ""
        raise ValueError(
            f"{what} needs at least {need / GiB:.1f} GiB{detail}, and {free / GiB:.1f} GiB is "
            f"free: {advice}"
        )
