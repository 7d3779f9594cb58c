import math
import re

import pytest
import torch

from diffvision import sigma_steps
from diffvision.process import ContinuousVP, DiscreteVP
from diffvision.samplers import ddpm_timesteps


def test_karras_is_edm_eq5():
    s = sigma_steps("karras", 10, 0.002, 80.0, rho=7.0)
    assert len(s) == 11 and s[-1] == 0
    i = torch.arange(10, dtype=torch.float64)
    expect = (80 ** (1 / 7) + i / 9 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    assert torch.allclose(s[:-1], expect, rtol=1e-12)
    assert float(s[0]) == pytest.approx(80.0) and float(s[-2]) == pytest.approx(0.002)


def test_loglinear_is_geometric():
    s = sigma_steps("loglinear", 6, 0.01, 50.0)[:-1]
    ratios = s[1:] / s[:-1]
    assert torch.allclose(ratios, ratios[0].expand(5), rtol=1e-12)


def test_vp_steps_are_uniform_in_t():
    vp = ContinuousVP()
    s = sigma_steps("vp", 8)[:-1]
    t = vp.t(s)
    assert torch.allclose(t[:-1] - t[1:], (t[0] - t[1]).expand(7), atol=1e-12)
    assert float(t[0]) == pytest.approx(1.0) and float(t[-1]) == pytest.approx(1e-3)


@pytest.mark.parametrize(
    ("spacing", "expect"),
    [
        # Lin et al. 2024, Table 2, for T = 1000 and 10 steps.
        ("leading", [900, 800, 700, 600, 500, 400, 300, 200, 100, 0]),
        ("trailing", [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]),
        ("linspace", [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]),
    ],
)
def test_ddpm_spacings(spacing, expect):
    assert ddpm_timesteps(10, 1000, spacing).tolist() == expect
    schedule = DiscreteVP.linear()
    s = sigma_steps("ddpm", 10, spacing=spacing)
    assert torch.allclose(s[:-1], schedule.sigmas[torch.tensor(expect)]) and s[-1] == 0


def test_ddpm_leading_offset_and_full_chain():
    assert ddpm_timesteps(10, 1000, "leading", offset=1).tolist()[-1] == 1
    assert ddpm_timesteps(1000, 1000, "leading").tolist() == list(range(999, -1, -1))
    for offset in (1.5, math.nan, -1):  # nan was cast to an integer with only a warning
        with pytest.raises(ValueError, match=f"offset must be an integer >= 0, not {offset}"):
            ddpm_timesteps(10, 1000, "leading", offset=offset)


@pytest.mark.parametrize("kind", ["karras", "loglinear", "vp", "ddpm"])
def test_every_kind_decreases_to_zero(kind):
    for n in (1, 2, 7, 50):
        s = sigma_steps(kind, n)
        assert len(s) == n + 1 and s[-1] == 0 and bool((s[:-1] > s[1:]).all())


def test_integer_levels_of_any_size():
    """A level given as a Python int is taken as the real it is, one above 2**63 too (numpy's
    log10 failed on those with a TypeError)."""
    for kind in ("karras", "loglinear", "vp"):
        as_int, as_float = sigma_steps(kind, 3, 1, 10**30), sigma_steps(kind, 3, 1.0, 1e30)
        torch.testing.assert_close(as_int, as_float, rtol=1e-12, atol=0)


def test_bad_step_requests():
    with pytest.raises(ValueError, match="unknown step sequence"):
        sigma_steps("cosine", 10)
    for n in (0, 2.0, True):  # a bool is no count
        with pytest.raises(ValueError, match=f"steps must be an integer >= 1, not {n}"):
            sigma_steps("karras", n)
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        sigma_steps("karras", 10, 5.0, 1.0)
    for kind in ("karras", "loglinear", "vp"):  # an infinite top made NaN levels
        with pytest.raises(ValueError, match=re.escape("sigma_max < inf, got 0.1 and inf")):
            sigma_steps(kind, 3, 0.1, math.inf)
    for rho in (0.0, -math.inf, math.nan):  # 0 divided by zero
        with pytest.raises(
            ValueError, match=re.escape(f"rho must be a positive number, not {rho}")
        ):
            sigma_steps("karras", 3, rho=rho)
    with pytest.raises(ValueError, match="from the schedule"):
        sigma_steps("ddpm", 10, 0.01, 10.0)
    with pytest.raises(ValueError, match="unknown option"):
        sigma_steps("loglinear", 10, rho=3)
    with pytest.raises(ValueError, match=r"unknown option\(s\) for ddpm steps: rho"):
        sigma_steps("ddpm", 10, rho=7, offset=1)  # was ddpm_timesteps' TypeError
    with pytest.raises(ValueError, match="spacing"):
        sigma_steps("ddpm", 10, spacing="middle")
    assert math.isfinite(float(sigma_steps("karras", 3).sum()))
