"""Parametrisations: networks that predict eps, x0, v or EDM's F, each written from its paper's
definition in its own variables, must give the same D once wrapped by Denoiser."""

import math
import re

import pytest
import torch
from torch import nn

from diffvision import Denoiser, guided
from diffvision.process import EDM, VE, ContinuousVP, DiscreteVP


class ExactNet(nn.Module):
    """A network whose output is computed from the exact Gaussian denoiser ``ref`` in the
    variables the parametrisation defines (VP: x_t and timestep t)."""

    def __init__(self, ref, schedule, target, sigma_data=0.5):
        super().__init__()
        self.ref, self.schedule, self.target, self.sigma_data = ref, schedule, target, sigma_data

    def forward(self, x_in, c_noise, cond=None):
        if self.target == "edm":
            sigma = torch.exp(4 * c_noise)  # EDM: c_noise = ln(sigma)/4
            sd = self.sigma_data
            x = x_in * (sigma**2 + sd**2).sqrt()[:, None]
            c_skip = sd**2 / (sigma**2 + sd**2)
            c_out = sigma * sd / (sigma**2 + sd**2).sqrt()
            # EDM eq. 7 solved for F: F = (D - c_skip x) / c_out.
            return (self.ref(x, sigma) - c_skip[:, None] * x) / c_out[:, None]
        sigma = self.schedule.sigma(c_noise)
        if self.schedule.vp:
            abar = 1 / (1 + sigma**2)  # VP variables (Ho et al. 2020)
            x_t = x_in
            x0 = self.ref(x_t / abar.sqrt()[:, None], sigma)
            eps = (x_t - abar.sqrt()[:, None] * x0) / (1 - abar).sqrt()[:, None]
            if self.target == "v":  # Salimans & Ho 2022: v = sqrt(abar) eps - sqrt(1-abar) x0
                return abar.sqrt()[:, None] * eps - (1 - abar).sqrt()[:, None] * x0
        else:
            x0 = self.ref(x_in, sigma)
            eps = (x_in - x0) / sigma[:, None]
        return {"eps": eps, "x0": x0}[self.target]


@pytest.mark.parametrize(
    "schedule", [DiscreteVP.linear(), DiscreteVP.cosine(), ContinuousVP(), VE(0.002, 80)]
)
def test_parametrisations_agree(gaussian16, schedule):
    g = torch.Generator().manual_seed(0)
    sigma = torch.tensor([0.02, 0.3, 1.0, 7.0, 60.0], dtype=torch.float64).clamp(
        schedule.sigma_min * 1.01, schedule.sigma_max * 0.99
    )
    x = gaussian16.sample(5, g)
    x = x + sigma[:, None] * torch.randn(x.shape, generator=g, dtype=torch.float64)
    exact = gaussian16(x, sigma)
    targets = ["eps", "x0", "edm"] + (["v"] if schedule.vp else [])
    for target in targets:
        d = Denoiser(ExactNet(gaussian16, schedule, target), target, schedule)
        assert torch.allclose(d(x, sigma), exact, atol=1e-9), target


def test_edm_needs_no_schedule_and_float_sigma(gaussian16):
    d = Denoiser(ExactNet(gaussian16, EDM(), "edm"), "edm")
    x = gaussian16.sample(3, torch.Generator().manual_seed(1), sigma=2.0)
    assert torch.allclose(d(x, 2.0), gaussian16(x, 2.0), atol=1e-10)
    assert d.sigma_min == 0.002 and d.sigma_max == 80.0


def test_from_eps_fn_discrete_vp(gaussian16):
    schedule = DiscreteVP.linear()

    def eps_fn(x_t, t):  # a DDPM-style model: integer-valued timesteps, VP input
        abar = schedule.alphas_cumprod[t.round().long()]
        sigma = ((1 - abar) / abar).sqrt()
        x0 = gaussian16(x_t / abar.sqrt()[:, None], sigma)
        return (x_t - abar.sqrt()[:, None] * x0) / (1 - abar).sqrt()[:, None]

    d = Denoiser.from_eps_fn(eps_fn, schedule)
    sig = schedule.sigmas[torch.tensor([10, 300, 900])]
    x = gaussian16.sample(3, torch.Generator().manual_seed(2)) + sig[:, None]
    assert torch.allclose(d(x, sig), gaussian16(x, sig), atol=1e-10)
    with pytest.raises(ValueError, match="VP schedule"):
        Denoiser.from_eps_fn(eps_fn, VE())


class CountingCondNet(nn.Module):
    """x0-prediction net whose output is x_in * 0 + cond (per sample), counting its calls."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x_in, c_noise, cond):
        self.calls += 1
        return torch.zeros_like(x_in) + cond.to(x_in.dtype)[:, None]


def test_classifier_free_guidance():
    net = CountingCondNet()
    d = Denoiser(net, "x0", VE(), null_cond=10)
    x = torch.zeros(4, 3)
    cond = torch.tensor([1, 2, 3, 4])
    out = guided(d, cond, scale=3.0)(x, 1.0)
    # D_w = D_null + w (D_cond - D_null) = 10 + 3 (c - 10)
    assert torch.allclose(out, (10 + 3 * (cond - 10)).float()[:, None].expand(4, 3))
    assert net.calls == 1  # both branches in one batched call
    assert torch.allclose(guided(d, cond, scale=1.0)(x, 1.0), cond.float()[:, None].expand(4, 3))
    assert torch.allclose(guided(d, cond, scale=0.0)(x, 1.0), torch.full((4, 3), 10.0))
    scalar = guided(d, 2, scale=2.0)(x, torch.ones(4))
    assert torch.allclose(scalar, torch.full((4, 3), 10 + 2 * (2 - 10.0)))
    with pytest.raises(ValueError, match="null"):
        guided(Denoiser(net, "x0", VE()), cond, scale=2.0)
    for bad in (math.nan, math.inf, "2"):  # NaN made NaN samples; "2" was a TypeError
        with pytest.raises(
            ValueError, match=f"guidance scale must be a finite number, not {bad!r}"
        ):
            guided(d, cond, scale=bad)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown prediction"):
        Denoiser(nn.Identity(), "score", VE())
    with pytest.raises(ValueError, match="needs the schedule"):
        Denoiser(nn.Identity(), "eps")
    for bad in (0.0, -0.5, math.inf):  # 0 made NaN images from a damaged config.json
        with pytest.raises(ValueError, match=f"sigma_data must be a positive number, not {bad}"):
            Denoiser(nn.Identity(), "edm", sigma_data=bad)
    d = Denoiser(CountingCondNet(), "x0", VE())
    with pytest.raises(ValueError, match="sigma must be"):
        d(torch.zeros(2, 3), torch.ones(3), torch.zeros(2))
    # a negative sigma flipped the noise without a word (x0 here; EDM's log made NaN images)
    for bad, said in ((-0.5, "-0.5"), (math.nan, "nan"), (torch.tensor([0.5, -1.0]), "[0.5, -1]")):
        message = f"sigma must be finite and >= 0, not {said}"
        with pytest.raises(ValueError, match=re.escape(message)):
            d(torch.zeros(2, 3), bad, torch.zeros(2))
    assert d(torch.zeros(2, 3), 0.0, torch.zeros(2)).shape == (2, 3)  # 0: the clean data
    assert math.isclose(d.sigma_max, 50.0)


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda",
            marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
        ),
    ],
)
def test_autocast_runs_the_network_in_bf16_and_keeps_the_skip_path(device):
    """``Denoiser.autocast``: the network runs in bfloat16, the result stays float32, and it
    differs from float32 by bf16 rounding times c_out, which vanishes at low sigma, where
    c_skip x carries D. Bound: unit roundoff 2^-8 ~ 0.004 per rounding, about 20 roundings deep
    (sqrt(20) x 0.004 ~ 0.017 typical), 3 times that for the largest of 1024 outputs: 5% of the
    network's largest output (this seeded net: 0.8-2.9%). With ``autocast`` None an outer
    autocast (training's --bf16) must still reach the network."""
    from diffvision.nets.unet import build_unet

    torch.manual_seed(0)
    model = Denoiser(build_unet("tiny", in_channels=1), "edm").eval()
    with torch.no_grad():  # the output layer starts at zero: give every weight some value
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.to(device)
    seen = []
    model.net.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    x = torch.randn(4, 1, 16, 16).to(device)
    for sigma in (0.01, 0.5, 20.0):
        with torch.no_grad():
            exact = model(x, sigma)
            model.autocast = torch.bfloat16
            low = model(x, sigma)
            model.autocast = None
        c_skip, c_out, _, _ = model.coefficients(torch.tensor(sigma, device=device))
        network = (exact - c_skip * x) / c_out  # the network's own output, float32
        assert low.dtype == torch.float32 and seen[-1] == torch.bfloat16
        assert (low - exact).abs().max() <= 0.05 * float(c_out) * network.abs().max()
        assert (low - exact).abs().max() > 0  # it did run in bf16
    with torch.autocast(device, dtype=torch.bfloat16), torch.no_grad():
        model(x, 0.5)
    assert seen[-1] == torch.bfloat16
    with torch.no_grad():
        model(x, 0.5)
    assert seen[-1] == torch.float32


def test_guidance_without_a_condition_is_refused():
    # Was a RuntimeError from torch.as_tensor(None) at the sampler's first step.
    d = Denoiser(CountingCondNet(), "x0", VE(), null_cond=10)
    with pytest.raises(ValueError, match="guidance needs a condition"):
        guided(d, None, scale=2.0)


def test_a_float64_input_meets_a_float32_network_in_its_dtype():
    """``D(x)`` of a float64 ``x`` (numpy's default) with a float32 network was a RuntimeError
    (input and bias types differ); the network now runs in its weights' dtype and the result
    comes back in x's. Against the float32 call the difference is the rounding of the float32
    input (~1e-7 relative) carried through the network and the skip path: 1e-5 is ~100 ulps."""
    from diffvision.nets.unet import build_unet

    torch.manual_seed(0)
    model = Denoiser(build_unet("tiny", in_channels=1), "edm", EDM())
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64) * 2
    sigma = torch.tensor([0.5, 2.0], dtype=torch.float64)
    with torch.no_grad():
        wide, narrow = model(x, sigma), model(x.float(), sigma.float())
    assert wide.dtype == torch.float64 and narrow.dtype == torch.float32
    assert torch.allclose(wide, narrow.double(), rtol=1e-5, atol=1e-5)
    plain = Denoiser(lambda x_in, c_noise: 0 * x_in, "edm", EDM())  # a callable, no weights
    assert plain(x, sigma).dtype == torch.float64
