import pytest
import torch

from diffvision.nets import PRESETS, UNet, UNetConfig, build_unet, unet
from diffvision.nets.unet import Dropout, modulated_group_norm


def count(net):
    return sum(p.numel() for p in net.parameters())


def test_preset_sizes():
    assert count(build_unet("tiny")) < 300_000
    assert 1_000_000 <= count(build_unet("small")) <= 2_000_000
    # DDPM's CIFAR-10 network has 35.7 M parameters; ours adds scale to the shift modulation.
    assert 32e6 <= count(build_unet("base")) <= 40e6
    assert set(PRESETS) == {"tiny", "small", "base"}


@pytest.mark.parametrize("size", [8, 15, 28, 32])
def test_shapes_any_size(size):
    net = build_unet("tiny", in_channels=3)
    out = net(torch.randn(2, 3, size, size), torch.rand(2))
    assert out.shape == (2, 3, size, size)


def test_class_and_image_conditioning():
    net = build_unet("tiny", in_channels=1, num_classes=10, cond_channels=2)
    for p in net.parameters():  # undo the zero-inits so every input reaches the output
        torch.nn.init.normal_(p, std=0.1)
    x, c = torch.randn(3, 1, 16, 16), torch.rand(3)
    image = torch.randn(3, 2, 16, 16)
    a = net(x, c, {"labels": torch.tensor([1, 2, 10]), "image": image})
    b = net(x, c, {"labels": torch.tensor([1, 3, 10]), "image": image})
    assert torch.allclose(a[0], b[0]) and not torch.allclose(a[1], b[1])
    null = net(x, c, {"image": image})  # no labels: the null class
    assert torch.allclose(null[2], a[2])
    with pytest.raises(ValueError, match="condition image"):
        net(x, c, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="without classes"):
        build_unet("tiny")(torch.randn(1, 3, 8, 8), torch.rand(1), torch.tensor([0]))


def test_zero_initialised_output_and_gradients():
    net = build_unet("tiny", in_channels=1)
    x = torch.randn(4, 1, 8, 8)
    out = net(x, torch.rand(4))
    assert torch.count_nonzero(out) == 0  # output conv starts at zero (as in DDPM/ADM)
    out.sum().backward()
    assert net.conv_out.weight.grad.abs().sum() > 0


def test_bf16_and_channels_last_match_fp32():
    torch.manual_seed(0)
    net = build_unet("tiny", in_channels=3)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x, c = torch.randn(2, 3, 16, 16), torch.rand(2)
    ref = net(x, c)
    cl = net.to(memory_format=torch.channels_last)(
        x.contiguous(memory_format=torch.channels_last), c
    )
    assert torch.allclose(cl, ref, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = net(x, c).float()
    # bf16 has an 8-bit mantissa: relative error ~ 2^-8 per op, a few percent through the net.
    assert (low - ref).norm() / ref.norm() < 0.05


def test_config_validation():
    with pytest.raises(ValueError, match="divisible"):
        UNetConfig(channels=30, groups=8)
    with pytest.raises(ValueError, match="unknown preset"):
        build_unet("huge")
    assert UNet(UNetConfig(in_channels=1)).config.out_channels == 1


@pytest.mark.parametrize("p", [0.1, 0.3])
def test_dropout_mask_statistics(p):
    torch.manual_seed(0)
    drop = Dropout(p).train()
    x = torch.ones(16, 32, 64, 32, requires_grad=True)  # 2**20 elements
    out = drop(x)
    dropped = out == 0
    n, q = dropped.numel(), round(p * 65536) / 65536  # p as the 16-bit mask rounds it
    se = (q * (1 - q) / n) ** 0.5
    # Binomial counts: the dropped fraction within 5 standard errors of p, and independent
    # between neighbours (which share one 64-bit draw): both dropped with probability p^2.
    assert abs(dropped.float().mean().item() - q) < 5 * se
    pairs = (dropped[..., 0::2] & dropped[..., 1::2]).float().mean().item()
    assert abs(pairs - q * q) < 5 * (q * q * (1 - q * q) / (n / 2)) ** 0.5
    assert torch.allclose(out[~dropped], torch.tensor(1 / (1 - q)))  # unbiased: E[out] = x
    out.sum().backward()  # the gradient goes through the same mask and scale
    assert torch.equal(x.grad, out.detach())
    # channels_last input: the same statistics per channel, and the layout is kept
    xl = torch.ones(16, 32, 64, 32).contiguous(memory_format=torch.channels_last)
    outl = drop(xl)
    assert outl.is_contiguous(memory_format=torch.channels_last)
    per_channel = (outl == 0).float().mean(dim=(0, 2, 3))
    assert (per_channel - q).abs().max() < 5 * (q * (1 - q) / (n / 32)) ** 0.5
    assert drop.eval()(x) is x and Dropout(0.0).train()(x) is x
    with pytest.raises(ValueError, match="dropout"):
        Dropout(1.0)


def test_modulated_group_norm_matches_two_step_reference():
    torch.manual_seed(0)
    norm = torch.nn.GroupNorm(4, 16)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    h = torch.randn(3, 16, 5, 7, requires_grad=True)
    scale, shift = torch.randn(3, 16, requires_grad=True), torch.randn(3, 16, requires_grad=True)
    inputs = (h, scale, shift, norm.weight, norm.bias)

    def reference():  # ADM's scale-shift norm written out: norm(h) * (1 + scale) + shift
        return norm(h) * (1 + scale[:, :, None, None]) + shift[:, :, None, None]

    ref = reference()
    ref_grads = torch.autograd.grad(ref.square().sum(), inputs)
    for layout in (torch.contiguous_format, torch.channels_last):  # fused and two-step paths
        out = modulated_group_norm(norm, h.contiguous(memory_format=layout), scale, shift)
        grads = torch.autograd.grad(out.square().sum(), inputs)
        # float32 rounding of a few sums over 35-140 terms: ~1e-6 relative
        assert torch.allclose(out, ref, atol=1e-5)
        for g, r in zip(grads, ref_grads, strict=True):
            assert torch.allclose(g, r, rtol=1e-4, atol=1e-4)


def test_small_bf16_channels_last_norms_run_on_a_contiguous_copy(monkeypatch):
    """On the CPU, a bf16 channels-last tensor with few channels per group and few pixels is
    group-normed as a contiguous copy (torch's channels-last bf16 kernel is slower there),
    plain and modulated, at inference; larger ones, ones with 16 channels per group, float32
    ones, contiguous ones and ones a gradient flows through as they are. Same values (bf16
    rounding: an 8-bit mantissa, 2^-8 relative), in the layout they came in."""
    seen = []
    group_norm = torch.nn.functional.group_norm

    def recorded(x, *args, **kwargs):
        seen.append((x.is_contiguous(), len(x)))  # a batch of 1: the fused modulated form
        return group_norm(x, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "group_norm", recorded)
    torch.manual_seed(0)
    scale, shift = torch.randn(3, 16), torch.randn(3, 16)
    side = int(unet.NORM_AS_CONTIGUOUS_MAX_PIXELS**0.5)
    cl = torch.channels_last
    for groups, size, dtype, layout, contiguous_in in [
        (4, side, torch.bfloat16, cl, True),
        (4, side + 1, torch.bfloat16, cl, False),
        (1, side, torch.bfloat16, cl, False),  # 16 channels in the group
        (4, side, torch.float32, cl, False),
        (4, side, torch.bfloat16, torch.contiguous_format, True),  # contiguous already
        (4, side, torch.bfloat16, "grad", False),  # a gradient wanted: as it is
    ]:
        h = torch.randn(3, 16, size, size).to(
            dtype, memory_format=cl if layout == "grad" else layout
        )
        if layout == "grad":
            layout = cl
            h.requires_grad_(True)
        norm = unet.GroupNorm(groups, 16)
        torch.nn.init.normal_(norm.weight)
        ref = group_norm(h.float(), groups, norm.weight, norm.bias).detach()
        gain, bias = 1 + scale.to(dtype), shift.to(dtype)  # from a Linear, in the net's dtype
        mod_ref = ref * gain.float()[:, :, None, None] + bias.float()[:, :, None, None]
        seen.clear()
        plain, modulated = norm(h), modulated_group_norm(norm, h, gain - 1, bias)
        # what the norm kernel was given: the modulated norm fused where contiguous
        assert seen == [(contiguous_in, 3), (contiguous_in, 1 if contiguous_in else 3)]
        for out, want in ((plain, ref), (modulated, mod_ref)):
            assert out.is_contiguous(memory_format=layout) and out.dtype == dtype
            atol = 2**-6 * float(want.abs().max())
            assert torch.allclose(out.float(), want, rtol=2**-7, atol=atol)
