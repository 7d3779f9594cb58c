"""The demo pipeline end to end with very few steps (the real quality numbers come from
bench/demo_quality.py, which trains the full demo configuration)."""

from diffvision.demo import run_demo


def test_demo_writes_report(tmp_path):
    report = run_demo(tmp_path, steps=3, progress=False, n_per_class=4, classifier_steps=20)
    text = report.read_text()
    assert report.name == "report.html" and "data:image/png;base64," in text
    assert "held-out accuracy" in text and "chi-square" in text
    assert "Unconditional samples (class-posterior mixture)" in text
    assert "branches per sample and step" in text
    assert (tmp_path / "model" / "classifier.safetensors").is_file()
    for name in ("samples_conditional.png", "samples_unconditional.png", "loss.png", "demo.json"):
        assert (tmp_path / name).is_file()
    assert (tmp_path / "model" / "ema.safetensors").is_file()


def test_balance_check_passes_for_the_exact_denoiser_of_digits():
    """The unconditional balance check is sound: sampling the exact (empirical) denoiser of the
    training digits the way the demo samples its model gives uniform class counts."""
    import torch

    from diffvision.analytic import EmpiricalDenoiser
    from diffvision.data import digits
    from diffvision.demo import unconditional_counts

    data = digits()
    exact = EmpiricalDenoiser(data.batch(torch.arange(len(data)))[0])

    def as_model(x, sigma, cond=None):  # the empirical denoiser ignores the (null) class
        return exact(x, sigma)

    counts, p = unconditional_counts(as_model, seed=100)
    assert sum(counts) == 1000 and min(counts) > 50
    assert p > 0.05, counts


def test_balance_check_passes_for_the_exact_class_mixture_of_digits():
    """The demo's unconditional path (the class-posterior mixture, pruned as the demo prunes it)
    with exact parts: the digits' ideal class-conditional denoisers mixed by their exact class
    posterior give uniform class counts."""
    import torch

    from diffvision.analytic import EmpiricalDenoiser
    from diffvision.data import digits
    from diffvision.demo import unconditional_counts
    from diffvision.denoiser import ClassMixture

    images, labels = digits().batch(torch.arange(1797))
    exact = EmpiricalDenoiser(images, labels, null_cond=10)
    mixture = ClassMixture(exact, exact.class_log_posterior)
    counts, p = unconditional_counts(mixture, seed=100, null=None)
    assert sum(counts) == 1000 and min(counts) > 50
    assert p > 0.05, counts
    assert mixture.evaluations < 10 * mixture.rows  # pruning skipped some class branches
