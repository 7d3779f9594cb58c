"""The class-posterior mixture ``D(x, sigma) = sum_c p(c | x, sigma) D(x, sigma, c)`` and its
noise-aware classifier, against the exact denoiser and posterior of a finite labelled data set."""

import math

import pytest
import torch

from diffvision import sample
from diffvision.analytic import EmpiricalDenoiser
from diffvision.data.dataset import ImageData
from diffvision.denoiser import ClassMixture
from diffvision.io import load_classifier, save_classifier, save_model_folder
from diffvision.train.classifier import train_noise_classifier

SIGMAS = (0.05, 0.3, 1.0, 4.0, 30.0)


@pytest.fixture
def labelled():
    """Three classes of unequal size (5, 9 and 14 points) in 2 x 3 "images"; null class 3."""
    gen = torch.Generator().manual_seed(0)
    sizes = (5, 9, 14)
    centres = torch.randn(3, 1, 2, 3, generator=gen)
    points = torch.cat(
        [
            c + 0.4 * torch.randn(n, 1, 2, 3, generator=gen)
            for c, n in zip(centres, sizes, strict=True)
        ]
    )
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(sizes)])
    return EmpiricalDenoiser(points, labels, null_cond=3), points, labels


def test_exact_class_posterior_is_bayes_rule(labelled):
    """``class_log_posterior`` against Bayes written out: p(c | x) proportional to
    sum_{i in c} N(x; p_i, sigma^2 I), with the Gaussian densities computed directly."""
    exact, points, labels = labelled
    x = torch.randn(7, 1, 2, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for sigma in SIGMAS:
        got = exact.class_log_posterior(x, sigma)
        sq = ((x.flatten(1)[:, None] - points.flatten(1)[None].double()) ** 2).sum(-1)
        log_density = -0.5 * sq / sigma**2  # the shared normalising constant cancels
        want = torch.stack([torch.logsumexp(log_density[:, labels == c], 1) for c in range(3)], 1)
        want = want - torch.logsumexp(want, 1, keepdim=True)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_mixture_of_exact_branches_is_the_exact_unconditional_denoiser(labelled):
    """Bayes: sum_c p(c | x) E[x0 | x, c] = E[x0 | x]. With every class kept (min_prob 0) the two
    agree to float64 round-off (a few ulps of sums of at most 28 terms)."""
    exact, _, _ = labelled
    mixture = ClassMixture(exact, exact.class_log_posterior, min_prob=0)
    x = 2 * torch.randn(
        64, 1, 2, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64
    )
    for sigma in SIGMAS:
        want = exact(x, sigma, torch.full((64,), 3))  # the null class: all points
        torch.testing.assert_close(mixture(x, sigma), want, rtol=1e-12, atol=1e-12)
    # Classes whose weight underflows to 0 (small sigma, far from the class) are skipped; at large
    # sigma every class of every sample is evaluated.
    assert mixture.rows == 64 * len(SIGMAS) and mixture.evaluations <= 3 * mixture.rows
    wide = ClassMixture(exact, exact.class_log_posterior, min_prob=0)
    wide(x, 30.0)
    assert wide.evaluations == 3 * 64


def test_a_condition_for_a_denoiser_that_takes_none_is_refused(labelled):
    """``sample(mixture, shape, cond=c)`` was a TypeError from inside the sampler (a mixture is
    called as ``D(x, sigma)``): refused first, pointing to the class model. Denoisers called with
    a condition (the exact class model, a plain function of three arguments) still take one."""
    exact, _, _ = labelled
    mixture = ClassMixture(exact, exact.class_log_posterior)
    with pytest.raises(ValueError, match=r"\(ClassMixture\) takes no condition .* give its model"):
        sample(mixture, (2, 1, 2, 3), steps=1, cond=torch.tensor([0, 1]), dtype=torch.float64)
    assert sample(
        exact, (2, 1, 2, 3), steps=1, cond=torch.tensor([0, 1]), dtype=torch.float64
    ).shape == (2, 1, 2, 3)
    assert sample(lambda x, sigma, cond: 0 * x, (2, 2), steps=1, cond=1).shape == (2, 2)


def test_pruned_mixture_stays_within_its_stated_bound(labelled):
    """Dropping classes with p < min_prob and renormalising moves D by at most
    (dropped mass) * max_{c, c'} |D_c - D_c'| per element (the docstring's bound)."""
    exact, _, _ = labelled
    full = ClassMixture(exact, exact.class_log_posterior, min_prob=0)
    pruned = ClassMixture(exact, exact.class_log_posterior, min_prob=0.05)
    x = 2 * torch.randn(
        256, 1, 2, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64
    )
    dropped_any = False
    for sigma in (0.3, 1.0, 4.0):
        s = torch.full((256,), sigma, dtype=torch.float64)
        p = exact.class_log_posterior(x, sigma).exp()
        dropped = (p * (pruned.weights(x, s) == 0)).sum(1)
        dropped_any |= bool((dropped > 0).any())
        branches = torch.stack([exact(x, sigma, torch.full((256,), c)) for c in range(3)])
        spread = (branches.amax(0) - branches.amin(0)).flatten(1)
        error = (pruned(x, sigma) - full(x, sigma)).flatten(1).abs()
        assert bool((error <= dropped[:, None] * spread + 1e-12).all())
    assert dropped_any, "the test must prune something"
    assert pruned.evaluations < full.evaluations


def test_mixture_batches_pairs_without_changing_the_result(labelled):
    exact, _, _ = labelled
    x = torch.randn(10, 1, 2, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    one = ClassMixture(exact, exact.class_log_posterior, min_prob=1e-3, max_batch=1)
    many = ClassMixture(exact, exact.class_log_posterior, min_prob=1e-3)
    torch.testing.assert_close(one(x, 0.7), many(x, 0.7), rtol=1e-14, atol=1e-14)
    with pytest.raises(ValueError):
        ClassMixture(exact, exact.class_log_posterior, min_prob=1.0)
    for bad in (0, 2.5):
        with pytest.raises(ValueError, match="max_batch must be an integer >= 1"):
            ClassMixture(exact, exact.class_log_posterior, max_batch=bad)


def _tiny_labelled_images(gen):
    """120 two-by-two grey images in three classes (40 each), values within [-1, 1]."""
    centres = torch.tensor([[-0.6, 0.6, 0.0, 0.0], [0.6, 0.0, -0.6, 0.0], [0.0, -0.5, 0.5, 0.5]])
    pixels = centres.repeat_interleave(40, 0) + 0.2 * torch.randn(120, 4, generator=gen)
    uint8 = ((pixels.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).reshape(120, 1, 2, 2)
    labels = torch.arange(3).repeat_interleave(40)
    return ImageData(uint8, channels=1, size=2, labels=labels, class_names=["a", "b", "c"])


def test_noise_classifier_learns_the_exact_posterior():
    """Trained by cross-entropy on noised training images, the classifier must capture at least
    90% of the information the noisy image carries about the class, I = H(c) - H(c | x, sigma),
    measured on fresh draws against the exact posterior of the same 120 images (the Bayes
    optimum): its shortfall (the expected KL divergence from the exact posterior) must be below
    10% of I, allowing three standard errors of the estimate. The bar is a quality goal: this
    recipe falls short by under 1%, a classifier blind to sigma by about 20%."""
    gen = torch.Generator().manual_seed(5)
    data = _tiny_labelled_images(gen)
    images, labels = data.batch(torch.arange(len(data)))
    exact = EmpiricalDenoiser(images, labels)
    clf, info = train_noise_classifier(data, steps=1500, hidden=64, depth=2, seed=0)
    assert info["steps"] == 1500 and info["final_loss"] > 0
    n = 8000
    idx = torch.randint(0, len(data), (n,), generator=gen)
    lo, hi = math.log(0.05), math.log(80.0)
    sigma = (lo + (hi - lo) * torch.rand(n, generator=gen)).exp()
    x = images[idx] + sigma.view(-1, 1, 1, 1) * torch.randn(n, 1, 2, 2, generator=gen)
    with torch.no_grad():
        learned = -torch.log_softmax(clf(x, sigma), 1)[torch.arange(n), labels[idx]].double()
    bayes = -exact.class_log_posterior(x, sigma)[torch.arange(n), labels[idx]]
    information = math.log(3) - bayes.mean()  # classes are balanced: H(c) = log 3
    shortfall = learned - bayes  # per draw; its mean is the expected KL(exact || learned)
    stderr = shortfall.std() / math.sqrt(n)
    assert information > 0.3  # the task is not trivial at these noise levels
    assert shortfall.mean() < 0.1 * information + 3 * stderr, (
        float(shortfall.mean()),
        float(information),
    )


def test_noise_classifier_sees_the_models_flips():
    """With ``hflip`` the classifier learns the flipped data the model was trained on. Here the
    class is which column of a 2 x 2 image is bright, so flips make it unknowable: at low noise
    the classifier is sure without flips and near 50/50 with them (a flag it ignored would fail)."""
    left = torch.tensor([[230, 25], [230, 25]], dtype=torch.uint8).expand(50, 1, 2, 2)
    images = torch.cat([left, left.flip(-1)])
    labels = torch.arange(2).repeat_interleave(50)
    data = ImageData(images, channels=1, size=2, labels=labels, class_names=["left", "right"])
    x = torch.tensor([[[0.8, -0.8], [0.8, -0.8]]]).expand(2, 1, 2, 2).clone()
    x[1] = x[1].flip(-1)
    sure = {}
    for flips in (False, True):
        clf, info = train_noise_classifier(data, steps=300, hidden=16, depth=1, hflip=flips)
        assert info["hflip"] is flips
        with torch.no_grad():
            p = torch.softmax(clf(x, torch.full((2,), 0.05)), 1)
        sure[flips] = float(p[torch.arange(2), torch.arange(2)].min())
    assert sure[False] > 0.9 and abs(sure[True] - 0.5) < 0.1, sure  # measured 0.97, 0.49


def test_classifier_round_trips_through_a_model_folder(tmp_path):
    data = _tiny_labelled_images(torch.Generator().manual_seed(6))
    clf, info = train_noise_classifier(data, steps=5, hidden=16, depth=1, seed=1)
    folder = save_model_folder(tmp_path / "model", {"net": {}}, torch.nn.Linear(1, 1))
    assert load_classifier(folder) is None
    with pytest.raises(ValueError, match="model folder not found"):  # was None, as above
        load_classifier(tmp_path / "elsewhere")
    save_classifier(folder, clf, info)
    loaded = load_classifier(folder)
    x, sigma = torch.randn(4, 1, 2, 2), torch.tensor([0.1, 1.0, 5.0, 50.0])
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, sigma), clf(x, sigma), rtol=0, atol=0)
    assert loaded.info["steps"] == 5
    for bad in ({"steps": 0}, {"batch": 8.0}):
        with pytest.raises(ValueError, match=f"{next(iter(bad))} must be an integer >= 1"):
            train_noise_classifier(data, **bad)
    (folder / "classifier.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_classifier(folder)
    (folder / "classifier.json").write_text("[]")  # was an AttributeError: a list has no .get
    with pytest.raises(ValueError, match=r"classifier\.json holds a JSON list, not an object"):
        load_classifier(folder)
    with pytest.raises(ValueError, match=r"no config\.json"):
        save_classifier(tmp_path, clf, info)


def test_a_stopped_classifier_continues_to_the_same_weights(tmp_path):
    """``stop`` answering True after step 7 of 20 raises ClassifierStopped; its state, saved
    and read back as a checkpoint is (``weights_only``), continues the training, stopped again
    after step 19 (inside the last tenth, whose losses make ``final_loss``) and continued, to the
    very classifier and final loss of a run never stopped. A state of other settings is
    refused."""
    from diffvision.train.classifier import ClassifierStopped

    data = _tiny_labelled_images(torch.Generator().manual_seed(6))
    settings = dict(steps=20, batch=8, hidden=16, depth=1, seed=3)
    whole, whole_info = train_noise_classifier(data, **settings)
    state, steps_seen = None, []
    for stop_after in (7, 19):
        with pytest.raises(ClassifierStopped) as stopped:
            train_noise_classifier(
                data,
                **settings,
                state=state,
                progress=lambda step, loss: steps_seen.append(step),
                stop=lambda at=stop_after: steps_seen[-1] == at,
            )
        assert stopped.value.state["step"] == stop_after
        torch.save(stopped.value.state, tmp_path / "state.pt")
        state = torch.load(tmp_path / "state.pt", weights_only=True)
    clf, info = train_noise_classifier(
        data, **settings, state=state, progress=lambda step, loss: steps_seen.append(step)
    )
    assert steps_seen == list(range(1, 21))  # each step once
    for key, value in whole.state_dict().items():
        assert torch.equal(clf.state_dict()[key], value), key
    assert info["final_loss"] == whole_info["final_loss"]
    with pytest.raises(ValueError, match=r"saved state is of other settings \(seed\)"):
        train_noise_classifier(data, **{**settings, "seed": 4}, state=state)


def test_memory_checks_count_one_class_branch_per_image(monkeypatch):
    """What the memory checks of sampling and of the likelihood (``restore --solver dps``)
    count for a :class:`ClassMixture` is a lower bound of what it holds: its first class branch
    on one class per image, on the images one call takes (``max_batch``; all of them where a
    gradient keeps every call). They probed the mixture itself: every class its classifier kept
    on the test input (all ten of a uniform one), in calls of ``max_batch`` pairs, which counts
    neither the one-image cost nor the cost per image of any call it makes."""
    import importlib

    import diffvision.samplers as samplers
    from diffvision import memory
    from diffvision.denoiser import Denoiser, memory_probe
    from diffvision.nets.unet import build_unet

    likelihood_module = importlib.import_module("diffvision.samplers.likelihood")  # not the
    torch.manual_seed(0)  # function of that name, which the package exports
    model = Denoiser(build_unet("tiny", in_channels=1, out_channels=1, num_classes=10), "edm",
                     null_cond=10)  # fmt: skip
    mixture = ClassMixture(model, lambda x, sigma: torch.zeros(len(x), 10), max_batch=4)
    x = torch.randn(3, 1, 16, 16)
    probe, m = memory_probe(mixture, 8)
    assert m == 4 and memory_probe(mixture, 8, graph=True)[1] == 8
    assert torch.equal(probe(x, torch.ones(3)), model(x, torch.ones(3), torch.zeros(3).long()))
    assert memory_probe(model, 8) == (model, 8)
    monkeypatch.setattr(memory, "available_bytes", lambda device: 2**40)  # checks run
    counted = []

    def count(run_on, n, *rest):  # what check_batch_fits was given
        counted.append((memory.batch_bytes(run_on), n))

    def branch(x, sigma):
        return model(x, sigma, torch.zeros(len(x), dtype=torch.long))

    monkeypatch.setattr(samplers, "check_batch_fits", count)
    monkeypatch.setattr(likelihood_module, "check_batch_fits", count)
    samplers.check_sample_fits(mixture, (8, 1, 16, 16))  # calls of at most 4 pairs
    samplers.check_sample_fits(branch, (4, 1, 16, 16))
    likelihood_module.check_likelihood_fits(mixture, (8, 1, 16, 16))  # the gradient keeps all
    likelihood_module.check_likelihood_fits(branch, (8, 1, 16, 16))
    (mixed, n_mixed), (one, n_one), (mixed_grad, n_grad), (one_grad, n_one_grad) = counted
    assert (mixed, n_mixed) == (one, n_one) == (one, 4) and one[1] > 0
    assert (mixed_grad, n_grad) == (one_grad, n_one_grad) == (one_grad, 8)


def test_a_mixture_of_what_has_no_classes_or_of_another_classifier_is_refused():
    """``ClassMixture`` of a denoiser without class branches (an unconditional network, or a
    mixture) was a TypeError or the network's error at the first call; a classifier of fewer
    classes than the model mixed some of them alone, one of more took the null class for a
    class, both without a word; logits of another shape broke inside. Each is a ValueError."""
    from diffvision.denoiser import Denoiser
    from diffvision.nets.unet import build_unet

    def unet(classes):
        return Denoiser(build_unet("tiny", in_channels=1, out_channels=1, num_classes=classes),
                        "edm", null_cond=classes or None)  # fmt: skip

    def uniform(k):
        return lambda x, sigma: torch.zeros(len(x), k)

    model, x = unet(10), torch.zeros(2, 1, 8, 8)
    for denoiser in (unet(0), ClassMixture(model, uniform(10)), lambda x, sigma: x):
        with pytest.raises(ValueError, match="has none"):
            ClassMixture(denoiser, uniform(10))
    for logits in (uniform(5), uniform(11), lambda x, sigma: torch.zeros(10)):
        with pytest.raises(ValueError, match="for 2 images of a model of 10 classes: one row"):
            ClassMixture(model, logits)(x, 1.0)
    assert ClassMixture(model, uniform(10))(x, 1.0).shape == x.shape


def test_likelihood_through_the_mixture_counts_the_classifiers_gradient(labelled):
    """The PF-ODE likelihood of the mixture of exact branches weighted by the exact posterior
    is that of the exact unconditional denoiser (the same function, so the same integral to
    float64 round-off: 1e-8 nats allows for 64 evaluations of d = 6 divergences), because the
    divergence is taken through the weights p(c | x, sigma) as well as the branches. With the
    weights' gradient cut, the same weights give another density (off by more than a nat here)."""
    from diffvision.samplers.likelihood import likelihood

    exact, points, _ = labelled
    gen = torch.Generator().manual_seed(3)
    x = points[:6].double() + 0.05 * torch.randn(6, 1, 2, 3, generator=gen, dtype=torch.float64)

    def null(x, sigma):
        return exact(x, sigma, torch.full((len(x),), 3))

    def detached(x, sigma):
        return exact.class_log_posterior(x.detach(), sigma)

    options = {"sigma_min": 0.05, "steps": 16}
    want = likelihood(null, x, **options).log_prob
    mixture = ClassMixture(exact, exact.class_log_posterior, min_prob=0)
    torch.testing.assert_close(likelihood(mixture, x, **options).log_prob, want, rtol=0, atol=1e-8)
    cut = likelihood(ClassMixture(exact, detached, min_prob=0), x, **options).log_prob
    assert (cut - want).abs().max() > 1.0
