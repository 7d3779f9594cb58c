"""The training loop: AdamW with warm-up, gradient clipping, EMA, bf16 autocast, gradient
accumulation, class-label dropout, DDP under torchrun, checkpoints and exact resume.

Reproducibility: every random draw of step t (data order, noise levels, noise, label dropout,
flips, dropout masks) comes from generators seeded by ``(seed, t, rank, micro-batch)``, and the
data order is a fixed function of the step. A run resumed from a checkpoint therefore continues
exactly as the uninterrupted run would have (same threads, same device).
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..data.dataset import ImageData
from ..data.transforms import hflip
from ..denoiser import PREDICTIONS, Denoiser
from ..hardware import native_bf16
from ..io.atomic import write_text_whole, write_whole
from ..io.images import save_grid
from ..io.model_folder import check_replaceable, model_config, save_classifier, save_model_folder
from ..nets.unet import PRESETS, build_unet
from ..process import LOSS_WEIGHTS, check_int, check_nonnegative, get_schedule, is_int
from ..samplers import sample
from ..seeds import MAX_SEED, derived_seed
from .checkpoint import (
    check_fresh,
    list_checkpoints,
    load_state,
    save_checkpoint,
    set_rng_state,
)
from .classifier import ClassifierStopped, train_noise_classifier
from .distributed import DistInfo, cleanup, setup
from .ema import EMA
from .loss import DEFAULT_WEIGHTING, denoising_loss, empirical_reference
from .memory import check_step_fits
from .progress import loss_bar
from .stop import StopRequest

#: Where, under a run's ``checkpoints/``, a stopped noise classifier keeps its training state.
CLASSIFIER_STATE = "classifier_state.pt"

SCHEDULE_DEFAULTS = {"edm": {}, "linear": {}, "cosine": {}, "vp": {}, "ve": {"sigma_max": 80.0}}


@dataclass
class TrainConfig:
    """Training settings (stored with every checkpoint and in the model's config.json)."""

    preset: str = "small"
    net: dict = field(default_factory=dict)  # overrides of the preset (UNetConfig fields)
    steps: int = 2000
    batch: int = 64  # global batch per optimiser step (split over processes)
    lr: float = 1e-3
    warmup: int = 100
    lr_schedule: str = "constant"  # after warm-up: constant, or cosine decay to 0 at `steps`
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    schedule: str = "edm"
    schedule_options: dict = field(default_factory=dict)  # e.g. {"p_mean": -1.2} for edm
    prediction: str = "edm"
    weighting: str | None = None  # default: the natural weighting of the prediction
    classes: bool = True  # condition on labels when the data has them
    label_dropout: float = 0.1
    # "sample": regress on x0; "empirical": on the training set's exact posterior mean
    # E[x0 | x, label] (same optimum, less gradient noise; small data sets only)
    target: str = "sample"
    accumulation: int = 1
    bf16: bool = False
    channels_last: bool = False
    hflip: bool = False
    dropout: float | None = None  # override the preset's dropout
    seed: int = 0
    checkpoint_every: int = 500
    keep_checkpoints: int = 2  # the newest checkpoints kept; 0: every one
    sample_every: int = 0  # 0: a grid at each checkpoint and at the end
    log_every: int = 10
    # After training a class-conditional model: fit a noise-aware classifier p(c | x, sigma) for
    # this many steps and save it in the model folder (unconditional sampling by the mixture
    # sum_c p(c | x, sigma) D(x, sigma, c), see denoiser.ClassMixture); 0: none.
    classifier_steps: int = 0

    def validate(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose from {', '.join(PRESETS)}")
        if self.prediction not in PREDICTIONS:
            raise ValueError(
                f"unknown prediction {self.prediction!r}; choose from {', '.join(PREDICTIONS)}"
            )
        if self.schedule not in SCHEDULE_DEFAULTS:
            raise ValueError(
                f"unknown schedule {self.schedule!r}; choose from {', '.join(SCHEDULE_DEFAULTS)}"
            )
        if self.weighting is not None and self.weighting not in LOSS_WEIGHTS:
            raise ValueError(
                f"unknown weighting {self.weighting!r}; choose from {', '.join(LOSS_WEIGHTS)}"
            )
        # counts are integers: a hand-edited config.json could hold 1.5 or true
        for name, least in (
            ("steps", 1),
            ("batch", 1),
            ("accumulation", 1),
            ("checkpoint_every", 1),
            ("log_every", 1),
            ("warmup", 0),
            ("sample_every", 0),
            ("classifier_steps", 0),
            ("keep_checkpoints", 0),
        ):
            check_int(name, getattr(self, name), least)
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError("lr must be positive")
        if not 0 <= self.label_dropout <= 1:  # also rejects nan
            raise ValueError("label_dropout must be in [0, 1]")
        check_nonnegative(weight_decay=self.weight_decay, grad_clip=self.grad_clip)
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError("lr_schedule must be constant or cosine")
        if self.target not in ("sample", "empirical"):
            raise ValueError("target must be sample or empirical")
        if not (is_int(self.seed) and 0 <= self.seed <= MAX_SEED):
            raise ValueError("seed must be an integer in 0..2**63 - 1")

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up over ``cfg.warmup`` steps, then constant or a cosine decay to 0."""
    lr = cfg.lr * min(1.0, (step + 1) / max(cfg.warmup, 1))
    if cfg.lr_schedule == "cosine" and step >= cfg.warmup:
        progress = (step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1)
        lr = cfg.lr * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return lr


def batch_positions(step: int, batch: int, n: int, seed: int) -> torch.Tensor:
    """Data indices of global step ``step``: positions ``[step*batch, (step+1)*batch)`` of an
    endless stream of per-epoch random permutations of ``range(n)``."""
    start = step * batch
    out = []
    while len(out) < batch:
        epoch, offset = divmod(start + len(out), n)
        perm = torch.randperm(
            n, generator=torch.Generator().manual_seed(derived_seed(seed, epoch, 7))
        )
        out.extend(perm[offset : offset + batch - len(out)].tolist())
    return torch.tensor(out, dtype=torch.long)


def _logged_step(line: str) -> int | None:
    """The step of a ``metrics.jsonl`` line; None for an empty or torn one (a process killed
    while it wrote its last line)."""
    try:
        return json.loads(line).get("step", 0)
    except json.JSONDecodeError:
        return None


class Trainer:
    """Builds the model for a data set and trains it; see :func:`train`."""

    def __init__(self, cfg: TrainConfig, data: ImageData, out: str | Path, *, device: str = "auto"):
        cfg.validate()
        self.cfg, self.data, self.out = cfg, data, Path(out)
        self.dist: DistInfo = setup(device)
        if cfg.batch % (self.dist.world * cfg.accumulation):
            raise ValueError(
                f"batch {cfg.batch} must be divisible by processes x accumulation "
                f"({self.dist.world} x {cfg.accumulation})"
            )
        self.num_classes = data.num_classes if cfg.classes else 0
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        overrides = {**cfg.net, "in_channels": data.channels, "num_classes": self.num_classes}
        if cfg.dropout is not None:
            overrides["dropout"] = cfg.dropout
        net = build_unet(cfg.preset, **overrides)
        schedule = get_schedule(
            cfg.schedule, **{**SCHEDULE_DEFAULTS[cfg.schedule], **cfg.schedule_options}
        )
        self.model = Denoiser(
            net, cfg.prediction, schedule, null_cond=self.num_classes if self.num_classes else None
        )
        self.model.to(self.dist.device)
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.ema = EMA(self.model, cfg.ema_decay)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        self.weighting = cfg.weighting or DEFAULT_WEIGHTING[cfg.prediction]
        self.reference = None
        if cfg.target == "empirical":
            self.reference = empirical_reference(
                data, hflip=cfg.hflip, null_cond=self.model.null_cond, device=self.dist.device
            )
        micro = cfg.batch // self.dist.world // cfg.accumulation
        factor = 2 ** (len(net.config.channel_mult) - 1)  # the U-Net's downsampling
        check_step_fits(self._loss_on, self.model, micro, data.size, factor, self.dist.device)
        self.step = 0
        self._tensorboard = None  # created on first log; False when TensorBoard is missing
        self.ddp = (
            DistributedDataParallel(
                self.model,
                device_ids=[self.dist.device.index] if self.dist.device.type == "cuda" else None,
            )
            if self.dist.world > 1
            else self.model
        )

    # --------------------------------------------------------------------------- config
    def config(self, **extra) -> dict:
        return model_config(
            self.model.net,
            self.model,
            sample_shape=[self.data.channels, self.data.size, self.data.size],
            data=self.data.describe(),
            training=asdict(self.cfg),
            step=self.step,  # the steps trained (a checkpoint's: fewer than training["steps"])
            hardware=self.hardware(),
            **extra,
        )

    def hardware(self) -> dict:
        """Where the model was trained (for benchmark reports): device kind and name, processes,
        CPU threads per process, and whether the device computes in bfloat16 natively (None:
        unknown), which decides whether ``bf16`` training was faster or slower."""
        dev = self.dist.device
        name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor()
        return {
            "device": dev.type,
            "name": name or platform.machine(),
            "processes": self.dist.world,
            "threads": torch.get_num_threads(),
            "native_bf16": native_bf16(dev),
        }

    # --------------------------------------------------------------------------- resume
    def resume(self) -> bool:
        """Restore the newest checkpoint under ``out/checkpoints``; False when there is none."""
        found = list_checkpoints(self.out / "checkpoints")
        if not found:
            return False
        folder = found[-1]
        stored = json.loads((folder / "config.json").read_text())["training"]
        current = json.loads(json.dumps(asdict(self.cfg)))  # tuples become lists, as stored
        defaults = json.loads(json.dumps(asdict(TrainConfig())))  # for settings added later
        free = ("steps", "checkpoint_every", "keep_checkpoints", "sample_every", "log_every")
        changed = [k for k in current if k not in free and stored.get(k, defaults[k]) != current[k]]
        if changed:
            raise ValueError(f"cannot resume {folder}: settings differ ({', '.join(changed)})")
        self.model.net.load_state_dict(load_file(str(folder / "model.safetensors")))
        self.ema.module.net.load_state_dict(load_file(str(folder / "ema.safetensors")))
        state = load_state(folder)
        self.optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        self.step = int(state["step"])
        return True

    def _trim_metrics(self) -> None:
        """Drop the log lines past the step the run starts from: those of the stretch after a
        resumed checkpoint, or of an earlier run in the folder, which a fresh run replaces."""
        path = self.out / "metrics.jsonl"
        if self.dist.main and path.is_file():
            steps = [(line, _logged_step(line)) for line in path.read_text().splitlines()]
            keep = [line for line, step in steps if step is not None and step <= self.step]
            text = "".join(line + "\n" for line in keep)  # the log whole, even if interrupted
            write_text_whole(path, text)

    # --------------------------------------------------------------------------- one step
    def train_step(self) -> float:
        cfg, dist, t = self.cfg, self.dist, self.step
        self.model.train()
        lr = learning_rate(cfg, t)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        positions = batch_positions(t, cfg.batch, len(self.data), cfg.seed)
        per_rank = cfg.batch // dist.world
        mine = positions[dist.rank * per_rank : (dist.rank + 1) * per_rank]
        micro = per_rank // cfg.accumulation
        total = 0.0
        for m in range(cfg.accumulation):
            seed = derived_seed(cfg.seed, t, dist.rank, m)
            gen = torch.Generator().manual_seed(seed)
            torch.manual_seed(seed)  # dropout masks
            x0, labels = self.data.batch(mine[m * micro : (m + 1) * micro])
            n = len(x0)
            if cfg.hflip:
                x0 = hflip(x0, torch.rand(n, generator=gen) < 0.5)
            sigma = self.model.schedule.sample_sigma(n, generator=gen)
            noise = torch.randn(x0.shape, generator=gen)
            cond = None
            if self.num_classes:
                drop = torch.rand(n, generator=gen) < cfg.label_dropout
                cond = torch.where(drop, torch.full_like(labels, self.num_classes), labels)
            sync = (
                self.ddp.no_sync() if dist.world > 1 and m + 1 < cfg.accumulation else nullcontext()
            )
            with sync:
                loss = self._loss(self.ddp, x0, sigma, noise, cond)
            (loss / cfg.accumulation).backward()
            total += float(loss.detach()) / cfg.accumulation
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.update(self.model, t)
        self.step += 1
        if not math.isfinite(total):
            raise FloatingPointError(f"loss is {total} at step {t}; lower --lr or disable --bf16")
        return total

    def _loss(self, net: nn.Module, x0, sigma, noise, cond, exact_target=True) -> torch.Tensor:
        """The training loss of ``net`` (the model, or its DDP wrapper) on a batch, averaged: on
        the run's device, in its memory format and precision; with the run's target, or
        (``exact_target`` False) with x0 as the target."""
        dev = self.dist.device
        x0, sigma, noise = x0.to(dev), sigma.to(dev), noise.to(dev)
        if self.cfg.channels_last:
            x0 = x0.contiguous(memory_format=torch.channels_last)
            noise = noise.contiguous(memory_format=torch.channels_last)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.cfg.bf16):
            return denoising_loss(
                net,
                x0,
                sigma,
                noise,
                weighting=self.weighting,
                cond=None if cond is None else cond.to(dev),
                reference=self.reference if exact_target else None,  # None: x0 is the target
            ).mean()

    def _loss_on(self, n: int, size: int) -> torch.Tensor:
        """The loss on ``n`` grey (zero) images of ``size x size`` with the first image's label,
        for :func:`memory.check_step_fits` (the model unwrapped: a DDP forward expects its
        backward). No image is decoded: the bytes do not depend on the values, and a folder's
        image at a --size far too large would take minutes to decode before the refusal."""
        x0 = torch.zeros(n, self.data.channels, size, size)
        labels = (
            torch.full((n,), -1) if self.data.labels is None else self.data.labels[:1].repeat(n)
        )
        gen = torch.Generator().manual_seed(0)
        sigma = self.model.schedule.sample_sigma(n, generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        cond = labels if self.num_classes else None
        # the empirical target holds images of the data's size; it keeps nothing for backward
        return self._loss(self.model, x0, sigma, noise, cond, size == self.data.size)

    # --------------------------------------------------------------------------- outputs
    def save_checkpoint(self) -> None:
        if self.dist.main:
            save_checkpoint(
                self.out / "checkpoints",
                self.step,
                self.config(),
                self.model.net,
                self.ema.module.net,
                self.optimizer,
                self.cfg.keep_checkpoints,
            )
        self.dist.barrier()

    def save_grid(self) -> Path | None:
        """A grid from the EMA model (a row per class for class-conditional models)."""
        if not self.dist.main:
            return None
        model = self.ema.module
        shape = (self.data.channels, self.data.size, self.data.size)
        gen = torch.Generator().manual_seed(self.cfg.seed + 1)
        cond = None
        if self.num_classes:
            rows = min(self.num_classes, 10)
            cond = torch.arange(rows).repeat_interleave(8).to(self.dist.device)
        n = 64 if cond is None else len(cond)
        with torch.no_grad():
            images = sample(
                model, (n, *shape), steps=20, cond=cond, generator=gen, device=self.dist.device
            )
        return save_grid(
            self.out / "samples" / f"step_{self.step:08d}.png",
            images,
            nrow=8,
            upscale=max(1, 64 // self.data.size),
        )

    def log(self, record: dict) -> None:
        """Append to ``metrics.jsonl`` (and ``out/tensorboard`` when TensorBoard is installed)."""
        if not self.dist.main:
            return
        with (self.out / "metrics.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tensorboard is None:
            self._tensorboard = _tensorboard_writer(self.out / "tensorboard")
        if self._tensorboard:
            for key in ("loss", "lr"):
                self._tensorboard.add_scalar(f"train/{key}", record[key], record["step"])

    # --------------------------------------------------------------------------- loop
    def fit(
        self,
        *,
        progress: bool = True,
        stop_at: int | None = None,
        on_log: Callable[[dict], None] | None = None,
    ) -> Path | None:
        """Train to ``cfg.steps`` (or stop after step ``stop_at``, leaving a checkpoint) and write
        the model folder ``out/model``; returns its path (None when stopped early or not rank 0).
        Ctrl-C or SIGTERM ends the step in progress (on every rank), saves a checkpoint and
        raises KeyboardInterrupt (:class:`~diffvision.train.stop.StopRequest`; a second one stops
        at once)."""
        from tqdm.auto import tqdm

        if stop_at is not None:
            check_int("stop_at", stop_at, 1)  # 1.5 was taken, 0 trained nothing and said so not
        cfg = self.cfg
        for name, value in (("cfg.steps", cfg.steps), ("stop_at", stop_at)):
            if value is not None and value < self.step:  # a resumed run's model is past it
                raise ValueError(
                    f"the run in {self.out} is at step {self.step}, past {name}={value}"
                )
        self.out.mkdir(parents=True, exist_ok=True)
        self._trim_metrics()
        end = cfg.steps if stop_at is None else min(stop_at, cfg.steps)
        bar = tqdm(
            total=cfg.steps,
            initial=self.step,
            disable=not (progress and self.dist.main),
            unit="step",
            dynamic_ncols=True,
        )
        start_time, window = time.time(), []
        saved = None  # the step of the last checkpoint written here
        try:
            with StopRequest() as stop:
                while self.step < end:
                    loss = self.train_step()
                    window.append(loss)
                    bar.update(1)
                    if self.step % cfg.log_every == 0 or self.step == end:
                        record = {
                            "step": self.step,
                            "loss": sum(window) / len(window),
                            "lr": self.optimizer.param_groups[0]["lr"],
                            "seconds": round(time.time() - start_time, 2),
                        }
                        window = []
                        bar.set_postfix(loss=f"{record['loss']:.4f}")
                        self.log(record)
                        if on_log is not None and self.dist.main:
                            on_log(record)
                    at_checkpoint = self.step % cfg.checkpoint_every == 0
                    if at_checkpoint or self.step == end:
                        self.save_checkpoint()
                        saved = self.step
                    every = cfg.sample_every or cfg.checkpoint_every
                    if self.step % every == 0 and self.step < cfg.steps:
                        self.save_grid()
                    # Ctrl-C or SIGTERM, on any rank: all stop here, after the same step
                    if self.dist.any(stop.asked):
                        raise KeyboardInterrupt("asked to stop")
        except KeyboardInterrupt:
            bar.close()
            if saved != self.step:  # not written twice when the stop follows a checkpoint
                self.save_checkpoint()
            raise
        finally:
            bar.close()
        if self.step < cfg.steps:
            return None
        folder = None
        if self.dist.main:
            folder = save_model_folder(
                self.out / "model", self.config(), self.model.net, self.ema.module.net
            )
            self.save_grid()
            if cfg.classifier_steps and self.num_classes:
                save_classifier(folder, *self.fit_classifier(progress))
                self._classifier_state().unlink(missing_ok=True)  # in the folder now
        self.dist.barrier()
        return folder

    def fit_classifier(self, progress: bool = True) -> tuple:
        """The noise classifier of a class model (``cfg.classifier_steps`` steps on the run's
        data, :func:`train_noise_classifier`), with a progress bar of its own: the digits
        demo's 8,000 steps take 17-55 s on this project's 2-core CPUs (README), after the
        model's bar has ended. Ctrl-C or SIGTERM ends the step in progress, saves the
        classifier's training state (``out/checkpoints/classifier_state.pt``) and raises
        KeyboardInterrupt; the next call (a resumed run's) continues from it, to the same
        classifier as a run never stopped."""
        path = self._classifier_state()
        state = torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None
        total = self.cfg.classifier_steps
        try:
            with (
                StopRequest() as stop,
                loss_bar(total, "noise classifier", progress and self.dist.main) as tick,
            ):
                return train_noise_classifier(
                    self.data,
                    steps=total,
                    seed=self.cfg.seed,
                    hflip=self.cfg.hflip,
                    device=self.dist.device,
                    progress=tick,
                    stop=lambda: stop.asked,
                    state=state,
                )
        except ClassifierStopped as stopped:
            left = stopped.state  # the name ``stopped`` ends with the except block
            write_whole(path, lambda tmp: torch.save(left, tmp))
            raise
        except ValueError as err:
            if state is None:
                raise
            raise ValueError(f"cannot resume the noise classifier from {path}: {err}; delete "
                             "that file to train it from its start") from None  # fmt: skip

    def _classifier_state(self) -> Path:
        return self.out / "checkpoints" / CLASSIFIER_STATE

    def close(self) -> None:
        if self._tensorboard:
            self._tensorboard.close()
        cleanup(self.dist)


def _tensorboard_writer(folder: Path):
    """A SummaryWriter when the tensorboard package is installed, else False."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return False
    return SummaryWriter(str(folder))


def train(
    cfg: TrainConfig,
    data: ImageData,
    out: str | Path,
    *,
    resume: bool = False,
    device: str = "auto",
    progress: bool = True,
    stop_at: int | None = None,
) -> Path | None:
    """Train a denoiser on ``data`` and write ``out/model`` (config.json, model.safetensors,
    ema.safetensors); ``out`` also receives ``metrics.jsonl``, ``samples/`` and
    ``checkpoints/``. With ``resume`` it continues from the newest checkpoint (and starts
    afresh where there is none). ``data``: an :class:`ImageData`, from
    :func:`diffvision.data.load_data` (a built-in set, an image folder) or made from uint8
    (or uint16) images; ``stop_at``: stop after that step (a checkpoint written, None returned)."""
    if not isinstance(data, ImageData):  # a tensor was an AttributeError from inside
        raise TypeError(
            f"data is an ImageData (diffvision.data.load_data(spec), or ImageData(images, "
            f"channels=C, size=S) of uint8 or uint16 N x C x S x S images), not a "
            f"{type(data).__name__}"
        )
    if not resume:
        check_fresh(Path(out), "continue it with resume=True, or train into another folder")
    check_replaceable(Path(out) / "model", "unet")  # before the training, not at its end
    trainer = Trainer(cfg, data, out, device=device)
    try:
        if resume:
            trainer.resume()  # no checkpoint yet: starts from scratch
        return trainer.fit(progress=progress, stop_at=stop_at)
    finally:
        trainer.close()
