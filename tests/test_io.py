import json
import os
import re

import numpy as np
import pytest
import torch
from PIL import Image

import diffvision
from diffvision.denoiser import Denoiser
from diffvision.io import make_grid, model_config, read_config, save_grid, save_model_folder
from diffvision.io.atomic import write_whole
from diffvision.io.model_folder import check_model_config, parameter_count
from diffvision.nets import build_unet
from diffvision.process import EDM


def make_folder(path, **net_overrides):
    net = build_unet("tiny", in_channels=1, num_classes=3, **net_overrides)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.02)
    den = Denoiser(net, "edm", EDM(), null_cond=3)
    save_model_folder(path, model_config(net, den, sample_shape=[1, 8, 8]), net, net)
    return den


def test_round_trip(tmp_path):
    den = make_folder(tmp_path / "m")
    loaded = diffvision.load(tmp_path / "m")
    x, sigma = torch.randn(2, 1, 8, 8), torch.tensor([0.5, 5.0])
    with torch.no_grad():
        assert torch.equal(
            loaded(x, sigma, torch.tensor([0, 3])), den.eval()(x, sigma, torch.tensor([0, 3]))
        )
    assert loaded.null_cond == 3 and not loaded.training
    # Rewriting a folder replaces it whole.
    make_folder(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "config.json",
        "ema.safetensors",
        "model.safetensors",
    ]
    # A folder that holds anything else is not a model folder to replace: refused, kept.
    (tmp_path / "m" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"holds 'notes\.txt', which no model folder holds"):
        make_folder(tmp_path / "m")
    assert (tmp_path / "m" / "notes.txt").read_text() == "mine"
    (tmp_path / "file").write_text("mine")  # a file where the folder goes: kept too
    with pytest.raises(ValueError, match=r"file is a file: not replaced by a model folder"):
        make_folder(tmp_path / "file")
    (tmp_path / "m" / "notes.txt").unlink()  # a model of another kind is not replaced either
    with pytest.raises(ValueError, match=r"holds a diffusion model, not a feature network"):
        save_model_folder(tmp_path / "m", {"net": {"kind": "features"}}, torch.nn.Linear(1, 1))
    (tmp_path / "m" / ".classifier.123.partial.json").write_text("{")  # a killed writer's
    make_folder(tmp_path / "m")
    assert not (tmp_path / "m" / ".classifier.123.partial.json").exists()


def test_bad_folders(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        diffvision.load(tmp_path / "missing")
    with pytest.raises(ValueError, match="the model folder must be a path, not 123"):
        diffvision.load(123)  # a TypeError from Path()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no config\.json"):
        diffvision.load(tmp_path / "empty")
    # A run folder given for its model folder: the message names the model inside, or says
    # that the run has no model yet and how to continue it.
    (tmp_path / "empty" / "run.json").write_text("{}")
    with pytest.raises(ValueError, match=r"run folder with no model yet .*--resume"):
        diffvision.load(tmp_path / "empty")
    make_folder(tmp_path / "empty" / "model")
    inside = re.escape(str(tmp_path / "empty" / "model"))
    with pytest.raises(ValueError, match=f"run folder, its model is {inside}"):
        diffvision.load(tmp_path / "empty")
    make_folder(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps({**config, "version": 99}))
    with pytest.raises(ValueError, match="newer diffvision"):
        read_config(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text(json.dumps({**config, "format": "pickle"}))
    with pytest.raises(ValueError, match="not a diffvision model config"):
        read_config(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_config(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text("[1, 2]")  # JSON, but not an object
    with pytest.raises(ValueError, match=r"config\.json holds a JSON list, not an object"):
        read_config(tmp_path / "m")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["net"].update(channel_mult="abc"), "channel_mult must be a list of integ"),
        (lambda c: c["net"].update(channels=True), "channels must be an integer >= 1, not True"),
        (lambda c: c["net"].update(attn_levels=[5]), "attn_levels must be levels 0..1, not 5"),
        (lambda c: c["net"].update(dropout="x"), "dropout must be a number in [0, 1), not 'x'"),
        (lambda c: c["net"].update(foo=1), "unexpected keyword argument 'foo'"),
        (lambda c: c.pop("denoiser"), "does not describe a model: no 'denoiser' entry"),
        (lambda c: c.update(denoiser=None), "its 'denoiser' entry must be a JSON object, not No"),
        (lambda c: c.update(schedule=["edm"]), "its 'schedule' entry must be a JSON object, not ["),
        (lambda c: c["denoiser"].update(sigma_data=0), "sigma_data must be a positive number, n"),
        (lambda c: c.pop("net"), "has no 'net' section"),
        (lambda c: c.update(version="1"), "version must be an integer, not '1'"),
    ],
)
def test_a_config_that_does_not_describe_a_model_is_named(tmp_path, edit, message):
    """A config.json made or edited elsewhere is input: a missing entry or a wrong type is a
    ValueError naming the file and the field (the command's one line), from ``load`` and from
    ``info``'s check alike, not an error from deep inside the network's construction."""
    make_folder(tmp_path / "m")
    path = tmp_path / "m" / "config.json"
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))
    for read in (diffvision.load, check_model_config):
        with pytest.raises(ValueError, match=re.escape(message)) as raised:
            read(tmp_path / "m")
        assert str(path) in str(raised.value) and "\n" not in str(raised.value)


def test_a_folder_without_a_diffusion_model_is_named_before_loading(tmp_path):
    """``sample``, ``restore`` and ``eval`` read the image shape through ``sample_shape``: a
    feature network's folder is named as such (restore and eval said "has no sample_shape",
    sample said it after loading the network), and a missing or malformed shape is named."""
    from diffvision.io import save_feature_net
    from diffvision.io.model_folder import sample_shape
    from diffvision.nets.features import FeatureNet, FeatureNetConfig
    from tests.cli_run import run_here

    make_folder(tmp_path / "m")
    config = read_config(tmp_path / "m")
    assert sample_shape(config, tmp_path / "m") == (1, 8, 8)
    for shape in (None, [1, 8], [1, 8, "8"], [1, 0, 8], [1, 8, True]):
        with pytest.raises(ValueError, match=r"m/config\.json has no sample_shape \(C, H, W\)"):
            sample_shape({**config, "sample_shape": shape}, tmp_path / "m")
    features = save_feature_net(tmp_path / "f", FeatureNet(FeatureNetConfig()), {"task": "x"})
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "in.png")
    for command in (
        ["sample", str(features), "--out", str(tmp_path / "s.png")],
        ["restore", "denoise", str(features), str(tmp_path / "in.png"), "--out", "r.png"],
        ["eval", str(features), "--data", "digits"],
    ):  # fmt: skip
        bad = run_here(*command)
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
        assert f"{features} holds a feature network, not a diffusion model" in bad.stderr
    # info describes a feature network (it was refused as "does not describe a model")
    info = run_here("info", str(features))
    assert info.returncode == 0, info.stderr
    for line in ("network:     classifier of 10 classes, 128 features",
                 "image:       1 x 8 x 8 (C x H x W)", f"--features {features}"):  # fmt: skip
        assert line in info.stdout, info.stdout


def test_info_checks_the_weights_against_the_config(tmp_path):
    """``check_model_config`` compares the tensors that the config's network has with those in
    the weights' header: a config of another width, or one without classes, is named with the first
    tensor that differs; the folder's own config passes."""
    make_folder(tmp_path / "a")
    make_folder(tmp_path / "b", channels=8)
    assert check_model_config(tmp_path / "a")["net"]["channels"] == 16
    (tmp_path / "b" / "config.json").write_text((tmp_path / "a" / "config.json").read_text())
    with pytest.raises(ValueError, match=r"model\.safetensors does not match its config\.json: "):
        check_model_config(tmp_path / "b")
    with pytest.raises(ValueError, match=r"class_emb\.weight is \(4, 32\) there, \(4, 64\) by the"):
        check_model_config(tmp_path / "b")
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    config["net"]["num_classes"] = 0
    (tmp_path / "a" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"class_emb\.weight is \(4, 64\) there, not expected by"):
        check_model_config(tmp_path / "a")


@pytest.mark.parametrize("kind", ["linear", "cosine", "vp", "ve", "edm"])
def test_info_reads_a_model_of_every_schedule(kind, tmp_path):
    """``info`` (``check_model_config``) builds the network on the meta device and the
    schedule on the CPU: a discrete or VP schedule computes its numbers, which on the meta
    device was a RuntimeError (``diffvision info`` of every non-EDM, non-VE model crashed)."""
    from diffvision.process import get_schedule
    from tests.cli_run import run_here

    net = build_unet("tiny", in_channels=1)
    den = Denoiser(net, "eps", get_schedule(kind))
    save_model_folder(tmp_path / "m", model_config(net, den, sample_shape=[1, 8, 8]), net, net)
    assert check_model_config(tmp_path / "m")["schedule"]["kind"] == kind
    info = run_here("info", str(tmp_path / "m"))
    assert info.returncode == 0 and f"schedule {kind} (" in info.stdout, info.stderr


def test_weights_must_match_config(tmp_path):
    make_folder(tmp_path / "a")
    make_folder(tmp_path / "b", channels=8)
    (tmp_path / "b" / "config.json").write_text((tmp_path / "a" / "config.json").read_text())
    with pytest.raises(ValueError, match="does not match"):
        diffvision.load(tmp_path / "b")
    (tmp_path / "a" / "ema.safetensors").write_bytes(b"garbage that is not safetensors")
    with pytest.raises(ValueError, match="cannot read"):
        diffvision.load(tmp_path / "a")
    assert diffvision.load(tmp_path / "a", ema=False) is not None


def test_parameter_count_from_the_header(tmp_path):
    """``info``'s parameter count: the network's, read from the weights' header; a truncated or
    missing weights file is a ValueError naming it (one line from the command)."""
    den = make_folder(tmp_path / "a")
    assert parameter_count(tmp_path / "a") == sum(p.numel() for p in den.net.parameters())
    weights = tmp_path / "a" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ValueError, match=f"cannot read {re.escape(str(weights))}"):
        parameter_count(tmp_path / "a")
    weights.unlink()
    with pytest.raises(ValueError, match=r"has no model\.safetensors"):
        parameter_count(tmp_path / "a")


def test_two_processes_writing_one_file_each_rename_their_own(tmp_path):
    """Every torchrun rank writes the run's run.json: while this process is writing it, another
    process writes it whole too. Each renames a temporary file of its own (it was one shared
    name: the other's rename took this one's file away, FileNotFoundError), and the file ends
    whole, as the last writer left it."""
    import subprocess
    import sys

    from diffvision.io.atomic import write_text_whole

    path = tmp_path / "run.json"
    other = (
        f"from diffvision.io.atomic import write_text_whole; write_text_whole({str(path)!r}, 'B')"
    )

    def write(tmp):
        tmp.write_text("A")
        subprocess.run([sys.executable, "-c", other], check=True, timeout=120)

    write_whole(path, write)
    assert path.read_text() == "A" and sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]
    write_text_whole(path, "C")
    assert path.read_text() == "C"


def test_numbered_indices_are_read_from_one_listing(tmp_path):
    """The indices below n whose numbered file is there, by its own spelling: not another
    spelling of the same number, not an index of n or more, not a folder of that name."""
    from diffvision.io.images import numbered_indices, numbered_path

    for i in (0, 2, 9, 123456):
        numbered_path(tmp_path, i).write_bytes(b"")
    (tmp_path / "sample_1.png").write_bytes(b"")  # not how image 1 is named
    numbered_path(tmp_path, 3).mkdir()
    (tmp_path / "other_00004.png").write_bytes(b"")
    assert numbered_indices(tmp_path, 5) == {0, 2}
    assert numbered_indices(tmp_path, 10**12) == {0, 2, 9, 123456}
    assert numbered_indices(tmp_path, 5, prefix="other") == {4}


def test_grid(tmp_path):
    images = torch.linspace(-1, 1, 5 * 3 * 4 * 4).reshape(5, 3, 4, 4)
    grid = make_grid(images, nrow=3, pad=1)
    assert grid.shape == (3, 2 * 5 + 1, 3 * 5 + 1)
    assert torch.equal(grid[:, 1:5, 1:5], images[0])
    path = save_grid(tmp_path / "g.png", images, upscale=2)
    from PIL import Image

    assert Image.open(path).size == (2 * 16, 2 * 11)


def test_image_writers_check_what_they_are_given(tmp_path):
    """A batch or a bare H x W given as one image was a RuntimeError from a permute, two
    channels made a grey-alpha file; a path without an image suffix was PIL's "unknown file
    extension: .partial" (the temporary file's); counts of 0 wrote empty or odd grids; a white
    level of 0 a black 16-bit file. Each is a ValueError that says what it takes."""
    from diffvision.io.images import save_16_bit, save_image, to_pil

    image = torch.zeros(3, 8, 8)
    for call, message in [
        (lambda: save_image(tmp_path / "a.png", image[None]), "C = 1 or 3, not (1, 3, 8, 8)"),
        (lambda: save_image(tmp_path / "a.png", image[0]), "C = 1 or 3, not (8, 8)"),
        (lambda: save_image(tmp_path / "a.png", image[:2]), "C = 1 or 3, not (2, 8, 8)"),
        (lambda: save_image(tmp_path / "a", image), "not an image file to write (.png, .jpg"),
        (lambda: save_image(tmp_path / "a.psd", image), "not an image file to write"),  # read only
        (lambda: save_grid(tmp_path / "grid", image[None]), "not an image file to write"),
        (lambda: make_grid(image[None], nrow=0), "nrow must be an integer >= 1, not 0"),
        (lambda: make_grid(image[None], pad=-1), "pad must be an integer >= 0, not -1"),
        (lambda: make_grid(image[None][:0]), "N >= 1, not (0, 3, 8, 8)"),
        (lambda: to_pil(image, upscale=1.5), "upscale must be an integer >= 1, not 1.5"),
        (lambda: save_16_bit(tmp_path / "a.png", image, 0), "16-bit images is 1-65535, not 0"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            call()
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temporary file
    assert save_image(tmp_path / "a.jpg", image).is_file()


def test_a_file_is_written_whole_or_not_at_all(tmp_path):
    path = tmp_path / "grid.png"
    path.write_bytes(b"the old file")

    def interrupted(tmp):
        tmp.write_bytes(b"half a file")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_whole(path, interrupted)
    assert path.read_bytes() == b"the old file" and os.listdir(tmp_path) == ["grid.png"]
    save_grid(path, torch.zeros(2, 1, 4, 4))  # PIL picks PNG by the temporary name's suffix
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and os.listdir(tmp_path) == ["grid.png"]


@pytest.mark.parametrize("channels", [1, 3])
def test_files_joined_into_a_tiff_stack_read_back_as_they_were(tmp_path, channels, monkeypatch):
    """``join_into_stack``: 16-bit and 8-bit files, grey and colour (OpenCV reads colour as
    BGR, which the stack must not keep), become pages that this project's reader (frame by
    frame) and PIL (8-bit) read as the files themselves, in order; a classic TIFF, and a
    BigTIFF where the stack would be larger than ``BIGTIFF_ABOVE`` (a classic TIFF addresses
    4 GiB: tifffile refuses a larger one, "data too large for non-BigTIFF file", which came
    after every frame had been restored)."""
    from diffvision.io import images as image_io
    from diffvision.io.images import join_into_stack, read_image, save_16_bit, save_image

    gen = torch.Generator().manual_seed(channels)
    images = [torch.rand(channels, 6, 5, generator=gen) * 2 - 1 for _ in range(3)]
    deep = [save_16_bit(tmp_path / f"deep{k}.tif", x) for k, x in enumerate(images)]
    plain = [save_image(tmp_path / f"plain{k}.png", x) for k, x in enumerate(images)]
    for files, name in ((deep, "deep.tif"), (plain, "plain.tif")):
        for big in (False, True):
            monkeypatch.setattr(image_io, "BIGTIFF_ABOVE", 0 if big else 2 << 30)
            stack = join_into_stack(tmp_path / name, files)
            assert stack.read_bytes()[:4] == (b"II+\0" if big else b"II*\0")  # BigTIFF, TIFF
            for k, file in enumerate(files):
                page = read_image(stack, channels, frame=k)
                assert torch.equal(page, read_image(file, channels)), (name, big, k)
    with Image.open(tmp_path / "plain.tif") as joined, Image.open(plain[2]) as last:
        joined.seek(2)
        assert joined.mode == last.mode and np.array_equal(np.asarray(joined), np.asarray(last))
    with pytest.raises(ValueError, match=r"cannot read .*nothing\.png to join it into"):
        join_into_stack(tmp_path / "bad.tif", [tmp_path / "nothing.png"])
    assert not (tmp_path / "bad.tif").exists()
    with pytest.raises(ValueError, match="no images to join into"):
        join_into_stack(tmp_path / "none.tif", [])
