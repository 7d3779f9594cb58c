import json
import math
import re

import pytest
import torch
from torch import nn

import diffvision
from diffvision import Denoiser, sample
from diffvision.process import DiscreteVP
from diffvision.samplers import SAMPLERS
from tests.test_denoiser import ExactNet


def test_sample_every_sampler_image_shaped():
    from diffvision.analytic import GaussianDenoiser

    exact = GaussianDenoiser(torch.zeros(1, 4, 4), torch.full((1, 4, 4), 0.25))
    for name in SAMPLERS:
        seen = []  # one callback per step: `diffvision sample`'s progress bar counts on it
        out = sample(exact, (3, 1, 4, 4), sampler=name, steps=8, callback=seen.append,
                     generator=torch.Generator().manual_seed(0))  # fmt: skip
        assert (
            out.shape == (3, 1, 4, 4) and out.dtype == torch.float32 and torch.isfinite(out).all()
        )
        assert len(seen) == 8, name


def test_sample_is_seeded_and_uses_denoiser_range(gaussian16):
    schedule = DiscreteVP.linear()
    d = Denoiser(ExactNet(gaussian16, schedule, "eps"), "eps", schedule)
    seen = []
    a = sample(
        d,
        (2, 16),
        steps=5,
        generator=torch.Generator().manual_seed(1),
        callback=seen.append,
        dtype=torch.float64,
    )
    b = sample(d, (2, 16), steps=5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert torch.equal(a, b)
    assert seen[0]["sigma"] == pytest.approx(schedule.sigma_max)
    assert seen[-1]["sigma"] == pytest.approx(schedule.sigma_min)


def test_ddpm_sampler_defaults_to_the_model_timesteps(gaussian16):
    schedule = DiscreteVP.linear()
    d = Denoiser(ExactNet(gaussian16, schedule, "eps"), "eps", schedule)
    seen = []
    sample(d, (2, 16), sampler="ddpm", steps=10, callback=seen.append, dtype=torch.float64)
    assert [c["sigma"] for c in seen] == pytest.approx(
        schedule.sigmas[torch.arange(900, -1, -100)].tolist()
    )


class ClassMeans(nn.Module):
    """x0-prediction: the mean of class c is c (null class 0 means 0)."""

    def forward(self, x_in, c_noise, cond):
        return torch.zeros_like(x_in) + cond.to(x_in.dtype)[:, None]


def test_sample_with_guidance():
    from diffvision.process import VE

    d = Denoiser(ClassMeans(), "x0", VE(0.002, 80.0), null_cond=0)
    out = sample(
        d, (4, 3), sampler="euler", steps=10, cond=torch.tensor([1, 2, 3, 4]), guidance=2.0
    )
    # With x0-prediction constant in x, Euler ends at D exactly: null + 2 (c - null) = 2c.
    assert torch.allclose(out, 2 * torch.tensor([1.0, 2, 3, 4])[:, None].expand(4, 3))


def test_sample_bad_input(gaussian16):
    with pytest.raises(ValueError, match="unknown sampler"):
        sample(gaussian16, (1, 16), sampler="plms")
    with pytest.raises(ValueError, match="unknown step sequence"):
        sample(gaussian16, (1, 16), step_kind="uniform")
    # Another sampler's option, or a typo: was the sampler's own TypeError, mid-call.
    with pytest.raises(ValueError, match="the euler sampler takes no option 'eta'; it takes"):
        sample(gaussian16, (1, 16), sampler="euler", eta=0.5)
    with pytest.raises(ValueError, match="the ddim sampler takes no option 'etta'"):
        sample(gaussian16, (1, 16), sampler="ddim", etta=0.5)
    assert sample(gaussian16, (1, 16), sampler="ddim", eta=0.5, steps=2).shape == (1, 16)
    # The samplers' real-valued options: NaN gave NaN samples (heun's s_churn) or was taken as
    # all fresh noise (ddim's eta) without a word.
    for sampler, options, message in [
        ("heun", {"s_churn": math.nan}, "s_churn must be a finite number >= 0, not nan"),
        ("heun", {"s_churn": -1.0}, "s_churn must be a finite number >= 0, not -1.0"),
        ("heun", {"s_churn": 1.0, "s_noise": math.inf}, "s_noise must be a finite number >= 0"),
        ("heun", {"s_tmin": math.nan}, "need s_tmin <= s_tmax, got nan and inf"),
        ("heun", {"s_tmin": 2.0, "s_tmax": 1.0}, "need s_tmin <= s_tmax, got 2.0 and 1.0"),
        ("ddim", {"eta": math.nan}, "eta must be a finite number >= 0, not nan"),
        ("ddim", {"eta": -1}, "eta must be a finite number >= 0, not -1"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            sample(gaussian16, (1, 16), sampler=sampler, steps=2, **options)
    # A seed for a generator was an AttributeError from the first draw; an integer dtype, a
    # NotImplementedError from torch.randn.
    with pytest.raises(ValueError, match=r"generator must be a torch\.Generator or None, not 3"):
        sample(gaussian16, (1, 16), steps=2, generator=3)
    with pytest.raises(ValueError, match=r"dtype must be a floating-point torch\.dtype, not tor"):
        sample(gaussian16, (1, 16), steps=2, dtype=torch.int64)
    assert sample(gaussian16, (1, 16), steps=2, dtype=torch.float64).dtype == torch.float64
    assert diffvision.__version__


def test_a_shape_the_model_cannot_make_is_refused(tiny_digits_model):
    """``sample`` and ``likelihood`` check their input at the edge: a shape of positive integers,
    for a model of images ``N x C x H x W`` with its channels; ``likelihood`` a float tensor of
    finite values. Each a ValueError that says which (a 3-D shape failed inside a GroupNorm, a
    wrong channel count inside a convolution, N = 0 as a division by zero; NaN data gave NaN)."""
    from diffvision import likelihood

    model = diffvision.load(tiny_digits_model)  # 1 x 8 x 8 digits
    for shape, message in [
        ((1, 8, 8), "the model makes N x 1 x H x W images: not (1, 8, 8)"),
        ((2, 3, 8, 8), "the model makes N x 1 x H x W images: not (2, 3, 8, 8)"),
        ((0, 1, 8, 8), "shape must be N x ... in positive integers, not (0, 1, 8, 8)"),
        ((2.0, 1, 8, 8), "in positive integers, not (2.0, 1, 8, 8)"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            sample(model, shape, steps=1)
        if all(isinstance(n, int) for n in shape) and shape[0] > 0:  # a tensor of the shape
            with pytest.raises(ValueError, match=re.escape(message)):
                likelihood(model, torch.zeros(shape), steps=1)
    with pytest.raises(ValueError, match="x must be a float tensor of finite values"):
        likelihood(model, torch.full((1, 1, 8, 8), float("nan")), steps=1)
    with pytest.raises(ValueError, match="x must be a float tensor of finite values"):
        likelihood(model, torch.zeros(1, 1, 8, 8, dtype=torch.long), steps=1)
    assert sample(model, (2, 1, 8, 8), steps=1).shape == (2, 1, 8, 8)
    assert sample(model, (1, 1, 16, 16), steps=1).shape == (1, 1, 16, 16)  # other sizes: fine


def test_class_labels_are_checked_before_any_work():
    """``sample(model, shape, cond=...)`` for a network that states its classes: a class as an
    int is drawn for every sample (was an AttributeError), and labels of another length (a
    RuntimeError), float labels (truncated without a word), labels beyond the null class (an
    IndexError in the embedding) or labels for an unconditional network are refused first."""
    from diffvision.nets.unet import build_unet
    from diffvision.process import EDM

    calls = []

    def model(classes):
        net = build_unet("tiny", in_channels=1, num_classes=classes)
        net.register_forward_pre_hook(lambda module, inputs: calls.append(inputs))
        return Denoiser(net, "edm", EDM(), null_cond=classes if classes else None)

    three = model(3)
    out = sample(three, (4, 1, 8, 8), steps=1, cond=2)
    labels = calls[-1][2]
    assert out.shape == (4, 1, 8, 8) and labels.dtype == torch.long and labels.tolist() == [2] * 4
    assert sample(three, (2, 1, 8, 8), steps=1, cond=torch.tensor(3)).shape[0] == 2  # the null
    calls.clear()
    for cond, message in [
        (torch.tensor([0, 1, 2]), "for 4 samples have shape () or (4,), not (3,)"),
        (torch.tensor([0.0, 1.5, 2, 1]), "an int or an integer tensor, not a torch.float32 tensor"),
        (True, "an int or an integer tensor, not True"),
        ("2", "an int or an integer tensor, not '2'"),
        (4, "class labels (cond) lie in 0..3 (3: none), not 4"),
        (torch.tensor([0, -1, 2, 1]), "class labels (cond) lie in 0..3 (3: none), not -1"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            sample(three, (4, 1, 8, 8), steps=1, cond=cond, guidance=2.0)
    with pytest.raises(ValueError, match="the model is unconditional: it takes no class labels"):
        sample(model(0), (4, 1, 8, 8), steps=1, cond=torch.tensor([0, 1, 2, 0]))
    assert not calls  # each refused before the network ran


def test_a_model_without_a_null_class_is_refused_what_needs_it(tiny_digits_model, tmp_path):
    """A class model trained with label dropout 0 never saw its null class, whose embedding is
    then untrained: loaded, it has no ``null_cond``, and a call without a class (sampling,
    the likelihood), guidance and the null label are refused (they gave noise without a word);
    a class is still drawn. The same folder with dropout 0.1 keeps its null class."""
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_digits_model, folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["training"]["label_dropout"] > 0
    assert diffvision.load(folder).null_cond == 10
    config["training"]["label_dropout"] = 0.0
    (folder / "config.json").write_text(json.dumps(config))
    model = diffvision.load(folder)
    assert model.null_cond is None
    gen = torch.Generator().manual_seed(0)
    assert sample(model, (2, 1, 8, 8), steps=1, cond=9, generator=gen).shape == (2, 1, 8, 8)
    no_null = "this class model learnt no null class (trained with label dropout 0)"
    with pytest.raises(ValueError, match=re.escape(no_null)):
        sample(model, (2, 1, 8, 8), steps=1)
    with pytest.raises(ValueError, match=re.escape(no_null)):
        diffvision.likelihood(model, torch.zeros(1, 1, 8, 8), steps=1)
    with pytest.raises(ValueError, match=re.escape("class labels (cond) lie in 0..9 (no null")):
        sample(model, (2, 1, 8, 8), steps=1, cond=10)
    with pytest.raises(ValueError, match="a class model trained with label dropout 0 learnt none"):
        sample(model, (2, 1, 8, 8), steps=1, cond=3, guidance=2.0)


def test_sample_and_solve_keep_no_autograd_graph():
    """``sample`` and ``solve`` of a model whose weights want gradients (as ``diffvision.load``
    returns it) kept the autograd graph of every step: 12x the memory at 40 steps for 16
    images of the photos model (7.1 GiB against 0.6) and twice the time. Their results now
    carry no graph, float64 measurements are taken (a RuntimeError from the network before),
    and ``dps``, which needs a gradient, still takes its own."""
    from diffvision.nets.unet import build_unet
    from diffvision.process import EDM
    from diffvision.restore import Denoise, Inpaint, solve

    torch.manual_seed(0)
    model = Denoiser(build_unet("tiny", in_channels=1), "edm", EDM())
    assert all(p.requires_grad for p in model.parameters())
    out = sample(model, (2, 1, 8, 8), steps=2)
    assert not out.requires_grad and out.grad_fn is None
    y = torch.rand(2, 1, 8, 8, dtype=torch.float64) * 2 - 1
    mask = torch.ones(8, 8)
    mask[2:5, 2:5] = 0
    for solver in ("mmse", "posterior", "ddnm", "dps", "repaint", "sdedit"):
        op = Denoise(0.1) if solver in ("mmse", "posterior") else Inpaint(mask)
        restored = solve(model, op, y, solver=solver, steps=2)
        assert restored.dtype == torch.float64 and restored.grad_fn is None, solver
    moved, still = (
        solve(model, Denoise(0.1), y.float(), solver="dps", steps=2, step_size=size,
              generator=torch.Generator().manual_seed(0))
        for size in (1.0, 0.0)
    )  # fmt: skip
    assert not torch.equal(moved, still)  # the likelihood gradient was taken and applied
