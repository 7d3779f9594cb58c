"""The built-in ``photos`` data set: the held-out photographs never reach training."""

import hashlib

import numpy as np
import pytest
import torch

from diffvision.data.photos import (
    HELD_OUT,
    held_out_photos,
    photo_pixels,
    photos,
    training_photos,
)


def _digest(a: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(a).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def train_set():
    return training_photos()


def test_held_out_photos_are_not_training_photos(train_set):
    assert {"camera", "astronaut", "coffee", "chelsea"} <= set(HELD_OUT)
    assert not set(train_set) & {*HELD_OUT, "cat"}
    held = held_out_photos(3)
    for bad in (0, 2):  # were RGB
        with pytest.raises(ValueError, match=f"channels must be 1 or 3, not {bad}"):
            held_out_photos(bad)
    assert set(held) == set(HELD_OUT)
    held_digests = {_digest(h.permute(1, 2, 0).numpy()) for h in held.values()}
    # Compare pixels too, not only names (chelsea and cat are the same picture).
    assert not held_digests & {_digest(a) for a in train_set.values()}
    for a in train_set.values():
        assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3
    # Natural colour photographs are part of the training mix, not only textures and scans.
    colour = [k for k, a in train_set.items() if np.ptp(a.astype(int), axis=2).mean() > 10]
    assert len(colour) >= 5, colour


def test_photo_pixels_are_pixels_of_the_training_photos(train_set):
    """The dead-leaves palette: each colour is one pixel of a training photo (in luma for one
    channel, ITU-R 601 rounded), the same for the same seed."""
    for channels in (3, 1):
        pixels = photo_pixels(10, channels=channels, seed=5)
        assert pixels.shape == (10, channels) and pixels.dtype == np.uint8
        assert np.array_equal(pixels, photo_pixels(10, channels=channels, seed=5))
        assert not np.array_equal(pixels, photo_pixels(10, channels=channels, seed=6))
        pictures = [a.astype(np.float64) for a in train_set.values()]
        if channels == 1:
            pictures = [np.rint(a @ [0.299, 0.587, 0.114])[..., None] for a in pictures]
        for colour in pixels:
            assert any((a == colour).all(-1).any() for a in pictures), colour


def test_patches_are_deterministic_and_shaped():
    a = photos(size=16, n=24, seed=3)
    b = photos(size=16, n=24, seed=3)
    c = photos(size=16, n=24, seed=4)
    assert a.images.shape == (24, 3, 16, 16) and a.images.dtype == torch.uint8
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images)
    grey = photos(size=16, n=8, channels=1, seed=3)
    assert grey.images.shape == (8, 1, 16, 16)


def test_test_split_comes_from_the_held_out_photos():
    test = photos(size=8, n=6, seed=0, split="test")
    held = [h for h in held_out_photos(3).values()]
    for patch in test.images:
        found = False
        for h in held:  # the patch occurs somewhere in one of the held-out photos
            windows = h.unfold(1, 8, 1).unfold(2, 8, 1)  # C x H' x W' x 8 x 8
            if (windows == patch[:, None, None]).all(0).all(-1).all(-1).any():
                found = True
                break
        assert found


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        photos(split="validation")
    with pytest.raises(ValueError, match="channels"):
        photos(channels=2)
    # a patch larger than the photos: named with the largest size there is (was numpy's "high <=
    # 0" from drawing among no photos, or a position in none)
    largest = max(min(image.shape[:2]) for image in training_photos().values())
    with pytest.raises(ValueError, match=f"larger than every training photo .*is {largest} px"):
        photos(largest + 1, 2)
    assert photos(largest, 2).images.shape == (2, 3, largest, largest)
    smallest = min(min(image.shape[1:]) for image in held_out_photos(3).values())
    with pytest.raises(ValueError, match=f"larger than a held-out photo \\({smallest} px"):
        photos(smallest + 1, 2, split="test")
    assert photos(smallest, 2, split="test").images.shape == (2, 3, smallest, smallest)
