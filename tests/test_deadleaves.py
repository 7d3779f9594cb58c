"""The built-in ``deadleaves`` data set and pooled data specs."""

import numpy as np
import pytest
import torch
from scipy.stats import kstest

from diffvision.data import load_data
from diffvision.data.deadleaves import dead_leaves, deadleaves, disc_radii


def test_disc_radii_follow_the_inverse_cube_law():
    """Kolmogorov-Smirnov against the exact CDF of density r^-3 on [r_min, r_max]. With a fixed
    seed the p-value is a fixed number; a sampler of another law (e.g. log-uniform radii,
    density r^-1) gives p < 1e-30 at this n, so the threshold 1e-3 separates them with a wide
    margin."""
    r_min, r_max, n = 2.0, 200.0, 20000
    r = disc_radii(np.random.default_rng(0), n, r_min, r_max)
    assert r.min() >= r_min and r.max() <= r_max

    def cdf(x):
        return (r_min**-2 - np.asarray(x) ** -2) / (r_min**-2 - r_max**-2)

    assert kstest(r, cdf).pvalue > 1e-3
    # The test has power: the r^-1 law (log-uniform radii) is rejected outright.
    log_uniform = np.exp(np.random.default_rng(0).uniform(np.log(r_min), np.log(r_max), n))
    assert kstest(log_uniform, cdf).pvalue < 1e-30


def test_canvas_is_covered_by_palette_colours():
    """Without blur, every pixel away from a disc edge holds one palette colour exactly (each
    pixel is covered, none falls back to the mean colour), and the larger discs make flat
    regions: neighbouring pixels mostly agree."""
    palette = np.array([[10, 200, 30], [250, 5, 120], [60, 60, 240]], dtype=np.uint8)
    a = dead_leaves(np.random.default_rng(1), palette, 64, blur=0.0)
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    exact = (a[:, :, None, :] == palette[None, None]).all(-1).any(-1)
    assert exact.mean() > 0.6
    mean_colour = np.rint(palette.mean(0)).astype(np.uint8)
    assert not (a == mean_colour).all(-1).any()
    same = (a[:, 1:] == a[:, :-1]).all(-1).mean()
    assert same > 0.5
    # Blur softens edges: fewer exact palette pixels, same mean colour to within rounding.
    b = dead_leaves(np.random.default_rng(1), palette, 64, blur=1.5)
    assert (b[:, :, None, :] == palette[None, None]).all(-1).any(-1).mean() < exact.mean()
    assert np.abs(b.astype(float).mean((0, 1)) - a.astype(float).mean((0, 1))).max() < 3


def test_patches_are_deterministic_and_shaped():
    palette = np.array([[0], [128], [255]], dtype=np.uint8)
    a = deadleaves(16, 20, channels=1, seed=2, palette=palette, per_canvas=8)
    b = deadleaves(16, 20, channels=1, seed=2, palette=palette, per_canvas=8)
    assert a.images.shape == (20, 1, 16, 16) and a.images.dtype == torch.uint8
    assert torch.equal(a.images, b.images)
    with pytest.raises(ValueError, match="palette"):
        deadleaves(16, 4, channels=3, palette=palette)
    with pytest.raises(ValueError, match="size"):
        deadleaves(1000, 4)


def test_pooled_spec(tmp_path):
    pooled = load_data("faces+digits", 16)
    faces, digits = load_data("faces", 16), load_data("digits", 16)
    assert len(pooled) == len(faces) + len(digits) and pooled.size == 16 and pooled.channels == 1
    assert torch.equal(pooled.images[len(faces) :], digits.images)
    assert pooled.labels is None and pooled.name == "faces+digits"
    with pytest.raises(ValueError, match="share channels and size"):
        load_data("faces+shapes", 16)
    # one set named twice (its images would count double) is refused, a folder by any path
    (tmp_path / "mine").mkdir()
    for spec, both in (("faces+digits+faces", "faces"),
                       (f"{tmp_path}/mine+shapes+{tmp_path}/./mine/", "mine and")):  # fmt: skip
        with pytest.raises(ValueError, match=f"names one set twice \\(.*{both}"):
            load_data(spec, 16)
    # run.json keeps a pooled spec with its folders made absolute, so --resume works elsewhere
    from diffvision.cli.train import _absolute_spec

    spec = _absolute_spec("deadleaves+" + str(tmp_path / "mine"))
    assert spec == "deadleaves+" + str((tmp_path / "mine").resolve())
