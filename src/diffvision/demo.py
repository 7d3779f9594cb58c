"""``diffvision demo``: train a class-conditional model on the built-in digits on the CPU (and a
noise-aware classifier for unconditional sampling by the class-posterior mixture), sample
unconditional and class-conditional grids, check them with a digit classifier and write an HTML
report (grids, loss curve, settings, checks, time and peak memory)."""

from __future__ import annotations

import base64
import html
import io
import json
import resource
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from .data import digits
from .denoiser import ClassMixture
from .io.atomic import write_text_whole, write_whole
from .io.images import make_grid, to_pil
from .io.model_folder import load_classifier
from .samplers import sample
from .train import TrainConfig, Trainer
from .train.checkpoint import check_fresh

#: The demo configuration (8x8 digits, small U-Net, EDM). Trains in minutes on 2 CPU cores.
DEMO_CONFIG = TrainConfig(
    preset="small",
    # Two levels (8x8, 4x4) suit 8x8 digits: 0.76 M parameters, attention at 4x4.
    net={"channel_mult": (1, 2), "num_res_blocks": 1, "attn_levels": (1,)},
    steps=2000,
    batch=128,
    lr=1e-3,
    warmup=100,
    lr_schedule="cosine",
    schedule="edm",
    prediction="edm",
    classes=True,
    label_dropout=0.2,  # enough null-class training for good unconditional samples
    # Regress on the exact posterior mean of the 1,797 digits (by class; all for the null class):
    # no target noise at the noise levels where the null branch picks a class.
    target="empirical",
    ema_decay=0.999,
    checkpoint_every=1000,
    keep_checkpoints=1,
    log_every=25,
    # The null branch alone leaves the classes unbalanced (bench/results/demo_checkpoints.md);
    # unconditional samples mix the class branches by a noise-aware classifier instead.
    classifier_steps=8000,
)
SAMPLER, SAMPLER_STEPS, GUIDANCE = "unipc", 20, 1.0
N_PER_CLASS = 100


def digit_split(seed: int = 0):
    """scikit-learn's digits (64 pixel values 0..16 per row) split 70/30, stratified:
    ``x_train, x_test, y_train, y_test``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    raw = load_digits()
    return train_test_split(
        raw.data, raw.target, test_size=0.3, random_state=seed, stratify=raw.target
    )


def digit_classifier(seed: int = 0):
    """An SVM on scikit-learn's digits (pixel values 0..16), fitted on a 70% split; returns the
    fitted classifier and its held-out accuracy."""
    from sklearn.svm import SVC

    x_tr, x_te, y_tr, y_te = digit_split(seed)
    clf = SVC(gamma=0.001, C=10.0).fit(x_tr, y_tr)
    return clf, float(clf.score(x_te, y_te))


def classify(clf, images: torch.Tensor) -> np.ndarray:
    """Labels for ``N x 1 x 8 x 8`` images in [-1, 1] (mapped to the classifier's 0..16 scale)."""
    pixels = ((images.clamp(-1, 1) + 1) * 8).reshape(len(images), -1).cpu().numpy()
    return clf.predict(pixels)


def unconditional_samples(
    model, n: int, gen: torch.Generator, clf, *, null: int | None = 10, callback=None
):
    """``n`` unconditional samples of ``model``, their class counts and the chi-square result
    against uniform. ``model`` is a class model sampled with the ``null`` label (its null branch)
    or, with ``null=None``, an unconditional ``D(x, sigma)`` such as a
    :class:`~diffvision.denoiser.ClassMixture`. EDM's sigma range when the model has none.
    ``callback``: the sampler's, after each of its ``SAMPLER_STEPS`` steps."""
    from scipy.stats import chisquare

    with torch.no_grad():
        images = sample(
            model,
            (n, 1, 8, 8),
            sampler=SAMPLER,
            steps=SAMPLER_STEPS,
            cond=None if null is None else torch.full((n,), null),
            generator=gen,
            callback=callback,
        )
    counts = np.bincount(classify(clf, images), minlength=10)
    return images, counts, chisquare(counts)


def unconditional_counts(
    model, seed: int, n: int = 1000, clf=None, *, null: int | None = 10
) -> tuple[list[int], float]:
    """Class counts of ``n`` unconditional samples (see :func:`unconditional_samples`) and the
    chi-square p-value against uniform."""
    if clf is None:
        clf, _ = digit_classifier(0)
    gen = torch.Generator().manual_seed(seed)
    _, counts, chi = unconditional_samples(model, n, gen, clf, null=null)
    return counts.tolist(), float(chi.pvalue)


def demo_mixture(model, folder: Path) -> ClassMixture:
    """The demo's unconditional denoiser: ``model``'s class branches mixed by the noise
    classifier saved in ``folder`` (``DEMO_CONFIG.classifier_steps`` > 0)."""
    clf = load_classifier(folder)
    if clf is None:
        raise ValueError(f"{folder} has no noise classifier")
    return ClassMixture(model, clf)


def quality_checks(
    model,
    *,
    mixture=None,
    seed: int = 0,
    n_per_class: int = N_PER_CLASS,
    guidance: float = GUIDANCE,
    callback=None,
) -> dict:
    """Class-conditional agreement and unconditional class balance of a digits model.

    Unconditional samples come from ``mixture`` (an unconditional ``D(x, sigma)``, the demo's
    class-posterior mixture) when given, else from the null branch. ``callback``: the
    sampler's, after each step of the two runs (``2 * SAMPLER_STEPS`` calls).

    Returns a dict with the classifier's held-out accuracy, the fraction of class-conditional
    samples labelled as the class asked for, and for unconditional samples the class counts
    with the chi-square statistic and p-value against uniform (9 degrees of freedom)."""
    clf, held_out = digit_classifier(seed)
    gen = torch.Generator().manual_seed(seed + 100)
    labels = torch.arange(10).repeat_interleave(n_per_class)
    with torch.no_grad():
        cond_images = sample(
            model,
            (len(labels), 1, 8, 8),
            sampler=SAMPLER,
            steps=SAMPLER_STEPS,
            cond=labels,
            guidance=guidance,
            generator=gen,
            callback=callback,
        )
    n = 10 * n_per_class
    if mixture is None:
        images, counts, chi = unconditional_samples(model, n, gen, clf, callback=callback)
        uncond = {"unconditional": "null class"}
    else:
        images, counts, chi = unconditional_samples(
            mixture, n, gen, clf, null=None, callback=callback
        )
        uncond = {
            "unconditional": "class-posterior mixture",
            "mixture_classes_per_call": mixture.evaluations / max(1, mixture.rows),
        }
    agree = float((classify(clf, cond_images) == labels.numpy()).mean())
    return {
        "classifier_held_out_accuracy": held_out,
        "conditional_agreement": agree,
        "guidance": guidance,
        "unconditional_counts": counts.tolist(),
        "chi_square": float(chi.statistic),
        "chi_square_p": float(chi.pvalue),
        "samples_per_check": len(labels),
        "sampler": f"{SAMPLER}, {SAMPLER_STEPS} steps",
        "_images": (cond_images, images),
        **uncond,
    }


def _png_data_uri(pil_image) -> str:
    buf = io.BytesIO()
    pil_image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _loss_curve(metrics_path: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in metrics_path.read_text().splitlines() if line]
    fig, ax = plt.subplots(figsize=(6, 3), dpi=100)
    ax.plot([r["step"] for r in records], [r["loss"] for r in records])
    ax.set_xlabel("step")
    ax.set_ylabel("loss (EDM-weighted)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    (metrics_path.parent / "loss.png").write_bytes(buf.getvalue())
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _interrupted_with(summary_path: Path, settings: dict) -> bool:
    """Whether ``demo.json`` marks a demo that was interrupted while training with these
    ``settings`` (its checkpoints are then continued); an unreadable one marks none."""
    try:
        earlier = json.loads(summary_path.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(earlier, dict):
        return False
    return earlier.get("finished") is False and earlier.get("settings") == settings


def run_demo(
    out: Path,
    *,
    steps: int | None = None,
    seed: int = 0,
    progress: bool = True,
    n_per_class: int = N_PER_CLASS,
    classifier_steps: int | None = None,
) -> Path:
    """Train, sample, check, report. Returns the path of ``report.html``. ``steps`` and
    ``classifier_steps`` override the demo's (for quick tests; 0 classifier steps: null class).
    ``progress``: progress bars (training, the noise classifier, the sampling of the checks)."""
    from tqdm.auto import tqdm

    cfg = TrainConfig(**{**asdict(DEMO_CONFIG), "seed": seed})
    if classifier_steps is not None:
        cfg.classifier_steps = classifier_steps
    if steps is not None:
        cfg.steps = steps
        cfg.checkpoint_every = min(cfg.checkpoint_every, steps)
    out.mkdir(parents=True, exist_ok=True)
    summary_path = out / "demo.json"  # written first as a mark of the demo's folder
    settings = json.loads(json.dumps(asdict(cfg)))  # as demo.json holds them
    earlier = summary_path.is_file()
    interrupted = earlier and _interrupted_with(summary_path, settings)
    if not earlier:
        check_fresh(out, "the demo trains afresh: give it another --out, or delete that folder")
    elif not interrupted:  # an earlier demo's, finished or with other settings: replaced
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    write_text_whole(summary_path, json.dumps({"settings": settings, "finished": False}, indent=1))
    start = time.time()
    trainer = Trainer(cfg, digits(), out, device="cpu")
    resumed = trainer.step if interrupted and trainer.resume() else None
    if resumed is not None:  # nothing lost to an interruption: same weights, bit for bit
        print(f"continuing the interrupted demo in {out} from step {resumed}")
    try:
        trainer.fit(progress=progress)
    finally:
        trainer.close()
    train_seconds = time.time() - start
    model = trainer.ema.module.eval()
    mixture = demo_mixture(model, out / "model") if cfg.classifier_steps else None
    # 1,000 class-conditional and 1,000 unconditional samples: about 50 s on 2 cores
    with tqdm(total=2 * SAMPLER_STEPS, desc="sample and check", unit="step", leave=False,
              disable=not progress) as bar:  # fmt: skip
        checks = quality_checks(
            model, mixture=mixture, seed=seed, n_per_class=n_per_class,
            callback=lambda info: bar.update(1),
        )  # fmt: skip
    cond_images, uncond_images = checks.pop("_images")
    sample_seconds = time.time() - start - train_seconds
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    per_class = cond_images.reshape(10, -1, 1, 8, 8)[:, :10].reshape(-1, 1, 8, 8)
    row = min(10, n_per_class)
    cond_png = to_pil(make_grid(per_class, nrow=row), upscale=6)
    uncond_png = to_pil(make_grid(uncond_images[:100], nrow=10), upscale=6)
    write_whole(out / "samples_conditional.png", cond_png.save)
    write_whole(out / "samples_unconditional.png", uncond_png.save)
    summary = {
        "finished": True,
        "resumed_at_step": resumed,  # train_seconds: from there on
        "train_seconds": round(train_seconds, 1),
        "classifier_seconds": mixture.class_logits.info["seconds"] if mixture else None,
        "sample_and_check_seconds": round(sample_seconds, 1),
        "peak_memory_mib": round(peak_mib, 1),
        "threads": torch.get_num_threads(),
        "settings": asdict(cfg),
        "checks": checks,
        "model": str(out / "model"),
    }
    write_text_whole(summary_path, json.dumps(summary, indent=1))
    report = out / "report.html"
    write_text_whole(
        report,
        _html(
            summary,
            _png_data_uri(cond_png),
            _png_data_uri(uncond_png),
            _loss_curve(out / "metrics.jsonl"),
        ),
    )
    return report


def _html(summary: dict, cond_uri: str, uncond_uri: str, loss_uri: str) -> str:
    c = summary["checks"]
    mixture_line = ""
    if "mixture_classes_per_call" in c:
        mixture_line = (
            "\n<li>Unconditional samples mix the class branches by a noise-aware classifier "
            f"p(class | x, sigma) (trained in {summary['classifier_seconds']} s, part of the "
            f"training time), evaluating {c['mixture_classes_per_call']:.1f} of 10 branches per "
            "sample and step.</li>"
        )
    resumed = summary.get("resumed_at_step")
    resumed = "" if resumed is None else f" (from step {resumed} on, after an interruption)"
    settings = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>"
        for k, v in summary["settings"].items()
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>diffvision demo</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}img{{image-rendering:pixelated}}
td{{padding:0 1em 0 0}}</style></head><body>
<h1>diffvision demo: digits</h1>
<p>A class-conditional U-Net trained on scikit-learn's 1,797 digits (8x8) for
{summary["settings"]["steps"]} steps in {summary["train_seconds"]} s{resumed} on
{summary["threads"]} CPU threads; peak memory {summary["peak_memory_mib"]} MiB.
Model folder: <code>{html.escape(summary["model"])}</code>.</p>
<h2>Class-conditional samples (one row per digit, guidance {c["guidance"]})</h2>
<img src="{cond_uri}" alt="class-conditional samples">
<h2>Unconditional samples ({html.escape(c["unconditional"])})</h2>
<img src="{uncond_uri}" alt="unconditional samples">
<h2>Checks</h2>
<ul>
<li>Digit classifier (SVM, held-out accuracy {c["classifier_held_out_accuracy"]:.3f}) labels
{100 * c["conditional_agreement"]:.1f}% of {c["samples_per_check"]} class-conditional samples as
the class asked for.</li>
<li>Unconditional class counts ({html.escape(c["unconditional"])})
{c["unconditional_counts"]}: chi-square {c["chi_square"]:.1f}, p = {c["chi_square_p"]:.3f} against
uniform.</li>{mixture_line}
<li>Sampler: {html.escape(c["sampler"])}.</li>
</ul>
<h2>Training loss</h2>
<img src="{loss_uri}" alt="loss curve">
<h2>Settings</h2>
<table>{settings}</table>
</body></html>
"""
