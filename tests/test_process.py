import math
import re

import pytest
import torch

from diffvision import process
from diffvision.process import (
    EDM,
    VE,
    ContinuousVP,
    DiscreteVP,
    add_noise,
    get_schedule,
    loss_weight,
)


def test_discrete_linear_matches_ho_definition():
    s = DiscreteVP.linear()
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    abar = torch.ones(())
    for t in (0, 1, 499, 999):
        abar = torch.prod(1 - betas[: t + 1])
        assert float(s.sigmas[t]) == pytest.approx(math.sqrt((1 - abar) / abar), rel=1e-12)
    assert s.sigma_min == pytest.approx(math.sqrt(1e-4 / (1 - 1e-4)), rel=1e-12)


def test_cosine_matches_nichol_dhariwal_eq17():
    s = DiscreteVP.cosine()
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    for t in (0, 10, 500, 900):  # below the beta clipping at 0.999
        abar = f(t + 1) / f(0)
        assert float(s.alphas_cumprod[t]) == pytest.approx(abar, rel=1e-10)
    assert float(s.betas.max()) == pytest.approx(0.999)


@pytest.mark.parametrize(
    "schedule", [DiscreteVP.linear(), DiscreteVP.cosine(), ContinuousVP(), VE(), EDM()]
)
def test_t_sigma_round_trip(schedule):
    sig = torch.logspace(
        math.log10(schedule.sigma_min), math.log10(schedule.sigma_max), 37, dtype=torch.float64
    )
    assert torch.allclose(schedule.sigma(schedule.t(sig)), sig, rtol=1e-9)


def test_discrete_t_is_integer_at_table_sigmas():
    s = DiscreteVP.linear()
    t = s.t(s.sigmas)
    assert torch.allclose(t, torch.arange(1000, dtype=torch.float64), atol=1e-8)


def test_continuous_vp_is_limit_of_discrete_linear():
    # -log abar_discrete = sum_j -log(1 - beta_j) = sum_j (beta_j + beta_j^2/2 + ...), and the
    # continuous schedule integrates beta(t). The series tail is below sum beta_j^2 (beta <= 0.02),
    # and the left Riemann sum of the linear beta(t) differs from the integral by at most
    # (beta_i - beta_0)/2 plus the 999-vs-1000 grid scaling (< beta_i/2): together < beta_i.
    disc, cont = DiscreteVP.linear(), ContinuousVP()
    betas = disc.betas
    for i in (99, 499, 999):
        t = (i + 1) / 1000
        log_disc = torch.log1p(disc.sigmas[i] ** 2)
        log_cont = torch.log1p(cont.sigma(torch.tensor(t, dtype=torch.float64)) ** 2)
        bound = float((betas[: i + 1] ** 2).sum()) + float(betas[i])
        assert abs(float(log_disc - log_cont)) <= bound


def test_training_sigma_distributions():
    g = torch.Generator().manual_seed(0)
    n = 40000
    edm = EDM().sample_sigma(n, generator=g).double().log()
    # log-normal: mean and std of log sigma within 5 standard errors.
    assert abs(float(edm.mean()) + 1.2) < 5 * 1.2 / math.sqrt(n)
    assert abs(float(edm.std()) - 1.2) < 5 * 1.2 / math.sqrt(2 * n)
    ve = VE(0.01, 50.0)
    u = ve.t(ve.sample_sigma(n, generator=g).double())  # uniform on [0, 1]
    assert abs(float(u.mean()) - 0.5) < 5 * math.sqrt(1 / 12 / n)
    disc = DiscreteVP.linear()
    t = disc.t(disc.sample_sigma(n, generator=g).double()).round()
    assert float(t.min()) >= 0 and float(t.max()) <= 999
    assert abs(float(t.mean()) - 499.5) < 5 * 288.7 / math.sqrt(n)


def test_add_noise_per_sample_sigma():
    x0 = torch.zeros(3, 1, 2, 2)
    noise = torch.ones_like(x0)
    out = add_noise(x0, torch.tensor([0.0, 1.0, 2.0]), noise)
    assert torch.equal(out[:, 0, 0, 0], torch.tensor([0.0, 1.0, 2.0]))
    # refused: one image's noise for the batch (it was broadcast: every image the same), sigmas
    # of another count, negative or NaN sigma (the noise flipped, NaN images)
    for sigma, bad_noise, message in [
        (1.0, noise[:1], "noise must have x0's shape"),
        (torch.tensor([1.0, 2.0]), noise, r"shape \(3,\), got \(2,\)"),
        (-1.0, noise, "finite and >= 0"),
        (torch.tensor([0.0, math.nan, 1.0]), noise, "finite and >= 0"),
        ("0.1", noise, "sigma must be a number or a tensor, not '0.1'"),  # a TypeError in torch
    ]:
        with pytest.raises(ValueError, match=message):
            add_noise(x0, sigma, bad_noise)


def test_loss_weights_equal_their_named_losses():
    # Build a fake prediction D_hat and compare weighted x0-errors with the named losses written
    # in VP variables: eps-MSE (simple), x0-MSE (snr), v-MSE (snr+1).
    g = torch.Generator().manual_seed(0)
    sigma = torch.tensor([0.05, 0.7, 3.0, 40.0], dtype=torch.float64)
    x0 = torch.randn(4, 8, generator=g, dtype=torch.float64)
    eps = torch.randn(4, 8, generator=g, dtype=torch.float64)
    d_hat = x0 + 0.1 * torch.randn(4, 8, generator=g, dtype=torch.float64)
    x = x0 + sigma[:, None] * eps
    a = 1 / (1 + sigma**2).sqrt()  # sqrt(abar)
    b = sigma * a  # sqrt(1 - abar)
    eps_hat = (x - d_hat) / sigma[:, None]
    v = a[:, None] * eps - b[:, None] * x0
    v_hat = a[:, None] * eps_hat - b[:, None] * d_hat
    x0_err = ((d_hat - x0) ** 2).sum(1)
    assert torch.allclose(loss_weight(sigma, "simple") * x0_err, ((eps_hat - eps) ** 2).sum(1))
    assert torch.allclose(loss_weight(sigma, "snr") * x0_err, x0_err)
    assert torch.allclose(loss_weight(sigma, "snr+1") * x0_err, ((v_hat - v) ** 2).sum(1))
    snr = 1 / sigma**2
    assert torch.allclose(
        loss_weight(sigma, "min_snr", gamma=5.0), torch.minimum(snr, torch.tensor(5.0))
    )
    sd = 0.5
    edm = loss_weight(sigma, "edm", sigma_data=sd)
    # EDM: lambda = 1 / c_out^2 with c_out = sigma sd / sqrt(sigma^2 + sd^2).
    assert torch.allclose(edm, (sigma**2 + sd**2) / (sigma * sd) ** 2)
    with pytest.raises(ValueError, match="unknown loss weighting"):
        loss_weight(sigma, "nope")


@pytest.mark.parametrize(
    "schedule", [DiscreteVP.linear(), DiscreteVP.cosine(), ContinuousVP(), VE(), EDM()]
)
def test_config_round_trip(schedule):
    rebuilt = get_schedule(**schedule.config())
    assert type(rebuilt) is type(schedule)
    assert rebuilt.sigma_min == pytest.approx(schedule.sigma_min)
    assert rebuilt.sigma_max == pytest.approx(schedule.sigma_max)


def test_bad_schedules_are_rejected():
    with pytest.raises(ValueError):
        get_schedule("quadratic")
    with pytest.raises(ValueError):
        VE(1.0, 0.5)
    with pytest.raises(ValueError):
        DiscreteVP(torch.tensor([0.1, 1.5]))
    # infinite or zero parameters made NaN or infinite noise levels, or NaN denoisers
    for kind, params, message in [
        ("ve", {"sigma_max": math.inf}, "need 0 < sigma_min < sigma_max < inf, got 0.01 and inf"),
        ("edm", {"sigma_max": math.inf}, "sigma_max < inf, got 0.002 and inf"),
        ("vp", {"beta_max": math.inf}, "need 0 < beta_min < beta_max < inf, got 0.1 and inf"),
        ("vp", {"eps_t": 0.0}, "eps_t, the first training time, must be in (0, 1), not 0.0"),
        ("edm", {"sigma_data": 0.0}, "sigma_data must be a positive number, not 0.0"),
        ("edm", {"p_std": math.nan}, "p_std must be a positive number, not nan"),
        ("edm", {"p_mean": math.inf}, "p_mean must be a finite number, not inf"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            get_schedule(kind, **params)
    assert process.LOSS_WEIGHTS
