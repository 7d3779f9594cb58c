"""Model evaluation: sample, extract features, compare with real data, with spread over seeds and
the real-versus-real floor at the same N. Behind ``diffvision eval``.

Features come from a :class:`~diffvision.nets.features.FeatureNet` (a domain classifier or
autoencoder trained by ``diffvision eval train-features``) or from Inception-v3 loaded from a
local file (:mod:`diffvision.metrics.inception`).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from ..data import BUILTIN, ImageData, pooled_parts
from ..denoiser import ClassMixture, class_count, takes_cond
from ..process import check_int, is_int
from ..samplers import (
    check_likelihood_fits,
    check_sample_fits,
    dequantize,
    likelihood,
    nfe_of,
    sample,
    steps_for,
)
from .distribution import frechet_distance, kernel_distance, precision_recall

METRICS = ("fd", "kid", "precision", "recall", "density", "coverage")

#: Default steps of the built-in data sets' feature networks (a classifier; ~1 minute for digits).
FEATURE_STEPS = 500


def feature_cache() -> Path:
    """Where ``--features auto`` keeps the built-in data sets' feature networks:
    ``$DIFFVISION_HOME/features`` (default ``~/.cache/diffvision/features``)."""
    home = os.environ.get("DIFFVISION_HOME") or Path.home() / ".cache" / "diffvision"
    return Path(home) / "features"


def default_feature_net(data: ImageData, spec: str, progress=None):
    """The feature network for a built-in data set, or for built-in sets pooled with ``+``:
    loaded from :func:`feature_cache`, or trained there (``train_feature_net`` with its
    defaults, seed 0) the first time."""
    from ..io.model_folder import load_feature_net, save_feature_net
    from ..train.features import train_feature_net

    if any(part.split(":")[0] not in BUILTIN for part in pooled_parts(spec) or [spec]):
        raise ValueError(
            "--features auto works for the built-in data sets; for your own data run "
            "`diffvision eval train-features DATA --out FOLDER` and pass --features FOLDER"
        )
    folder = feature_cache() / f"{data.name}-{data.channels}x{data.size}"
    if not (folder / "config.json").is_file():
        net, info = train_feature_net(data, steps=FEATURE_STEPS, progress=progress)
        save_feature_net(folder, net, info)
    return load_feature_net(folder)


def get_features(spec: str, data: ImageData, data_spec: str = "", progress=None):
    """A feature extractor ``images -> N x F`` by spec: ``auto`` (the built-in data set's feature
    network), a feature-network folder, or an Inception-v3 weights file (``inception:FILE`` or a
    ``.pth`` / ``.pt`` / ``.safetensors`` path)."""
    from ..io.model_folder import load_feature_net
    from .inception import load_inception

    if spec == "auto":
        return default_feature_net(data, data_spec or data.name, progress)
    if spec.startswith("inception:"):
        return load_inception(spec.split(":", 1)[1])
    if spec == "inception":
        raise ValueError("give the Inception weights file: --features inception:FILE")
    path = Path(spec)
    if path.suffix in (".pth", ".pt", ".safetensors"):
        return load_inception(path)
    net = load_feature_net(path)
    made, given = (net.config.channels, net.config.size), (data.channels, data.size)
    if made != given:  # other channels were a RuntimeError; another size scored other features
        raise ValueError(
            f"{path} is a feature network for {made[0]} x {made[1]} x {made[1]} images; those "
            f"of {data.name} are {given[0]} x {given[1]} x {given[1]}: train one on them "
            "(`diffvision eval train-features`)"
        )
    return net


@torch.no_grad()
def extract(features: Callable[[Tensor], Tensor], images: Tensor, batch: int = 256) -> Tensor:
    """Features of ``N x C x H x W`` images in [-1, 1], in batches; ``N x F`` float64 on CPU."""
    return torch.cat([features(chunk).double().cpu() for chunk in images.split(batch)])


#: The k of precision / recall / density / coverage in :func:`compare`.
NEIGHBOURS = 5
#: The fewest images per set that :func:`compare` (and so :func:`evaluate`) takes: more than k.
MIN_IMAGES = NEIGHBOURS + 1


def compare(real: Tensor, fake: Tensor, seed: int = 0) -> dict[str, float]:
    """All distribution metrics of two feature sets (``N x F``): Fréchet distance, KID (mean
    over subsets) and precision / recall / density / coverage (k = ``NEIGHBOURS``)."""
    gen = torch.Generator().manual_seed(seed)
    kid, _ = kernel_distance(
        real, fake, subsets=50, subset_size=min(1000, len(real), len(fake)), generator=gen
    )
    return {
        "fd": frechet_distance(real, fake),
        "kid": kid,
        **precision_recall(real, fake, k=NEIGHBOURS),
    }


def _spread(rows: Sequence[dict[str, float]]) -> dict[str, dict[str, float]]:
    out = {}
    for key in rows[0]:
        values = torch.tensor([r[key] for r in rows], dtype=torch.float64)
        std = float(values.std()) if len(values) > 1 else math.nan
        out[key] = {"mean": float(values.mean()), "std": std}
    return out


def _labels_for(denoiser, n: int, classes: Sequence[int] | None) -> Tensor | None:
    """Balanced labels cycling over ``classes`` for a class-conditional model, else None (a
    denoiser that takes no condition, such as a :class:`~diffvision.ClassMixture`, is
    unconditional whatever its branches)."""
    num = (class_count(denoiser) or 0) if takes_cond(denoiser) else 0
    if num == 0 and classes:  # not silently ignored: the metrics would be of all classes
        raise ValueError("classes were asked for, but the model is unconditional")
    if num == 0 or classes == []:
        return None
    chosen = torch.tensor(list(classes) if classes is not None else range(num))
    if (chosen < 0).any() or (chosen >= num).any():
        raise ValueError(f"classes must lie in 0..{num - 1}")
    return chosen[torch.arange(n) % len(chosen)]


def generate(
    denoiser,
    n: int,
    shape: tuple[int, int, int],
    *,
    sampler: str,
    steps: int,
    seed: int,
    labels: Tensor | None = None,
    guidance: float = 1.0,
    batch: int = 500,
    device: torch.device | str = "cpu",
    callback=None,
) -> tuple[Tensor, float]:
    """``n`` samples (clamped to [-1, 1], on the CPU) and the seconds per sample it took;
    sampled on ``device`` (where the denoiser is), ``batch`` at a time, from the same CPU-drawn
    noise anywhere. ``callback``: the sampler's, after each step of each batch."""
    gen = torch.Generator().manual_seed(seed)
    out, start = [], time.perf_counter()
    with torch.no_grad():
        for lo in range(0, n, batch):
            m = min(batch, n - lo)
            cond = labels[lo : lo + m].to(device) if labels is not None else None
            x = sample(
                denoiser,
                (m, *shape),
                sampler=sampler,
                steps=steps,
                generator=gen,
                cond=cond,
                guidance=guidance,
                device=device,
                callback=callback,
            )
            out.append(x.clamp(-1, 1).cpu())
    return torch.cat(out), (time.perf_counter() - start) / n


def check_real_count(data: ImageData, needed: int, what: str) -> None:
    """Raise ValueError where ``what`` needs more real images, ``needed``, than ``data`` holds:
    called before any sampling, so that a count too large is refused at once, not after it."""
    if needed > len(data):
        raise ValueError(f"{what} needs {needed} real images and {data.name} has {len(data)}")


def labels_match(
    data: ImageData, model_classes: int | None, class_names: Sequence[str] | None = None
) -> bool:
    """Whether ``data``'s labels are those of a model of ``model_classes`` classes: as many
    classes (a digits model against digits or MNIST), and, where both name them, the same
    names in the same order (a cats-and-dogs model against a folder of two other classes)."""
    if data.labels is None or data.num_classes != model_classes:
        return False
    return not (class_names and data.class_names) or list(class_names) == list(data.class_names)


def real_pool(
    data: ImageData,
    classes: Sequence[int] | None,
    model_classes: int | None,
    class_names: Sequence[str] | None = None,
) -> Tensor | None:
    """The indices of the real images that samples of ``classes`` are compared with, where
    they are some of the data's: the images of these classes, where the data's labels are the
    model's (:func:`labels_match`; ``class_names``: the model's). None (every image) for all
    classes or the null class (``classes`` None or empty) and for other data."""
    if not classes or not labels_match(data, model_classes, class_names):
        return None
    return torch.isin(data.labels, torch.tensor(list(classes))).nonzero().flatten()


def check_floor_count(data: ImageData, n: int, pool: Tensor | None = None) -> None:
    """:func:`check_real_count` for :func:`evaluate`'s ``n``: its floor takes 2 n real images
    (of ``pool``, :func:`real_pool`, where it is some of them)."""
    what = f"--n {n}: the real-versus-real floor (2 x N)"
    if pool is not None and len(pool) < 2 * n:
        raise ValueError(f"{what} needs {2 * n} real images of the classes sampled and "
                         f"{data.name} has {len(pool)}")  # fmt: skip
    check_real_count(data, 2 * n, what)


def _real_subsets(
    data: ImageData, n: int, seed: int, pool: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Two disjoint random subsets of ``n`` real images (of ``pool``, where given; the second
    for the floor; ``2 n`` at most their number: :func:`check_floor_count`)."""
    count = len(data) if pool is None else len(pool)
    order = torch.randperm(count, generator=torch.Generator().manual_seed(10_000 + seed))
    if pool is not None:
        order = pool[order]
    return data.batch(order[:n])[0], data.batch(order[n : 2 * n])[0]


def sampling_steps(n: int, steps: int, seeds: int, batch: int) -> int:
    """How many sampler steps :func:`evaluate` takes (its ``callback``'s calls): ``steps`` for
    each batch of each seed."""
    return seeds * math.ceil(n / batch) * steps


def evaluate(
    denoiser,
    data: ImageData,
    features,
    *,
    n: int = 500,
    sampler: str = "unipc",
    steps: int = 20,
    seeds: Sequence[int] = (0, 1, 2),
    classes: Sequence[int] | None = None,
    guidance: float = 1.0,
    samples: list | None = None,
    batch: int = 500,
    device: torch.device | str = "cpu",
    class_names: Sequence[str] | None = None,
    callback=None,
) -> dict:
    """Evaluate a model against real data.

    For each seed: ``n`` samples (class-conditional models: labels cycling over ``classes``,
    default all; ``classes=[]`` samples the null class) against ``n`` random real images, and
    the same metrics between two disjoint sets of ``n`` real images (the floor: what a perfect
    model would score at this N).

    Returns a JSON-able dict: ``metrics`` and ``floor`` (each metric's mean and std over seeds),
    ``per_seed``, ``seconds_per_sample`` and, when ``features`` has a classifier and the model is
    class-conditional, ``class_accuracy`` (per requested class, pooled over seeds) and
    ``accuracy``. ``samples`` (a list), if given, receives the first seed's images. ``batch``:
    images sampled at a time (see :func:`generate`); a batch that surely cannot fit in memory
    is refused before any sampling (ValueError; :func:`~diffvision.samplers.check_sample_fits`).
    ``device``: where the denoiser is and samples; the metrics are computed on the CPU.
    ``class_names``: the model's (e.g. its class folders'); where they and ``data``'s differ,
    the data's labels are not the model's (:func:`labels_match`): the samples are compared with
    every real image, and no accuracy is reported. ``callback``: the sampler's, after each step
    (:func:`sampling_steps` of them in all).
    """
    check_int("n", n, MIN_IMAGES)  # 0 was an error from torch.cat, 1.5 a TypeError, 5 refused
    # by precision_recall after the sampling
    check_int("batch", batch, 1)
    if not (seeds and all(is_int(s) for s in seeds)):  # none was an IndexError
        raise ValueError(f"seeds must be one integer or more, not {seeds!r}")
    shape = (data.channels, data.size, data.size)
    labels = _labels_for(denoiser, n, classes)
    model_classes = class_count(denoiser)
    same = labels_match(data, model_classes, class_names)
    pool = real_pool(data, classes if labels is not None else None, model_classes, class_names)
    check_floor_count(data, n, pool)
    first = min(batch, n)  # once for all seeds: a batch that surely cannot fit is refused
    check_sample_fits(
        denoiser, (first, *shape), cond=None if labels is None else labels[:first].to(device),
        guidance=guidance, device=device, advice="lower the batch (eval --batch)",
    )  # fmt: skip
    # accuracy only where the feature classifier's classes can be the model's (a 10-class one
    # scored a 2-class model's labels as if they were its own classes 0 and 1)
    classes_seen = getattr(getattr(features, "config", None), "classes", 0)
    classify = classes_seen > 0 and classes_seen == model_classes
    classify = classify and (same or data.labels is None)  # a classifier of other classes
    rows, floor_rows, times, correct = [], [], [], []
    for seed in seeds:
        images, secs = generate(
            denoiser,
            n,
            shape,
            sampler=sampler,
            steps=steps,
            seed=seed,
            labels=labels,
            guidance=guidance,
            batch=batch,
            device=device,
            callback=callback,
        )
        if samples is not None and not samples:
            samples.append(images)
        real_a, real_b = _real_subsets(data, n, seed, pool)
        fa, fb, fg = (extract(features, x) for x in (real_a, real_b, images))
        rows.append(compare(fa, fg, seed))
        floor_rows.append(compare(fa, fb, seed))
        times.append(secs)
        if classify and labels is not None:
            with torch.no_grad():
                pred = torch.cat([features.logits(c).argmax(1) for c in images.split(256)])
            correct.append(pred == labels)
    result = {
        "n": n,
        "sampler": sampler,
        "steps": steps,
        "seeds": list(seeds),
        "guidance": guidance,
        "metrics": _spread(rows),
        "floor": _spread(floor_rows),
        "per_seed": rows,
        "seconds_per_sample": float(torch.tensor(times).median()),
        # the real images compared: of the classes sampled, or all of the data's
        "real_classes": None if pool is None else sorted(set(classes)),
    }
    if correct:
        hits = torch.stack(correct).double()  # seeds x n
        result["accuracy"] = float(hits.mean())
        per_class = {}
        for c in labels.unique().tolist():
            per_class[str(c)] = float(hits[:, labels == c].mean())
        result["class_accuracy"] = per_class
    return result


@contextlib.contextmanager
def _float32_prior(denoiser):
    """What :func:`bits_per_dim` integrates, as a context manager: ``denoiser``, for a
    class-conditional model its null class, with a ``Denoiser``'s ``autocast`` off meanwhile
    (bf16 rounding would swamp the divergence estimate), also a :class:`ClassMixture`'s."""
    null = getattr(denoiser, "null_cond", None)
    prior = denoiser
    if null is not None and _labels_for(denoiser, 1, None) is not None:

        def prior(x, sigma):
            return denoiser(x, sigma, torch.full((len(x),), null, device=x.device))

    network = denoiser.denoiser if isinstance(denoiser, ClassMixture) else denoiser
    autocast = getattr(network, "autocast", None)
    if autocast is not None:
        network.autocast = None
    try:
        yield prior
    finally:
        if autocast is not None:
            network.autocast = autocast


def check_bits_per_dim_fits(
    denoiser, shape: tuple[int, ...], n: int, batch: int, device: torch.device | str = "cpu"
) -> None:
    """Raise ValueError when :func:`bits_per_dim` of ``n`` images of ``shape`` (C x H x W),
    ``batch`` at a time, surely does not fit in memory
    (:func:`~diffvision.samplers.check_likelihood_fits`)."""
    with _float32_prior(denoiser) as prior:
        check_likelihood_fits(
            prior, (min(batch, n), *shape), device=device, advice="lower the batch (eval --batch)"
        )


#: Runge-Kutta steps of :func:`bits_per_dim`'s likelihood (4 network evaluations each).
BPD_STEPS = 32


def bits_per_dim(
    denoiser,
    data: ImageData,
    n: int = 100,
    *,
    seed: int = 0,
    steps: int = BPD_STEPS,
    batch: int = 500,
    device: torch.device | str = "cpu",
    callback=None,
):
    """Negative log-likelihood in bits/dim of ``n`` random real images (uniformly dequantised
    8-bit values) by the PF-ODE (:func:`~diffvision.samplers.likelihood`), ``batch`` at a time
    (each batch's Hutchinson probes drawn in turn; a batch that surely cannot fit in memory is
    refused first: :func:`check_bits_per_dim_fits`); class-conditional models are evaluated
    through their null class (a :class:`ClassMixture` of their branches is unconditional: its
    likelihood takes the divergence through the branches and the classifier), and always in
    float32 (a ``Denoiser``'s ``autocast`` is off meanwhile: bf16 rounding would swamp the
    divergence estimate), on ``device`` (where the denoiser is). ``callback``:
    :func:`~diffvision.samplers.likelihood`'s, after each of its ``steps`` for each batch.
    Returns ``{"mean", "std_err", "n"}``."""
    check_int("n", n, 1)  # 1.5 was a TypeError
    check_int("batch", batch, 1)  # 0 was a RuntimeError from split
    check_real_count(data, n, f"bits/dim of {n} images")  # randperm(len(data))[:n] took fewer
    gen = torch.Generator().manual_seed(20_000 + seed)
    order = torch.randperm(len(data), generator=gen)[:n]
    x = dequantize(data.batch(order)[0], gen).to(device)
    lo = max(getattr(denoiser, "sigma_min", 0.002), 1e-3)
    hi = getattr(denoiser, "sigma_max", 80.0)
    check_bits_per_dim_fits(denoiser, tuple(x.shape[1:]), n, batch, device)
    with _float32_prior(denoiser) as prior:
        bpd = torch.cat([
            likelihood(
                prior, chunk, sigma_min=lo, sigma_max=hi, steps=steps, bins=256, generator=gen,
                callback=callback,
            ).bits_per_dim.double()
            for chunk in x.split(batch)
        ])  # fmt: skip
    return {"mean": float(bpd.mean()), "std_err": float(bpd.std() / len(bpd) ** 0.5), "n": n}


def sweep(
    denoiser,
    data: ImageData,
    features,
    *,
    samplers: Sequence[str],
    nfes: Sequence[int],
    progress=None,
    **options,
) -> list[dict]:
    """:func:`evaluate` for every sampler at every NFE budget (steps chosen by :func:`steps_for`);
    one row per run: sampler, steps, nfe (spent), budget (asked) and the :func:`evaluate`
    result."""
    rows = []
    for name in samplers:
        for nfe in nfes:
            steps = steps_for(name, nfe)
            result = evaluate(denoiser, data, features, sampler=name, steps=steps, **options)
            actual = nfe_of(name, steps)
            rows.append({"sampler": name, "steps": steps, "nfe": actual, "budget": nfe, **result})
            if progress is not None:
                progress(rows[-1])
    return rows


def plus_minus(mean: float, spread: float) -> str:
    """``"mean ± spread"``, or the mean alone where the spread is undefined (NaN: one seed)."""
    return f"{mean:.4g}" if math.isnan(spread) else f"{mean:.4g} ± {spread:.2g}"


def format_result(result: dict, class_names: Sequence[str] | None = None) -> str:
    """A one-screen text table of an :func:`evaluate` result; classes written by their
    ``class_names`` (indexed by class) where given, else by index."""

    def name(c) -> str:
        return class_names[int(c)] if class_names else str(c)

    n_seeds = len(result["seeds"])
    lines = [
        f"{result['sampler']}, {result['steps']} steps, N = {result['n']}, "
        f"{n_seeds} seed{'s' if n_seeds > 1 else ' (no spread)'}, "
        f"{result['seconds_per_sample'] * 1e3:.2f} ms/sample",
    ]
    if result.get("real_classes") is not None:
        names = ", ".join(map(name, result["real_classes"]))
        lines.append(f"real images of the classes sampled: {names}")
    lines.append(f"{'metric':<10} {'model':>22} {'real vs real':>22}")
    for key in METRICS:
        m, f = result["metrics"][key], result["floor"][key]
        model, floor = plus_minus(m["mean"], m["std"]), plus_minus(f["mean"], f["std"])
        lines.append(f"{key:<10} {model:>22} {floor:>22}")
    if "class_accuracy" in result:
        per = "  ".join(f"{name(c)}:{a:.2f}" for c, a in result["class_accuracy"].items())
        lines.append(f"classifier accuracy {result['accuracy']:.3f} ({per})")
    return "\n".join(lines)


def format_sweep(rows: list[dict]) -> str:
    """A text table of :func:`sweep` rows: Fréchet distance (mean ± std) and accuracy by NFE."""
    lines = [f"{'sampler':<15} {'NFE':>4} {'steps':>5} {'FD':>20} {'accuracy':>9}"]
    for r in rows:
        fd = r["metrics"]["fd"]
        acc = f"{r['accuracy']:.3f}" if "accuracy" in r else "-"
        fd_text = plus_minus(fd["mean"], fd["std"])
        lines.append(f"{r['sampler']:<15} {r['nfe']:>4} {r['steps']:>5} {fd_text:>20} {acc:>9}")
    floor = rows[0]["floor"]["fd"]
    lines.append(f"real vs real floor FD {plus_minus(floor['mean'], floor['std'])}")
    return "\n".join(lines)


def plot_sweep(rows: list[dict], path: str | Path, title: str = "") -> Path:
    """A PNG of :func:`sweep_figure`: Fréchet distance (and classifier accuracy, when present)
    against NFE."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = sweep_figure(rows, title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def sweep_figure(rows: list[dict], title: str = ""):
    """The matplotlib figure of :func:`sweep` rows: Fréchet distance (and classifier accuracy,
    when present) against NFE, one line per sampler, with the real-versus-real floor; log-log
    axes for the distance, the NFE run and the distances written as plain numbers."""
    import matplotlib
    import matplotlib.pyplot as plt

    has_acc = any("accuracy" in r for r in rows)
    fig, axes = plt.subplots(1, 2 if has_acc else 1, figsize=(11 if has_acc else 6, 4.2))
    axes = list(axes) if has_acc else [axes]
    for name in dict.fromkeys(r["sampler"] for r in rows):
        mine = sorted((r for r in rows if r["sampler"] == name), key=lambda r: r["nfe"])
        nfe = [r["nfe"] for r in mine]
        fd = [r["metrics"]["fd"]["mean"] for r in mine]
        err = [r["metrics"]["fd"]["std"] for r in mine]
        axes[0].errorbar(nfe, fd, yerr=err, marker="o", ms=3, capsize=2, label=name)
        if has_acc:
            axes[1].plot(nfe, [r.get("accuracy", math.nan) for r in mine], marker="o", ms=3)
    floor = rows[0]["floor"]["fd"]["mean"]
    axes[0].axhline(floor, color="k", ls="--", lw=1, label="real vs real")
    axes[0].set(xscale="log", yscale="log", xlabel="NFE", ylabel="Fréchet distance")
    axes[0].legend(fontsize=7, ncol=2)
    if has_acc:
        axes[1].set(xscale="log", xlabel="NFE", ylabel="classifier accuracy")
    ticks = sorted({r["nfe"] for r in rows})  # the NFE run, as plain numbers (not 3 x 10^0)
    for ax in axes:
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    axes[0].yaxis.set_major_formatter(matplotlib.ticker.LogFormatter())  # 200, not 2 x 10^2;
    axes[0].yaxis.set_minor_formatter(  # minor ticks labelled where the axis spans little
        matplotlib.ticker.LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4))
    )
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
