"""Training the noise-aware classifier ``p(c | x, sigma)`` (:mod:`diffvision.nets.classifier`)
that turns a class-conditional model into an unconditional one by the class-posterior mixture
(:class:`~diffvision.denoiser.ClassMixture`)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..data import ImageData
from ..data.transforms import hflip as flip_images
from ..nets.classifier import NoiseClassifier, NoiseClassifierConfig
from ..process import add_noise, check_int


class ClassifierStopped(KeyboardInterrupt):
    """Raised by :func:`train_noise_classifier` when its ``stop()`` turned true after a step:
    :attr:`state` (tensors, numbers and strings only: ``torch.save`` it and read it back with
    ``torch.load(weights_only=True)``) continues the training from that step, as ``state=``, to
    the same classifier, bit for bit, as a run never stopped."""

    def __init__(self, state: dict) -> None:
        super().__init__(f"asked to stop (the noise classifier at step {state['step']})")
        self.state = state


def train_noise_classifier(
    data: ImageData,
    *,
    steps: int = 4000,
    batch: int = 256,
    lr: float = 1e-3,
    sigma_range: tuple[float, float] = (0.05, 80.0),
    hidden: int = 256,
    depth: int = 3,
    seed: int = 0,
    hflip: bool = False,
    device: str | torch.device = "cpu",
    progress=None,
    stop: Callable[[], bool] | None = None,
    state: dict | None = None,
) -> tuple[NoiseClassifier, dict]:
    """Fit ``p(c | x0 + sigma n, sigma)`` on the labelled ``data`` by cross-entropy.

    Each step draws ``batch`` images (with replacement), noise levels log-uniform in
    ``sigma_range`` (data units, images in [-1, 1]) and Gaussian noise; AdamW (weight decay 1e-4)
    with a cosine learning rate from ``lr`` to 0. All of it is seeded by ``seed`` (the global
    random state is left as it was). The classifier sees all of ``data``: it is meant to give the
    posterior of the distribution the diffusion model learned, i.e. of the training set, with the
    same random horizontal flips when the model was trained with them (``hflip``).
    ``progress``: called after each step with the steps done and that step's loss (nats).
    ``stop``: asked after each step but the last; where it answers True, the training raises
    :class:`ClassifierStopped`, whose ``state`` given back as ``state`` continues it (ValueError
    where that state was made with other settings or data).

    Returns:
        the classifier in eval mode and a JSON-able ``info`` dict (settings, the mean loss of the
        last tenth of the steps in nats, seconds).
    """
    if data.labels is None or data.num_classes < 2:
        raise ValueError(f"{data.name}: a noise classifier needs labelled data with 2+ classes")
    check_int("steps", steps, 1)
    check_int("batch", batch, 1)
    lo, hi = sigma_range
    if not 0 < lo < hi:
        raise ValueError("sigma_range must be (low, high) with 0 < low < high")
    gen = torch.Generator().manual_seed(seed)
    config = NoiseClassifierConfig(
        data.channels, data.size, data.num_classes, hidden=hidden, depth=depth
    )
    with torch.random.fork_rng(devices=[]):  # nn.Linear draws its initial weights globally
        torch.manual_seed(seed)
        clf = NoiseClassifier(config, generator=gen).to(device)
    opt = torch.optim.AdamW(clf.parameters(), lr=lr, weight_decay=1e-4)
    settings = {"steps": steps, "batch": batch, "lr": lr, "sigma_range": [lo, hi], "seed": seed}
    settings.update(hflip=hflip, data=data.describe())  # those of info, and the network's:
    kept = {**settings, "hidden": hidden, "depth": depth}  # what a saved state must match
    first, tail, spent = 0, [], 0.0
    if state is not None:  # where a stopped run left off: weights, optimiser, random stream
        differ = sorted(k for k in kept if state["settings"].get(k) != kept[k])
        if differ:
            raise ValueError(
                f"the noise classifier's saved state is of other settings ({', '.join(differ)})"
            )
        clf.load_state_dict(state["classifier"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        first, tail, spent = int(state["step"]), list(state["tail"]), float(state["seconds"])
    start = time.time()
    clf.train()
    for step in range(first, steps):
        images, labels = data.batch(torch.randint(0, len(data), (batch,), generator=gen))
        if hflip:
            images = flip_images(images, torch.rand(batch, generator=gen) < 0.5)
        sigma = (
            math.log(lo) + (math.log(hi) - math.log(lo)) * torch.rand(batch, generator=gen)
        ).exp()
        noisy = add_noise(images, sigma, torch.randn(images.shape, generator=gen))
        loss = F.cross_entropy(clf(noisy.to(device), sigma.to(device)), labels.to(device))
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        value = loss.item()
        if step >= steps - max(1, steps // 10):
            tail.append(value)
        if progress is not None:
            progress(step + 1, value)
        if stop is not None and step + 1 < steps and stop():
            raise ClassifierStopped({
                "settings": kept,
                "step": step + 1,
                "classifier": clf.state_dict(),
                "optimizer": opt.state_dict(),
                "generator": gen.get_state(),
                "tail": tail,
                "seconds": spent + time.time() - start,
            })  # fmt: skip
    info = {
        **settings,
        "final_loss": sum(tail) / len(tail),
        "seconds": round(spent + time.time() - start, 1),
    }
    return clf.eval(), info
