"""``diffvision restore`` end to end on a tiny model, and whole images by tiles."""

import argparse
import hashlib
import itertools
import json
import math
import re
import signal

import numpy as np
import pytest
import torch
from PIL import Image

from diffvision.analytic import GaussianDenoiser
from diffvision.cli.common import UsageError
from diffvision.cli.restore import _start_options, default_resample, default_solver
from diffvision.denoiser import Denoiser
from diffvision.io.images import stack_record
from diffvision.nets.unet import build_unet
from diffvision.process import get_schedule
from diffvision.restore import (
    Denoise,
    Inpaint,
    Operator,
    box_mask,
    random_mask,
    solve,
    stroke_mask,
)
from diffvision.restore.tiles import (
    TiledDenoiser,
    blend_tile_by_tile,
    blend_window,
    solve_tiled,
    tile_starts,
)
from tests.cli_run import DIFFVISION, run, run_here, signal_when


@pytest.fixture(scope="module")
def tiny_rgb_model(tmp_path_factory):
    """A model folder of the tiny U-Net trained one step on 8 x 8 RGB photos patches."""
    out = tmp_path_factory.mktemp("rgb") / "run"
    result = run_here("train", "--data", "photos", "--size", "8", "--preset", "tiny", "--steps",
                      "1", "--batch", "2", "--out", str(out), "--quiet")  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out / "model"


def test_tiles_cover_and_blend():
    assert tile_starts(32, 8, 2) == [0, 6, 12, 18, 24]
    starts = tile_starts(50, 16, 4)
    assert starts[0] == 0 and starts[-1] == 34
    assert all(b - a <= 12 for a, b in itertools.pairwise(starts))
    for offset in range(1, 12):  # a shifted grid: borders kept, spacing at most the stride
        shifted = tile_starts(50, 16, 4, offset)
        assert shifted[0] == 0 and shifted[-1] == 34 and offset in shifted
        assert all(0 < b - a <= 12 for a, b in itertools.pairwise(shifted))
    with pytest.raises(ValueError, match="offset"):
        tile_starts(50, 16, 4, 12)
    w = blend_window(8, 2)
    assert w.min() > 0 and w[3:5, 3:5].eq(1).all()


def test_shifted_tiles_move_between_calls():
    seen = []

    def prior(x, sigma):
        seen.append(x.shape[0])  # tiles per call
        return x

    tiled = TiledDenoiser(prior, tile=8, overlap=2, batch=1000)
    x = torch.randn(1, 1, 30, 30)
    for _ in range(4):
        assert torch.allclose(tiled(x, 1.0), x)  # blending an identity is the identity
    assert seen[0] == len(tile_starts(30, 8, 2)) ** 2 and len(set(seen)) > 1


def test_tiled_denoiser_equals_the_blend_written_out_with_its_gradient():
    """A prior that sees where it is (a tile's pixels weighted by their row and column, plus the
    tile's mean times sigma), 2 images of 3 channels at different sigmas, 22 x 30 px, the even
    grid and two shifted ones: the scatter-add blend, and its gradient through the
    checkpointed batches, equal the blend written out tile by tile, in float64 to rounding.
    Rows and columns swapped, a tile put back elsewhere or a sigma given to the wrong image
    would differ by O(1)."""
    ramp = torch.arange(1.0, 7.0, dtype=torch.float64)

    def prior(x, sigma):  # N x 3 x 6 x 6, one sigma per tile
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return (
            torch.tanh(x * ramp[:, None] * ramp.square() / 20) + mean * sigma[:, None, None, None]
        )

    x = torch.randn(2, 3, 22, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    v = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    sigma = torch.tensor([0.5, 2.0], dtype=torch.float64)
    reported = []
    tiled = TiledDenoiser(prior, tile=6, overlap=2, batch=7, progress=lambda *a: reported.append(a))
    golden = (5**0.5 - 1) / 2
    for call in range(3):  # TiledDenoiser's offsets: the even grid, then golden-ratio shifts
        offsets = [int((call * golden**k) % 1.0 * 4) for k in (1, 2)]
        rows, cols = (tile_starts(n, 6, 2, o) for n, o in zip((22, 30), offsets, strict=True))
        x_in, x_ref = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        reported.clear()
        out = tiled(x_in, sigma)
        count = 2 * len(rows) * len(cols)  # progress: after each batch of 7 of the call's tiles
        assert reported == [(min(i + 7, count), count) for i in range(0, count, 7)]
        ref = blend_tile_by_tile(prior, x_ref, sigma, rows, cols, 6, 2)
        assert torch.allclose(out, ref, atol=1e-12, rtol=0)
        (out * v).sum().backward()
        (ref * v).sum().backward()
        assert torch.allclose(x_in.grad, x_ref.grad, atol=1e-12, rtol=0)


def _tiny_tiled_problem():
    """A tiny U-Net denoiser and a 40 x 40 image in 8 px tiles overlapping by 2 (49 tiles),
    with the bytes that a checkpointed gradient call may keep: the tiles (T bytes in
    float32), their pixel index (int64: 2 T), the scattered source (T), the blend's weight sum
    (at most T: every pixel is covered), the window and the sigmas (4 bytes a tile)."""
    torch.manual_seed(0)
    model = Denoiser(build_unet("tiny", in_channels=1), "edm", get_schedule("edm")).eval()
    x = torch.randn(1, 1, 40, 40, requires_grad=True)
    tiles = len(tile_starts(40, 8, 2)) ** 2
    bound = 5 * tiles * 8 * 8 * 4 + 8 * 8 * 4 + 4 * tiles
    return model, x, tiles, bound


def test_tiled_gradient_keeps_no_activations():
    """With a gradient wanted (dps) and ``checkpoint=True``, the tiles' batches are
    checkpointed: autograd keeps the tiles and the blend's tensors (the bound of
    :func:`_tiny_tiled_problem`), not each tile's activations (a 512 x 512 image in 8 px tiles
    kept 17.5 GB)."""
    from diffvision.memory import saved_bytes

    model, x, tiles, bound = _tiny_tiled_problem()
    tiled = TiledDenoiser(model, tile=8, overlap=2, batch=16, checkpoint=True)
    kept = saved_bytes(lambda: tiled(x, 0.7).sum(), exclude=model)
    batch = torch.randn(16, 1, 8, 8, requires_grad=True)
    per_tile = saved_bytes(lambda: model(batch, torch.full((16,), 0.7)).sum(), exclude=model) / 16
    assert tiles * per_tile > 10 * bound  # what keeping the activations would cost
    assert kept <= bound
    # all tiles in one batch: checkpointing would keep as much at the peak, so it is skipped
    whole = TiledDenoiser(model, tile=8, overlap=2, batch=tiles, checkpoint=True)
    assert saved_bytes(lambda: whole(x, 0.7).sum(), exclude=model) > 10 * bound
    keeping = TiledDenoiser(model, tile=8, overlap=2, batch=16, checkpoint=False)  # as asked
    assert saved_bytes(lambda: keeping(x, 0.7).sum(), exclude=model) > 10 * bound
    with pytest.raises(ValueError, match="checkpoint must be"):
        TiledDenoiser(model, checkpoint="sometimes")
    for options, message in [  # counts: batch 0 was range()'s "arg 3 must not be zero",
        ({"batch": 0}, "batch must be an integer >= 1, not 0"),  # 1.5 a TypeError
        ({"batch": 1.5}, "batch must be an integer >= 1, not 1.5"),
        ({"overlap": 1.5}, "overlap must be an integer >= 0, not 1.5"),
        ({"tile": 1.5}, "tile must be an integer >= 1, not 1.5"),  # was about the overlap
        ({"tile": 8, "overlap": 8}, "overlap must be in [0, tile), not 8 with tile 8"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            TiledDenoiser(model, **options)


def test_tiled_gradient_checkpoints_only_where_keeping_would_not_fit(monkeypatch):
    """``checkpoint="auto"`` (the default): its count of the activations that keeping every
    batch would hold equals what autograd keeps then, less the blend's own tensors (at most
    the checkpointed bound); it keeps them where that count is within KEEP_SHARE of the free
    memory (the network runs once a batch, and the kept bytes exceed the bound) and
    checkpoints where it is not, or where the free memory is unknown (the backward pass runs
    the network again on every batch, and keeps at most the bound). The gradient is the same
    either way."""
    from diffvision.memory import saved_bytes
    from diffvision.restore import tiles as tiles_module

    model, x, tiles, bound = _tiny_tiled_problem()
    keeping = TiledDenoiser(model, tile=8, overlap=2, batch=16, checkpoint=False)
    kept = saved_bytes(lambda: keeping(x, 0.7).sum(), exclude=model)
    some = torch.randn(tiles, 1, 8, 8, requires_grad=True)
    estimate = keeping.kept_bytes(some, torch.full((tiles,), 0.7))
    assert 0 <= kept - estimate <= bound
    batches = -(-tiles // 16)

    def run(free_for):
        """The call count, saved bytes and gradient with ``free_for(count)`` bytes free."""
        calls = []

        def counted(t, s):
            calls.append(len(t))
            return model(t, s)

        tiled = TiledDenoiser(counted, tile=8, overlap=2, batch=16)
        # measured first (the network's weights counted too: it is not a module), not counted below
        free = free_for(tiled.kept_bytes(some, torch.full((tiles,), 0.7)))
        monkeypatch.setattr(tiles_module, "available_bytes", lambda device: free)
        calls.clear()
        x.grad = None
        saved = saved_bytes(lambda: tiled(x, 0.7).sum().backward(), exclude=model)
        return len(calls), saved, x.grad.clone()

    share = tiles_module.KEEP_SHARE
    plenty = run(lambda count: int(count / share) + 1)
    tight = run(lambda count: int(count / share) - 1)
    unknown = run(lambda count: None)
    assert plenty[0] == batches and plenty[1] > 10 * bound
    for checkpointed in (tight, unknown):
        assert checkpointed[0] == 2 * batches and checkpointed[1] <= bound
        torch.testing.assert_close(checkpointed[2], plenty[2], rtol=0, atol=0)


def test_tiled_solve_equals_per_tile_solve_for_a_pixelwise_prior():
    # A prior with independent pixels: every tile's MMSE is exact, so the blend must reproduce
    # the untiled result exactly wherever tiles overlap.
    prior = GaussianDenoiser(torch.zeros(1, 4, 4).double(), torch.full((16,), 0.25).double())
    whole = GaussianDenoiser(torch.zeros(1, 12, 12).double(), torch.full((144,), 0.25).double())
    y = torch.randn(1, 1, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    op = Denoise(0.3)
    tiled = solve_tiled(prior, op, y, tile=4, overlap=2, solver="mmse")
    assert torch.allclose(tiled, solve(whole, op, y, solver="mmse"), atol=1e-12)
    inpaint = Inpaint(box_mask(12, 12, (3, 3, 5, 5)))
    filled = solve_tiled(
        prior,
        inpaint,
        inpaint.forward(y),
        tile=4,
        overlap=2,
        solver="ddnm",
        steps=5,
        generator=torch.Generator().manual_seed(1),
    )
    keep = inpaint.mask.bool().expand_as(y)
    assert torch.allclose(filled[keep], y[keep], atol=1e-9)


def test_restore_command(tiny_digits_model, tmp_path, monkeypatch):
    model = tiny_digits_model
    monkeypatch.setenv("TQDM_MININTERVAL", "0")  # the progress bars show every step
    image = tmp_path / "in.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(image)
    out = tmp_path / "out.png"
    common = ["--tile", "8", "--overlap", "2", "--steps", "3"]
    result = run(
        "restore",
        "denoise",
        str(model),
        str(image),
        "--sigma",
        "25",
        "--simulate",
        "--out",
        str(out),
        *common,
    )
    assert result.returncode == 0, result.stderr
    assert "PSNR" in result.stdout and Image.open(out).size == (16, 16)
    assert "(mmse, one denoiser call, 16 x 16)" in result.stdout  # --steps does not apply
    assert "denoise: 100%" in result.stderr and "| 9/9 [" in result.stderr  # its tiles: 3 x 3
    assert "tile/s]" in result.stderr
    side = tmp_path / "side.png"
    result = run(
        "restore",
        "inpaint",
        str(model),
        str(image),
        "--box",
        "4,4,6,6",
        "--samples",
        "2",
        "--out",
        str(out),
        "--side-by-side",
        str(side),
        *common,
    )
    assert result.returncode == 0, result.stderr
    assert Image.open(side).size == (48, 16) and (tmp_path / "out_std.png").is_file()
    # inpainting's default (--start auto), at the library's START_SIGMA (0.3 = 38.25 / 127.5)
    assert "from a classical start at sigma 38.25," in result.stdout
    assert "plus the classical fill's own error" in result.stdout  # start_error_std
    assert "observed image: all of it)" in result.stdout  # a box: all of it (replay.scattered)
    for fill in ("telea", "biharmonic"):  # the same run but for the fill it starts from
        result = run("restore", "inpaint", str(model), str(image), "--box", "4,4,6,6", "--fill",
                     fill, "--out", str(tmp_path / f"{fill}.png"), *common)  # fmt: skip
        assert result.returncode == 0, result.stderr
    assert not np.array_equal(*(np.asarray(Image.open(tmp_path / f"{f}.png"))
                                for f in ("telea", "biharmonic")))  # fmt: skip
    # strokes: the command draws stroke_mask's strokes from --seed and keeps y outside them
    result = run("restore", "inpaint", str(model), str(image), "--strokes", "2", "--stroke-width",
                 "2", "--simulate", "--out", str(out), *common)  # fmt: skip
    assert result.returncode == 0 and "PSNR" in result.stdout, result.stderr
    hole = stroke_mask(16, 16, 2, 2, generator=torch.Generator().manual_seed(0)) == 0
    changed = np.asarray(Image.open(out)) != np.asarray(Image.open(image))
    changed = torch.from_numpy(changed.reshape(16, 16, -1).any(-1))
    assert bool(hole.any()) and torch.equal(changed & ~hole, torch.zeros_like(hole))
    assert bool(changed[hole].float().mean() > 0.5)
    # a scattered hole from the fill (the default start): the map, the fill's error in it too,
    # scaled by a replay of the warm start (replay_thins: true for 50% of a 96 px image)
    big = tmp_path / "big.png"
    Image.fromarray(rng.integers(0, 255, (96, 96), dtype=np.uint8)).save(big)
    result = run("restore", "inpaint", str(model), str(big), "--random", "0.5", "--samples", "2",
                 "--simulate", "--out", str(out), *common)  # fmt: skip
    assert result.returncode == 0 and "replay: 100%" in result.stderr, result.stderr
    assert re.search(r"warm start keeps; all times \d+\.\d\d, from a replay", result.stdout)
    # from pure noise: the map scaled by the inpainting replay; noisy: no replay, and it says so
    for sigma, said in [("0", "replayed on y with copies of the hole hidden too"),
                        ("5", "not recalibrated: a noisy inpainting has no replay")]:  # fmt: skip
        result = run("restore", "inpaint", str(model), str(image), "--box", "4,4,6,6", "--sigma",
                     sigma, "--start", "noise", "--samples", "2", "--out", str(out),
                     *common)  # fmt: skip
        assert result.returncode == 0 and said in result.stdout, result.stdout + result.stderr
    result = run("restore", "superres", str(model), str(image), "--factor", "2", "--bf16",
                 "--start", "classical", "--samples", "2", "--out", str(out), *common)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert Image.open(out).size == (32, 32) and "(ddnm, 3 steps" in result.stdout  # noise-free
    assert ", bf16, 32 x 32)" in result.stdout
    assert "the solver, replayed on y" in result.stdout  # std map scaled by replay_factor
    assert "superres: 100%" in result.stderr and "replay: 100%" in result.stderr  # on stderr
    assert "| 3/3 [" in result.stderr and "| 4/3 [" not in result.stderr  # sampler_steps
    result = run("restore", "deblur", str(model), str(image), "--kernel", "gauss:1", "--sigma",
                 "2", "--simulate", "--samples", "2", "--out", str(out), *common)  # fmt: skip
    assert result.returncode == 0, result.stderr  # noisy y: repaint, no resampling
    assert "(repaint, 3 steps, --resample 1" in result.stdout and "PSNR" in result.stdout
    assert (
        "the solver, replayed on y" in result.stdout and "of errors within 2 std" in result.stdout
    )
    result = run("restore", "deblur", str(model), str(image), "--kernel", "gauss:2", "--samples",
                 "2", "--out", str(out), *common)  # fmt: skip
    assert result.returncode == 0, result.stderr  # 16 px pooled by 4: smaller than the kernel
    assert "(the draws' spread; not recalibrated: y (16 x 16) pooled by 4" in result.stdout
    result = run("restore", "superres", str(model), str(image), "--factor", "2", "--samples", "2",
                 "--tile", "24", "--overlap", "4", "--steps", "2", "--out", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr  # the replay's truth, y, is 16 px: below a tile
    assert "not recalibrated: the replay's image (16 x 16) is smaller than a tile (24 px)" in (
        result.stdout
    )
    wide_mask = tmp_path / "wide_mask.png"
    Image.fromarray(np.full((16, 20), 255, np.uint8)).save(wide_mask)
    for args, message in [
        (
            ["inpaint", "--mask", str(wide_mask)],
            f"the mask {wide_mask} is 20 x 16 px and the image 16 x 16",
        ),
        (["colorize"], "RGB model"),
        (["inpaint"], "exactly one of"),
        (["denoise"], "denoise needs a --sigma above 0"),
        (["denoise", "--sigma", "0"], "denoise needs a --sigma above 0"),  # said "needs --sigma"
        (["denoise", "--sigma", "-3"], "--sigma is a noise std on the 0-255 scale, >= 0, not -3"),
        (["inpaint", "--box", "1,1,4,4", "--sigma", "-3"], ">= 0, not -3"),
        (["deblur", "--kernel", "box:3"], "--kernel must be"),
        (["deblur", "--kernel", "motion:-5"], "positive odd"),
        (["deblur", "--kernel", "gauss:inf"], "--kernel 'gauss:inf'"),
        (["deblur", "--kernel", "motion:0"], "one pixel, no blur"),  # was taken as the identity
        (["deblur", "--kernel", "gauss:0.2"], "one pixel, no blur"),
        (["deblur", "--kernel", "gauss:1e6"], "the kernel (6000001 px) is larger than the image"),
        (["deblur", "--kernel", "motion:99999999"], "(99999999 px) is larger than the image (16"),
        (
            ["deblur", "--kernel", "motion:9.5"],
            "LENGTH must be a whole number of pixels, not '9.5'",
        ),
        (["deblur", "--kernel", "motion:5,30"], "LENGTH must be a whole number of pixels, not '5,"),
        (["deblur", "--kernel", "motion:5:x"], "ANGLE must be a finite number, not 'x'"),
        (["deblur", "--kernel", "gauss:2:3"], "STD must be a finite number, not '2:3'"),
        # NaN was "cannot convert float NaN to integer"
        (["deblur", "--kernel", "gauss:nan"], "STD must be a finite number, not 'nan'"),
        (["deblur", "--kernel", "motion:5:nan"], "ANGLE must be a finite number, not 'nan'"),
        (["superres", "--factor", "100000"], "x 1600000 x 1600000, one draw) needs at least"),
        (
            ["denoise", "--sigma", "9", "--solver", "posterior", "--samples", "10000000000"],
            "16 x 16, 10000000000 draws) needs at least",
        ),
        (["denoise", "--sigma", "nan"], "not a finite number"),
        (["denoise", "--sigma", "25", "--samples", "2"], "mmse gives one estimate"),
        (["inpaint", "--box", "1,1,4,4", "--samples", "inf"], "not an integer: 'inf'"),
        (["inpaint", "--box", "1,1,4,4", "--samples", "1.5"], "not an integer: '1.5'"),
        (["inpaint", "--box", "1,1,4,4", "--start-sigma", "nan"], "must be positive"),
        (["denoise", "--sigma", "25", "--start", "classical"], "works with ddnm, dps, repaint"),
        (["inpaint", "--box", "1,1,4,4", "--solver", "sdedit", "--start", "classical"], "works"),
        (["deblur", "--sigma", "2", "--solver", "ddnm", "--resample", "3"], "repaint solver only"),
        (["inpaint", "--box", "1,1,4,4", "--fill", "median"], "--fill must be one of biharmonic,"),
        (["inpaint", "--random", "0"], "--random must be in (0, 1), the fraction missing, not 0"),
        (["inpaint", "--random", "1.5"], "not 1.5"),
        (["inpaint", "--random", "1e-9"], "the mask has no hole"),  # none drawn at 16 x 16
        (["inpaint", "--strokes", "0"], "must be positive: '0'"),
        (["inpaint", "--strokes", "2", "--stroke-width", "-1"], "must be positive: '-1'"),
        (["inpaint", "--box", "1,1,4,4", "--strokes", "2"], "exactly one of"),
        (["inpaint", "--box", "1.5,1,4,4"], "--box is x,y,w,h in whole pixels, not '1.5,1,4,4'"),
        (["inpaint", "--box", "inf,1,4,4"], "whole pixels, not 'inf,1,4,4'"),  # an OverflowError
        (["inpaint", "--box", "1,nan,4,4"], "whole pixels, not '1,nan,4,4'"),
        (["inpaint", "--box", "1,1,4"], "--box: expected 4 comma-separated numbers, got '1,1,4'"),
        (["denoise", "--sigma", "5", "--tile", "8", "--overlap", "8"], "--overlap must be in [0,"),
        (["superres", "--factor", "1"], "--factor 1 is no upscaling"),
        (["superres", "--tile", "80"], "the result (64 x 64, 4x the input's 16 x 16) is smaller"),
        (["denoise", "--sigma", "5", "--tile", "20"], "the image (16 x 16) is smaller than a tile"),
        (["denoise", "--sigma", "25", "--solver", "foo"], "unknown solver 'foo'; choose from mmse"),
        (["denoise", "--sigma", "5", "--side-by-side", str(out)], f"{out} is where the result go"),
        (
            [
                "denoise",
                "--sigma",
                "5",
                "--solver",
                "posterior",
                "--samples",
                "2",
                "--side-by-side",
                str(tmp_path / "out_std.png"),
            ],
            "is where the result's std map goes: give another",
        ),
    ]:
        bad = run_here("restore", args[0], str(model), str(image), *args[1:], "--out", str(out))
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1
    thin = tmp_path / "thin.png"  # 40 wide, 8 high: sizes are said width x height
    Image.fromarray(np.zeros((8, 40), np.uint8)).save(thin)
    bad = run_here("restore", "denoise", str(model), str(thin), "--sigma", "5", "--tile", "10",
                   "--out", str(out))  # fmt: skip
    assert (
        bad.returncode == 2
        and (
            "the image (40 x 8) is smaller than a tile (10 px): --tile 8 "
            "or less fits it (the model learnt 8 px patches)"
        )
        in bad.stderr
    )
    bad = run_here(  # refusals run in this process: no interpreter to start
        "restore",
        "denoise",
        str(model),
        str(tmp_path / "none.png"),
        "--sigma",
        "5",
        "--out",
        str(out),
    )
    assert bad.returncode == 2 and "image not found" in bad.stderr
    deep = tmp_path / "in16.png"  # a 16-bit input's result keeps 16 bits where the file can
    Image.fromarray(rng.integers(0, 65535, (16, 16), dtype=np.uint16)).save(deep)
    for name, mode in (("out16.png", "I;16"), ("out16.tif", "I;16"), ("out16.jpg", "L")):
        result = run_here("restore", "denoise", str(model), str(deep), "--sigma", "5",
                          "--out", str(tmp_path / name), *common)  # fmt: skip
        assert result.returncode == 0, result.stderr
        with Image.open(tmp_path / name) as written:
            assert written.mode == mode
    colour = tmp_path / "colour.png"  # a grey model restores a colour input as grey, and says so
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(colour)
    result = run_here("restore", "denoise", str(model), str(colour), "--sigma", "5", "--quiet",
                      "--out", str(tmp_path / "grey.png"), *common)  # fmt: skip
    assert result.returncode == 0 and "is in colour and the model is greyscale" in result.stdout
    assert Image.open(tmp_path / "grey.png").mode == "L"
    result = run_here("restore", "denoise", str(model), str(deep), "--sigma", "5", "--quiet",
                      "--out", str(tmp_path / "grey.png"), *common)  # fmt: skip
    assert "is in colour" not in result.stdout  # grey in: no note
    with Image.open(tmp_path / "out16.jpg") as jpeg:  # quality 95 (LOSSY_QUALITY), not PIL's 75
        assert max(jpeg.quantization[0]) == (121 * (200 - 2 * 95) + 50) // 100  # libjpeg's scaling
    text = str(tmp_path / "r.txt")  # refused when the arguments are parsed, before any work
    bad = run_here("restore", "denoise", str(model), str(image), "--sigma", "5", "--out", text)
    assert bad.returncode == 2 and "argument --out: not an image file" in bad.stderr
    bad = run_here("restore", "denoise", str(model), str(image), "--sigma", "5", "--out",
                   str(out), "--side-by-side", text)  # fmt: skip
    assert bad.returncode == 2 and "argument --side-by-side: not an image file" in bad.stderr
    assert not (tmp_path / "r.txt").exists()
    result = run("restore", "denoise", str(model), str(image), "--sigma", "25", "--simulate",
                 "--device", "cpu", "--solver", "posterior", "--samples", "2", "--out", str(out),
                 *common)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "of errors within 2 std (65% if calibrated)" in result.stdout  # t_1 at 2 / sqrt(1.5)
    assert "replayed on y plus more noise" in result.stdout  # replay_problem's recorruption
    assert "denoise: 100%" in result.stderr and "replay: 100%" in result.stderr
    result = run("restore", "inpaint", str(model), str(image), "--random", "0.5", "--sigma", "10",
                 "--simulate", "--samples", "2", "--out", str(out), *common)  # fmt: skip
    assert result.returncode == 0, result.stderr  # noisy inpainting: rated in and out of the hole
    # in the hole the map adds the kept part of the fill's error to the 2 draws' spread, so its
    # reference lies between t_1's 65% within 2 std and a Gaussian's 95%; at the observed pixels
    # it is the 2 draws' spread alone (t_1 at 2 / sqrt(1.5): 65%)
    hole = re.search(r"uncertainty in the hole: \d+% of errors within 2 std \((\d+)% if",
                     result.stdout)  # fmt: skip
    assert hole and 65 <= int(hole.group(1)) <= 95
    assert re.search(r"at the observed \(noisy\) pixels: \d+% of errors within 2 std \(65% if",
                     result.stdout)  # fmt: skip
    if not torch.cuda.is_available():
        bad = run_here("restore", "denoise", str(model), str(image), "--sigma", "5", "--device",
                       "cuda", "--out", str(out))  # fmt: skip
        assert bad.returncode == 2 and "no CUDA device" in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1


def test_classical_starts():
    from diffvision.restore import Deblur, SuperResolution, gaussian_kernel
    from diffvision.restore.starts import classical_start

    # A plane a + b i + c j is biharmonic (its Laplacian is 0), so the biharmonic fill of any
    # hole in it is the plane itself (scikit-image's sparse solve leaves ~5e-8; a wrong channel
    # layout or mask sense would be off by ~0.1).
    i, j = torch.meshgrid(torch.arange(24.0), torch.arange(20.0), indexing="ij")
    plane = torch.stack([0.03 * i - 0.02 * j - 0.2, 0.01 * i + 0.04 * j - 0.5])[None].double()
    op = Inpaint(box_mask(24, 20, (5, 6, 9, 8)))
    filled = classical_start(op, op.forward(plane), "biharmonic")
    assert torch.allclose(filled, plane, atol=1e-6)
    sr = SuperResolution(2, "pool")
    flat = torch.full((1, 3, 8, 8), 0.3)
    assert torch.allclose(classical_start(sr, sr.forward(flat)), flat, atol=1e-6)
    noisy = torch.randn(1, 1, 8, 8)
    assert torch.equal(classical_start(Denoise(0.1), noisy), noisy)
    blur = Deblur(gaussian_kernel(3, 1.0), sigma=0.05)  # Wiener: lam = (0.05 / 0.5)^2
    assert torch.equal(classical_start(blur, noisy), blur.regularized_inverse(noisy, 0.01))
    with pytest.raises(ValueError, match="no classical start"):
        classical_start(Operator(), noisy)


def test_tiled_inpainting_solves_only_around_the_hole():
    # Independent pixels: the tiles beyond the hole's reach cannot change the hole, so leaving
    # them out must give the same distribution as solving the whole image.
    sizes = []
    pixelwise = GaussianDenoiser(torch.zeros(1, 4, 4).double(), torch.full((16,), 0.25))

    def prior(x, sigma):
        sizes.append(x.shape[0])
        return pixelwise(x, sigma)

    x = torch.randn(1, 1, 24, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    op = Inpaint(box_mask(24, 24, (10, 10, 3, 2)))  # rows 10-11, columns 10-12
    k, holes = 2000, {}
    for window in (True, False):
        sizes.clear()
        r = solve_tiled(
            prior,
            op,
            op.forward(x),
            tile=4,
            overlap=2,
            batch=10**6,
            window=window,
            solver="ddnm",
            steps=20,
            n_samples=k,
            generator=torch.Generator().manual_seed(1),
        )
        keep = op.mask.bool().expand_as(x)
        assert torch.allclose(r.mean[keep], x[keep], atol=1e-12) and r.std[keep].max() < 1e-12
        assert r.samples.shape == (k, 1, 1, 24, 24) and len(sizes) == 20
        holes[window] = r.samples[..., 10:12, 10:13].flatten()
        # With the window (rows 6-15, columns 6-16: the hole grown by a tile) at most 5 x 6
        # tiles per call, without it at least 11 x 11.
        assert max(sizes) <= 30 * k if window else min(sizes) >= 11 * 11 * k
    # 6 x 2000 draws each, variance ~0.144 (the 20-step sampler's, not the exact 0.25): the
    # means' difference has standard error sqrt(2 * 0.144 / 12000) = 0.005, the variances'
    # 0.144 * sqrt(4 / 12000) = 0.0026; 5 standard errors allowed.
    assert abs(float(holes[True].mean() - holes[False].mean())) < 0.025
    assert abs(float(holes[True].var() - holes[False].var())) < 0.013


def test_no_copies_of_the_hole_leave_the_map_as_drawn():
    # An 11 px box in a 16 px image: every move of it (round(1.5 * 11) = 16 px) wraps onto
    # itself, so the fill's error cannot be measured. The map is then the draws' spread (no
    # start_std), except for the blend, which needs the copies to fit its weights.
    op = Inpaint(box_mask(16, 16, (2, 2, 11, 11)))
    y = op.forward(torch.rand(1, 1, 16, 16) * 2 - 1)
    args = argparse.Namespace(start="auto", task="inpaint", fill="biharmonic", samples=2,
                              start_sigma=None)  # fmt: skip
    options = _start_options(args, "ddnm", op, y)
    assert options["start"].shape == y.shape and "start_std" not in options
    boxed = _start_options(args, "ddnm", Inpaint(box_mask(16, 16, (2, 2, 6, 6))), y)
    assert boxed["start_std"].shape == y.shape  # room for copies: the fill's error is measured
    args.fill = "blend"
    with pytest.raises(UsageError, match="no copy of the hole fits in the observed pixels"):
        _start_options(args, "ddnm", op, y)


def test_default_solver_and_resampling():
    # mmse for denoising; ddnm for noise-free measurements; repaint for noisy ones, which
    # resamples twice for inpainting (bench/results/restoration_noisy.md) and not otherwise.
    assert default_solver("denoise", 0.1) == "mmse"
    assert [default_solver(t, 0.0) for t in ("inpaint", "superres", "deblur")] == ["ddnm"] * 3
    assert [default_solver(t, 0.1) for t in ("inpaint", "superres", "deblur")] == ["repaint"] * 3
    assert (default_resample("inpaint", 0.0), default_resample("inpaint", 0.1)) == (10, 2)
    assert default_resample("superres", 0.1) == default_resample("deblur", 0.1) == 1


def test_help_states_the_library_defaults():
    # The command's help is written without importing torch; it spells the library's
    # START_SIGMA and the fills by hand, so it must say what the library does.
    from diffvision.cli import build_parser
    from diffvision.restore.solvers import START_SIGMA
    from diffvision.restore.starts import FILLS

    restore = build_parser()._subparsers._group_actions[0].choices["restore"]
    helps = {a.dest: a.help for a in restore._actions}
    assert f"{START_SIGMA:g} in the model's [-1, 1] units" in helps["start_sigma"]
    assert f"i.e. {START_SIGMA * 127.5:g}" in helps["start_sigma"]
    assert f"start from: {', '.join(FILLS[:-1])}, or {FILLS[-1]} " in helps["fill"]


def test_a_replay_factor_of_zero_leaves_the_map_as_drawn(monkeypatch):
    # On a small image the replay's truth noise can swamp its error (replay_factor clamps the
    # difference at 0): the command then keeps the draws' spread and says why, instead of
    # a map of zeros (which --simulate could not even rate).
    import types

    import diffvision.restore.replay as replay
    from diffvision.cli.restore import _replay

    monkeypatch.setattr(replay, "replay_factor", lambda *args, **kwargs: torch.zeros(1))
    args = types.SimpleNamespace(samples=2, seed=0)
    factor, why = _replay(args, Denoise(0.1), torch.zeros(1, 3, 64, 64), {}, None, 32)
    assert (
        factor == 1.0
        and why == "not recalibrated: the replay's error was lost in its truth's noise"
    )


def test_a_warm_start_is_replayed_where_the_replay_thins_the_hole(monkeypatch):
    # With the fill's error in the map (start_std), the command replays a warm start only for a
    # hole whose replay copies replay_holes thins (random pixels): there a replay mends the map,
    # for a box it made it worse. The replay remakes the start and the fill's error from the
    # replay's own y: the fill by name (--fill), its error as "estimate".
    import types

    import diffvision.restore.replay as replay
    from diffvision.cli.restore import _replay

    calls, greys = [], []

    def factor(operator, y, again, k, generator, min_size=0, grey=False):
        calls.append(again(operator, y))
        greys.append(grey)
        return torch.full((1,), 1.5)

    monkeypatch.setattr(replay, "replay_factor", factor)
    args = types.SimpleNamespace(samples=2, seed=0, fill="telea")
    y = torch.zeros(1, 1, 128, 128)
    warm = {"start": y, "start_sigma": 0.3, "start_std": y}
    scattered = Inpaint(random_mask(128, 128, 0.5, torch.Generator().manual_seed(0)))
    box = Inpaint(box_mask(128, 128, (48, 48, 32, 32)))

    def run(op, measured, what, **options):
        return options

    assert _replay(args, scattered, y, warm, run, 32) == (1.5, None)
    assert calls == [{"start": "telea", "start_sigma": 0.3, "start_std": "estimate"}]
    assert _replay(args, box, y, warm, run, 32) == (1.0, "the fill's error is in the map")
    assert len(calls) == 1
    assert _replay(args, box, y, {}, run, 32) == (1.5, None) and calls[-1] == {}  # from noise
    assert _replay(args, box, y, {}, run, 32, grey=True) == (1.5, None)  # channel means
    assert greys == [False, False, True]


def test_no_output_is_written_over_an_input(tmp_path):
    """No result, std map or side-by-side is written over the input or the ``--mask`` file:
    restoring ``x_std.png`` with ``--out x.png --samples 2`` wrote the std map over the input.
    Refused before the model is read (here there is none), and nothing is written."""
    image, mask = tmp_path / "x_std.png", tmp_path / "m.png"
    for path in (image, mask):
        Image.fromarray(np.full((16, 16), 200, np.uint8)).save(path)
    kept = {path: path.read_bytes() for path in (image, mask)}
    inpaint = ["inpaint", str(image), "--mask", str(mask)]
    for args, message in [
        (["denoise", str(image), "--sigma", "25", "--solver", "posterior", "--samples", "2",
          "--out", str(tmp_path / "x.png")], f"{image} is the input: write the results"),
        ([*inpaint, "--out", str(mask)], f"{mask} is the --mask file: write the results"),
        ([*inpaint, "--out", str(tmp_path / "r.png"), "--side-by-side", str(mask)], "--mask file"),
        ([*inpaint, "--samples", "2", "--out", str(tmp_path / "m.png")], "is the --mask file"),
    ]:  # fmt: skip
        bad = run_here("restore", args[0], str(tmp_path / "no-model"), *args[1:])
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
    assert sorted(tmp_path.iterdir()) == sorted(kept)
    assert all(path.read_bytes() == data for path, data in kept.items())


def test_inpaint_the_transparent_pixels(tiny_digits_model, tmp_path):
    """`restore inpaint --mask alpha`: the input's transparent pixels (erased in an editor,
    soft edges included) are the hole; the opaque ones are kept as they are."""
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (16, 16), dtype=np.uint8)
    alpha = np.full((16, 16), 255, np.uint8)
    alpha[4:10, 5:11] = 0
    alpha[4:10, 11] = 128  # a soft edge: hole too
    rgba = np.stack([grey, grey, grey, alpha], 2)
    erased = tmp_path / "erased.png"
    Image.fromarray(rgba).save(erased)
    out = tmp_path / "out.png"
    result = run("restore", "inpaint", str(tiny_digits_model), str(erased), "--mask", "alpha",
                 "--tile", "8", "--overlap", "2", "--steps", "3", "--quiet",
                 "--out", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    restored = np.asarray(Image.open(out), dtype=int)
    kept = alpha == 255
    assert np.abs(restored[kept] - grey[kept]).max() <= 1  # noise-free: y kept (rounding)
    assert np.abs(restored[~kept] - grey[~kept]).mean() > 10  # the hole is the prior's
    assert np.abs(restored[4:10, 11] - grey[4:10, 11]).mean() > 10  # the soft edge too
    opaque = tmp_path / "opaque.png"
    Image.fromarray(grey).save(opaque)
    bad = run("restore", "inpaint", str(tiny_digits_model), str(opaque), "--mask", "alpha",
              "--out", str(out))  # fmt: skip
    assert bad.returncode == 2 and "has no alpha channel" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_what_the_input_holds_and_the_result_drops_is_said(tiny_digits_model, tmp_path):
    """A colour input to a grey model and a stack of frames (a TIFF stack, an animation) are
    restored as grey and as their first frame, each with a note that says so."""
    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)) for _ in range(3)]
    stack = tmp_path / "stack.tif"
    frames[0].save(stack, save_all=True, append_images=frames[1:])
    out = tmp_path / "out.png"
    result = run_here("restore", "denoise", str(tiny_digits_model), str(stack), "--sigma", "25",
                      "--tile", "8", "--overlap", "2", "--quiet", "--out", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (
        f"note: {stack} is in colour and the model is greyscale: restored as grey" in result.stdout
    )
    assert (
        f"note: {stack} holds 3 frames: the first is restored (to restore each, give --out a"
        in (result.stdout)
    )
    first = np.asarray(frames[0].convert("L"), dtype=float)
    assert np.abs(np.asarray(Image.open(out), dtype=float) - first).mean() < 20  # sigma 25 input
    frames[0].save(stack)  # one frame: no note
    result = run_here("restore", "denoise", str(tiny_digits_model), str(stack), "--sigma", "25",
                      "--tile", "8", "--overlap", "2", "--quiet", "--out", str(out))  # fmt: skip
    assert result.returncode == 0 and "frames" not in result.stdout, result.stdout
    # Transparent pixels: the result is opaque, said (an opaque RGBA file: no note).
    rgba = np.full((16, 16, 4), 255, np.uint8)
    for alpha, noted in ((255, False), (0, True)):
        rgba[2:5, 2:5, 3] = alpha
        Image.fromarray(rgba).save(stack)
        result = run_here("restore", "denoise", str(tiny_digits_model), str(stack), "--sigma",
                          "25", "--tile", "8", "--quiet", "--out", str(out))  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert ("has transparent pixels: the result is opaque" in result.stdout) == noted
    # --simulate superres of a size that is no multiple of the factor: cropped, said.
    odd = tmp_path / "odd.png"
    for shape, noted in (((17, 18), True), ((16, 18), False)):
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(odd)
        result = run_here("restore", "superres", str(tiny_digits_model), str(odd), "--factor",
                          "2", "--simulate", "--steps", "1", "--tile", "8", "--quiet", "--out",
                          str(out))  # fmt: skip
        assert result.returncode == 0, result.stderr
        note = f"note: {odd} (18 x 17) is cropped to 18 x 16, a multiple of --factor 2"
        assert (note in result.stdout) == noted, result.stdout
        assert Image.open(out).size == (18, 16)


def test_the_time_left_is_at_the_pace_of_this_runs_restores(monkeypatch):
    """A folder's restores say how long the rest take at the pace of those the run has done:
    none before the first is done; 2 done in 30 s and 8 to go (the next among them), 120 s."""
    from diffvision.cli import restore_folder

    monkeypatch.setattr(restore_folder.time, "monotonic", lambda: 130.0)
    assert restore_folder.time_left(100.0, 0, 10) == ""
    assert restore_folder.time_left(100.0, 2, 10) == " about 02:00 left"
    assert restore_folder.time_left(100.0, 10, 10) == " about 00:00 left"
    assert restore_folder.time_left(-3500.0, 1, 3) == " about 2:01:00 left"  # 2 x 3,630 s


def test_restore_every_frame_of_a_stack(tiny_digits_model, tmp_path):
    """A TIFF stack with --out a folder: each frame restored as the file of a folder would be
    (STEM_000.tif, ...; at its depth, as the frame alone would be restored), a frame that
    fails named by its number while the others are restored, and a rerun restores only the
    frames not done."""
    rng = np.random.default_rng(0)
    pages = [rng.integers(0, 65535, (16, 16), dtype=np.uint16) for _ in range(3)]
    pages.append(np.zeros((4, 4), np.uint16))  # smaller than a tile: this frame fails
    stack = tmp_path / "stack.tif"
    first, *rest = (Image.fromarray(p) for p in pages)
    first.save(stack, save_all=True, append_images=rest)
    out, side = tmp_path / "clean", tmp_path / "side"
    args = ["restore", "denoise", str(tiny_digits_model), str(stack), "--sigma", "25", "--tile",
            "8", "--simulate", "--quiet", "--out", str(out)]  # fmt: skip
    result = run_here(*args, "--side-by-side", str(side))
    assert result.returncode == 2, result.stderr
    # how far the run is, and from the second frame on, how long the rest take at its pace
    assert f"[1/4] {stack} frame 0:\n" in result.stdout
    assert re.search(
        rf"\[2/4\] {re.escape(str(stack))} frame 1: about \d\d:\d\d left\n", result.stdout
    )
    assert re.search(
        rf"restored 3 of 4 frames into {re.escape(str(out))}/ in \d\d:\d\d\n", result.stdout
    )
    assert "mean PSNR" in result.stdout and "over the 3 frames" in result.stdout
    assert (
        "the image (4 x 4) is smaller than a tile (8 px): --tile 4 or less fits it (the model "
        "learnt 8 px patches) (frame 3)"
    ) in result.stderr
    assert "1 frame failed" in result.stderr and len(result.stderr.splitlines()) == 2
    names = [f"stack_{k:03d}.tif" for k in range(3)]
    assert sorted(p.name for p in out.glob("*.tif")) == names
    assert sorted(p.name for p in side.glob("*.png")) == [f"stack_{k:03d}.png" for k in range(3)]
    alone = tmp_path / "frame1.tif"  # frame 1 on its own: the same result, 16 bits deep
    Image.fromarray(pages[1]).save(alone)
    result = run_here(*args[:3], str(alone), *args[4:-1], str(tmp_path / "alone.tif"))
    assert result.returncode == 0, result.stderr
    with Image.open(out / names[1]) as frame, Image.open(tmp_path / "alone.tif") as one:
        assert frame.mode == "I;16" and np.array_equal(np.asarray(frame), np.asarray(one))
    again = run_here(*args, "--side-by-side", str(side))  # the record: only frame 3 again
    assert "3 of 4 frames restored by an earlier run" in again.stdout and again.returncode == 2
    assert f"{stack} frame 3:" in again.stdout and f"{stack} frame 0:" not in again.stdout
    assert f"[4/4] {stack} frame 3:\n" in again.stdout  # the first this run restores: no pace
    mixed = tmp_path / "mixed"  # a stack inside a folder INPUT: each frame an image too
    mixed.mkdir()
    first.save(mixed / "s.tif", save_all=True, append_images=rest[:2])
    Image.fromarray(pages[0]).save(mixed / "plain.png")
    Image.fromarray((pages[0] >> 8).astype(np.uint8)).save(mixed / "still.gif")  # one frame
    result = run_here(*args[:3], str(mixed), *args[4:-1], str(tmp_path / "mixed_out"))
    assert result.returncode == 0 and "restored 5 of 5 images" in result.stdout, result.stderr
    assert "holds 3 frames" not in result.stdout and f"{mixed / 's.tif'} frame 2:" in result.stdout
    assert sorted(p.name for p in (tmp_path / "mixed_out").glob("*.*")) == [
        "plain.png",
        "restore.json",
        "s_000.tif",
        "s_001.tif",
        "s_002.tif",
        "still.png",  # a GIF's result: not in its 256 colours
    ]
    (mixed / "still.gif").unlink()
    drawn = tmp_path / "drawn"  # with --samples: the std maps and the side-by-sides apart
    result = run_here(*args[:3], str(mixed), "--sigma", "25", "--tile", "8", "--quiet",
                      "--solver", "posterior", "--steps", "2", "--samples", "2", "--out",
                      str(drawn), "--side-by-side", str(tmp_path / "drawn_side"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    for name in ("plain", "s_001"):  # the map as wide as the result, the strip three times
        with Image.open(drawn / f"{name}_std.png") as std_map:
            assert std_map.size == (16, 16)
        with Image.open(tmp_path / "drawn_side" / f"{name}.png") as strip:
            assert strip.size == (48, 16)
    animation = tmp_path / "moving.gif"  # its frames as PNG files, not in a GIF's 256 colours
    first, *rest = (Image.fromarray((p >> 8).astype(np.uint8)) for p in pages[:2])
    first.save(animation, save_all=True, append_images=rest)
    result = run_here(*args[:3], str(animation), *args[4:-1], str(tmp_path / "moving"))
    assert result.returncode == 0 and "restored 2 of 2 frames" in result.stdout, result.stderr
    assert sorted(p.name for p in (tmp_path / "moving").glob("*.*")) == [
        "moving_000.png",
        "moving_001.png",
        "restore.json",
    ]
    for options in (
        ["--side-by-side", str(tmp_path / "s.png")],  # --out a folder, and a file
        ["--out", str(tmp_path / "a.tif"), "--side-by-side", str(side)],  # a file, and a folder
    ):
        bad = run_here(*args, *options)
        assert bad.returncode == 2, bad.stderr
        assert f"{stack} holds 4 frames: --out and --side-by-side are both folders" in bad.stderr


def test_restore_a_stack_into_a_tiff_stack(tiny_digits_model, tmp_path):
    """A stack with --out a .tif: every frame restored (it was the first alone, with a note),
    written as the pages of one TIFF stack, each bit for bit the file a folder --out gets (16
    bits deep here), with the std maps and the side-by-sides as stacks too; until every frame is
    done they wait in a folder beside it (a frame that fails leaves no stack, and the same
    command goes on from there), which then goes."""
    import cv2

    rng = np.random.default_rng(1)
    pages = [rng.integers(0, 65535, (16, 16), dtype=np.uint16) for _ in range(3)]
    stack = tmp_path / "stack.tif"
    first, *rest = (Image.fromarray(p) for p in pages)
    first.save(stack, save_all=True, append_images=rest)
    base = ["restore", "denoise", str(tiny_digits_model), str(stack), "--sigma", "25", "--tile",
            "8", "--quiet"]  # fmt: skip
    drawn = ["--solver", "posterior", "--steps", "2", "--samples", "2"]
    folder, joined = tmp_path / "frames", tmp_path / "clean.tif"
    for out, side in ((folder, tmp_path / "strips"), (joined, tmp_path / "strips.tif")):
        result = run_here(*base, *drawn, "--out", str(out), "--side-by-side", str(side))
        assert result.returncode == 0, result.stderr
    assert f"wrote 3 frames into the TIFF stacks {joined}, {tmp_path / 'clean_std.tif'}, " in (
        result.stdout
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["stack.tif", "frames", "strips", "clean.tif", "clean_std.tif", "strips.tif"]
    )  # the frames' folders are gone
    for stack_file, files in (
        (joined, [folder / f"stack_{k:03d}.tif" for k in range(3)]),
        (tmp_path / "clean_std.tif", [folder / f"stack_{k:03d}_std.png" for k in range(3)]),
        (tmp_path / "strips.tif", [tmp_path / "strips" / f"stack_{k:03d}.png" for k in range(3)]),
    ):
        ok, got = cv2.imreadmulti(str(stack_file), flags=cv2.IMREAD_UNCHANGED)
        assert ok and len(got) == 3, stack_file
        for page, file in zip(got, files, strict=True):
            assert np.array_equal(page, cv2.imread(str(file), cv2.IMREAD_UNCHANGED)), file
    assert got[0].shape == (16, 48)  # a strip: input | result | map
    with Image.open(joined) as image:  # 16 bits deep, read back as this project reads stacks
        assert image.n_frames == 3 and image.mode == "I;16"
    # Each stack records what made it: the same command again leaves them as they are; other
    # settings restore the frames again.
    written = {p: p.stat().st_mtime_ns for p in (joined, tmp_path / "clean_std.tif")}
    again = run_here(*base, *drawn, "--out", str(joined), "--side-by-side", str(side))
    assert again.returncode == 0, again.stderr
    assert f"{joined} holds the 3 frames restored by an earlier run with the same settings" in (
        again.stdout
    )
    assert all(p.stat().st_mtime_ns == t for p, t in written.items())
    assert stack_record(joined)["frames"] == 3
    again = run_here(*base, *drawn, "--seed", "1", "--out", str(joined), "--side-by-side",
                     str(side))  # fmt: skip
    assert again.returncode == 0 and "wrote 3 frames into the TIFF stacks" in again.stdout
    assert joined.stat().st_mtime_ns != written[joined]
    first.save(stack, save_all=True, append_images=rest[::-1])  # the input changed: again
    again = run_here(*base, *drawn, "--seed", "1", "--out", str(joined), "--side-by-side",
                     str(side))  # fmt: skip
    assert again.returncode == 0 and "wrote 3 frames into the TIFF stacks" in again.stdout
    failing = tmp_path / "failing.tif"  # its last frame is smaller than a tile
    first.save(failing, save_all=True, append_images=[*rest, Image.fromarray(pages[0][:4, :4])])
    out = tmp_path / "failing_out.tif"
    for rerun in (False, True):
        result = run_here(*base[:3], str(failing), *base[4:], "--out", str(out))
        assert result.returncode == 2 and not out.exists(), result.stderr
        assert f"{out} is written once all 4 frames are restored; the others are in" in (
            result.stderr
        )
        assert ("3 of 4 frames restored by an earlier run" in result.stdout) == rerun
    assert len(list((tmp_path / "failing_out.tif.frames").glob("failing_*.tif"))) == 3
    for options, message in (
        (["--out", str(tmp_path / "a.tif"), "--side-by-side", str(tmp_path / "a.png")],
         "--out and --side-by-side are both folders (each frame restored into a file), both .tif"),
        ([*drawn, "--out", str(tmp_path / "b.tif"), "--side-by-side", str(tmp_path / "b_std.tif")],
         "is where the result's std map goes"),
        (["--out", str(stack)], "is the input: write the results elsewhere"),
    ):  # fmt: skip
        bad = run_here(*base, *options)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
    alone = run_here(*base, "--out", str(tmp_path / "first.png"))  # the first frame, said
    assert "the first is restored (to restore each, give --out a folder, or a .tif for a " in (
        alone.stdout
    )


def test_a_stack_restored_into_a_tiff_stack_hashes_its_model_once(
    tiny_digits_model, tmp_path, monkeypatch
):
    """The settings of a restore into one TIFF stack are made once: the model folder (and a
    --mask or --kernel file) hashed once, not once for the stack's record and again for its
    frames' folder, whose settings are the same."""
    from diffvision.io import model_folder

    hashed = []
    real = model_folder.model_digest
    monkeypatch.setattr(model_folder, "model_digest", lambda f: hashed.append(f) or real(f))
    pages = [Image.fromarray(np.full((16, 16), 40 * k, np.uint8)) for k in range(2)]
    pages[0].save(tmp_path / "s.tif", save_all=True, append_images=pages[1:])
    result = run_here("restore", "denoise", str(tiny_digits_model), str(tmp_path / "s.tif"),
                      "--sigma", "25", "--tile", "8", "--quiet", "--out",
                      str(tmp_path / "o.tif"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(hashed) == 1 and (tmp_path / "o.tif").is_file()


def test_a_folder_restored_into_one_tiff_stack(tiny_digits_model, tmp_path):
    """A folder INPUT with --out a .tif: its images (a stack's frames each one), in the order a
    folder --out restores them, as the pages of one TIFF stack, each bit for bit the file of a
    folder --out."""
    import cv2

    rng = np.random.default_rng(3)
    images = tmp_path / "in"
    (images / "b").mkdir(parents=True)
    for name in ("a.png", "b/c.png"):
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(images / name)
    first, *rest = (Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)) for _ in "12")
    first.save(images / "s.tif", save_all=True, append_images=rest)
    base = ["restore", "denoise", str(tiny_digits_model), str(images), "--sigma", "25", "--tile",
            "8", "--quiet", "--out"]  # fmt: skip
    folder, joined = tmp_path / "folder", tmp_path / "all.tif"
    assert run_here(*base, str(folder)).returncode == 0
    result = run_here(*base, str(joined))
    assert result.returncode == 0 and f"wrote 4 images into the TIFF stack {joined}" in (
        result.stdout
    )
    ok, pages = cv2.imreadmulti(str(joined), flags=cv2.IMREAD_UNCHANGED)
    files = ["a.png", "b/c.png", "s_000.tif", "s_001.tif"]  # the folder's order
    assert ok and len(pages) == len(files)
    for page, name in zip(pages, files, strict=True):
        assert np.array_equal(page, cv2.imread(str(folder / name), cv2.IMREAD_UNCHANGED)), name
    again = run_here(*base, str(joined))
    assert "holds the 4 images restored by an earlier run" in again.stdout, again.stdout
    bad = run_here(*base, str(tmp_path / "all.png"))
    assert bad.returncode == 2 and "or both .tif files (every image into one TIFF" in bad.stderr


def test_a_mask_stack_gives_each_frame_of_a_stack_its_own_mask(
    tiny_digits_model, tmp_path, monkeypatch
):
    """Inpainting a stack with a --mask of as many frames: frame k's hole is mask frame k's
    (it was the first mask's for every frame), each frame's result that of the frame alone with
    its mask alone; the mask stack is held open while the frames are restored, as the input
    stack is (opened once per frame, PIL walked k pages to find frame k: reading the masks of
    1,000 frames took 69 s, 0.4 s held open); a mask stack of another count still gives its
    first, and says so."""
    rng = np.random.default_rng(2)
    pages = [Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)) for _ in range(3)]
    stack = tmp_path / "stack.tif"
    pages[0].save(stack, save_all=True, append_images=pages[1:])
    holes = []
    for k in range(3):
        hole = np.full((16, 16), 255, np.uint8)
        hole[2 + 4 * k : 6 + 4 * k, 3:9] = 0  # a hole of its own in each frame
        holes.append(Image.fromarray(hole))
    masks = tmp_path / "masks.tif"
    holes[0].save(masks, save_all=True, append_images=holes[1:])
    base = ["restore", "inpaint", str(tiny_digits_model)]
    options = ["--tile", "8", "--steps", "2", "--quiet"]
    opened, real_open = [], Image.open

    def counting_open(path, *args, **kwargs):
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(Image, "open", counting_open)
    result = run_here(*base, str(stack), "--mask", str(masks), *options, "--out",
                      str(tmp_path / "filled"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert opened.count(str(masks)) <= 2, opened  # checked, then held: not once per frame
    assert f"--mask {masks} holds 3 frames, as many as the input: each frame its own" in (
        result.stdout
    )
    pages[1].save(tmp_path / "frame1.png")
    holes[1].save(tmp_path / "mask1.png")
    alone = run_here(*base, str(tmp_path / "frame1.png"), "--mask", str(tmp_path / "mask1.png"),
                     *options, "--out", str(tmp_path / "alone.tif"))  # fmt: skip
    assert alone.returncode == 0, alone.stderr
    with (
        Image.open(tmp_path / "filled" / "stack_001.tif") as a,
        Image.open(tmp_path / "alone.tif") as b,
    ):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    two = [Image.fromarray(np.asarray(hole)) for hole in holes[:2]]  # (PIL saves an image
    two[0].save(masks, save_all=True, append_images=two[1:])  # once with save_all)
    result = run_here(*base, str(stack), "--mask", str(masks), *options, "--out",
                      str(tmp_path / "two"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "holds 2 frames: the first is the mask of every image (the input has 3)" in (
        result.stdout
    )


def test_a_colour_result_asked_for_in_a_gif_is_written_with_a_note(tiny_rgb_model, tmp_path):
    """A GIF holds at most 256 colours: a colour result written to one is quantized, and the
    command says so (a grey result fits its 256 levels: no note)."""
    model = tiny_rgb_model
    image = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), np.uint8)).save(image)
    for suffix, noted in ((".gif", True), (".png", False)):
        out = tmp_path / f"out{suffix}"
        result = run_here("restore", "denoise", str(model), str(image), "--sigma",
                          "25", "--quiet", "--out", str(out))  # fmt: skip
        assert result.returncode == 0 and out.is_file(), result.stderr
        assert ("holds at most 256 colours: the result is quantized" in result.stdout) == noted


def test_colorize_says_that_a_colour_input_is_coloured_anew(tiny_rgb_model, tmp_path):
    """``restore colorize`` of a colour input keeps only its grey: said (it was dropped without
    a word); a grey picture saved as RGB gets no note."""
    model = tiny_rgb_model
    grey = np.random.default_rng(0).integers(0, 256, (16, 16), np.uint8)
    image, out = tmp_path / "in.png", tmp_path / "out.png"
    tinted = np.stack([grey, grey, grey], 2)
    for shift, noted in ((0, False), (2, False), (3, True)):  # up to two 8-bit levels: grey
        tinted[..., 0] = np.minimum(grey.astype(int) + shift, 255)
        Image.fromarray(tinted).save(image)
        result = run_here("restore", "colorize", str(model), str(image), "--steps", "1",
                          "--quiet", "--out", str(out))  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert (f"note: {image} is in colour: its grey" in result.stdout) == noted, shift


def test_a_grey_input_to_an_rgb_model_has_its_noise_taken_as_one_noise(
    tiny_rgb_model, tmp_path, monkeypatch
):
    """A grey input restored by an RGB model holds one noise in its three channels: the model's
    noise level per channel is sqrt(3) times the grey's (cli.restore.GREY_NOISE), said in a
    note, and the operator is built with it. A colour input and --simulate (whose noise is
    drawn per channel) keep their sigma."""
    from diffvision.cli import restore as command

    model = tiny_rgb_model
    rng = np.random.default_rng(0)
    grey = np.clip(128 + rng.normal(0, 20, (16, 16)), 0, 255).round().astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    colour = np.stack([grey, grey, np.roll(grey, 1, 0)], 2)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    built = []  # the noise level (0-255 scale) of each operator the command builds
    make = command._operator

    def operator(args, clean_shape, sigma=None):
        built.append(args.sigma if sigma is None else sigma)
        return make(args, clean_shape, sigma)

    monkeypatch.setattr(command, "_operator", operator)
    for name, options, level, noted in [
        ("grey.png", [], 20 * math.sqrt(3), True),
        ("colour.png", [], 20, False),
        ("grey.png", ["--simulate"], 20, False),
    ]:
        built.clear()
        done = run_here("restore", "denoise", str(model), str(tmp_path / name),
                        "--sigma", "20", "--tile", "8", "--quiet", *options, "--out",
                        str(tmp_path / "out.png"))  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert built == [pytest.approx(level, rel=1e-12)], (name, built)
        note = (f"note: {tmp_path / name} is grey and the model RGB: its noise, the same in "
                f"each channel, is taken as sigma {level:.2f} per channel")  # fmt: skip
        assert (note in done.stdout) == noted, done.stdout


def test_a_grey_input_to_an_rgb_model_is_restored_as_grey(tiny_rgb_model, tmp_path, monkeypatch):
    """A grey input restored by an RGB model is written as grey: the channels' mean of the
    model's result (within one 8-bit level of the mean of the RGB file it wrote before: each
    was rounded once), said in the line; its std map and side-by-side are grey too, and its
    --simulate PSNR is the grey's. A colour input, and colorize, stay in colour."""
    from diffvision.cli import restore as command

    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, (16, 16), np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    Image.fromarray(np.stack([grey, grey, np.roll(grey, 1, 0)], 2)).save(tmp_path / "rgb.png")
    common = ["--tile", "8", "--steps", "2", "--seed", "3", "--quiet"]

    def restore(name, out, *options, task="inpaint", where=("--box", "4,4,6,6")):
        done = run_here("restore", task, str(tiny_rgb_model), str(tmp_path / name), *where,
                        *common, *options, "--out", str(tmp_path / out))  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    said = restore("grey.png", "grey_out.png", "--samples", "2", "--side-by-side",
                   str(tmp_path / "grey_strip.png"))  # fmt: skip
    assert "grey: the mean of the model's channels" in said, said
    for name in ("grey_out.png", "grey_out_std.png", "grey_strip.png"):
        assert Image.open(tmp_path / name).mode == "L", name
    assert Image.open(tmp_path / "grey_strip.png").size == (3 * 16, 16)
    with monkeypatch.context() as patched:  # as before: the model's three channels written
        patched.setattr(command, "_grey", lambda image: False)
        restore("grey.png", "as_rgb.png", "--samples", "2")
    written = np.asarray(Image.open(tmp_path / "grey_out.png"), dtype=float)
    as_rgb = np.asarray(Image.open(tmp_path / "as_rgb.png"), dtype=float)
    assert as_rgb.shape == (16, 16, 3) and np.ptp(as_rgb, axis=2).max() > 0  # some colour
    assert np.abs(written - as_rgb.mean(2)).max() <= 1
    assert (written[4:10, 4:10] != grey[4:10, 4:10]).any()  # the hole was filled
    np.testing.assert_array_equal(
        np.delete(written, np.s_[4:10], 0), np.delete(grey, np.s_[4:10], 0)
    )
    said = restore("grey.png", "sim.png", "--simulate", "--samples", "2", task="denoise",
                   where=("--sigma", "25", "--solver", "posterior"))  # fmt: skip
    result = np.asarray(Image.open(tmp_path / "sim.png"), dtype=float)
    psnr = 10 * np.log10(255**2 / np.mean((result - grey) ** 2))  # the written file's, rounded
    shown = float(re.search(r"PSNR ([0-9.]+) dB", said)[1])
    assert Image.open(tmp_path / "sim.png").mode == "L" and abs(shown - psnr) < 0.1, (shown, psnr)
    restore("rgb.png", "rgb_out.png")
    restore("grey.png", "colour.png", task="colorize", where=())
    assert Image.open(tmp_path / "rgb_out.png").mode == Image.open(tmp_path / "colour.png").mode
    assert Image.open(tmp_path / "colour.png").mode == "RGB"


def test_a_stack_is_held_open_while_its_frames_are_restored(
    tiny_digits_model, tmp_path, monkeypatch
):
    """The frames of a stack are read from one opening of its file (PIL walks a TIFF's pages
    to find one, and remembers them only while it is open): opened a few times in all, not a
    few times per frame (600 frames of 64 x 64: 92 s, 32 s now)."""
    import PIL.Image

    rng = np.random.default_rng(0)
    pages = [Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)) for _ in range(8)]
    stack = tmp_path / "stack.tif"
    pages[0].save(stack, save_all=True, append_images=pages[1:])
    opened = []
    real_open = PIL.Image.open

    def counted(path, *args, **kwargs):
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(PIL.Image, "open", counted)
    result = run_here("restore", "denoise", str(tiny_digits_model), str(stack), "--sigma", "25",
                      "--tile", "8", "--quiet", "--out", str(tmp_path / "out"))  # fmt: skip
    assert result.returncode == 0 and "restored 8 of 8 frames" in result.stdout, result.stderr
    assert 1 <= opened.count(str(stack)) <= 4, opened


def test_a_folder_measures_the_network_once_per_input_shape(
    tiny_digits_model, tmp_path, monkeypatch
):
    """The memory check of the network's calls (which runs it on 1 and 2 tiles) is made once
    for each shape those calls take in a folder's run, not once per image."""
    import diffvision.samplers

    shapes = []
    check = diffvision.samplers.check_sample_fits

    def counted(denoiser, shape, **kwargs):
        shapes.append(tuple(shape))
        return check(denoiser, shape, **kwargs)

    monkeypatch.setattr(diffvision.samplers, "check_sample_fits", counted)
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, side in (("a.png", 16), ("b.png", 16), ("c.png", 16), ("d.png", 24)):
        Image.fromarray(rng.integers(0, 256, (side, side), dtype=np.uint8)).save(folder / name)
    result = run_here("restore", "denoise", str(tiny_digits_model), str(folder), "--sigma", "25",
                      "--tile", "8", "--quiet", "--out", str(tmp_path / "out"))  # fmt: skip
    assert result.returncode == 0 and "restored 4 of 4 images" in result.stdout, result.stderr
    assert len(shapes) == 2 and len(set(shapes)) == 2, shapes  # 16 x 16 (three), 24 x 24


def test_restore_a_folder(tiny_digits_model, tmp_path):
    """A folder INPUT (a stack of frames, say) is restored image by image with the model loaded
    once: each result under its input's name and sub-folder in the --out folder."""
    rng = np.random.default_rng(0)
    frames = tmp_path / "frames"
    (frames / "b").mkdir(parents=True)
    for name in ("a.png", "b/c.png"):
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(frames / name)
    out, side = tmp_path / "clean", tmp_path / "side"
    result = run("restore", "denoise", str(tiny_digits_model), str(frames), "--sigma", "25",
                 "--tile", "8", "--out", str(out), "--side-by-side", str(side))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png")) == ["a.png", "b/c.png"]
    assert (side / "b" / "c.png").is_file() and "restored 2 of 2 images" in result.stdout
    # run again: a record in --out (restore.json) says what is done with which settings
    before = {p: p.stat().st_mtime_ns for p in [*out.rglob("*.png"), *side.rglob("*.png")]}
    (out / "a.png").unlink()  # one result gone: only that image is restored again
    again = run("restore", "denoise", str(tiny_digits_model), str(frames), "--sigma", "25",
                "--tile", "8", "--out", str(out), "--side-by-side", str(side))  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "1 of 2 images restored by an earlier run" in again.stdout
    assert f"{frames / 'a.png'}:" in again.stdout and "c.png:" not in again.stdout
    assert "restored 2 of 2 images" in again.stdout
    assert all(p.stat().st_mtime_ns == t for p, t in before.items() if p.name != "a.png")
    # the default solver by name is the same setting
    for same in (["--solver", "mmse"],):
        again = run_here("restore", "denoise", str(tiny_digits_model), str(frames), "--sigma",
                         "25", "--tile", "8", "--out", str(out), "--side-by-side", str(side),
                         *same)  # fmt: skip
        assert again.returncode == 0 and "2 of 2 images restored by an" in again.stdout, again
    # a record from before --unconditional, which it lacks, or with the option as typed (for
    # a day): the same settings for this model, whose prior is its null class
    record = json.loads((out / "restore.json").read_text())
    for then in (None, "auto", "null"):
        if then is None:
            del record["settings"]["unconditional"]
        else:
            record["settings"]["unconditional"] = then
        (out / "restore.json").write_text(json.dumps(record))
        again = run_here("restore", "denoise", str(tiny_digits_model), str(frames), "--sigma",
                         "25", "--tile", "8", "--out", str(out), "--side-by-side",
                         str(side))  # fmt: skip
        assert again.returncode == 0 and "2 of 2 images restored by an" in again.stdout, again
    for options, message in [  # other settings, or files not written by a restore
        (
            ["--sigma", "25", "--solver", "posterior", "--out", str(out)],
            "other settings (--solver posterior (the folder's: mmse))",
        ),
        (
            ["--sigma", "15", "--out", str(out)],
            "holds results made with other settings (--sigma 15.0 (the folder's: 25.0))",
        ),
        (["--sigma", "25", "--out", str(side)], "a.png is already there (2 results would be"),
        (["--sigma", "25", "--out", str(frames / "clean")], "is inside the input folder"),
    ]:
        bad = run_here("restore", "denoise", str(tiny_digits_model), str(frames), "--tile", "8",
                       *options)  # fmt: skip
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
    bad = run_here("restore", "superres", str(tiny_digits_model), str(frames), "--factor", "1",
                   "--out", str(tmp_path / "up"))  # fmt: skip
    assert bad.returncode == 2 and "--factor 1 is no upscaling" in bad.stderr, bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1  # once, not once per image
    assert not (tmp_path / "up").exists()
    bad = run("restore", "denoise", str(tiny_digits_model), str(frames / "a.png"), "--sigma", "25",
              "--out", str(frames / "a.png"))  # fmt: skip
    assert bad.returncode == 2 and "a.png is the input: write the results elsewhere" in bad.stderr
    result = run("restore", "denoise", str(tiny_digits_model), str(frames), "--sigma", "25",
                 "--tile", "8", "--simulate", "--out", str(tmp_path / "sim"))  # fmt: skip
    psnrs = [float(v) for v in re.findall(r"PSNR ([\d.]+) dB against", result.stdout)]
    (mean,) = re.findall(r"mean PSNR ([\d.]+) dB over the 2 images", result.stdout)
    assert len(psnrs) == 2 and abs(float(mean) - sum(psnrs) / 2) <= 0.01  # printed to 0.01
    result = run("restore", "denoise", str(tiny_digits_model), str(frames), "--sigma", "25",
                 "--tile", "8", "--simulate", "--out", str(tmp_path / "sim"))  # fmt: skip
    assert "2 of 2 images restored by an earlier run" in result.stdout  # all skipped
    assert f"mean PSNR {mean} dB over the 2 images" in result.stdout  # from the record
    one = tmp_path / "one.png"  # the same as restoring the file alone
    result = run("restore", "denoise", str(tiny_digits_model), str(frames / "b" / "c.png"),
                 "--sigma", "25", "--tile", "8", "--out", str(one))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert np.array_equal(np.asarray(Image.open(one)), np.asarray(Image.open(out / "b" / "c.png")))
    (tmp_path / "empty").mkdir()
    twins, maps = tmp_path / "twins", tmp_path / "maps"  # inputs that would write one file
    for folder, names in ((twins, ("a.png", "a.jpg")), (maps, ("a.png", "a_std.png"))):
        folder.mkdir()
        for name in names:
            Image.fromarray(np.zeros((16, 16), np.uint8)).save(folder / name)
    for source, options, message in [
        (
            twins,
            ["--side-by-side", str(tmp_path / "s")],
            f"a.jpg and a.png would both write {tmp_path / 's' / 'a.png'}",
        ),
        (
            maps,
            ["--solver", "posterior", "--samples", "2"],
            f"a.png and a_std.png would both write {tmp_path / 'o' / 'a_std.png'}",
        ),
    ]:
        bad = run_here("restore", "denoise", str(tiny_digits_model), str(source), "--sigma",
                       "25", "--out", str(tmp_path / "o"), *options)  # fmt: skip
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
    for task, *options, message in [  # no image could take these: refused once, not per image
        ("denoise", "--sigma", "25", "--samples", "2", "mmse gives one estimate"),
        ("denoise", "--sigma", "25", "--overlap", "8", "--overlap must be in [0, --tile)"),
        ("deblur", "--kernel", "box:3", "must be gauss:STD, motion:LENGTH:ANGLE or a kernel file"),
        ("deblur", "--kernel", "motion:-5", "the kernel size must be a positive odd integer"),
        ("deblur", "--kernel", "gauss:0.2", "one pixel, no blur"),
        ("inpaint", "--random", "2", "--random must be in (0, 1)"),
        ("inpaint", "--box", "1,2,3", "expected 4 comma-separated numbers"),
        ("inpaint", "--mask", str(tmp_path / "none.png"), "--mask: image not found"),
        ("inpaint", "--mask", str(frames / "b"), "and the input folder"),  # a folder inside
        ("denoise", "--sigma", "5", "--side-by-side", str(tmp_path / "o"), "are one folder"),
        # options the run would not use (they were ignored without a word)
        ("denoise", "--sigma", "5", "--mask", "m.png", "--mask is for restore inpaint, unused"),
        ("denoise", "--sigma", "5", "--kernel", "motion:9:0", "--factor", "2",
         "--factor is for restore superres, unused by denoise"),
        ("denoise", "--sigma", "5", "--factor", "4", "--method", "pool",
         "--factor and --method are for restore superres, unused by denoise"),
        ("inpaint", "--box", "1,1,3,3", "--kernel", "gauss:1", "--kernel is for restore deb"),
        ("denoise", "--sigma", "5", "--start-sigma", "5", "--start-sigma is for a classical"),
        ("inpaint", "--box", "1,1,3,3", "--start", "noise", "--start-sigma", "5",
         "unused by a run that starts from noise (ddnm, --start noise)"),
    ]:  # fmt: skip
        bad = run_here("restore", task, str(tiny_digits_model), str(frames), "--out",
                       str(tmp_path / "o"), *options)  # fmt: skip
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
        assert len(bad.stderr.splitlines()) == 1 and not bad.stdout, bad.stdout
    assert not (tmp_path / "o").exists()  # refused before any work
    for source, target, message in [
        (frames, tmp_path / "x.png", "for a folder of inputs, --out and --side-by-side are"),
        (frames / "a.png", tmp_path / "dir", "for one input image, --out and --side-by-side"),
        (tmp_path / "empty", tmp_path / "dir", "no images (.png, .jpg, .tif, ...) found"),
        (tmp_path / "none", tmp_path / "dir", "image not found"),
    ]:
        bad = run_here("restore", "denoise", str(tiny_digits_model), str(source), "--sigma",
                       "25", "--out", str(target))  # fmt: skip
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
    # One image too small, one no image: each named once, and the others are still restored
    # (exit code 2 at the end).
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(frames / "0_tiny.png")  # the first
    (frames / "1_broken.png").write_text("not an image")
    again = tmp_path / "again"
    bad = run("restore", "denoise", str(tiny_digits_model), str(frames), "--sigma", "25",
              "--tile", "8", "--out", str(again))  # fmt: skip
    assert bad.returncode == 2 and "0_tiny.png: the image (4 x 4) is smaller" in bad.stderr
    assert f"error: cannot read image {frames / '1_broken.png'}: cannot identify" in bad.stderr
    assert bad.stderr.count("1_broken.png") == 1, bad.stderr  # was "PATH: cannot read image PATH"
    assert "2 images failed" in bad.stderr and "restored 2 of 4 images" in bad.stdout
    assert sorted(str(p.relative_to(again)) for p in again.rglob("*.png")) == ["a.png", "b/c.png"]
    text = tmp_path / "mask.png"  # a --mask that is no image: refused once, by name
    text.write_text("not an image")
    bad = run_here("restore", "inpaint", str(tiny_digits_model), str(frames), "--mask", str(text),
                   "--out", str(tmp_path / "o"))  # fmt: skip
    assert bad.returncode == 2 and f"--mask: cannot read image {text}: cannot" in bad.stderr
    assert len(bad.stderr.splitlines()) == 1 and not (tmp_path / "o").exists()
    hole = np.full((16, 16), 255, np.uint8)
    hole[4:8, 4:8] = 0
    masks = tmp_path / "masks.tif"  # a mask of two frames: the first is used, and said
    Image.fromarray(hole).save(masks, save_all=True, append_images=[Image.fromarray(hole)])
    result = run_here("restore", "inpaint", str(tiny_digits_model), str(frames / "a.png"),
                      "--mask", str(masks), "--tile", "8", "--steps", "2", "--quiet", "--out",
                      str(tmp_path / "filled.png"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"note: --mask {masks} holds 2 frames: the first is the mask of every image" in (
        result.stdout
    )
    # A run whose every image failed leaves nothing (it left a record of nothing done), and a
    # record of nothing done (in a folder that was there) binds no later run.
    failed = tmp_path / "failed"
    bad = run_here("restore", "denoise", str(tiny_digits_model), str(frames), "--sigma", "25",
                   "--tile", "40", "--out", str(failed))  # fmt: skip
    assert bad.returncode == 2 and "restored 0 of 4 images" in bad.stdout
    assert not failed.exists()
    failed.mkdir()
    bad = run_here("restore", "denoise", str(tiny_digits_model), str(frames), "--sigma", "25",
                   "--tile", "40", "--out", str(failed))  # fmt: skip
    assert bad.returncode == 2 and (failed / "restore.json").is_file()
    result = run_here("restore", "denoise", str(tiny_digits_model), str(frames), "--sigma", "25",
                      "--tile", "8", "--quiet", "--out", str(failed))  # fmt: skip
    assert result.returncode == 2 and "restored 2 of 4 images" in result.stdout, result.stderr
    assert "other settings" not in result.stderr


def test_a_run_that_restores_nothing_leaves_nothing(tiny_digits_model, tmp_path):
    """Where every image of a folder (or frame of a stack) fails, the run leaves no output
    folder (it left one holding only its record) and no frames folder of a TIFF stack; one
    result makes the folder, with its record."""
    rng = np.random.default_rng(0)
    images = tmp_path / "images"
    images.mkdir()
    for name, side in (("a.png", 8), ("b.png", 8)):
        Image.fromarray(rng.integers(0, 256, (side, side), dtype=np.uint8)).save(images / name)
    pages = [Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)) for _ in range(2)]
    pages[0].save(tmp_path / "stack.tif", save_all=True, append_images=pages[1:])
    base = ["restore", "inpaint", str(tiny_digits_model), "--tile", "8", "--quiet"]
    for source, out in ((images, "out"), (tmp_path / "stack.tif", "out.tif")):
        bad = run_here(*base, str(source), "--box", "2,2,12,12", "--out", str(tmp_path / out))
        assert bad.returncode == 2 and "does not fit a 8 x 8 image" in bad.stderr, bad.stderr
        assert "restored 0 of 2" in bad.stdout and "into" not in bad.stdout, bad.stdout
        assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "stack.tif"]
    Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(images / "b.png")
    one = run_here(*base, str(images), "--box", "2,2,12,12", "--out", str(tmp_path / "out"))
    assert one.returncode == 2 and "restored 1 of 2 images into" in one.stdout, one.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b.png", "restore.json"]


def test_a_long_stack_writes_its_record_now_and_then(tiny_digits_model, tmp_path, monkeypatch):
    """The record of every frame done was written whole after each frame: a stack of N frames
    cost N squared (1,000 frames of 8 x 8: 43% of the run in JSON). It is written after the
    first result, then at most every ``RECORD_EVERY_S`` (here longer than the run), and at the
    end with every frame."""
    from diffvision.cli import restore_folder

    rng = np.random.default_rng(0)
    pages = [Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)) for _ in range(30)]
    pages[0].save(tmp_path / "stack.tif", save_all=True, append_images=pages[1:])
    monkeypatch.setattr(restore_folder, "RECORD_EVERY_S", 1e9, raising=False)  # (new)
    writes, real = [], restore_folder.write_record

    def counting(path, settings, images):
        writes.append(len(images))
        real(path, settings, images=images)

    monkeypatch.setattr(restore_folder, "write_record", counting)
    out = tmp_path / "out"
    result = run_here("restore", "denoise", str(tiny_digits_model), str(tmp_path / "stack.tif"),
                      "--sigma", "25", "--tile", "8", "--quiet", "--out", str(out))  # fmt: skip
    assert result.returncode == 0 and writes == [1, 30], (writes, result.stderr)
    assert len(json.loads((out / "restore.json").read_text())["images"]) == 30


def test_restoring_a_folder_goes_on_where_it_was_stopped(tiny_digits_model, tmp_path):
    """Ctrl-C in a folder's restoration: the images done are kept, and the same command again
    restores only the others."""
    rng = np.random.default_rng(0)
    frames, out = tmp_path / "frames", tmp_path / "clean"
    frames.mkdir()
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(frames / f"{i}.png")
    args = ["restore", "denoise", str(tiny_digits_model), str(frames), "--sigma", "25", "--tile",
            "8", "--solver", "posterior", "--steps", "100", "--out", str(out)]  # fmt: skip
    record = out / "restore.json"
    code, err = signal_when([*DIFFVISION, *args], record.is_file, signal.SIGINT)
    done = json.loads(record.read_text())["images"]
    assert code == 130 and f"interrupted; {len(done)} of 6 images are restored in" in err, err
    assert 1 <= len(done) < 6 and all((out / name).is_file() for name in done)
    again = run(*args)
    assert again.returncode == 0, again.stderr
    assert f"{len(done)} of 6 images restored by an earlier run" in again.stdout
    assert "restored 6 of 6 images" in again.stdout and len(list(out.glob("*.png"))) == 6


def test_a_mask_folder_gives_each_image_of_a_folder_its_own_mask(tiny_digits_model, tmp_path):
    """--mask FOLDER with a folder INPUT: each image takes the mask named as it (same
    sub-folder, any image type; a stack's frames the frames of a mask stack of as many), as it
    would restored alone with that mask; an image without a mask, or with two, is refused
    before any work, and a mask changed since a run has its image restored again."""
    rng = np.random.default_rng(2)
    images, masks, out = tmp_path / "in", tmp_path / "masks", tmp_path / "out"
    for folder in (images / "sub", masks / "sub"):
        folder.mkdir(parents=True)

    def hole(x, y):  # a 5 x 4 hole at (x, y) of a 16 x 16 mask
        mask = np.full((16, 16), 255, np.uint8)
        mask[y : y + 4, x : x + 5] = 0
        return mask

    def noise():
        return rng.integers(0, 256, (16, 16), dtype=np.uint8)

    pictures = {"a.png": noise(), "sub/b.png": noise()}
    for name, pixels in pictures.items():
        Image.fromarray(pixels).save(images / name)
    holes = {"a.png": hole(1, 2), "sub/b.png": hole(9, 10)}
    Image.fromarray(holes["a.png"]).save(masks / "a.png")
    Image.fromarray(holes["sub/b.png"]).save(masks / "sub" / "b.tif")  # another image type

    def save_stack(path, pages):
        first, *rest = (Image.fromarray(p) for p in pages)
        first.save(path, save_all=True, append_images=rest)

    frames, stack_holes = [noise(), noise()], [hole(0, 0), hole(11, 12)]
    save_stack(images / "s.tif", frames)
    save_stack(masks / "s.tif", stack_holes)  # a mask per frame
    args = ["restore", "inpaint", str(tiny_digits_model), str(images), "--mask", str(masks),
            "--tile", "8", "--steps", "2", "--quiet", "--out", str(out)]  # fmt: skip
    result = run_here(*args)
    assert result.returncode == 0 and "restored 4 of 4 images" in result.stdout, result.stderr
    pictures.update({"s_000.tif": frames[0], "s_001.tif": frames[1]})
    holes.update({"s_000.tif": stack_holes[0], "s_001.tif": stack_holes[1]})
    for name, pixels in pictures.items():  # observed pixels kept exactly, its own hole filled
        restored = np.asarray(Image.open(out / name))
        seen = holes[name] > 0
        assert np.array_equal(restored[seen], pixels[seen]), name
        assert not np.array_equal(restored[~seen], pixels[~seen]), name
    alone = tmp_path / "alone.png"  # the same result as the image restored with its mask alone
    result = run_here(*args[:3], str(images / "sub" / "b.png"), "--mask",
                      str(masks / "sub" / "b.tif"), *args[6:-1], str(alone))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert np.array_equal(np.asarray(Image.open(alone)), np.asarray(Image.open(out / "sub/b.png")))
    Image.fromarray(hole(3, 3)).save(masks / "a.png")  # one mask changed: its image again
    again = run_here(*args)
    assert again.returncode == 0 and "1 of 4 images changed since" in again.stdout, again.stdout
    assert f"{images / 'a.png'}:" in again.stdout and "b.png:" not in again.stdout
    for changes, options, message in [
        (lambda: (masks / "a.png").rename(masks / "x.png"), [],
         f"--mask {masks} has no mask for 1 of 3 images (a.png): a mask is named as its image"),
        (lambda: ((masks / "x.png").rename(masks / "a.png"),
                  Image.fromarray(hole(1, 1)).save(masks / "a.jpg")), [],
         f"--mask {masks} holds 2 masks for a.png: "),
        (None, ["--out", str(masks / "o")], "is inside the --mask folder: write the results"),
        (None, ["--mask", str(images / "sub")], "and the input folder"),
    ]:  # fmt: skip
        if changes is not None:
            changes()
        bad = run_here(*args[:-1], str(tmp_path / "o"), *options)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
        assert len(bad.stderr.splitlines()) == 1 and not (tmp_path / "o").exists()
    bad = run_here(*args[:3], str(images / "a.png"), *args[4:-1], str(tmp_path / "o.png"))
    assert bad.returncode == 2 and "a folder of masks is for a folder INPUT" in bad.stderr
    (masks / "a.jpg").unlink()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(masks / "sub" / "b.tif")  # the wrong size
    bad = run_here(*args)  # that image fails, named with its mask; the others are kept
    assert bad.returncode == 2 and "1 image failed" in bad.stderr, bad.stderr
    assert f"the mask {masks / 'sub' / 'b.tif'} is 8 x 8 px and the image 16 x 16" in bad.stderr
    save_stack(masks / "s.tif", [hole(0, 0)] * 3)  # 3 masks for 2 frames: the first for each
    said = run_here(*args).stdout
    assert f"note: the mask {masks / 's.tif'} holds 3 frames and {images / 's.tif'} 2: the " in said
    assert "2 of 4 images changed since" in said  # the stack's two frames (a mask changed)


def test_a_kernel_file_is_read_as_written_and_refused_where_it_is_no_kernel(tmp_path):
    """``read_kernel``: a measured PSF as its file holds it (a .npy exactly, a float32 TIFF's and
    a 16-bit PNG's values, a grey image saved in RGB), never unpickled; a file that is no 2-D
    kernel is a ValueError that names it."""
    from diffvision.io.images import read_kernel

    rng = np.random.default_rng(0)
    k = rng.random((5, 5))
    np.save(tmp_path / "k.npy", k)
    assert torch.equal(read_kernel(tmp_path / "k.npy"), torch.from_numpy(k))
    Image.fromarray(k.astype(np.float32)).save(tmp_path / "k.tif")
    assert torch.equal(
        read_kernel(tmp_path / "k.tif"), torch.from_numpy(k.astype(np.float32)).double()
    )
    deep = (k * 60000).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "k16.png")
    assert torch.equal(read_kernel(tmp_path / "k16.png"), torch.from_numpy(deep.astype(np.float64)))
    grey = (k * 255).astype(np.uint8)
    Image.fromarray(grey).convert("RGB").save(tmp_path / "rgb.png")
    assert torch.equal(read_kernel(tmp_path / "rgb.png"), torch.from_numpy(grey.astype(np.float64)))
    box = np.zeros((5, 5), bool)
    box[1:4, 1:4] = True  # a bilevel image: PIL's arrays of it are bool, no numbers
    Image.fromarray(box).save(tmp_path / "box.png")
    assert torch.equal(read_kernel(tmp_path / "box.png"), torch.from_numpy(box * 255.0))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "cube.npy", np.ones((3, 5, 5)))
    np.save(tmp_path / "nan.npy", np.full((3, 3), np.nan))
    np.save(tmp_path / "complex.npy", np.ones((3, 3), np.complex64))
    pages = [Image.fromarray(grey), Image.fromarray(grey)]
    pages[0].save(tmp_path / "planes.tif", save_all=True, append_images=pages[1:])
    colour = np.zeros((5, 5, 3), np.uint8)
    colour[2, 2] = (255, 0, 0)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    for name, message in [
        ("obj.npy", "Object arrays cannot be loaded when allow_pickle=False"),
        ("cube.npy", "is no 2-D array of numbers (shape (3, 5, 5))"),
        ("complex.npy", "is no 2-D array of numbers"),
        ("nan.npy", "holds NaN or infinite values"),
        ("planes.tif", "holds 2 frames: give one 2-D kernel (a plane of a 3-D PSF)"),
        ("colour.png", "is in colour: a kernel is one grey image"),
        ("none.png", "kernel file not found"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)) as raised:
            read_kernel(tmp_path / name)
        assert name in str(raised.value)


def test_restore_deblur_with_a_measured_kernel_file(tiny_digits_model, tmp_path):
    """``--kernel FILE`` deblurs with a measured PSF: the kernel of ``gauss:1.5`` saved as a .npy
    restores the same image, bit for bit, and one cropped off-centre is noted with the shift
    it makes; a kernel that is not k x k with k odd, larger than
    the image or of no positive sum is refused in one line before any work, as is an output
    over it or the file inside the input folder; the folder's record holds the file's SHA-256,
    so a kernel file of other content is other settings."""
    from diffvision.restore import gaussian_kernel

    rng = np.random.default_rng(0)
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(folder / "a.png")
    psf = tmp_path / "psf.npy"
    np.save(psf, gaussian_kernel(9, 1.5).numpy())  # what gauss:1.5 builds (9 px: 2 int(4.5) + 1)
    common = ["--sigma", "2", "--tile", "8", "--steps", "2", "--quiet"]
    base = ["restore", "deblur", str(tiny_digits_model), str(folder / "a.png"), *common]
    named = run_here(*base, "--kernel", "gauss:1.5", "--out", str(tmp_path / "gauss.png"))
    measured = run_here(*base, "--kernel", str(psf), "--out", str(tmp_path / "file.png"))
    assert named.returncode == measured.returncode == 0, measured.stderr
    assert (tmp_path / "gauss.png").read_bytes() == (tmp_path / "file.png").read_bytes()
    assert "note:" not in measured.stdout  # centred
    # A PSF cropped off-centre (2 px right, 1 px up) is said once, with the shift it makes
    off = np.zeros((13, 13))
    off[1:10, 4:13] = gaussian_kernel(9, 1.5).numpy()
    np.save(tmp_path / "off.npy", off)
    shifted = run_here(
        *base, "--kernel", str(tmp_path / "off.npy"), "--out", str(tmp_path / "o.png")
    )
    assert shifted.returncode == 0, shifted.stderr
    note = (
        f"note: the centre of mass of --kernel {tmp_path / 'off.npy'} is +2.0 px across and "
        "-1.0 px down from its middle pixel, which deblurring takes as the point source's "
        "position: if the PSF was cropped off-centre, the result comes out shifted by -2.0 px "
        "across and +1.0 px down (crop it around its centre)"
    )
    assert shifted.stdout.count("note:") == 1 and note in shifted.stdout, shifted.stdout
    np.save(tmp_path / "even.npy", np.ones((8, 8)))
    np.save(tmp_path / "wide.npy", np.ones((17, 17)))
    np.save(tmp_path / "negative.npy", -np.ones((3, 3)))
    Image.fromarray(np.full((3, 3), 9, np.uint8)).save(tmp_path / "box.png")
    for kernel, out, message in [
        (tmp_path / "even.npy", "x.png", "it is 8 x 8 px: a kernel is k x k with k odd (crop it"),
        (tmp_path / "wide.npy", "x.png", "the kernel (17 px) is larger than the image (16 x 16)"),
        (tmp_path / "negative.npy", "x.png", "its values must have a positive sum"),
        (tmp_path / "none.tif", "x.png", "--kernel: kernel file not found: "),
        (tmp_path / "box.png", str(tmp_path / "box.png"), "box.png is the --kernel file: write"),
    ]:
        bad = run_here(*base, "--kernel", str(kernel), "--out", str(tmp_path / out))
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.png").exists()
    args = ["restore", "deblur", str(tiny_digits_model), str(folder), *common, "--kernel",
            str(psf), "--out", str(tmp_path / "out")]  # fmt: skip
    assert run_here(*args).returncode == 0
    record = json.loads((tmp_path / "out" / "restore.json").read_text())
    assert record["settings"]["kernel_sha256"] == hashlib.sha256(psf.read_bytes()).hexdigest()
    np.save(psf, gaussian_kernel(9, 1.0).numpy())  # the same name, another kernel
    bad = run_here(*args)
    assert bad.returncode == 2, bad.stdout
    assert "other settings (a --kernel file of other content (its SHA-256 differs))" in bad.stderr
    # A kernel or mask file among the input folder's images would be restored as one of them
    # (a mask inpainted with itself, silently): refused before any work.
    inside = folder / "psf.png"
    Image.fromarray(np.full((3, 3), 9, np.uint8)).save(inside)
    for task, option in (("deblur", "--kernel"), ("inpaint", "--mask")):
        bad = run_here("restore", task, str(tiny_digits_model), str(folder), *common, option,
                       str(inside), "--out", str(tmp_path / "elsewhere"))  # fmt: skip
        assert bad.returncode == 2 and not (tmp_path / "elsewhere").exists()
        assert f"{option} {inside} lies in the input folder {folder}: it would be restored" in (
            bad.stderr
        )


def test_an_input_or_mask_changed_since_a_run_is_not_taken_as_restored(tiny_digits_model, tmp_path):
    """The record binds each result to its input file's content (SHA-256) and the run to the
    --mask file's: an input changed in place is restored again (the others kept), a whole
    stack's frames when the stack changed, and a --mask of other content is other settings.
    Records from before they held digests keep their results."""
    rng = np.random.default_rng(0)
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(folder / name)
    hole = np.full((16, 16), 255, np.uint8)
    hole[4:9, 5:11] = 0
    mask = tmp_path / "mask.png"
    Image.fromarray(hole).save(mask)
    args = ["restore", "inpaint", str(tiny_digits_model), str(folder), "--mask", str(mask),
            "--tile", "8", "--steps", "2", "--quiet", "--out", str(out)]  # fmt: skip
    assert run_here(*args).returncode == 0
    record = json.loads((out / "restore.json").read_text())
    assert record["settings"]["mask_sha256"] == hashlib.sha256(mask.read_bytes()).hexdigest()
    assert (
        record["images"]["a.png"]["sha256"]
        == hashlib.sha256((folder / "a.png").read_bytes()).hexdigest()
    )
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(folder / "a.png")
    again = run_here(*args)
    assert again.returncode == 0, again.stderr
    assert "1 of 2 images changed since an earlier run restored it" in again.stdout
    assert "1 of 2 images restored by an earlier run" in again.stdout
    assert f"{folder / 'a.png'}:" in again.stdout and f"{folder / 'b.png'}:" not in again.stdout
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    assert after["b.png"] == before["b.png"] and after["a.png"] != before["a.png"]
    again = run_here(*args)  # now recorded with its new content: nothing to do
    assert "2 of 2 images restored by an earlier run" in again.stdout
    assert "changed since" not in again.stdout
    kept = mask.read_bytes()
    hole[0, 0] = 0  # the mask file's content changed, not its name: other settings
    Image.fromarray(hole).save(mask)
    bad = run_here(*args)
    assert bad.returncode == 2, bad.stdout
    assert "other settings (a --mask file of other content (its SHA-256 differs))" in bad.stderr
    mask.write_bytes(kept)
    old = json.loads((out / "restore.json").read_text())  # as recorded before the digests
    del old["settings"]["mask_sha256"]
    for entry in old["images"].values():
        del entry["sha256"]
    (out / "restore.json").write_text(json.dumps(old))
    Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(folder / "b.png")
    Image.fromarray(hole).save(mask)
    again = run_here(*args)  # changes it cannot see: the results are kept, as before
    assert again.returncode == 0 and "2 of 2 images restored by an earlier" in again.stdout
    stack = tmp_path / "stack.tif"  # a stack changed: each of its frames restored again
    pages = [Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)) for _ in range(3)]
    pages[0].save(stack, save_all=True, append_images=pages[1:])
    frames = ["restore", "denoise", str(tiny_digits_model), str(stack), "--sigma", "25",
              "--tile", "8", "--quiet", "--out", str(tmp_path / "frames")]  # fmt: skip
    assert run_here(*frames).returncode == 0
    pages[2].save(stack, save_all=True, append_images=pages[:2])
    again = run_here(*frames)
    assert again.returncode == 0 and "3 of 3 frames changed since" in again.stdout, again.stdout
    assert "restored 3 of 3 frames" in again.stdout


def _scrambled(folder):
    """Every weight of the model folder ``folder`` (network and EMA) redrawn at random, so that
    its class branches differ (a few training steps leave them all but equal)."""
    from safetensors.torch import load_file, save_file

    gen = torch.Generator().manual_seed(0)
    for name in ("model.safetensors", "ema.safetensors"):
        weights = load_file(folder / name)
        save_file(
            {k: 0.3 * torch.randn(v.shape, generator=gen) for k, v in weights.items()},
            folder / name,
        )


def test_a_class_model_restores_with_the_class_mixture_as_its_prior(tmp_path):
    """A class model whose folder has a noise classifier restores with the class-posterior
    mixture as its prior (``--unconditional auto``, as ``sample`` draws without a class):
    ``restore`` ran the null branch, and refused a model that learnt no null class (label
    dropout 0), which now restores by the mixture. The command's ``mmse`` estimate (one call
    of the prior on the whole 8 px image) is the library's, :class:`ClassMixture` of the
    model and its classifier, to one grey level (channels-last rounding); ``--unconditional
    null`` is the null branch's, and the two differ. A mixture without a classifier, and
    ``--unconditional`` for an unconditional model, are refused."""
    from diffvision import ClassMixture, load, load_classifier

    made = run_here("train", "--data", "digits", "--preset", "tiny", "--steps", "2", "--batch",
                    "4", "--classifier-steps", "2", "--out", str(tmp_path / "run"),
                    "--quiet")  # fmt: skip
    assert made.returncode == 0, made.stderr
    folder = tmp_path / "run" / "model"
    _scrambled(folder)
    noisy = tmp_path / "noisy.png"
    pixels = np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8)
    Image.fromarray(pixels).save(noisy)
    y = torch.from_numpy(pixels).float().div(127.5).sub(1)[None, None]
    model, classifier = load(folder), load_classifier(folder)
    with torch.no_grad():
        expected = {
            "auto": ClassMixture(model, classifier)(y, 25 / 127.5),
            "null": model(y, 25 / 127.5),
        }
    got = {}
    for choice, expect in expected.items():
        out = tmp_path / f"{choice}.png"
        done = run_here("restore", "denoise", str(folder), str(noisy), "--sigma", "25",
                        "--unconditional", choice, "--quiet", "--out", str(out))  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert ("class-posterior mixture" in done.stdout) == (choice == "auto")
        got[choice] = np.asarray(Image.open(out), dtype=float)
        levels = (expect[0, 0].clamp(-1, 1) + 1).mul(127.5).numpy()
        assert np.abs(got[choice] - levels).max() <= 1.0, choice
    # the two priors differ by more than the parity tolerance allows each (9 levels here)
    assert np.abs(got["auto"] - got["null"]).max() > 2
    # a folder's record holds the prior used: "auto" is "mixture" here, and "null" another
    inputs, out = tmp_path / "inputs", tmp_path / "restored"
    inputs.mkdir()
    Image.fromarray(pixels).save(inputs / "a.png")
    for choice, said in [("auto", "restored 1 of 1"), ("mixture", "1 of 1 images restored by")]:
        done = run_here("restore", "denoise", str(folder), str(inputs), "--sigma", "25",
                        "--unconditional", choice, "--quiet", "--out", str(out))  # fmt: skip
        assert done.returncode == 0 and said in done.stdout, (choice, done)
    bad = run_here("restore", "denoise", str(folder), str(inputs), "--sigma", "25",
                   "--unconditional", "null", "--out", str(out))  # fmt: skip
    assert bad.returncode == 2 and "--unconditional null (the folder's: mixture)" in bad.stderr
    # Without a null class (its config says label dropout 0): restored by the mixture, as before
    config = json.loads((folder / "config.json").read_text())
    config["training"]["label_dropout"] = 0.0
    (folder / "config.json").write_text(json.dumps(config))
    out = tmp_path / "no_null.png"
    done = run_here("restore", "denoise", str(folder), str(noisy), "--sigma", "25", "--quiet",
                    "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert np.array_equal(np.asarray(Image.open(out), dtype=float), got["auto"])
    info = run_here("info", str(folder)).stdout  # the mixture needs no class: not "needed"
    assert "no null class (trained with --label-dropout 0): no guidance\n" in info
    weights = folder / "classifier.safetensors"  # a broken classifier: one line, and no word
    weights.write_bytes(weights.read_bytes()[:100])  # of a mixture it could not make
    bad = run_here("restore", "denoise", str(folder), str(noisy), "--sigma", "25", "--out",
                   str(tmp_path / "x.png"))  # fmt: skip
    assert bad.returncode == 2 and "cannot read" in bad.stderr and not bad.stdout, bad.stdout
    for name in ("classifier.json", "classifier.safetensors"):
        (folder / name).unlink()
    assert "no guidance, and --class needed" in run_here("info", str(folder)).stdout
    for args, message in [
        (["--unconditional", "mixture"], f"{folder} has no noise classifier"),
        ([], "train a noise classifier (train --classifier-steps) to mix the class branches"),
    ]:
        bad = run_here("restore", "denoise", str(folder), str(noisy), "--sigma", "25", *args,
                       "--out", str(tmp_path / "x.png"))  # fmt: skip
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
    plain = tmp_path / "plain"
    made = run_here("train", "--data", "digits", "--preset", "tiny", "--steps", "1", "--batch",
                    "4", "--no-classes", "--out", str(plain), "--quiet")  # fmt: skip
    assert made.returncode == 0, made.stderr
    bad = run_here("restore", "denoise", str(plain / "model"), str(noisy), "--sigma", "25",
                   "--unconditional", "null", "--out", str(tmp_path / "x.png"))  # fmt: skip
    assert bad.returncode == 2 and "--unconditional is for a class model" in bad.stderr
    assert not (tmp_path / "x.png").exists()


def test_restore_estimates_the_noise_level_with_sigma_auto(tiny_digits_model, tmp_path):
    """``--sigma auto`` restores each input at the noise level estimated from it
    (``restore.estimate_sigma``, on the image as read; for inpaint, on its observed pixels),
    and says which; it is refused with --simulate (which adds noise of --sigma) and where no
    2 x 2 block is observed, and an input without noise is said to have none rather than
    denoised at sigma 0. A --sigma given far from the input's estimated level is noted."""
    from diffvision.io.images import read_image
    from diffvision.restore import estimate_sigma

    rng = np.random.default_rng(0)
    folder = tmp_path / "in"
    folder.mkdir()
    for name, sigma in (("a.png", 10), ("b.png", 30)):
        noisy = np.clip(128 + rng.normal(0, sigma, (32, 32)), 0, 255).round().astype(np.uint8)
        Image.fromarray(noisy).save(folder / name)
    common = ["--sigma", "auto", "--tile", "8", "--quiet"]
    result = run_here("restore", "denoise", str(tiny_digits_model), str(folder), *common,
                      "--out", str(tmp_path / "out"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    for name in ("a.png", "b.png"):
        level = float(estimate_sigma(read_image(folder / name, 1))[0]) * 127.5
        assert f"noise sigma {level:.2f} estimated" in result.stdout, result.stdout
        assert (tmp_path / "out" / name).is_file()
    images = json.loads((tmp_path / "out" / "restore.json").read_text())["images"]
    said = re.findall(r"noise sigma ([0-9.]+) estimated", result.stdout)
    assert [f"{images[name]['sigma']:.2f}" for name in ("a.png", "b.png")] == said  # recorded
    # 256 coefficients each: a relative standard error of 1.167 / 16 (see test_restore's test
    # of estimate_sigma; 8-bit rounding adds 0.004 to sigma 10, in quadrature); within 4 of them
    for level, sigma in zip(said, (10, 30), strict=True):
        assert abs(float(level) - sigma) < 4 * 1.167 / 16 * sigma, said
    # inpaint: from the observed pixels only (the hole holds a checkerboard of 60 and 200 here,
    # whose finest diagonal coefficients are 140 levels)
    hole = np.full((32, 32), 255, np.uint8)
    hole[8:24, 8:24] = 0
    Image.fromarray(hole).save(tmp_path / "mask.png")
    scratched = np.asarray(Image.open(folder / "a.png")).copy()
    scratched[8:24, 8:24] = 60 + 140 * (np.indices((16, 16)).sum(0) % 2)
    Image.fromarray(scratched).save(tmp_path / "scratched.png")
    filled = run_here("restore", "inpaint", str(tiny_digits_model), str(tmp_path / "scratched.png"),
                      *common, "--mask", str(tmp_path / "mask.png"), "--steps", "2", "--out",
                      str(tmp_path / "filled.png"))  # fmt: skip
    observed = torch.from_numpy(hole > 0).float()
    level = float(estimate_sigma(read_image(tmp_path / "scratched.png", 1), observed)[0]) * 127.5
    assert f"noise sigma {level:.2f} estimated" in filled.stdout, filled.stdout
    assert abs(level - 10) < 4 * 1.167 / math.sqrt(256 - 64) * 10  # as above: 192 blocks
    # a --sigma far from the input's estimated level (a sigma on the 0-1 scale, say) is noted
    level = float(estimate_sigma(read_image(folder / "b.png", 1))[0]) * 127.5
    for sigma, far in (("0.1", "over 2 times"), ("30", None), ("100", "under 1/2 of")):
        given = run_here("restore", "denoise", str(tiny_digits_model), str(folder / "b.png"),
                         "--sigma", sigma, "--tile", "8", "--quiet", "--out",
                         str(tmp_path / "given.png"))  # fmt: skip
        assert given.returncode == 0, given.stderr
        note = (f"note: {folder / 'b.png'} shows noise of about sigma {level:.1f} (what --sigma "
                f"auto would take), {far} --sigma {sigma} (the 0-255 scale): denoised at {sigma} "
                "as asked")  # fmt: skip
        assert (note in given.stdout) if far else ("note:" not in given.stdout), given.stdout
    # said with the rest of the run's line (a classical start's was said instead)
    deblur = run_here("restore", "deblur", str(tiny_digits_model), str(folder / "a.png"), *common,
                      "--kernel", "gauss:1", "--start", "classical", "--steps", "2", "--out",
                      str(tmp_path / "sharp.png"))  # fmt: skip
    level = float(estimate_sigma(read_image(folder / "a.png", 1))[0]) * 127.5
    assert f"noise sigma {level:.2f} estimated, from a classical start at sigma" in deblur.stdout
    Image.fromarray(np.full((16, 16), 90, np.uint8)).save(tmp_path / "flat.png")
    for task, options, message in [
        ("inpaint", ["--random", "0.9", "--seed", "3"], "flat.png: --sigma auto: no 2 x 2 block"),
        ("denoise", ["--simulate"], "--simulate adds noise of std --sigma: give it as a number"),
        ("denoise", [], "flat.png shows no noise (--sigma auto estimates 0): nothing to denoise"),
    ]:
        bad = run_here("restore", task, str(tiny_digits_model), str(tmp_path / "flat.png"),
                       *common, *options, "--out", str(tmp_path / "x.png"))  # fmt: skip
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.png").exists()
