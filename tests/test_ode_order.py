"""Convergence order of the ODE samplers against the exact probability-flow map.

On Gaussian data the PF-ODE has the closed-form solution ``GaussianDenoiser.ode_map``. A solver of
order p has global error ``C h^p (1 + O(h))``, so on the Karras grid the error against the exact
map falls as ``NFE^-p``. We integrate from sigma_max = 80 to sigma_min = 0.02 (the grid without
its final jump to 0, whose first-order "x = D" step would add an NFE-independent error) and fit
the slope of log error against log NFE over the two finest doublings, where the O(h) correction to
the leading term is small. Tolerance: the fitted slope must be within 0.3 of p (for p >= 3 at
least p - 0.3); measured slopes on the coarse end of the range deviate by more, which is why the
fit uses the asymptotic end only.
"""

import math
import re

import numpy as np
import pytest
import torch

from diffvision.samplers import get, sigma_steps
from tests.conftest import make_gaussian

SIGMA_MAX, SIGMA_MIN = 80.0, 0.02

# sampler -> (theoretical order, steps for the fit, options)
ORDERS = {
    "euler": (1, [64, 128, 256], {}),
    "heun": (2, [64, 128, 256], {}),
    "dpmpp_2m": (2, [64, 128, 256], {}),
    "dpmpp_3m": (3, [64, 128, 256], {}),
    "unipc": (3, [64, 128, 256], {}),  # UniP-2 + UniC: order 3
    "ipndm": (4, [128, 256, 512], {}),
}


def endpoint_error(sampler, exact, x, n, **options):
    sigmas = sigma_steps("karras", n, SIGMA_MIN, SIGMA_MAX)[:-1]
    out = get(sampler)(exact, x.clone(), sigmas, **options)
    ref = exact.ode_map(x, SIGMA_MAX, SIGMA_MIN)
    return float(((out - ref).norm(dim=1) / ref.norm(dim=1)).mean())


@pytest.mark.parametrize("d", [1, 16])
@pytest.mark.parametrize("sampler", list(ORDERS))
def test_convergence_order(sampler, d):
    order, steps, options = ORDERS[sampler]
    exact = make_gaussian(d, seed=d)
    x = exact.sample(64, torch.Generator().manual_seed(0), sigma=SIGMA_MAX)
    errors = [endpoint_error(sampler, exact, x, n, **options) for n in steps]
    slope = -np.polyfit(np.log(steps), np.log(errors), 1)[0]
    if order >= 3:
        assert slope > order - 0.3, (errors, slope)
    else:
        assert abs(slope - order) < 0.3, (errors, slope)


def test_higher_order_beats_lower_order_at_moderate_nfe(gaussian16):
    x = gaussian16.sample(64, torch.Generator().manual_seed(0), sigma=SIGMA_MAX)
    err = {
        s: endpoint_error(s, gaussian16, x, 32) for s in ("euler", "dpmpp_2m", "dpmpp_3m", "unipc")
    }
    assert err["dpmpp_3m"] < err["dpmpp_2m"] < err["euler"]
    assert err["unipc"] < err["dpmpp_2m"]


def test_ddim_eta0_is_euler(gaussian16):
    x = gaussian16.sample(8, torch.Generator().manual_seed(1), sigma=SIGMA_MAX)
    sig = sigma_steps("karras", 12)
    assert torch.allclose(
        get("ddim")(gaussian16, x, sig), get("euler")(gaussian16, x, sig), atol=1e-12
    )


@pytest.mark.parametrize("sampler", list(ORDERS))
def test_full_run_to_zero_and_image_shapes(sampler):
    img = make_image_gaussian()
    x = img.sample(4, torch.Generator().manual_seed(2), sigma=80.0).float()
    sig = sigma_steps("karras", 20)
    out = get(sampler)(img, x, sig)
    assert out.shape == x.shape and out.dtype == torch.float32 and torch.isfinite(out).all()
    # The last step lands on the data manifold: D(out) at tiny sigma is out itself.
    assert torch.allclose(img(out, 1e-4), out, atol=1e-3)


def make_image_gaussian():
    from diffvision.analytic import GaussianDenoiser

    var = torch.linspace(0.01, 0.5, 2 * 4 * 4, dtype=torch.float64).reshape(2, 4, 4)
    return GaussianDenoiser(torch.zeros(2, 4, 4, dtype=torch.float64), var)


def test_callback_sees_every_step(gaussian16):
    seen = []
    x = gaussian16.sample(2, torch.Generator().manual_seed(3), sigma=80.0)
    get("dpmpp_2m")(gaussian16, x, sigma_steps("karras", 5), callback=seen.append)
    assert [c["i"] for c in seen] == [0, 1, 2, 3, 4]
    assert seen[-1]["sigma_next"] == 0 and seen[0]["denoised"].shape == x.shape


def test_bad_sampler_input(gaussian16):
    x = torch.zeros(2, 16, dtype=torch.float64)
    with pytest.raises(ValueError, match=re.escape("must be decreasing: level 0 is 1.0, then 2.0")):
        get("euler")(gaussian16, x, [1.0, 2.0])
    with pytest.raises(ValueError, match="at least two"):
        get("euler")(gaussian16, x, [1.0])
    # a repeated level is no step (the multistep samplers divided by its length); NaN or inf
    # levels made NaN images
    for name in ("ipndm", "dpmpp_3m", "pc", "euler"):
        with pytest.raises(ValueError, match=re.escape("level 1 is 0.5, then 0.5")):
            get(name)(gaussian16, x, [1.0, 0.5, 0.5, 0.0])
        for bad in (math.nan, math.inf):
            with pytest.raises(ValueError, match=re.escape(f"finite numbers: level 1 is {bad}")):
                get(name)(gaussian16, x, [1.0, bad, 0.0])
    with pytest.raises(ValueError, match=re.escape("non-negative: the last is -0.1")):
        get("euler")(gaussian16, x, [1.0, -0.1])
    with pytest.raises(ValueError, match="unknown sampler"):
        get("lms")
    with pytest.raises(ValueError, match="order"):
        get("ipndm")(gaussian16, x, [1.0, 0.0], order=5)
