"""Model evaluation: feature networks train, save and load; ``evaluate`` separates an exact model
of the data from a mode-dropping one and reports per-class accuracy; ``diffvision eval``."""

import json
import math
import re
import shutil
from types import SimpleNamespace

import pytest
import torch

from diffvision.analytic import EmpiricalDenoiser
from diffvision.data import digits
from diffvision.data.dataset import ImageData
from diffvision.io import load_feature_net, save_feature_net
from diffvision.metrics import evaluate as ev
from diffvision.train.features import train_feature_net
from tests.cli_run import run, run_here


@pytest.fixture(scope="module")
def data():
    return digits()


@pytest.fixture(scope="module")
def feature_net(data, tmp_path_factory):
    net, info = train_feature_net(data, steps=150, seed=0)
    folder = save_feature_net(tmp_path_factory.mktemp("features") / "digits", net, info)
    return net, info, folder


def test_feature_net_learns_and_round_trips(data, feature_net):
    net, info, folder = feature_net
    # 359 held-out digits: 90% is far above chance (10%) and below what 150 steps reach (~97%).
    assert info["task"] == "classifier" and info["holdout_accuracy"] > 0.9
    loaded = load_feature_net(folder)
    images = data.batch(torch.arange(20))[0]
    with torch.no_grad():
        assert torch.equal(net(images), loaded(images))
    assert loaded.info["holdout_accuracy"] == info["holdout_accuracy"]


def test_autoencoder_for_unlabelled_data(data):
    unlabelled = digits()
    unlabelled.labels = None
    net, info = train_feature_net(unlabelled, steps=60, seed=0)
    assert info["task"] == "autoencoder"
    # Pixel variance of digits in [-1, 1] is ~0.5; a working autoencoder is well below it.
    assert info["holdout_mse"] < 0.35
    with pytest.raises(ValueError, match="no classifier"):
        net.logits(data.batch(torch.arange(2))[0])
    # Two images: one fifth held out rounds to none, so no held-out score: refused, not "nan".
    two = ImageData(unlabelled.images[:2], channels=1, size=8, name="two")
    with pytest.raises(ValueError, match="two: 2 images are too few to train a feature network"):
        train_feature_net(two, steps=1)
    assert (
        train_feature_net(ImageData(unlabelled.images[:3], channels=1, size=8), steps=1)[1][
            "holdout_images"
        ]
        == 1
    )


class ClassEmpirical:
    """Exact class-conditional model: the empirical denoiser of each class's images; the null
    class (10) is the empirical denoiser of all images."""

    def __init__(self, images, labels, keep=range(10)):
        self.per_class = {c: EmpiricalDenoiser(images[labels == c]) for c in keep}
        self.all = EmpiricalDenoiser(images[torch.isin(labels, torch.tensor(list(keep)))])
        self.net = SimpleNamespace(config=SimpleNamespace(num_classes=10))
        self.null_cond = 10

    def __call__(self, x, sigma, cond=None):
        if cond is None:
            return self.all(x, sigma)
        out = torch.empty_like(x)
        sigma = torch.as_tensor(sigma, dtype=x.dtype).expand(len(x))
        for c in cond.unique().tolist():
            pick = cond == c
            model = self.all if c == 10 else self.per_class[c]
            out[pick] = model(x[pick], sigma[pick])
        return out


def test_evaluate_separates_exact_from_mode_dropping(data, feature_net):
    net = feature_net[0]
    images, labels = data.batch(torch.arange(len(data)))
    exact = ClassEmpirical(images, labels)
    half = ClassEmpirical(images, labels, keep=range(5))
    options = {"n": 300, "seeds": (0, 1), "steps": 10, "classes": []}  # null class: unconditional
    good = ev.evaluate(exact, data, net, **options)
    bad = ev.evaluate(half, data, net, **options)
    # The exact model samples the data itself: its distance is at the real-vs-real floor level
    # (within 3x, the floor's own seed-to-seed range), the mode-dropping model's far above it.
    floor = good["floor"]["fd"]["mean"]
    assert good["metrics"]["fd"]["mean"] < 3 * floor
    assert bad["metrics"]["fd"]["mean"] > 5 * good["metrics"]["fd"]["mean"]
    # Dropping half the classes halves recall and keeps precision.
    assert bad["metrics"]["recall"]["mean"] < 0.7 * good["metrics"]["recall"]["mean"]
    assert bad["metrics"]["precision"]["mean"] > 0.8 * good["metrics"]["precision"]["mean"]
    assert good["seconds_per_sample"] > 0 and len(good["per_seed"]) == 2
    assert "class_accuracy" not in good  # null-class samples have no requested class
    text = ev.format_result(good)
    assert "real vs real" in text and "fd" in text


def test_evaluate_reports_per_class_accuracy(data, feature_net):
    net, info, _ = feature_net
    images, labels = data.batch(torch.arange(len(data)))
    exact = ClassEmpirical(images, labels)
    result = ev.evaluate(exact, data, net, n=150, seeds=(0,), steps=10, classes=[1, 7])
    assert set(result["class_accuracy"]) == {"1", "7"}
    # The real images compared are of the classes sampled (they were of all ten, so the exact
    # model of ones and sevens scored far from its floor): its distance is at the floor's level.
    assert result["real_classes"] == [1, 7]
    assert result["metrics"]["fd"]["mean"] < 3 * result["floor"]["fd"]["mean"]  # as above
    assert "real images of the classes sampled: 1, 7" in ev.format_result(result)
    names = [f"digit{i}" for i in range(10)]  # as class folders name them: the table uses names
    text = ev.format_result(result, names)
    assert "classes sampled: digit1, digit7" in text and re.search(
        r"\(digit1:[\d.]+  digit7:", text
    )
    with pytest.raises(ValueError, match="needs 200 real images of the classes sampled and digit"):
        ev.evaluate(exact, data, net, n=100, seeds=(0,), steps=2, classes=[1])  # 182 ones
    # Samples of an exact class model are that class's training digits: the classifier labels
    # them about as well as its held-out digits (which it never saw).
    assert result["accuracy"] > info["holdout_accuracy"] - 0.05
    # One seed: the spread is undefined, and the table shows the mean alone, not "± nan".
    text = ev.format_result(result)
    assert "nan" not in text and "1 seed (no spread)" in text
    assert ev.plus_minus(2.5, 0.25) == "2.5 ± 0.25" and ev.plus_minus(2.5, math.nan) == "2.5"
    # A model of 12 classes: its labels are not the 10-class classifier's: no accuracy (it
    # scored the model's labels as the classifier's own classes).
    exact.net.config.num_classes = 12
    other = ev.evaluate(exact, data, net, n=20, seeds=(0,), steps=2, classes=[1, 7])
    assert "class_accuracy" not in other and "accuracy" not in other
    exact.net.config.num_classes = 10
    # As many classes, named otherwise (the model's class folders): the labels are not the
    # model's either: all real images, no accuracy.
    names = [f"folder{i}" for i in range(10)]
    other = ev.evaluate(exact, data, net, n=20, seeds=(0,), steps=2, classes=[1, 7],
                        class_names=names)  # fmt: skip
    assert "accuracy" not in other and other["real_classes"] is None
    assert ev.labels_match(data, 10, [str(i) for i in range(10)]) and ev.labels_match(data, 10)
    with pytest.raises(ValueError, match=r"0\.\.9"):
        ev.evaluate(exact, data, net, n=20, seeds=(0,), steps=2, classes=[12])
    with pytest.raises(ValueError, match=r"floor \(2 x N\) needs 2000 real images"):
        ev.evaluate(exact, data, net, n=1000, seeds=(0,), steps=2)


def test_sweep_table_and_plot(data, feature_net, tmp_path):
    net = feature_net[0]
    images, labels = data.batch(torch.arange(len(data)))
    exact = ClassEmpirical(images, labels)
    rows = ev.sweep(
        exact, data, net, samplers=["euler", "heun"], nfes=[3, 9], n=100, seeds=(0,), classes=[]
    )
    assert [(r["sampler"], r["nfe"]) for r in rows] == [
        ("euler", 3),
        ("euler", 9),
        ("heun", 3),
        ("heun", 9),
    ]
    table = ev.format_sweep(rows)
    assert "real vs real floor" in table and "nan" not in table  # one seed: no "± nan"
    png = ev.plot_sweep(rows, tmp_path / "sweep.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    # The NFE axis shows the NFE run, the distance axis plain numbers (they were written as
    # 3 x 10^0 and 2 x 10^2 where the range spans less than a decade).
    import matplotlib.pyplot as plt

    fig = ev.sweep_figure(rows)
    fig.canvas.draw()
    for ax in fig.axes:
        assert [t.get_text() for t in ax.get_xticklabels()] == ["3", "9"]
    shown = [t.get_text() for t in fig.axes[0].get_yticklabels() if t.get_text()]
    assert shown and all(re.fullmatch(r"[\d.]+", text) for text in shown), shown
    plt.close(fig)


def test_eval_command(tmp_path, tiny_digits_model, monkeypatch):
    monkeypatch.setenv("TQDM_MININTERVAL", "0")  # the progress bars show every step
    feats = tmp_path / "features"
    result = run("eval", "train-features", "digits", "--steps", "20", "--out", str(feats))
    assert result.returncode == 0, result.stderr
    assert "held-out accuracy" in result.stdout
    out = tmp_path / "eval.json"
    result = run(
        "eval",
        str(tiny_digits_model),
        "--data",
        "digits",
        "--features",
        str(feats),
        "--n",
        "40",
        "--seeds",
        "2",
        "--steps",
        "2",
        "--classes",
        "3",
        "--bpd",
        "4",
        "--bf16",  # sampling in bf16; bits/dim in float32 (test_bits_per_dim_runs_in_float32)
        "--json",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert "real vs real" in result.stdout and "classifier accuracy" in result.stdout
    saved = json.loads(out.read_text())
    assert saved["n"] == 40 and set(saved["class_accuracy"]) == {"3"}
    assert "bits/dim" in result.stdout and saved["bits_per_dim"]["n"] == 4
    # progress on stderr: 2 seeds x 1 batch x 2 steps; one batch x 32 Runge-Kutta steps
    assert "sample: 100%" in result.stderr and "| 4/4 [" in result.stderr, result.stderr
    assert "bits/dim: 100%" in result.stderr and "| 32/32 [" in result.stderr
    assert saved["bits_per_dim"]["unconditional"] == "null"  # a class model's: its null class
    plot = tmp_path / "sweep.png"
    result = run(
        "eval",
        str(tiny_digits_model),
        "--data",
        "digits",
        "--features",
        str(feats),
        "--n",
        "30",
        "--seeds",
        "1",
        "--device",
        "cpu",
        "--sweep-steps",
        "2,3",
        "--samplers",
        "euler",
        "--plot",
        str(plot),
        "--json",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert plot.is_file() and "floor" in result.stdout and "nan" not in result.stdout
    # one bar for the sweep: 1 seed x 1 batch x (2 + 3) euler steps
    assert "sample: 100%" in result.stderr and "| 5/5 [" in result.stderr, result.stderr
    quiet = run_here("eval", str(tiny_digits_model), "--data", "digits", "--features",
                     str(feats), "--n", "30", "--seeds", "1", "--quiet")  # fmt: skip
    assert quiet.returncode == 0 and "real vs real" in quiet.stdout, quiet.stderr
    assert not quiet.stderr  # no bar
    # One seed: no spread over seeds, written as null (strict JSON has no NaN).
    saved = json.loads(out.read_text(), parse_constant=lambda name: pytest.fail(name))
    assert saved["sweep"][0]["metrics"]["fd"]["std"] is None
    assert saved["sweep"][0]["metrics"]["fd"]["mean"] > 0
    if not torch.cuda.is_available():  # test_cuda.py runs it where there is a GPU
        bad = run_here("eval", str(tiny_digits_model), "--data", "digits", "--device", "cuda")
        assert bad.returncode == 2 and "no CUDA device is available" in bad.stderr
    bad = run_here(
        "eval", str(tiny_digits_model), "--data", "digits", "--features", str(tmp_path / "x.pth")
    )
    assert bad.returncode == 2 and "not found" in bad.stderr and len(bad.stderr.splitlines()) == 1
    bad = run_here(
        "eval", str(tiny_digits_model), "--data", "digits", "--features", str(tiny_digits_model)
    )
    assert bad.returncode == 2 and "not a feature network" in bad.stderr
    bad = run_here("eval", "train-features", "digits")
    assert bad.returncode == 2 and "--out" in bad.stderr
    mine = tmp_path / "mine"  # someone's folder as --out: refused before training, kept
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    bad = run_here("eval", "train-features", "digits", "--out", str(mine))
    assert bad.returncode == 2 and "holds 'notes.txt', which no model folder" in bad.stderr
    assert (mine / "notes.txt").read_text() == "keep" and "accuracy" not in bad.stdout
    model = tmp_path / "model"  # a diffusion model's folder: not replaced by a feature network
    shutil.copytree(tiny_digits_model, model)
    bad = run_here("eval", "train-features", "digits", "--out", str(model))
    assert bad.returncode == 2 and "holds a diffusion model, not a feature network" in bad.stderr
    assert (model / "ema.safetensors").is_file()
    bad = run_here("eval", str(tiny_digits_model), "--data", "digits", "--sweep-steps", "2",
                   "--plot", str(tmp_path / "sweep.txt"))  # fmt: skip
    assert bad.returncode == 2 and "argument --plot: not a plot file" in bad.stderr  # before it
    same = tmp_path / "same.png"  # the JSON would be written over the plot
    bad = run_here("eval", str(tiny_digits_model), "--data", "digits", "--sweep-steps", "2",
                   "--plot", str(same), "--json", str(same))  # fmt: skip
    assert bad.returncode == 2 and "--json and --plot name one file" in bad.stderr
    assert not same.exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--sweep-steps", "5,5"], "argument --sweep-steps: 5 is listed twice in '5,5'"),
        (["--sweep-steps", "5,0"], "argument --sweep-steps: must be positive: '0'"),
        (["--sweep-steps", ","], "expected comma-separated integers, got ','"),
        (["--sweep-steps", "5", "--samplers", "heun,foo"], "--samplers: unknown sampler 'foo'"),
        (["--sweep-steps", "5", "--samplers", "heun,heun"], "heun is listed twice"),
        (["--sweep-steps", "5", "--steps", "20"], "--steps would be unused: --sweep-steps gives"),
        (["--sweep-steps", "5", "--sampler", "heun"], "--sampler would be unused"),
        (["--samplers", "heun"], "--samplers needs --sweep-steps"),
        (["--samplers", "heun", "--plot", "p.png"], "--samplers and --plot need --sweep-steps"),
        (["--classes", "1,1"], "argument --classes: 1 is listed twice in '1,1'"),
        (["--sampler", "foo"], "argument --sampler: unknown sampler 'foo'"),
    ],
)
def test_eval_refuses_options_it_would_not_use_first(options, message, tmp_path, monkeypatch):
    """Lists without repeats (``--sweep-steps 5,5`` swept 5 twice), known samplers, and only the
    options the run uses (``--samplers`` without ``--sweep-steps`` was ignored; ``--plot``
    without it was refused after the model and its features were loaded; ``--steps`` in a sweep
    was ignored): refused in one line before the model is read (here there is none)."""
    monkeypatch.chdir(tmp_path)
    bad = run_here("eval", "no-model", "--data", "digits", *options)
    assert bad.returncode == 2 and message in bad.stderr, bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and not list(tmp_path.iterdir())


def test_bits_per_dim_runs_in_float32():
    # A model set to bf16 (eval --bf16) is evaluated with its autocast off, and gets it back.
    from diffvision.analytic import GaussianDenoiser
    from diffvision.data import ImageData

    seen = []

    class Spy(GaussianDenoiser):
        autocast = torch.bfloat16

        def __call__(self, x, sigma):
            seen.append(self.autocast)
            return super().__call__(x, sigma)

    images = torch.randint(0, 256, (3, 1, 2, 2), dtype=torch.uint8)
    data = ImageData(images, channels=1, size=2)
    spy = Spy(torch.zeros(1, 2, 2), torch.full((4,), 0.25))
    result = ev.bits_per_dim(spy, data, 2, steps=4)
    assert result["n"] == 2 and seen and set(seen) == {None}
    assert spy.autocast == torch.bfloat16
    # the same of a class model's branches in a ClassMixture (eval --bpd of a class model)
    from diffvision.analytic import EmpiricalDenoiser
    from diffvision.denoiser import ClassMixture

    class Branches:
        autocast = torch.bfloat16

        def __init__(self):
            points = torch.randn(6, 1, 2, 2, generator=torch.Generator().manual_seed(0))
            self.exact = EmpiricalDenoiser(points, torch.arange(6) % 3, null_cond=3)

        def __call__(self, x, sigma, cond):
            seen.append(self.autocast)
            return self.exact(x, sigma, cond)

    branches, seen[:] = Branches(), []
    mixture = ClassMixture(branches, branches.exact.class_log_posterior)
    assert ev.bits_per_dim(mixture, data, 2, steps=4)["n"] == 2
    assert seen and set(seen) == {None} and branches.autocast == torch.bfloat16


def test_counts_beyond_the_real_images_are_refused_before_any_work(monkeypatch, tiny_digits_model):
    """``--n`` whose floor needs more real images than the data holds (2 x 900 > 1797 digits),
    or ``--bpd`` more than it holds, is refused in one line before a feature network is trained
    or anything sampled (``--n`` was refused after sampling, ``--bpd`` took fewer images and
    reported the count asked); so are the library's calls."""

    def no_work(*args, **kwargs):
        raise AssertionError("worked before refusing")

    monkeypatch.setattr(ev, "get_features", no_work)
    monkeypatch.setattr(ev, "generate", no_work)
    args = ["eval", str(tiny_digits_model), "--data", "digits", "--steps", "1"]
    for extra, message in [
        (["--n", "899"], "needs 1798 real images and digits has 1797"),  # one more
        (["--n", "900"], "--n 900: the real-versus-real floor (2 x N) needs 1800 real images"),
        (["--n", "10", "--bpd", "1798"], "--bpd 1798 needs 1798 real images and digits has 1797"),
    ]:
        bad = run_here(*args, *extra)
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
        assert message in bad.stderr
    data = digits()
    with pytest.raises(ValueError, match="bits/dim of 1798 images needs 1798 real images"):
        ev.bits_per_dim(None, data, 1798)
    with pytest.raises(ValueError, match="floor"):
        ev.evaluate(None, data, None, n=900)
    # classes asked of an unconditional model: refused, not ignored (all classes were scored)
    unconditional = EmpiricalDenoiser(data.batch(torch.arange(50))[0])
    with pytest.raises(ValueError, match="classes were asked for, but the model is uncondit"):
        ev.evaluate(unconditional, data, None, n=10, classes=[1, 2])
    # the library's counts, refused before any work (were errors from torch.cat, range(),
    # split and list indexing, or TypeErrors)
    for call, message in [
        (lambda: ev.evaluate(None, data, None, n=0), "n must be an integer >= 6, not 0"),
        (lambda: ev.evaluate(None, data, None, n=1.5), "n must be an integer >= 6, not 1.5"),
        (lambda: ev.evaluate(None, data, None, n=5), "n must be an integer >= 6, not 5"),
        (lambda: ev.evaluate(None, data, None, batch=0), "batch must be an integer >= 1, not 0"),
        (lambda: ev.evaluate(None, data, None, seeds=()), "seeds must be one integer or more"),
        (lambda: ev.bits_per_dim(None, data, 1.5), "n must be an integer >= 1, not 1.5"),
        (lambda: ev.bits_per_dim(None, data, 2, batch=0), "batch must be an integer >= 1"),
        (lambda: ev.steps_for("euler", 0), "nfe must be an integer >= 1, not 0"),  # was 1 step
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            call()


def test_auto_features_for_built_in_sets_pooled(tmp_path, monkeypatch):
    # --features auto trains a feature net once per built-in set, pooled ones too (a model
    # trained on photos+deadleaves is evaluated on that pool), and loads it from the cache after.
    from diffvision.data import load_data

    monkeypatch.setenv("DIFFVISION_HOME", str(tmp_path))
    monkeypatch.setattr(ev, "FEATURE_STEPS", 2)
    pool = load_data("digits+faces", 8)
    net = ev.get_features("auto", pool, "digits+faces")
    assert (tmp_path / "features" / "digits+faces-1x8" / "config.json").is_file()

    def no_training(*args, **kwargs):
        raise AssertionError("trained again instead of loading the cached net")

    monkeypatch.setattr("diffvision.train.features.train_feature_net", no_training)
    again = ev.get_features("auto", pool, "digits+faces")
    images = pool.batch(torch.arange(4))[0]
    with torch.no_grad():
        assert torch.equal(net(images), again(images))
    for spec in (str(tmp_path), f"digits+{tmp_path}"):  # a folder, alone or pooled: not built in
        with pytest.raises(ValueError, match="built-in data sets"):
            ev.get_features("auto", pool, spec)


def test_feature_training_shows_its_progress(tmp_path, tiny_digits_model, monkeypatch):
    """``eval --features auto`` trains the built-in set's feature network the first time, with a
    progress bar (none when it loads the cached one, none with ``--quiet``), as ``eval
    train-features`` does."""
    monkeypatch.setenv("DIFFVISION_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(ev, "FEATURE_STEPS", 2)
    args = ["eval", str(tiny_digits_model), "--data", "digits", "--n", "30", "--seeds", "1"]
    first = run_here(*args, "--steps", "1")
    assert first.returncode == 0 and "feature network: 100%" in first.stderr, first.stderr
    assert "| 2/2 [" in first.stderr
    again = run_here(*args, "--steps", "1")
    assert again.returncode == 0 and "feature network" not in again.stderr, again.stderr
    made = run_here("eval", "train-features", "digits", "--steps", "3", "--out",
                    str(tmp_path / "f"))  # fmt: skip
    assert made.returncode == 0 and "feature network: 100%" in made.stderr, made.stderr
    assert "| 3/3 [" in made.stderr
    quiet = run_here("eval", "train-features", "digits", "--steps", "3", "--quiet", "--out",
                     str(tmp_path / "g"))  # fmt: skip
    assert quiet.returncode == 0 and not quiet.stderr, quiet.stderr


def test_interrupted_sweep_keeps_the_runs_done(tmp_path, tiny_digits_model, feature_net,
                                               monkeypatch, capsys):  # fmt: skip
    """`eval --sweep-steps --json`: each run is printed and written as it ends, so Ctrl-C in
    the second run leaves the first one on disk, marked incomplete."""
    from diffvision.cli import main

    real, calls = ev.evaluate, []

    def second_is_interrupted(*args, **kwargs):
        calls.append(kwargs["steps"])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(ev, "evaluate", second_is_interrupted)
    out = tmp_path / "sweep.json"
    code = main(["eval", str(tiny_digits_model), "--data", "digits", "--features",
                 str(feature_net[2]), "--n", "30", "--seeds", "1", "--sweep-steps", "2,3",
                 "--samplers", "euler", "--json", str(out)])  # fmt: skip
    assert code == 130 and calls == [2, 3]
    assert "euler, NFE 2: FD " in capsys.readouterr().out
    saved = json.loads(out.read_text())
    assert saved["complete"] is False and [r["nfe"] for r in saved["sweep"]] == [2]
    assert not list(tmp_path.glob("*.tmp"))
    monkeypatch.setattr(ev, "evaluate", real)
    code = main(["eval", str(tiny_digits_model), "--data", "digits", "--features",
                 str(feature_net[2]), "--n", "30", "--seeds", "1", "--sweep-steps", "2,3",
                 "--samplers", "euler", "--json", str(out)])  # fmt: skip
    saved = json.loads(out.read_text())
    assert code == 0 and saved["complete"] is True and len(saved["sweep"]) == 2


def test_class_options_are_checked_before_any_work(monkeypatch, tiny_digits_model, tmp_path):
    """``--guidance`` where no class is sampled (``--classes none``, or an unconditional model)
    was a traceback from inside the sampler; ``--classes none`` for an unconditional model was
    ignored; a class the model lacks was refused after the model and its features were loaded.
    Each is now refused in one line before any work."""

    def no_work(*args, **kwargs):
        raise AssertionError("worked before refusing")

    monkeypatch.setattr(ev, "get_features", no_work)
    monkeypatch.setattr(ev, "generate", no_work)
    plain = tmp_path / "plain"  # an unconditional model's folder (only its config is read)
    shutil.copytree(tiny_digits_model, plain)
    config = json.loads((plain / "config.json").read_text())
    config["net"]["num_classes"] = 0
    (plain / "config.json").write_text(json.dumps(config))
    for model, extra, message in [
        (tiny_digits_model, ["--classes", "10"], "--classes 10: the model's classes are 0..9"),
        (tiny_digits_model, ["--classes", "none", "--guidance", "2"],
         "--guidance needs classes to guide towards: --classes none samples none"),
        (plain, ["--guidance", "2"], "--guidance needs classes to guide towards: the model is "),
        (plain, ["--classes", "none"], "this model is unconditional: --classes is not available"),
        (plain, ["--classes", "3"], "this model is unconditional: --classes is not available"),
        (tiny_digits_model, ["--classes", "-1"], "--classes -1: the model's classes are 0..9"),
    ]:  # fmt: skip
        bad = run_here("eval", str(model), "--data", "digits", *extra)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1


def test_a_feature_network_of_other_images_is_refused(tmp_path):
    """``--features FOLDER`` trained on images of other channels (a RuntimeError from its first
    convolution) or another size (features it never learnt, scored without a word) is refused,
    naming both shapes; one of the data's shape is taken."""
    from diffvision.nets.features import FeatureNet, FeatureNetConfig

    data = digits()  # 1 x 8 x 8
    for channels, size, refused in ((3, 8, True), (1, 16, True), (1, 8, False)):
        folder = tmp_path / f"f{channels}_{size}"
        net = FeatureNet(FeatureNetConfig(channels=channels, size=size))
        save_feature_net(folder, net, {"task": "classifier"})
        if refused:
            message = (f"is a feature network for {channels} x {size} x {size} images; those of "
                       "digits are 1 x 8 x 8: train one on them")  # fmt: skip
            with pytest.raises(ValueError, match=re.escape(message)):
                ev.get_features(str(folder), data)
        else:
            assert ev.get_features(str(folder), data).config.size == 8


def test_classes_none_samples_the_class_mixture_as_sample_does(monkeypatch, tmp_path):
    """``eval --classes none`` measures a class model's unconditional samples as ``sample``
    draws them without ``--class``: the class-posterior mixture where the folder has a noise
    classifier (it sampled the null class), the null class with ``--unconditional null``;
    ``--bpd`` is the likelihood of the same unconditional model (it was the null class's, also
    beside ``--classes 3``). A model without a null class but with a classifier is measured, its
    bits/dim too (both were refused); ``--unconditional`` without ``--classes none`` or
    ``--bpd`` is refused."""
    from diffvision.denoiser import ClassMixture, Denoiser

    made = run_here("train", "--data", "digits", "--preset", "tiny", "--steps", "1", "--batch",
                    "4", "--classifier-steps", "1", "--out", str(tmp_path / "run"),
                    "--quiet")  # fmt: skip
    assert made.returncode == 0, made.stderr
    model = tmp_path / "run" / "model"
    used = {}

    def spy(name):
        def record(denoiser, *args, **kwargs):
            used[name] = denoiser
            raise SystemExit(0)  # what was given is all this test needs

        return record

    monkeypatch.setattr(ev, "get_features", lambda *args: None)
    monkeypatch.setattr(ev, "evaluate", spy("evaluate"))
    for extra, kind in [([], ClassMixture), (["--unconditional", "null"], Denoiser),
                        (["--unconditional", "mixture"], ClassMixture)]:  # fmt: skip
        run_here("eval", str(model), "--data", "digits", "--classes", "none", *extra)
        assert type(used.pop("evaluate")) is kind, extra
    run_here("eval", str(model), "--data", "digits", "--classes", "3", "--n", "50")
    assert type(used.pop("evaluate")) is Denoiser
    monkeypatch.setattr(ev, "evaluate", lambda *args, **kwargs: {})
    monkeypatch.setattr(ev, "format_result", lambda *args: "")
    saved = tmp_path / "e.json"  # the JSON says which unconditional model was measured
    for extra, kind in [(["--classes", "none"], "mixture"),
                        (["--classes", "none", "--unconditional", "null"], "null"),
                        (["--classes", "3", "--n", "50"], None)]:  # fmt: skip
        done = run_here("eval", str(model), "--data", "digits", *extra, "--json", str(saved))
        assert done.returncode == 0, done.stderr
        assert json.loads(saved.read_text()).get("unconditional") == kind, extra
    monkeypatch.setattr(ev, "bits_per_dim", spy("bits_per_dim"))
    for extra, kind in [(["--classes", "none"], ClassMixture),
                        (["--classes", "3", "--n", "50"], ClassMixture),
                        (["--unconditional", "null"], Denoiser)]:  # fmt: skip
        done = run_here("eval", str(model), "--data", "digits", "--bpd", "5", *extra)
        assert type(used.pop("bits_per_dim", None)) is kind, (extra, done.stderr)
    config = json.loads((model / "config.json").read_text())
    config["training"]["label_dropout"] = 0.0  # as trained with --label-dropout 0
    (model / "config.json").write_text(json.dumps(config))
    run_here("eval", str(model), "--data", "digits", "--bpd", "5")
    assert type(used.pop("bits_per_dim")) is ClassMixture
    monkeypatch.setattr(ev, "evaluate", spy("evaluate"))
    run_here("eval", str(model), "--data", "digits", "--classes", "none")
    assert type(used.pop("evaluate")) is ClassMixture
    bad = run_here("eval", str(model), "--data", "digits", "--unconditional", "mixture")
    said = "--unconditional is for a class model's --classes none (its unconditional samples)"
    assert bad.returncode == 2 and said in bad.stderr, bad.stderr
