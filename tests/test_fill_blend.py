"""The blended inpainting fill (``restore.starts``): its weights against a direct solution of
the constrained ridge problem they are defined by, and the fill's contract on images."""

import numpy as np
import pytest
import torch

from diffvision.restore import Inpaint, box_mask
from diffvision.restore.starts import (
    BLENDED,
    blend_weights,
    classical_start,
    fill_hole,
    held_out_fills,
    inpaint_start,
)


def kkt_weights(a: np.ndarray, t: np.ndarray, lam: float) -> np.ndarray:
    """argmin ||a w - t||^2 + lam ||w - 1/M||^2 subject to sum(w) = 1, from its KKT system."""
    m = a.shape[1]
    kkt = np.zeros((m + 1, m + 1))
    kkt[:m, :m] = 2 * (a.T @ a + lam * np.eye(m))
    kkt[:m, m] = kkt[m, :m] = 1
    rhs = np.r_[2 * (a.T @ t + lam / m), 1]
    return np.linalg.solve(kkt, rhs)[:m]


def test_blend_weights_solve_the_constrained_ridge_problem():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=2000)
    a = truth[:, None] + rng.normal(size=(2000, 3)) * [0.1, 0.3, 0.6] + [0.0, 0.2, -0.1]
    b = a - a.mean(1, keepdims=True)
    first = []
    for shrink in (0.01, 1.0, 30.0):
        w = blend_weights(a, truth, shrink)
        lam = shrink * np.trace(b.T @ b) / 2  # the documented strength: trace / (M - 1)
        np.testing.assert_allclose(w, kkt_weights(a, truth, lam), rtol=0, atol=1e-10)
        assert abs(w.sum() - 1) < 1e-12 and w[0] == w.max()
        first.append(w[0])
    # The fit pulls towards the most accurate fill, less the harder it is shrunk.
    assert first[0] > first[1] > first[2] > 1 / 3


def test_blend_weights_limits():
    rng = np.random.default_rng(1)
    truth = rng.normal(size=500)
    a = np.stack([truth, truth + rng.normal(size=500), truth - rng.normal(size=500)], 1)
    np.testing.assert_allclose(blend_weights(a, truth, 1e9), np.full(3, 1 / 3), atol=1e-8)
    assert np.allclose(blend_weights(a, truth, 1e-9), [1, 0, 0], atol=1e-6)  # exact fill found
    # Batched shapes (C x P x M) are the same problem flattened.
    np.testing.assert_allclose(blend_weights(a.reshape(2, 250, 3), truth.reshape(2, 250)),
                               blend_weights(a, truth))  # fmt: skip
    np.testing.assert_array_equal(blend_weights(np.ones((10, 3)), np.ones(10)), np.full(3, 1 / 3))
    with pytest.raises(ValueError, match="shrink"):
        blend_weights(a, truth, 0)


def photo_crop(size: int = 48, channels: int = 3) -> torch.Tensor:
    """A 1 x C x size x size crop of scikit-image's brick texture (a training photo), in [-1, 1]."""
    import skimage.data

    brick = torch.from_numpy(skimage.data.brick()[100 : 100 + size, 200 : 200 + size]).double()
    return (brick / 127.5 - 1).expand(1, channels, size, size).clone()


def test_blend_predicts_the_copies_no_worse_than_the_mean_of_the_fills():
    # In-sample: the ridge objective at its minimum is at most its value at w = 1/M, which is
    # the squared error of the fills' mean; so the blend's error on the copies is at most that.
    x = photo_crop()[0].numpy()
    hole = box_mask(48, 48, (18, 18, 10, 10)).numpy() == 0
    candidates, target, distance = held_out_fills(x, hole, BLENDED)
    assert candidates.shape == (*target.shape, 3) and distance.shape == target.shape[1:]
    w = blend_weights(candidates, target)
    blend, mean = candidates @ w, candidates.mean(-1)
    assert ((blend - target) ** 2).sum() <= ((mean - target) ** 2).sum()
    assert not np.allclose(w, 1 / 3)  # the copies do tell the fills apart on this texture


def test_opencv_fills_match_opencvs_own_colour_call():
    # The bench's baselines call OpenCV on the 8-bit RGB image; fill_hole must give the same.
    import cv2

    rgb = skimage_astronaut_crop()
    hole = box_mask(64, 64, (20, 24, 16, 12)).numpy() == 0
    image = np.moveaxis(rgb / 127.5 - 1, -1, 0)
    for how, flag in (("navier_stokes", cv2.INPAINT_NS), ("telea", cv2.INPAINT_TELEA)):
        theirs = cv2.inpaint(rgb, hole.astype(np.uint8), 3, flag) / 127.5 - 1
        np.testing.assert_array_equal(fill_hole(image, hole, how), np.moveaxis(theirs, -1, 0))


def skimage_astronaut_crop() -> np.ndarray:
    import skimage.data

    return np.ascontiguousarray(skimage.data.astronaut()[100:164, 200:264])


def test_inpaint_start_contract():
    x = torch.cat([photo_crop(), -photo_crop().flip(-1)])  # two images, each its own weights
    op = Inpaint(box_mask(48, 48, (18, 18, 10, 10)))
    y = op.forward(x)
    fill, std = inpaint_start(op, y, "blend")
    assert fill.dtype == y.dtype and torch.equal(fill * op.mask, y)  # observed pixels kept
    assert std.shape == (2, 1, 48, 48) and torch.all(std[:, :, op.mask[0, 0] == 1] == 0)
    assert torch.all(std[:, :, op.mask[0, 0] == 0] > 0)
    for i in range(2):
        torch.testing.assert_close(classical_start(op, y[i : i + 1], "blend"), fill[i : i + 1])
    single = classical_start(op, y)  # the default: biharmonic
    assert not torch.allclose(single, fill)
    with pytest.raises(ValueError, match="fill must be one of"):
        classical_start(op, y, "median")
