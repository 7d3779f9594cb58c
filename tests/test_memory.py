"""The count behind the memory checks of sampling (``diffvision.memory``): exact on allocations
made by hand, a lower bound of a real process's peak, and the refusal it gives."""

import subprocess
import sys
import textwrap

import pytest
import torch

from diffvision import memory
from diffvision.io import load
from diffvision.memory import batch_bytes, peak_bytes
from diffvision.metrics import evaluate as ev
from diffvision.nets.unet import build_unet
from tests.cli_run import run_here


def test_peak_bytes_counts_the_allocations_alive_together():
    """Views, in-place operations and tensors made before the call allocate nothing; a freed
    tensor's bytes are given back. The peak is known by hand: 4000 + 8000 bytes."""
    before = torch.ones(1000)

    def allocations():
        a = torch.empty(1000)  # 4000 bytes
        view = a.view(10, 100)  # a view of a: nothing new
        a.add_(1)  # in place: nothing new
        older = before.view(-1)  # a view of an older tensor, alive to the end: nothing new
        older.mul_(1)
        b = torch.empty(1000, dtype=torch.float64)  # 8000: 12000 alive, the peak
        del a, view  # 8000 alive
        c = torch.empty(500)  # 2000: 10000 alive
        return b, c, older

    assert peak_bytes(allocations) == 12000
    assert peak_bytes(lambda: torch.empty(0)) == 0  # an empty tensor has no storage


def _unet_on(size: int):
    net = build_unet("tiny", in_channels=3).eval()

    def run_on(n: int):
        x = torch.zeros(n, 3, size, size)
        with torch.no_grad():
            return net(x, torch.ones(n))

    return run_on


def test_the_line_through_one_and_two_images_bounds_larger_batches():
    """Each operator allocates bytes affine in the batch, so the peak is convex in it and the
    line through 1 and 2 images is a lower bound at larger batches; for a U-Net, whose
    operators are the same at every batch, it is exact (equal to the byte)."""
    run_on = _unet_on(16)
    one, each = batch_bytes(run_on)
    assert one > 0 and each > 0
    for n in (3, 7):
        assert peak_bytes(lambda n=n: run_on(n)) == one + (n - 1) * each


def test_the_count_is_below_a_real_process_peak():
    """In a fresh process, the count for 64 images of 32 x 32 (53 MiB) against the rise of the
    process's peak resident memory (VmHWM) in that call: the count is a lower bound (kernels'
    workspaces and the allocator's slack come on top) and not a loose one (measured: 64% of
    the rise here, up to 94% for larger calls: bench/results/memory_check.md)."""
    code = textwrap.dedent("""
        import torch
        from tests.test_memory import _unet_on
        from diffvision.memory import batch_bytes

        def peak():
            with open("/proc/self/status") as f:
                line = next(l for l in f if l.startswith("VmHWM"))
            return int(line.split()[1]) * 1024

        torch.manual_seed(0)
        run_on = _unet_on(32)
        one, each = batch_bytes(run_on)
        start = peak()
        run_on(64)
        print(one + 63 * each, peak() - start)
    """)
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
        )
    except subprocess.CalledProcessError as err:
        if "StopIteration" in err.stderr:
            pytest.skip("no /proc/self/status VmHWM on this system")
        raise
    counted, rise = map(int, done.stdout.split())
    assert 0.4 * rise < counted <= rise, (counted, rise)


def test_a_sampling_batch_that_cannot_fit_is_refused(tmp_path, monkeypatch, tiny_digits_model):
    """One line, exit code 2, before anything is written; the same images in smaller batches
    run. The tiny model at 8 x 8 counts 52 KiB per image: 26 MiB for 512, 3.3 MiB for 64."""
    monkeypatch.setattr(memory, "available_bytes", lambda device: 10 * 2**20)  # 10 MiB free
    out = tmp_path / "samples"
    args = ["sample", str(tiny_digits_model), "--n", "512", "--steps", "1", "--quiet"]
    bad = run_here(*args, "--batch", "512", "--out", str(out))
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "sampling 512 images of 1 x 8 x 8 needs at least" in bad.stderr
    assert "10.0 MiB" not in bad.stderr and "0.0 GiB is free: lower --batch" in bad.stderr
    assert not out.exists()
    fine = run_here(*args, "--batch", "64", "--out", str(out))
    assert fine.returncode == 0, fine.stderr
    assert len(list(out.glob("sample_*.png"))) == 512


def test_a_grid_that_cannot_fit_is_refused(tmp_path, monkeypatch, tiny_digits_model):
    """A grid holds every image, twice (the batches, then joined): one that cannot fit is
    refused in one line before sampling, ``--n 10**11`` too (it hung, listing 1.6e9 batches);
    a smaller grid runs. 4096 images of 8 x 8 in float32, twice: 2 MiB."""
    monkeypatch.setattr(memory, "available_bytes", lambda device: 2**20)  # 1 MiB free
    grid = tmp_path / "grid.png"
    args = ["sample", str(tiny_digits_model), "--batch", "16", "--steps", "1", "--quiet"]
    for n in ("4096", str(10**11)):
        bad = run_here(*args, "--n", n, "--out", str(grid))
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
        assert f"a grid of {n} images of 1 x 8 x 8 needs at least" in bad.stderr
        assert "lower --n, or write one PNG per image (--out FOLDER/)" in bad.stderr
        assert not grid.exists()
    fine = run_here(*args, "--n", "1024", "--out", str(grid))  # 0.5 MiB
    assert fine.returncode == 0 and grid.is_file(), fine.stderr


def test_an_eval_batch_that_cannot_fit_is_refused(tmp_path, monkeypatch, tiny_digits_model):
    """eval samples ``--batch`` images at a time (500 by default): a batch that cannot fit is
    refused in one line before sampling; a smaller one runs; so are the --bpd images."""
    features = tmp_path / "features"
    made = run_here("eval", "train-features", "digits", "--steps", "2", "--out", str(features))
    assert made.returncode == 0, made.stderr
    monkeypatch.setattr(memory, "available_bytes", lambda device: 10 * 2**20)  # 10 MiB free
    args = ["eval", str(tiny_digits_model), "--data", "digits", "--features", str(features)]
    args += ["--n", "512", "--seeds", "1", "--steps", "1"]
    bad = run_here(*args)  # the default batch, 500
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "sampling 500 images of 1 x 8 x 8 needs at least" in bad.stderr
    assert "lower the batch (eval --batch)" in bad.stderr
    fine = run_here(*args, "--batch", "64")
    assert fine.returncode == 0, fine.stderr
    # bits/dim (a vector-Jacobian product: 238 KiB an image, against sampling's 53) is checked
    # before sampling: 4 images at once need 0.95 MiB, 2 need 0.48; 8 samples need 0.42; and
    # 0.7 MiB are free
    monkeypatch.setattr(memory, "available_bytes", lambda device: 0.7 * 2**20)
    args = [*args[:-6], "--n", "8", "--seeds", "1", "--steps", "1", "--bpd", "4"]
    bad = run_here(*args, "--batch", "8")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "the likelihood of 4 images of 1 x 8 x 8 at once needs at least" in bad.stderr
    assert bad.stdout == ""  # nothing sampled
    # 2 at a time fit (a run would take a minute: the exact divergence of 8 x 8 images is 64
    # vector-Jacobian products an evaluation; test_bits_per_dim_in_batches... covers batches)
    ev.check_bits_per_dim_fits(load(tiny_digits_model), (1, 8, 8), 4, 2, "cpu")


def test_bits_per_dim_in_batches_equals_all_at_once(tiny_digits_model):
    """8 x 8 digits have 64 dimensions, for which the divergence is exact (no probes): 6
    images 4 at a time give each image's bits/dim as all at once do, up to float32 rounding
    of a batch-size-dependent summation order (1e-4 of ~10 bits)."""
    from diffvision.data import digits

    model, data = load(tiny_digits_model), digits(8)
    whole = ev.bits_per_dim(model, data, 6, steps=2, batch=500)
    parts = ev.bits_per_dim(model, data, 6, steps=2, batch=4)
    assert parts["n"] == whole["n"] == 6
    assert parts["mean"] == pytest.approx(whole["mean"], abs=1e-4)
    assert parts["std_err"] == pytest.approx(whole["std_err"], abs=1e-4)


def test_a_restoration_whose_tiles_cannot_fit_is_refused(tmp_path, monkeypatch, tiny_digits_model):
    """restore counts the most tiles one network call takes: a 64 x 64 image in 8 px tiles has
    at least 64 per image (here ~3.3 MiB, 52 KiB each), 128 at a time by default, so 1 MiB
    free refuses it in one line before any work; 8 tiles at a time (0.4 MiB) run. With
    noise-free inpainting only the window around the hole is tiled: a 4 px box in the corner
    leaves a 12 x 12 window, at least 4 tiles (0.2 MiB), which fit. dps's gradient is counted
    too."""
    import numpy as np
    from PIL import Image

    image = tmp_path / "in.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)).save(image)
    monkeypatch.setattr(memory, "available_bytes", lambda device: 2**20)  # 1 MiB free
    args = ["restore", "denoise", str(tiny_digits_model), str(image), "--sigma", "25"]
    args += ["--tile", "8", "--overlap", "2", "--quiet", "--out", str(tmp_path / "out.png")]
    bad = run_here(*args)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "the network on 64 tiles of 1 x 8 x 8 at once needs at least" in bad.stderr
    assert "lower --batch (tiles at a time)" in bad.stderr
    assert not (tmp_path / "out.png").exists()
    fine = run_here(*args, "--batch", "8")
    assert fine.returncode == 0, fine.stderr
    # dps keeps one batch's activations for its gradient: 238 KiB a tile, 1.9 MiB for 8 tiles
    dps = ["restore", "deblur", str(tiny_digits_model), str(image), "--solver", "dps"]
    dps += ["--steps", "1", "--tile", "8", "--overlap", "2", "--quiet"]
    dps += ["--out", str(tmp_path / "sharp.png")]
    bad = run_here(*dps, "--batch", "8")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "the network on 8 tiles of 1 x 8 x 8 at once needs at least" in bad.stderr
    fine = run_here(*dps, "--batch", "2")  # 0.48 MiB
    assert fine.returncode == 0, fine.stderr
    inpaint = ["restore", "inpaint", str(tiny_digits_model), str(image), "--box", "0,0,4,4"]
    inpaint += ["--tile", "8", "--overlap", "2", "--steps", "2", "--quiet"]
    done = run_here(*inpaint, "--out", str(tmp_path / "filled.png"))
    assert done.returncode == 0, done.stderr
