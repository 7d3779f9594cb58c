import gzip
import re
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffvision.data import digits, faces, load_data, load_image_folder, mnist, read_idx, shapes
from diffvision.data.dataset import ImageData

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def write(path: Path, size=(20, 12), mode="RGB", value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value, 0, 255 - value)).save(path)


def test_folder_with_classes(tmp_path):
    write(tmp_path / "cats" / "a.png")
    write(tmp_path / "cats" / "deep" / "b.jpg")
    write(tmp_path / "dogs" / "c.bmp")
    write(tmp_path / "dogs" / "d.webp")
    write(tmp_path / "dogs" / "e.tiff")
    (tmp_path / "dogs" / "notes.txt").write_text("not an image")
    data = load_image_folder(tmp_path, 8)
    assert len(data) == 5 and data.channels == 3 and data.size == 8
    assert data.class_names == ["cats", "dogs"] and data.labels.tolist() == [0, 0, 1, 1, 1]
    image, _ = data[0]
    assert image.shape == (3, 8, 8) and -1 <= float(image.min()) and float(image.max()) <= 1
    # Red channel 128 -> 128/127.5 - 1; centre crop keeps the flat colour.
    assert torch.allclose(image[0], torch.full((8, 8), 128 / 127.5 - 1), atol=2 / 255)


def test_grayscale_detection_and_flat_folder(tmp_path):
    write(tmp_path / "a.png", mode="L", value=0)
    write(tmp_path / "b.png", mode="L", value=255)
    write(tmp_path / "c.png", size=(6, 40), mode="L")  # short side 6
    data = load_image_folder(tmp_path, 4)
    assert data.channels == 1 and data.labels is None and data.upscaled == 0
    assert [load_image_folder(tmp_path, s).upscaled for s in (6, 7, 13)] == [0, 1, 3]
    assert float(data[1][0].min()) == 1.0 and len(data) == 3


def test_a_folder_is_read_at_its_images_own_size_where_they_share_one(tmp_path):
    """Without a size, a folder is read at its images' shorter side where every image has the
    same one (``train --data FOLDER`` said "default: the data's" and then asked for --size);
    where they differ, the error gives the range and asks for the size."""
    write(tmp_path / "a.png", size=(20, 12))
    write(tmp_path / "sub" / "b.png", size=(12, 30))
    data = load_data(str(tmp_path))
    assert data.size == 12 and data.upscaled == 0
    assert torch.equal(data.images, load_image_folder(tmp_path, 12).images)
    write(tmp_path / "c.png", size=(16, 13))
    with pytest.raises(ValueError, match=r"have shorter sides from 12 to 13 px: give the size"):
        load_image_folder(tmp_path)


def test_lazy_decoding_when_over_the_cache_limit(tmp_path):
    for i in range(3):
        write(tmp_path / f"{i}.png", value=40 * i)
    cached = load_image_folder(tmp_path, 6)
    lazy = load_image_folder(tmp_path, 6, cache_limit_bytes=10)
    assert isinstance(lazy.images, list)
    idx = torch.tensor([2, 0])
    assert torch.equal(lazy.batch(idx)[0], cached.batch(idx)[0])


def test_a_folder_is_decoded_once(tmp_path, monkeypatch):
    """Channels, sizes and white level come from one pass over the headers; each 8-bit image is
    decoded once, by the resize (a grey folder was decoded twice: once to learn its mode). Over
    the cache limit, every file is decoded once more at load time, so that an unreadable one is
    named before training, not during it."""
    from PIL import Image as PILImage

    for i in range(3):
        write(tmp_path / f"{i}.png", mode="L", value=40 * i)
    decodes = []
    real = PILImage._getdecoder
    monkeypatch.setattr(PILImage, "_getdecoder", lambda *a: decodes.append(a) or real(*a))
    assert load_image_folder(tmp_path, 6).channels == 1 and len(decodes) == 3
    load_image_folder(tmp_path, 6, cache_limit_bytes=10)
    assert len(decodes) == 6
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "whole.png")
    whole = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "whole.png").unlink()
    (tmp_path / "broken.png").write_bytes(whole[: len(whole) // 2])  # its header reads
    with pytest.raises(ValueError, match=r"broken\.png"):
        load_image_folder(tmp_path, 6, cache_limit_bytes=10)


def test_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_image_folder(tmp_path / "missing", 8)
    with pytest.raises(ValueError, match="no images"):
        load_image_folder(tmp_path, 8)
    write(tmp_path / "ok.png")
    with pytest.raises(ValueError, match=r"ok\.png is a file: give the folder of training images"):
        load_image_folder(tmp_path / "ok.png", 8)
    first, *rest = (Image.fromarray(np.full((6, 8), v, np.uint8)) for v in (0, 100, 200))
    first.save(tmp_path / "stack.tif", save_all=True, append_images=rest)  # a stack will do
    stack = load_image_folder(tmp_path / "stack.tif", 6)
    assert len(stack) == 3 and stack.stacked == 1 and stack.labels is None
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match=r"broken\.png"):
        load_image_folder(tmp_path, 8)


def test_16_bit_images_keep_their_scale(tmp_path):
    # PIL's convert("L") clips 16-bit values at 255 (a mid-grey 16-bit image turns white); the
    # readers divide by 65535 instead. Values chosen so that clipping and scaling differ.
    from diffvision.io.images import read_image, save_16_bit

    ramp = np.linspace(0, 65535, 48, dtype=np.float64).round().astype(np.uint16).reshape(6, 8)
    Image.fromarray(ramp).save(tmp_path / "ramp.png")  # decodes as "I;16"
    Image.fromarray(ramp.astype(np.int32)).save(tmp_path / "ramp.tif")  # decodes as "I"
    for name in ("ramp.png", "ramp.tif"):
        x = read_image(tmp_path / name, 3)
        assert x.shape == (1, 3, 6, 8) and torch.equal(x[0, 0], x[0, 2])
        # float32 division and rescaling: a few ulp of 1
        np.testing.assert_allclose(x[0, 1].double().numpy(), ramp / 65535 * 2 - 1, atol=1e-6)
        save_16_bit(tmp_path / "back.png", x[0, :1])
        assert np.array_equal(np.asarray(Image.open(tmp_path / "back.png")), ramp)  # exactly
    data = load_image_folder(tmp_path, 6)  # 6 x 8: no resize, the central 6 columns
    assert data.channels == 1 and data.dtype == torch.uint16  # held at 16 bits: exactly
    for i in range(2):
        np.testing.assert_allclose(data[i][0][0].double(), ramp[:, 1:7] / 65535 * 2 - 1, atol=1e-6)


def test_a_folder_of_16_bit_files_keeps_their_levels_in_memory(tmp_path):
    """A set with 16-bit files is held at 16 bits: a dim 12-bit image (31-93 of white 4095,
    beside one bright pixel) keeps its 63 levels, which 8 bits rounded to 5 (and so trained a
    model on a posterised image). Its 8-bit files are widened exactly; pooled with an 8-bit set,
    the set is held at 16 bits; decoded on access alike."""
    from diffvision.io.images import read_image

    dim = (np.arange(64, dtype=np.uint16) + 30).reshape(8, 8)
    dim[0, 0] = 4000  # the folder's top: white level 4095
    (tmp_path / "deep").mkdir()
    Image.fromarray(dim).save(tmp_path / "deep" / "dim.png")
    write(tmp_path / "deep" / "eight.png", size=(8, 8), mode="L")
    for limit in (4 << 30, 0):  # in memory, decoded on access
        data = load_image_folder(tmp_path / "deep", 8, cache_limit_bytes=limit)
        assert data.white_level == 4095 and data.dtype == torch.uint16
        for i, name in enumerate(("dim.png", "eight.png")):  # as restore reads each file
            exact = read_image(tmp_path / "deep" / name, 1, white=4095)[0]
            # held to 1/65535 of the range: half a level, 2 / 65535 / 2 on [-1, 1], + float32's
            assert (data[i][0] - exact).abs().max() <= 1 / 65535 + 1e-6, name
        assert len(torch.unique(data[0][0].flatten()[1:])) == 63  # 8 bits: 5 levels
    write(tmp_path / "a" / "x.png", size=(8, 8), mode="L", value=77)
    pooled = load_data(f"{tmp_path / 'deep'}+{tmp_path / 'a'}", 8)
    assert pooled.dtype == torch.uint16 and len(pooled) == 3
    assert torch.equal(pooled[2][0], load_image_folder(tmp_path / "a", 8)[0][0])  # exactly


def test_pooling_a_set_decoded_on_access_keeps_it_so(tmp_path):
    """A folder too large to hold is decoded on access; pooled with another set (``A+B``) it was
    decoded whole into memory, what the limit is there to prevent. The pooled set now decodes
    each image from its part when asked: the same images in the same order, 16-bit where a
    part is (the 8-bit part widened exactly); a batch takes each part's images together, as the
    part decodes a batch (its files side by side)."""
    from diffvision.data import _pooled

    for i, v in enumerate((10, 200)):
        write(tmp_path / "big" / f"{i}.png", size=(8, 8), mode="L", value=v)
    small = digits(8)
    pooled = _pooled([load_image_folder(tmp_path / "big", 8, cache_limit_bytes=0), small])
    whole = _pooled([load_image_folder(tmp_path / "big", 8), small])  # every part held
    assert pooled.decode is not None and not isinstance(pooled.images, torch.Tensor)
    assert whole.decode is None and len(pooled) == len(whole) == 2 + len(small)
    for i in (0, 1, 2, len(pooled) - 1):
        assert torch.equal(pooled[i][0], whole[i][0]), i
    lazy = load_image_folder(tmp_path / "big", 8, cache_limit_bytes=0)
    asked, real = [], lazy.decode_many
    lazy.decode_many = lambda items: asked.append(list(items)) or real(items)
    pooled = _pooled([lazy, small])
    order = torch.tensor([3, 1, 0, len(pooled) - 1, 1])  # a batch: its part's own way (threads)
    assert torch.equal(pooled.batch(order)[0], whole.batch(order)[0])
    assert asked == [[lazy.images[1], lazy.images[0], lazy.images[1]]]
    deep = np.full((8, 8), 3000, np.uint16)
    (tmp_path / "deep").mkdir()
    Image.fromarray(deep).save(tmp_path / "deep" / "d.png")
    pooled = _pooled([load_image_folder(tmp_path / "deep", 8, cache_limit_bytes=0), small])
    assert pooled.dtype == torch.uint16 and pooled.pixels(1).dtype == torch.uint16
    assert torch.equal(pooled[1][0], small[0][0])  # 8 bits widened: the same values


def test_32_bit_files_outside_16_bits_are_refused_by_name(tmp_path):
    """A 32-bit integer file (mode "I") holds signed values: one past 65535 or below 0 has no
    known white level. Image folders and single images refuse it in the same words, naming
    the file (a folder's negative file was "16-bit values are 0-65535, not -5", from the white
    level, with no file named)."""
    from diffvision.io.images import read_image

    for name, value in [("negative", -5), ("past", 70000)]:
        folder = tmp_path / name
        write(folder / "good.png")
        Image.fromarray(np.full((6, 8), value, np.int32)).save(folder / "wide.tif")
        message = f"cannot read image {folder / 'wide.tif'}: a 32-bit integer image outside 0-65535"
        with pytest.raises(ValueError, match=re.escape(message)):
            load_image_folder(folder, 6)
        with pytest.raises(ValueError, match="a 32-bit integer image outside 0-65535"):
            read_image(folder / "wide.tif", 1)
    mixed = np.array([[-1, 65535]], np.int32).repeat(6, 0)  # the white level alone missed it
    Image.fromarray(mixed).save(tmp_path / "negative" / "wide.tif")
    with pytest.raises(ValueError, match="outside 0-65535"):
        load_image_folder(tmp_path / "negative", 2)


def test_images_beside_class_folders_are_counted(tmp_path):
    """Two class sub-folders and an image beside them: no classes (every image must be in one),
    and the set counts the loose images (``loose``, which ``train`` says in a note); none where
    there is no second class folder, or labels are not wanted."""
    for name in ("a/1.png", "b/1.png", "b/2.png", "top.png"):
        write(tmp_path / "set" / name)
    data = load_image_folder(tmp_path / "set", 8)
    assert data.labels is None and data.loose == 1
    assert load_image_folder(tmp_path / "set", 8, labels=False).loose == 0
    (tmp_path / "set" / "top.png").unlink()
    data = load_image_folder(tmp_path / "set", 8)
    assert data.class_names == ["a", "b"] and data.loose == 0
    write(tmp_path / "one" / "a" / "1.png")
    write(tmp_path / "one" / "top.png")
    assert load_image_folder(tmp_path / "one", 8).loose == 0  # one folder is no classes


def test_every_frame_of_a_stack_is_an_image_and_stacks_are_counted(tmp_path):
    """Each frame of a TIFF stack (or an animation) in a folder is an image of the set, with its
    folder's label, in memory or decoded on access; a 16-bit stack's white level is found over
    all its frames. The set counts such files (``stacked``, which ``train`` says in a note);
    pooled sets add them."""
    frames = [np.full((6, 8), v, np.uint8) for v in (0, 100, 200)]
    for label in ("a", "b"):
        (tmp_path / "set" / label).mkdir(parents=True)
        write(tmp_path / "set" / label / "flat.png", size=(8, 6), mode="L", value=50)
    first, *rest = (Image.fromarray(f) for f in frames)
    first.save(tmp_path / "set" / "b" / "stack.tif", save_all=True, append_images=rest)
    for limit in (4 << 30, 0):  # in memory, decoded on access
        data = load_image_folder(tmp_path / "set", 6, cache_limit_bytes=limit)
        assert len(data) == 5 and data.stacked == 1 and data.upscaled == 0
        values = [round((float(data[i][0].mean()) + 1) * 127.5) for i in range(5)]
        assert values == [50, 50, 0, 100, 200]  # a/flat, b/flat, the stack's three frames
        assert data.labels.tolist() == [0, 1, 1, 1, 1]
    deep = [
        np.full((6, 8), v, np.uint16) for v in (10, 4000, 20)
    ]  # 12-bit values, the top in frame 1
    first, *rest = (Image.fromarray(f) for f in deep)
    (tmp_path / "deep").mkdir()
    first.save(tmp_path / "deep" / "stack.tif", save_all=True, append_images=rest)
    data = load_image_folder(tmp_path / "deep", 6)
    assert data.white_level == 4095 and len(data) == 3
    assert data.dtype == torch.uint16  # held at 16 bits, on the 0-65535 scale
    assert [int(data.pixels(i).to(torch.int32).max()) for i in range(3)] == [
        round(v / 4095 * 65535) for v in (10, 4000, 20)
    ]
    write(tmp_path / "c" / "flat.png", size=(8, 6), mode="L")
    assert load_image_folder(tmp_path / "c", 6).stacked == 0
    first, *rest = (Image.fromarray(f) for f in frames)  # an animated GIF is found and unrolled
    first.save(tmp_path / "c" / "moving.gif", save_all=True, append_images=rest)
    data = load_image_folder(tmp_path / "c", 6)
    assert len(data) == 4 and data.stacked == 1
    assert [int(data.pixels(i).max()) for i in (1, 2, 3)] == [0, 100, 200]
    pooled = f"{tmp_path / 'set'}+{tmp_path / 'c'}"  # one stack each
    assert load_data(pooled, 6, channels=1).stacked == 2


def test_a_stack_is_decoded_from_one_opening_frame_by_frame(tmp_path, monkeypatch):
    """``read_squares`` gives each frame as ``read_square`` does (8-bit, 16-bit grey, 48-bit
    colour), and a folder's stack is opened once for its headers and once for its pixels: an
    opening per frame walked the pages before it each time (quadratic in the stack's length)."""
    import cv2
    import PIL.Image

    from diffvision.data.transforms import read_square, read_squares

    rng = np.random.default_rng(1)
    rgb = [Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)) for _ in range(5)]
    rgb[0].save(tmp_path / "rgb.tif", save_all=True, append_images=rgb[1:])
    grey = [Image.fromarray(rng.integers(0, 65536, (10, 12), dtype=np.uint16)) for _ in range(3)]
    grey[0].save(tmp_path / "grey.tif", save_all=True, append_images=grey[1:])
    deep = [rng.integers(0, 65536, (10, 12, 3), dtype=np.uint16) for _ in range(3)]
    assert cv2.imwritemulti(str(tmp_path / "deep.tif"), deep)
    for name, frames in (("rgb.tif", 5), ("grey.tif", 3), ("deep.tif", 3)):
        for channels in (1, 3):
            squares = list(read_squares(tmp_path / name, 8, channels))
            assert len(squares) == frames
            for k, square in enumerate(squares):
                assert torch.equal(square, read_square(tmp_path / name, 8, channels, frame=k))
    (tmp_path / "set").mkdir()
    (tmp_path / "rgb.tif").rename(tmp_path / "set" / "rgb.tif")
    opened = []
    real_open = PIL.Image.open

    def counted(path, *args, **kwargs):
        opened.append(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(PIL.Image, "open", counted)
    data = load_image_folder(tmp_path / "set", 8)
    assert len(data) == 5 and len(opened) == 2, opened


def test_any_frame_of_a_stack_is_read_at_its_depth(tmp_path):
    """``read_image(..., frame=k)`` reads page k of a TIFF stack: 8-bit, 16-bit grey and 48-bit
    colour (OpenCV's reader, as for a single page); a frame past the last is refused by name;
    ``read_alpha`` reads a frame's transparency."""
    import cv2

    from diffvision.io.images import is_16_bit, read_alpha, read_image

    rng = np.random.default_rng(0)
    grey = rng.integers(0, 65536, (3, 6, 8), dtype=np.uint16)
    first, *rest = (Image.fromarray(page) for page in grey)
    first.save(tmp_path / "grey.tif", save_all=True, append_images=rest)
    small = [Image.fromarray((page >> 8).astype(np.uint8)) for page in grey]
    small[0].save(tmp_path / "small.tif", save_all=True, append_images=small[1:])
    rgb = rng.integers(0, 65536, (3, 6, 8, 3), dtype=np.uint16)
    assert cv2.imwritemulti(str(tmp_path / "rgb.tif"), [page[:, :, ::-1] for page in rgb])
    for k in range(3):
        x = read_image(tmp_path / "grey.tif", 1, frame=k)[0, 0].double().numpy()
        np.testing.assert_allclose(x, grey[k] / 65535 * 2 - 1, atol=1e-6)  # float32 rounding
        x = read_image(tmp_path / "small.tif", 1, frame=k)[0, 0].double().numpy()
        np.testing.assert_allclose(x, (grey[k] >> 8) / 255 * 2 - 1, atol=1e-6)
        x = read_image(tmp_path / "rgb.tif", 3, frame=k)[0].permute(1, 2, 0).double().numpy()
        np.testing.assert_allclose(x, rgb[k] / 65535 * 2 - 1, atol=1e-6)
        assert is_16_bit(tmp_path / "rgb.tif", k) and not is_16_bit(tmp_path / "small.tif", k)
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'rgb.tif'}: it holds 3 frames")):
        read_image(tmp_path / "rgb.tif", 3, frame=3)
    alphas = [np.full((4, 5, 4), 255, np.uint8), np.zeros((4, 5, 4), np.uint8)]
    alphas[1][0, 0, 3] = 255  # an animation whose second frame is transparent but one pixel
    first, second = (Image.fromarray(a, "RGBA") for a in alphas)
    first.save(tmp_path / "alpha.png", save_all=True, append_images=[second])
    assert float(read_alpha(tmp_path / "alpha.png").sum()) == 20
    assert float(read_alpha(tmp_path / "alpha.png", frame=1).sum()) == 1


def test_a_file_that_is_no_image_is_named_once(tmp_path):
    """Every reader says "cannot read ... PATH: why" with the path once: PIL's own message,
    "cannot identify image file 'PATH'", named it a second time."""
    from diffvision.io.images import read_alpha, read_image

    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    for read, start in [
        (lambda: read_image(broken, 1), "cannot read image"),
        (lambda: read_alpha(broken), "cannot read the transparency of"),
        (lambda: load_image_folder(tmp_path, 4), "cannot read image"),
    ]:
        with pytest.raises(
            ValueError, match=re.escape(f"{start} {broken}: cannot identify")
        ) as err:
            read()
        assert str(err.value).count(str(broken)) == 1, err.value


def test_white_level_of_12_bit_files(tmp_path):
    # A 12-bit camera's files hold 0-4095 in 16 bits: scaled by 65535 they would use 1/16 of
    # the range (16 grey levels once rounded to 8 bits). The folder's white level is found from
    # its largest value, recorded, and can be given.
    from diffvision.data.transforms import white_level_for
    from diffvision.io.images import read_image

    levels = [white_level_for(v) for v in (0, 255, 256, 3000, 4095, 4096, 65535)]
    assert levels == [255, 255, 511, 4095, 4095, 8191, 65535]
    with pytest.raises(ValueError, match="0-65535"):
        white_level_for(70000)
    ramp = np.linspace(0, 4095, 48).round().astype(np.uint16).reshape(6, 8)
    (tmp_path / "twelve").mkdir()
    Image.fromarray(ramp).save(tmp_path / "twelve" / "ramp.png")
    data = load_image_folder(tmp_path / "twelve", 6)
    assert data.white_level == 4095 and data.describe()["white_level"] == 4095
    sixteen_bit = ((data[0][0][0].double() + 1) * 32767.5).numpy()  # float32: 0.004 of a level
    np.testing.assert_allclose(sixteen_bit, ramp[:, 1:7] / 4095 * 65535, atol=0.5 + 1e-2)
    full = load_image_folder(tmp_path / "twelve", 6, white_level=65535)  # as before: dark
    assert (
        full.white_level == 65535 and int(full.images.to(torch.int32).max()) == ramp[:, 1:7].max()
    )
    x = read_image(tmp_path / "twelve" / "ramp.png", 1, white=2047)  # values above white clip
    np.testing.assert_allclose(x[0, 0].numpy(), np.minimum(ramp / 2047, 1) * 2 - 1, atol=1e-6)
    # 8-bit files have no white level; folders pooled with different ones need it given.
    write(tmp_path / "eight" / "a.png")
    assert "white_level" not in load_image_folder(tmp_path / "eight", 6).describe()
    given = load_image_folder(tmp_path / "eight", 6, white_level=4095)  # was recorded as 4095
    assert given.white_level is None and "white_level" not in given.describe()
    wide = np.full((6, 8), 40000, np.uint16)
    (tmp_path / "sixteen").mkdir()
    Image.fromarray(wide).save(tmp_path / "sixteen" / "w.png")
    pooled = f"{tmp_path / 'twelve'}+{tmp_path / 'sixteen'}"
    with pytest.raises(ValueError, match=r"different white levels \[4095, 65535\]"):
        load_data(pooled, 6)
    assert load_data(pooled, 6, white_level=65535).white_level == 65535
    assert load_data(pooled, 7, white_level=65535).upscaled == 2  # each 6 x 8: counts add


def test_exif_orientation_is_applied(tmp_path):
    # Phones store a portrait photo sideways with EXIF orientation 6 (rotate 90 degrees
    # clockwise to show); read as stored, it would be restored or trained on lying on its side.
    from diffvision.io.images import read_image

    stored = np.zeros((10, 20), np.uint8)
    stored[:, :10] = 255  # left half white as stored: the top half as shown
    exif = Image.Exif()
    exif[0x0112] = 6  # the Orientation tag
    (tmp_path / "f").mkdir()
    Image.fromarray(stored).save(tmp_path / "f" / "phone.png", exif=exif)
    Image.fromarray(stored.astype(np.uint16) * 257).save(tmp_path / "deep.png", exif=exif)
    for name in ("f/phone.png", "deep.png"):
        x = read_image(tmp_path / name, 1)[0, 0]
        assert x.shape == (20, 10) and (x[:10] == 1).all() and (x[10:] == -1).all()
    square = load_image_folder(tmp_path / "f", 10).images[0, 0]  # the central 10 rows
    assert (square[:5] == 255).all() and (square[5:] == 0).all()


def with_orientation(png: Path, orientation: int) -> None:
    """Give a PNG written by OpenCV (which writes no EXIF) an EXIF orientation: an eXIf chunk
    after IHDR (PNG 1.5), holding the TIFF-form EXIF without its "Exif\\0\\0" prefix."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = exif.tobytes()[6:]
    chunk = len(data).to_bytes(4, "big") + b"eXIf" + data
    chunk += zlib.crc32(b"eXIf" + data).to_bytes(4, "big")
    raw = png.read_bytes()
    end_of_ihdr = 8 + 4 + 4 + 13 + 4  # signature, length, type, IHDR data, CRC
    png.write_bytes(raw[:end_of_ihdr] + chunk + raw[end_of_ihdr:])


def test_orientations_match_pil():
    from PIL import ImageOps

    from diffvision.data.transforms import ORIENT

    stored = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    for orientation in range(1, 9):
        image = Image.fromarray(stored)
        exif = image.getexif()
        exif[0x0112] = orientation
        image.info["exif"] = exif.tobytes()
        shown = np.asarray(ImageOps.exif_transpose(image))
        assert np.array_equal(ORIENT[orientation](stored), shown), orientation


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_large_jpegs_are_read_from_a_reduced_decode(tmp_path, monkeypatch, orientation):
    """A JPEG read at a small size is decoded at libjpeg's reduced scale (1/2 to 1/8, 4-7x
    faster for a phone photo). Reference: the exact antialiased bicubic resize of the full
    decode, turned upright and centre-cropped. The full decode's reduce-then-bicubic
    (:func:`resize_center_crop`, what every other file gets) is 46-55 dB from it on these
    photos; the drafted read must be as close, to 2 dB (measured: -1.5 to +2.3; the
    decoding is deterministic). A JPEG without 2x to gain is read as before, bit for bit."""
    import skimage.data
    from PIL import ImageOps, JpegImagePlugin

    from diffvision.data.transforms import read_square, resize_center_crop, short_side_to

    drafted = []
    real_draft = JpegImagePlugin.JpegImageFile.draft

    def counted(self, mode, size):
        result = real_draft(self, mode, size)
        drafted.append(result is not None)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", counted)

    def psnr(a, b):
        return 10 * np.log10(255**2 / np.mean((a.astype(float) - b.astype(float)) ** 2))

    exif = Image.Exif()
    exif[0x0112] = orientation
    for name, times in (("coffee", 5), ("chelsea", 6)):  # 600 x 400 and 451 x 300
        pixels = getattr(skimage.data, name)()
        big = Image.fromarray(pixels).resize(
            (pixels.shape[1] * times + 5, pixels.shape[0] * times + 3), Image.Resampling.LANCZOS
        )  # odd sizes: partial 8 x 8 blocks at the edges
        path = tmp_path / f"{name}.jpg"
        big.save(path, quality=92, exif=exif.tobytes())
        for size, channels in ((32, 3), (64, 1)):
            mode = "L" if channels == 1 else "RGB"
            with Image.open(path) as image:
                upright = ImageOps.exif_transpose(image).convert(mode)
            new = short_side_to(*upright.size, size)
            left, top = (new[0] - size) // 2, (new[1] - size) // 2
            exact = np.asarray(
                upright.resize(new, Image.Resampling.BICUBIC).crop(
                    (left, top, left + size, top + size)
                )
            )
            full = np.asarray(resize_center_crop(upright, size))
            drafted.clear()
            got = read_square(path, size, channels).permute(1, 2, 0).numpy()
            got = got[:, :, 0] if channels == 1 else got
            assert drafted == [True], (name, size)
            assert psnr(got, exact) >= psnr(full, exact) - 2, (name, size, psnr(got, exact))
    small = tmp_path / "small.jpg"  # 300 px at 64: less than 2x to gain, not drafted
    Image.fromarray(skimage.data.chelsea()).save(small, quality=92, exif=exif.tobytes())
    with Image.open(small) as image:
        before = np.asarray(resize_center_crop(ImageOps.exif_transpose(image).convert("RGB"), 64))
    assert np.array_equal(read_square(small, 64, 3).permute(1, 2, 0).numpy(), before)


def test_16_bit_colour_files_are_read_at_depth(tmp_path):
    # PIL decodes 48- and 64-bit PNG and TIFF files to 8 bits per channel (the low byte lost);
    # they are read by OpenCV instead, upright, and written back at 16 bits.
    import cv2

    from diffvision.io.images import read_image, save_16_bit

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 65536, (6, 8, 3), dtype=np.uint16)
    for name in ("c.png", "c.tif"):
        cv2.imwrite(str(tmp_path / name), rgb[:, :, ::-1])  # OpenCV writes BGR
        x = read_image(tmp_path / name, 3)[0].permute(1, 2, 0).double().numpy()
        np.testing.assert_allclose(x, rgb / 65535 * 2 - 1, atol=1e-6)  # float32 rounding
    rgba = np.concatenate([rgb, np.full((6, 8, 1), 65535, np.uint16)], 2)
    cv2.imwrite(str(tmp_path / "a.png"), rgba[:, :, [2, 1, 0, 3]])
    assert torch.equal(read_image(tmp_path / "a.png", 3), read_image(tmp_path / "c.png", 3))
    grey = read_image(tmp_path / "c.png", 1)[0, 0].double().numpy()  # luma, as PIL's "L"
    luma = rgb @ np.array([0.299, 0.587, 0.114]) / 65535 * 2 - 1
    np.testing.assert_allclose(grey, luma, atol=1e-5)
    with_orientation(tmp_path / "c.png", 6)  # shown turned 90 degrees clockwise
    turned = read_image(tmp_path / "c.png", 3)[0].permute(1, 2, 0).double().numpy()
    np.testing.assert_allclose(turned, np.rot90(rgb, -1) / 65535 * 2 - 1, atol=1e-6)
    save_16_bit(tmp_path / "back.png", read_image(tmp_path / "c.tif", 3)[0])
    assert np.array_equal(
        cv2.imread(str(tmp_path / "back.png"), cv2.IMREAD_UNCHANGED), rgb[:, :, ::-1]
    )
    # A folder of 12-bit colour files: white level 4095, the whole 16-bit range used.
    (tmp_path / "twelve").mkdir()
    cv2.imwrite(str(tmp_path / "twelve" / "t.png"), (rgb >> 4)[:, :, ::-1])
    data = load_image_folder(tmp_path / "twelve", 6)
    assert data.channels == 3 and data.white_level == 4095 and data.dtype == torch.uint16
    held = data.images[0].permute(1, 2, 0).double().numpy()
    np.testing.assert_allclose(held, (rgb >> 4)[:, 1:7] / 4095 * 65535, atol=0.5 + 1e-4)


def test_float_images_are_refused_by_name(tmp_path):
    from diffvision.io.images import read_image

    Image.fromarray(np.full((6, 8), 0.5, np.float32)).save(tmp_path / "float.tif")
    with pytest.raises(ValueError, match=r"float\.tif.*floating-point"):
        read_image(tmp_path / "float.tif", 1)
    with pytest.raises(ValueError, match=r"float\.tif.*floating-point"):
        load_image_folder(tmp_path, 6)


def test_images_past_pillows_bomb_limit_are_refused_by_name(tmp_path, monkeypatch):
    """A file whose header claims more than twice ``Image.MAX_IMAGE_PIXELS`` (a decompression
    bomb, by Pillow's guard; 400 M pixels by default) is an unreadable image named in a
    ValueError, for the commands' one line, not Pillow's own error type and a traceback. The
    limit lowered to 100 pixels stands in for a huge file: 20 x 12 is 240."""
    from diffvision.io.images import read_alpha, read_image

    write(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    for read in (lambda p: read_image(p, 3), read_alpha, lambda p: load_image_folder(p.parent, 6)):
        with pytest.raises(ValueError, match=r"big\.png: Image size \(240 pixels\) exceeds"):
            read(tmp_path / "big.png")


def test_builtin_sets():
    d = digits()
    assert (len(d), d.channels, d.size, d.num_classes) == (1797, 1, 8, 10)
    assert digits(16).size == 16
    f = faces()
    assert (len(f), f.channels, f.size, f.num_classes) == (200, 1, 24, 0)
    s = shapes(16, n=50, seed=3)
    assert (len(s), s.channels, s.size, s.num_classes) == (50, 3, 16, 3)
    assert torch.equal(s.images, shapes(16, n=50, seed=3).images)
    assert not torch.equal(s.images, shapes(16, n=50, seed=4).images)
    # Boxes enclose exactly the mask.
    for i in range(5):
        ys, xs = torch.nonzero(s.masks[i], as_tuple=True)
        assert s.boxes[i].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    for spec in ("", "+"):  # Path("") is the working folder: it was searched for images
        with pytest.raises(ValueError, match=r"empty data spec|has an empty part"):
            load_data(spec, 8)
    for call, message in [  # were a RuntimeError from torch's resize and TypeErrors from numpy
        (lambda: digits(0), "size must be an integer >= 1, not 0"),
        (lambda: faces(2.5), "size must be an integer >= 1, not 2.5"),
        (lambda: shapes(4), "shapes size must be an integer >= 8, not 4"),
        (lambda: shapes(16, n=1.5), "n must be an integer >= 1, not 1.5"),
        (lambda: shapes(16, n=2, seed=1.5), "seed must be an integer >= 0, not 1.5"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            call()


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_mnist_reader_on_files_we_make(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
    (tmp_path / "train-labels.idx1-ubyte").write_bytes(idx_bytes(labels))
    data = mnist(tmp_path)
    assert len(data) == 5 and data.labels.tolist() == [3, 1, 4, 1, 5]
    assert torch.equal(data.images[:, 0], torch.from_numpy(images))
    assert np.array_equal(read_idx(tmp_path / "train-labels.idx1-ubyte"), labels)
    (tmp_path / "bad-idx").write_bytes(b"\x01\x02")
    with pytest.raises(ValueError, match="IDX"):
        read_idx(tmp_path / "bad-idx")
    with pytest.raises(ValueError, match="t10k-images"):
        mnist(tmp_path, split="test")
    with pytest.raises(ValueError, match="split must be train or test, not 'val'"):
        mnist(tmp_path, split="val")  # was a KeyError


@pytest.mark.skipif(not MNIST.is_dir(), reason="MNIST not present in ../shared/data/mnist")
def test_real_mnist():
    data = load_data(f"mnist:{MNIST}")
    assert (len(data), data.size, data.num_classes) == (60000, 28, 10)
    assert torch.bincount(data.labels).min() > 5000


def test_load_data_errors():
    with pytest.raises(ValueError, match="neither a built-in"):
        load_data("cifar")
    with pytest.raises(ValueError, match="the data spec must be a name or a path, not None"):
        load_data(None)  # an AttributeError from .strip()
    with pytest.raises(ValueError, match="neither a built-in"):  # a Path is a folder's spec
        load_data(Path("no-such-folder"))
    with pytest.raises(ValueError, match="mnist:FOLDER"):
        load_data("mnist")
    # a size that is not a whole positive number failed inside the resize (RuntimeError,
    # TypeError); channels and white levels the loaders cannot make were let through
    for size in (0, -8, 1.5, float("nan")):
        with pytest.raises(ValueError, match=f"size must be an integer >= 1, not {size}"):
            load_data("digits", size)
    with pytest.raises(ValueError, match=r"channels must be 1 \(grey\) or 3 \(RGB\), not 2"):
        load_data("digits", 8, channels=2)
    with pytest.raises(ValueError, match="white level of 16-bit images is 1-65535, not 0"):
        load_data("digits", 8, white_level=0)


def test_a_size_far_too_large_is_refused_before_any_work(tmp_path):
    """The data sets made in memory check that their images fit before making them (a size of
    1e20 was a TypeError from torch's resize, or numpy's 'Maximum allowed dimension exceeded';
    1e5 a failed allocation of 84 TB); a folder too large to keep is decoded lazily, and its
    training step is refused by the trainer's check (that check decoded an image at the size
    asked: minutes at 1e5 px, now none)."""
    from tests.cli_run import run_here

    for spec, what in [
        ("digits", "resizing 1797 images to 1 x {s} x {s} needs at least"),
        ("faces", "resizing 200 images to 1 x {s} x {s} needs at least"),
        ("shapes", "drawing 2000 shapes of {s} x {s} needs at least"),
    ]:
        for size in (100_000, 10**20):
            with pytest.raises(ValueError, match=what.format(s=size) + ".* GiB is free: lower"):
                load_data(spec, size)
    (tmp_path / "images").mkdir()
    Image.new("RGB", (12, 10)).save(tmp_path / "images" / "a.png")
    out = tmp_path / "run"
    bad = run_here("train", "--data", str(tmp_path / "images"), "--size", "100000",
                   "--preset", "tiny", "--steps", "1", "--batch", "4", "--out", str(out),
                   "--quiet")  # fmt: skip
    assert bad.returncode == 2, bad.stderr
    assert "a training step at 4 images of 100000 x 100000 per process needs at least" in (
        bad.stderr
    )


def test_image_data_and_train_check_what_they_are_given(tmp_path):
    """``ImageData`` of float images (say in [0, 1]) read them as 0..255, so all but black,
    without a word; of another shape than its channels and size, or with labels of another
    count, it failed later or never. ``train`` of a tensor was an AttributeError from inside."""
    from diffvision.train import TrainConfig, train

    with pytest.raises(
        ValueError,
        match=r"uint8 N x 1 x 8 x 8 tensor \(0..255; uint16, 0..65535\), not torch.float32",
    ):
        ImageData(torch.rand(4, 1, 8, 8), channels=1, size=8)
    with pytest.raises(ValueError, match=r"uint8 N x 3 x 8 x 8 tensor .* shape \(4, 1, 8, 8\)"):
        ImageData(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), channels=3, size=8)
    white = torch.full((2, 1, 8, 8), 65535, dtype=torch.int32).to(torch.uint16)
    held = ImageData(white, channels=1, size=8)  # 16 bits: white is 65535
    assert held.dtype == torch.uint16 and torch.equal(held[0][0], torch.ones(1, 8, 8))
    assert torch.equal(held.batch(torch.tensor([1]))[0], torch.ones(1, 1, 8, 8))
    with pytest.raises(ValueError, match=r"decoded as uint8 or uint16, not torch\.float32"):
        ImageData(["a.png"], channels=1, size=8, decode=print, dtype=torch.float32)
    with pytest.raises(ValueError, match="3 labels for 4 images"):
        ImageData(
            torch.zeros(4, 1, 8, 8, dtype=torch.uint8), channels=1, size=8, labels=torch.zeros(3)
        )
    with pytest.raises(TypeError, match=r"data is an ImageData .* not a Tensor"):
        train(
            TrainConfig(preset="tiny", steps=1, batch=2), torch.rand(4, 1, 8, 8), tmp_path / "run"
        )
    assert not (tmp_path / "run").exists()


def test_a_stack_decoded_on_access_is_opened_once(tmp_path, monkeypatch):
    """A stack in a set too large to hold is decoded on access, frame by frame in any order:
    opened for each, its pages were walked to find its length on every read (4.3 s a frame of
    a stack of 20,000 pages here). The set holds it open while it lives (one opening for any
    number of frames, each the same as held in memory) and lets it go when collected."""
    import gc

    from diffvision.data import transforms

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 4095, (6, 7)).astype(np.uint16) for _ in range(5)]
    first, *rest = (Image.fromarray(f) for f in frames)
    first.save(tmp_path / "stack.tif", save_all=True, append_images=rest)
    write(tmp_path / "flat.png", size=(7, 6), mode="L", value=50)
    held = load_image_folder(tmp_path, 6)
    lazy = load_image_folder(tmp_path, 6, cache_limit_bytes=0)
    opened, real = [], Image.open

    def counting(path, *args, **kwargs):
        opened.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(Image, "open", counting)
    order = [4, 1, 5, 0, 3, 0, 2, 4, 1]  # 0: flat.png; 1-5: the stack's frames
    for i in order:
        assert torch.equal(lazy.pixels(i), held.pixels(i))
    assert sorted(opened) == ["flat.png"] * 2 + ["stack.tif"]  # an image: opened each time
    del lazy
    gc.collect()
    assert not transforms._held()[0]  # let go


def test_a_batch_decoded_on_access_decodes_its_files_side_by_side(tmp_path, monkeypatch):
    """A batch of a set decoded on access decodes its files on several threads (1.6 to 1.9x
    faster on this project's 2-core machine: 64 JPEGs at 128 px), each image the same as held
    in memory; a stack's frames are decoded on the calling thread, as the one PIL image of it
    held open is not to be read from two threads at once."""
    import threading

    from diffvision.data import folder

    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (9, 8, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    frames = [Image.fromarray(rng.integers(0, 256, (9, 8, 3), dtype=np.uint8)) for _ in range(3)]
    frames[0].save(tmp_path / "stack.tif", save_all=True, append_images=frames[1:])
    held = load_image_folder(tmp_path, 8)
    lazy = load_image_folder(tmp_path, 8, cache_limit_bytes=0)
    threads, real = {}, folder.read_square

    def noting(path, *args):
        threads.setdefault(Path(path).name, set()).add(threading.get_ident())
        return real(path, *args)

    monkeypatch.setattr(folder, "read_square", noting)
    order = torch.tensor([7, 0, 8, 3, 1, 6, 2, 5, 4, 8, 0])  # 6-8: the stack's frames
    images, _ = lazy.batch(order)
    assert torch.equal(images, held.batch(order)[0])
    here = threading.get_ident()
    assert threads.pop("stack.tif") == {here} and sorted(threads) == [f"{i}.png" for i in range(6)]
    assert all(here not in ids for ids in threads.values())  # the files: on the decode threads
    (tmp_path / "0.png").write_bytes(b"not an image")  # an error on a thread is raised here
    with pytest.raises(ValueError, match=r"cannot read image .*0\.png"):
        lazy.batch(torch.tensor([1, 0]))


def test_a_folder_is_read_side_by_side_and_held_files_are_each_threads_own(tmp_path, monkeypatch):
    """An image folder's files are read (headers, then images) on several threads, each file
    on one (128 JPEGs at 128 px: 0.22-0.25 s against 0.39-0.49 s one by one on this project's
    2-core machine): the set is the one read on one thread. What ``keep_open`` holds is the
    holding thread's own (a PIL image is not to be read from two threads at once: one file
    found twice in a folder, through a link, was read by two threads from one image), and a
    forked process (a DataLoader's worker) starts with none: the two shared the file's offset."""
    import multiprocessing
    import threading

    from diffvision.data import folder, transforms

    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 65535, (9, 8), dtype=np.uint16)).save(tmp_path / f"{i}.png")
    frames = [Image.fromarray(rng.integers(0, 65535, (9, 8), dtype=np.uint16)) for _ in range(3)]
    frames[0].save(tmp_path / "stack.tif", save_all=True, append_images=frames[1:])
    monkeypatch.setattr(folder, "_DECODERS", None)
    monkeypatch.setattr(folder, "DECODE_THREADS", 1)
    alone = load_image_folder(tmp_path, 8)
    threads, real = set(), folder.read_squares

    def noting(*args):
        threads.add(threading.get_ident())
        return real(*args)

    monkeypatch.setattr(folder, "read_squares", noting)
    monkeypatch.setattr(folder, "_DECODERS", None)
    monkeypatch.setattr(folder, "DECODE_THREADS", 8)
    monkeypatch.setattr(folder.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    side = load_image_folder(tmp_path, 8)
    assert torch.equal(side.images, alone.images) and side.white_level == alone.white_level
    assert threading.get_ident() not in threads and len(threads) >= 1
    seen = {}

    def other():
        with transforms.open_image(tmp_path / "stack.tif") as image:
            seen["other"] = image

    with transforms.keep_open(tmp_path / "stack.tif") as held:
        with transforms.open_image(tmp_path / "stack.tif") as image:
            assert image is held  # on this thread: the image held
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        assert seen["other"] is not held  # on another: its own
        with multiprocessing.get_context("fork").Pool(1) as pool:  # a DataLoader's worker
            assert pool.apply(_files_held) == 0  # the parent's are not read from there


def _files_held() -> int:
    """How many files :func:`keep_open` holds for this thread of this process."""
    from diffvision.data import transforms

    return len(transforms._held()[0])


def test_files_read_side_by_side_come_in_order_with_few_in_hand(monkeypatch):
    """``side_by_side`` gives each read in the order of the files, with at most ``IN_FLIGHT``
    files in hand (a folder of 400,000 files was as many tasks queued at once); an error comes
    where its file comes, and the reads queued after it are dropped."""
    import threading

    from diffvision.data import folder

    monkeypatch.setattr(folder, "IN_FLIGHT", 8)
    started, lock = [], threading.Lock()

    def read(i):
        with lock:
            started.append(i)
        if i == 30:
            raise ValueError("cannot read file 30")
        return i * i

    reads = folder.side_by_side(read, range(1000))
    assert next(reads) == 0 and len(started) <= 8  # 8 in hand when the first comes
    assert [next(reads) for _ in range(29)] == [i * i for i in range(1, 30)]
    with pytest.raises(ValueError, match="cannot read file 30"):
        next(reads)
    assert len(started) <= 30 + 8  # and no more


def test_a_held_16_bit_colour_stack_is_read_in_runs_of_pages(tmp_path, monkeypatch):
    """OpenCV (which reads 16-bit colour) finds a page by walking the pages before it on every
    call, so reading each frame of such a stack cost its length squared (1,000 pages of 64 x 64:
    about 20 s). Where the file is held open (``keep_open``: restore's stack INPUT; training's
    readers of a file's frames, ``read_squares`` and ``read_headers``), pages are read in runs
    (here of 16: ``DEEP_RUN_BYTES`` set so) and each frame is the same as read alone."""
    import cv2

    from diffvision.data import transforms
    from diffvision.data.folder import read_headers

    rng = np.random.default_rng(0)
    pages = [rng.integers(0, 65535, (6, 5, 3)).astype(np.uint16) for _ in range(40)]
    path = tmp_path / "deep.tif"
    assert cv2.imwritemulti(str(path), pages)
    alone = [transforms.read_unit_array(path, 3, frame=k) for k in range(40)]
    monkeypatch.setattr(transforms, "DEEP_RUN_BYTES", 16 * 6 * 5 * 8)
    starts, real = [], cv2.imreadmulti

    def counting(*args, **kwargs):
        starts.append(kwargs.get("start"))
        return real(*args, **kwargs)

    monkeypatch.setattr(cv2, "imreadmulti", counting)
    with transforms.keep_open(path):
        held = [transforms.read_unit_array(path, 3, frame=k) for k in range(40)]
    assert starts == [0, 16, 32]
    assert all(np.array_equal(a, b) for a, b in zip(alone, held, strict=True))
    starts.clear()
    assert len(list(transforms.read_squares(path, 4, 3))) == 40 and starts == [0, 16, 32]
    starts.clear()
    assert len(read_headers(path)) == 40 and starts == [0, 16, 32]
    assert not transforms._held()[1]  # let go with the file
    counts = []  # out of order (drawn at random), a page is read alone, not a run from it

    def counting_pages(*args, **kwargs):
        counts.append(kwargs.get("count"))
        return counting(*args, **kwargs)

    monkeypatch.setattr(cv2, "imreadmulti", counting_pages)
    starts.clear()
    with transforms.keep_open(path):
        drawn = [transforms.read_unit_array(path, 3, frame=k) for k in (30, 5, 17, 18, 19)]
    assert starts == [30, 5, 17, 18] and counts == [1, 1, 1, 16]  # 18 on from 17: a run
    assert all(np.array_equal(alone[k], a) for k, a in zip((30, 5, 17, 18, 19), drawn, strict=True))
