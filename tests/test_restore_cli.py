"""``diffvision restore`` end to end on a tiny model, and whole images by tiles."""

import itertools

import numpy as np
import pytest
import torch
from PIL import Image

from diffvision.analytic import GaussianDenoiser
from diffvision.restore import Denoise, Inpaint, box_mask, solve
from diffvision.restore.tiles import TiledDenoiser, blend_window, solve_tiled, tile_starts
from tests.cli_run import run


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


def test_restore_command(tiny_digits_model, tmp_path):
    model = tiny_digits_model
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
    result = run(
        "restore", "superres", str(model), str(image), "--factor", "2", "--out", str(out), *common
    )
    assert result.returncode == 0, result.stderr
    assert Image.open(out).size == (32, 32)
    for args, message in [
        (["colorize"], "RGB model"),
        (["inpaint"], "exactly one of"),
        (["denoise"], "needs --sigma"),
        (["deblur", "--kernel", "box:3"], "--kernel must be"),
    ]:
        bad = run("restore", args[0], str(model), str(image), *args[1:], "--out", str(out))
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1
    bad = run(
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
