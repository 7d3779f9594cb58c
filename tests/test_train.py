import functools
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import diffvision
from diffvision.data import digits
from diffvision.memory import saved_bytes
from diffvision.train import TrainConfig, Trainer, denoising_loss, train
from diffvision.train.checkpoint import list_checkpoints
from diffvision.train.memory import kept_bytes
from diffvision.train.stop import StopRequest
from diffvision.train.trainer import batch_positions
from tests.cli_run import child_with, logged, signal_when

CFG = dict(
    preset="tiny",
    steps=6,
    batch=16,
    checkpoint_every=2,
    keep_checkpoints=2,
    log_every=1,
    dropout=0.1,
)  # dropout on, so its random masks must be reproduced too


@pytest.fixture(scope="module")
def data():
    return digits()


def weights(folder: Path, name: str):
    return load_file(str(folder / name))


def test_resume_is_bit_identical(tmp_path, data):
    full, parts = tmp_path / "full", tmp_path / "parts"
    train(TrainConfig(**CFG), data, full, progress=False)
    for bad in (0, 1.5):  # 1.5 was taken; 0 trained nothing without a word
        with pytest.raises(ValueError, match=f"stop_at must be an integer >= 1, not {bad}"):
            train(TrainConfig(**CFG), data, tmp_path / "bad", progress=False, stop_at=bad)
    assert train(TrainConfig(**CFG), data, parts, progress=False, stop_at=3) is None
    train(TrainConfig(**CFG), data, parts, progress=False, resume=True)
    for name in ("model.safetensors", "ema.safetensors"):
        a, b = weights(full / "model", name), weights(parts / "model", name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # The metrics log of the resumed run matches the uninterrupted one step for step.
    losses = [
        [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]
        for run in (full, parts)
    ]
    assert losses[0] == losses[1]


def test_a_signal_mid_step_ends_that_step_and_resuming_is_bit_identical(tmp_path, data):
    """SIGTERM (or Ctrl-C) in the middle of step 3, here between its optimiser and EMA updates:
    the step is finished, the checkpoint is of step 3, and a resumed run ends as an
    uninterrupted one. (Raised at once, the signal left a checkpoint labelled step 2 that held
    step 3's weights, and the resumed run trained step 3 twice.)"""
    full, parts = tmp_path / "full", tmp_path / "parts"
    train(TrainConfig(**CFG), data, full, progress=False)
    trainer = Trainer(TrainConfig(**CFG), data, parts, device="cpu")
    update = trainer.ema.update

    def update_signalled(model, t):
        if t == 2:  # step 3 (t counts from 0)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.01)  # the handler runs here
        update(model, t)

    trainer.ema.update = update_signalled
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # as the command does
    try:
        with pytest.raises(KeyboardInterrupt):
            trainer.fit(progress=False)
    finally:
        signal.signal(signal.SIGTERM, previous)
        trainer.close()
    assert [p.name for p in list_checkpoints(parts / "checkpoints")][-1] == "step_00000003"
    train(TrainConfig(**CFG), data, parts, progress=False, resume=True)
    for name in ("model.safetensors", "ema.safetensors"):
        a, b = weights(full / "model", name), weights(parts / "model", name)
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_second_signal_stops_at_once():
    previous = signal.getsignal(signal.SIGTERM)
    with StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
        assert stop.asked  # the first: asked to stop at the end of the step
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.01)
    assert signal.getsignal(signal.SIGTERM) is previous  # handlers given back
    ignored = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as in a background shell
    try:
        with StopRequest() as stop:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
            assert not stop.asked  # an ignored signal stays ignored
    finally:
        signal.signal(signal.SIGINT, ignored)


def test_interrupted_without_resume_differs(tmp_path, data):
    # Control: a run that restarts from scratch for the last steps does not match.
    full = tmp_path / "full"
    train(TrainConfig(**CFG), data, full, progress=False)
    other = TrainConfig(**{**CFG, "seed": 1})
    train(other, data, tmp_path / "seed1", progress=False)
    a = weights(full / "model", "model.safetensors")
    b = weights(tmp_path / "seed1" / "model", "model.safetensors")
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_checkpoints_keep_last_k_and_model_folder_loads(tmp_path, data):
    trainer = Trainer(TrainConfig(**CFG), data, tmp_path, device="cpu")
    trainer.fit(progress=False)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["step_00000004", "step_00000006"]
    loaded = diffvision.load(tmp_path / "model")
    assert not any(k.endswith("state.pt") for k in os.listdir(tmp_path / "model"))
    x = torch.randn(3, 1, 8, 8)
    sigma = torch.tensor([0.1, 1.0, 10.0])
    cond = torch.tensor([1, 5, 10])
    with torch.no_grad():
        assert torch.allclose(loaded(x, sigma, cond), trainer.ema.module(x, sigma, cond), atol=1e-6)
    assert (tmp_path / "samples").is_dir() and list((tmp_path / "samples").glob("*.png"))


def test_resume_rejects_changed_settings(tmp_path, data):
    train(TrainConfig(**CFG), data, tmp_path, progress=False, stop_at=2)
    with pytest.raises(ValueError, match="settings differ"):
        train(TrainConfig(**{**CFG, "lr": 5e-4}), data, tmp_path, progress=False, resume=True)


def test_a_run_does_not_go_back(tmp_path, data):
    """Resumed at step 4, a run refuses fewer steps or a stop before step 4 (it wrote the model
    of step 4 as a 2-step run's, or returned as if stopped at step 2)."""
    train(TrainConfig(**CFG), data, tmp_path, progress=False, stop_at=4)
    for steps, stop_at, name in ((2, None, "cfg.steps=2"), (6, 3, "stop_at=3")):
        with pytest.raises(ValueError, match=f"is at step 4, past {name}$"):
            cfg = TrainConfig(**{**CFG, "steps": steps})
            train(cfg, data, tmp_path, progress=False, resume=True, stop_at=stop_at)
    assert not (tmp_path / "model").exists()
    assert train(TrainConfig(**CFG), data, tmp_path, progress=False, resume=True, stop_at=4) is None


def test_a_fresh_run_refuses_a_folder_that_holds_one(tmp_path, data):
    # Before: the new run's checkpoints were pruned as older than the old run's, and a resume
    # then continued the old run.
    train(TrainConfig(**CFG), data, tmp_path, progress=False, stop_at=4)
    before = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    with pytest.raises(ValueError, match=r"holds a run \(checkpoints up to step 4\).*resume=True"):
        train(TrainConfig(**{**CFG, "steps": 2}), data, tmp_path, progress=False)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == before
    train(TrainConfig(**CFG), data, tmp_path, progress=False, resume=True)  # resuming is fine
    for old in (tmp_path / "checkpoints").iterdir():
        (old / "state.pt").unlink()  # incomplete checkpoints do not count; the model does
    with pytest.raises(ValueError, match=r"holds a run \(a trained model\)"):
        train(TrainConfig(**CFG), data, tmp_path, progress=False)


def test_a_fresh_run_starts_a_fresh_metrics_log(tmp_path, data):
    # the last line torn, as when a process is killed while it writes it
    old = '{"step": 3, "loss": 99.0}\n{"step": 50}\n{"step": 51, "lo'
    (tmp_path / "metrics.jsonl").write_text(old)
    Trainer(TrainConfig(**CFG), data, tmp_path, device="cpu").fit(progress=False)
    log = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6] and 99.0 not in [r["loss"] for r in log]


def test_batch_positions_cover_each_epoch_once():
    n, batch = 10, 4
    stream = torch.cat([batch_positions(s, batch, n, seed=0) for s in range(5)])
    assert sorted(stream[:10].tolist()) == list(range(10))
    assert sorted(stream[10:20].tolist()) == list(range(10))
    assert torch.equal(batch_positions(3, batch, n, seed=0), stream[12:16])


def test_training_reduces_the_loss(data):
    torch.manual_seed(0)
    trainer = Trainer(
        TrainConfig(preset="tiny", steps=60, batch=32, lr=2e-3), data, "unused", device="cpu"
    )
    g = torch.Generator().manual_seed(0)
    x0, labels = data.batch(torch.arange(256))
    sigma = trainer.model.schedule.sample_sigma(256, generator=g)
    noise = torch.randn(x0.shape, generator=g)

    def held_loss():
        with torch.no_grad():
            trainer.model.eval()
            return float(
                denoising_loss(trainer.model, x0, sigma, noise, weighting="edm", cond=labels).mean()
            )

    before = held_loss()
    for _ in range(60):
        trainer.train_step()
    assert held_loss() < 0.7 * before


def test_bf16_and_accumulation_run(tmp_path, data):
    cfg = TrainConfig(**{**CFG, "steps": 2, "bf16": True, "accumulation": 2, "channels_last": True})
    folder = train(cfg, data, tmp_path, progress=False)
    hardware = json.loads((folder / "config.json").read_text())["hardware"]
    assert hardware["device"] == "cpu" and hardware["processes"] == 1
    assert hardware["threads"] == torch.get_num_threads()
    with pytest.raises(ValueError, match="divisible"):
        Trainer(TrainConfig(**{**CFG, "batch": 15, "accumulation": 2}), data, tmp_path)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
def test_torchrun_two_processes(tmp_path, torchrun_worker):
    ranks = torchrun_worker(2)
    assert ranks[0]["world"] == ranks[1]["world"] == 2
    assert ranks[0]["sha256"] == ranks[1]["sha256"]
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step_00000003"]
    assert (tmp_path / "model" / "model.safetensors").is_file()
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["hardware"]["processes"] == 2


def test_torchrun_stopped_by_sigterm_saves_a_checkpoint(tmp_path, torchrun_env):
    """A scheduler stops a multi-process run by sending torchrun SIGTERM; torchrun passes it to
    every rank. Training ends with a checkpoint of the step reached (none is due before step
    100000), said once (by rank 0), and no rank is left running."""
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "-m", "diffvision", "train", "--data", "digits", "--preset", "tiny", "--steps",
            "100000", "--batch", "8", "--checkpoint-every", "100000", "--quiet", "--out",
            str(out)]  # fmt: skip
    _, err = signal_when(argv, logged(out), signal.SIGTERM, env=torchrun_env)
    assert err.count("interrupted; a checkpoint was saved") == 1, err[-3000:]
    (saved,) = list_checkpoints(out / "checkpoints")
    assert int(saved.name.removeprefix("step_")) >= 10  # the logged step, at least
    config = json.loads((saved / "config.json").read_text())
    assert config["hardware"]["processes"] == 2
    if Path("/proc").is_dir():  # Linux: no process of the run is left
        left = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                left += [cmdline] if str(out).encode() in cmdline.read_bytes() else []
            except OSError:  # a process that ended while listed
                pass
        assert not left


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the ranks in /proc (Linux)")
def test_a_signal_to_one_rank_stops_every_rank_after_the_same_step(tmp_path, torchrun_env):
    """Signals reach the ranks of a launch at different moments. A rank that stopped on its own
    while another waited for it in a gradient all-reduce hung the launch until torchrun killed
    it, with no checkpoint (seen once in a full test run, SIGTERM to torchrun). Here rank 1 alone
    is signalled: every rank stops after the same step, rank 0 saves the checkpoint and says so,
    and the launch ends."""
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "-m", "diffvision", "train", "--data", "digits", "--preset", "tiny", "--steps",
            "100000", "--batch", "8", "--checkpoint-every", "100000", "--quiet", "--out",
            str(out)]  # fmt: skip
    rank_1 = functools.partial(child_with, variable="RANK=1")
    _, err = signal_when(argv, logged(out), signal.SIGTERM, env=torchrun_env, target=rank_1)
    assert err.count("interrupted; a checkpoint was saved") == 1, err[-3000:]
    (saved,) = list_checkpoints(out / "checkpoints")
    assert int(saved.name.removeprefix("step_")) >= 10  # the logged step, at least


def test_learning_rate_schedules():
    from diffvision.train.trainer import learning_rate

    const = TrainConfig(lr=1e-3, warmup=10, steps=110)
    assert learning_rate(const, 0) == pytest.approx(1e-4)
    assert learning_rate(const, 9) == pytest.approx(1e-3) == learning_rate(const, 100)
    cos = TrainConfig(lr=1e-3, warmup=10, steps=110, lr_schedule="cosine")
    assert learning_rate(cos, 10) == pytest.approx(1e-3)
    assert learning_rate(cos, 60) == pytest.approx(0.5e-3)
    assert learning_rate(cos, 110) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="step").validate()


def test_config_rejects_bad_numbers():
    """nan passes every `x < 0` check, so the checks are written as `not x >= 0`."""
    for bad, message in [
        ({"warmup": -5}, "warmup"),
        ({"label_dropout": float("nan")}, "label_dropout"),
        ({"label_dropout": 1.5}, "label_dropout"),
        ({"lr": float("inf")}, "lr must be"),
        ({"grad_clip": -1.0}, "grad_clip"),
        ({"weight_decay": float("nan")}, "weight_decay"),
        ({"seed": -1}, "seed must be"),
        ({"seed": 2**63}, "seed must be"),
        ({"keep_checkpoints": -1}, r"keep_checkpoints must be an integer >= 0"),  # kept all
        ({"sample_every": -1}, r"sample_every must be an integer >= 0"),
        ({"steps": 1.5}, r"steps must be an integer >= 1, not 1\.5"),  # from a config.json
        ({"batch": True}, r"batch must be an integer >= 1, not True"),
        ({"seed": 1.5}, "seed must be"),
    ]:
        with pytest.raises(ValueError, match=message):
            TrainConfig(**bad).validate()


def test_empirical_target_keeps_the_expected_gradient():
    """Rao-Blackwell: for D(x) = x W the per-sample gradient difference between target x0 and
    target E[x0 | x, c] is 2/d x^T (E[x0 | x, c] - x0), whose mean is 0; a target at the wrong
    noise level (2 sigma) gives a mean many standard errors away, so the check has power."""
    from diffvision.analytic import EmpiricalDenoiser

    g = torch.Generator().manual_seed(0)
    pts, labels = torch.randn(8, 4, generator=g, dtype=torch.float64), torch.arange(8) % 2
    ref = EmpiricalDenoiser(pts, labels, null_cond=2)
    n, sigma = 40000, 1.0
    idx = torch.randint(0, 8, (n,), generator=g)
    cond = torch.where(torch.rand(n, generator=g) < 0.3, 2, labels[idx])
    x0 = pts[idx]
    x = x0 + sigma * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    for noise_level, expect_zero in ((sigma, True), (2 * sigma, False)):
        diff = 2 / 4 * x[:, :, None] * (ref(x, noise_level, cond) - x0)[:, None, :]
        z = diff.mean(0) / (diff.std(0) / n**0.5)
        assert bool((z.abs() < 5).all()) == expect_zero, z


def test_empirical_target_wiring(tmp_path, data):
    """With one image per class and no label dropout, E[x0 | x, c] is that image: training on
    empirical targets gives bit-identical weights to training on x0. With every label dropped
    the targets differ. Flips double the reference."""
    from diffvision.data import ImageData

    first = [int((data.labels == c).nonzero()[0]) for c in range(10)]
    one_each = ImageData(
        data.images[first], channels=1, size=8, labels=data.labels[first],
        class_names=data.class_names, name="one each",
    )  # fmt: skip
    runs = {}
    for target, drop in (("sample", 0.0), ("empirical", 0.0), ("empirical", 1.0)):
        cfg = TrainConfig(**{**CFG, "batch": 10, "target": target, "label_dropout": drop})
        folder = train(cfg, one_each, tmp_path / f"{target}{drop}", progress=False)
        runs[target, drop] = weights(folder, "model.safetensors")
    same, dropped = runs["empirical", 0.0], runs["empirical", 1.0]
    assert all(torch.equal(same[k], runs["sample", 0.0][k]) for k in same)
    assert not all(torch.equal(dropped[k], runs["sample", 0.0][k]) for k in same)
    flipped = Trainer(TrainConfig(**{**CFG, "target": "empirical", "hflip": True}), data, tmp_path)
    assert len(flipped.reference.points) == 2 * len(data)
    with pytest.raises(ValueError, match="target"):
        TrainConfig(target="mean").validate()


def test_saved_bytes_counts_what_the_backward_pass_keeps():
    """(x W)^2 with only W trainable keeps x (for W's gradient) and x W (for the square's): 4
    bytes per float, (7 + 3) floats per row; the weight itself is not counted when excluded."""
    layer = torch.nn.Linear(7, 3, bias=False)
    for n in (1, 5):
        x = torch.randn(n, 7)
        assert saved_bytes(lambda x=x: layer(x).square().sum(), exclude=layer) == n * 10 * 4


@pytest.mark.parametrize("extra", [{}, {"bf16": True, "channels_last": True, "preset": "small"}])
def test_kept_activations_are_extrapolated_exactly(data, tmp_path, extra):
    """The memory check measures 1 and 2 images (the kept bytes are linear in the batch: 7
    images' equal the extrapolation, byte for byte) and, above 64 px, three sizes 16, 32, 48
    (a quadratic in the pixels through them, here affine; one proportional to the pixels would
    miss the constant): at 64 and 80 px the extrapolation equals the measurement, in
    float32 and in bf16 with channels-last."""
    trainer = Trainer(TrainConfig(**{"preset": "tiny", "batch": 8, **extra}), data, tmp_path)
    model = trainer.model
    one, two, seven = (
        saved_bytes(lambda n=n: trainer._loss_on(n, 8), exclude=model) for n in (1, 2, 7)
    )
    assert two > one > 0 and seven == one + 6 * (two - one)
    factor = 2 ** (len(model.net.config.channel_mult) - 1)
    for size in (64, 80):
        measured = kept_bytes(trainer._loss_on, model, size, factor)
        extrapolated = kept_bytes(trainer._loss_on, model, size, factor, measured_up_to=0)
        assert measured[1] > 16 * (two - one)  # 64 x more pixels than 8 x 8
        # float rounding of the interpolation: a few parts in 1e16 of ~1e8 bytes
        assert extrapolated == pytest.approx(measured, abs=1e-3)


def test_a_step_that_cannot_fit_is_refused_before_training(tmp_path, monkeypatch):
    """A batch whose kept activations alone exceed the free memory: one line, exit code 2, within
    seconds, not the kernel's out-of-memory kill after minutes of swapping."""
    from diffvision import memory
    from tests.cli_run import run_here

    monkeypatch.setattr(memory, "available_bytes", lambda device: 100 * 2**20)  # 100 MiB free
    args = ["train", "--data", "digits", "--preset", "tiny", "--steps", "1", "--quiet"]
    bad = run_here(*args, "--batch", "512", "--out", str(tmp_path / "a"))  # ~128 MiB kept
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "a training step at 512 images of 8 x 8 per process needs at least" in bad.stderr
    assert "100 MiB" not in bad.stderr and "0.1 GiB is free: lower --batch" in bad.stderr
    assert not list_checkpoints(tmp_path / "a" / "checkpoints")
    # the same images in 4 micro-batches fit
    fine = run_here(*args, "--batch", "512", "--accumulation", "4", "--out", str(tmp_path / "b"))
    assert fine.returncode == 0, fine.stderr


def test_memory_check_with_the_empirical_target_above_64_px(tmp_path):
    """The empirical target holds images of the data's size: the check's smaller sizes are
    measured with x0 as the target (it crashed on the shape), which keeps the same bytes: the
    target carries no gradient."""
    big = digits(72)
    trainer = Trainer(TrainConfig(preset="tiny", batch=8, target="empirical"), big, tmp_path)
    x0, labels = big.batch(torch.arange(2))
    sigma, noise = torch.full((2,), 0.5), torch.randn(x0.shape)
    kept = [
        saved_bytes(lambda exact=exact: trainer._loss(trainer.model, x0, sigma, noise, labels,
                                                      exact), exclude=trainer.model)
        for exact in (True, False)
    ]  # fmt: skip
    assert kept[0] == kept[1] > 0


def test_the_noise_classifier_shows_its_progress(tmp_path, data, capsys):
    """After a class model's training, its noise classifier (``classifier_steps``) has a
    progress bar of its own (the demo's takes half a minute after the model's bar ends), and
    none without ``progress``."""
    cfg = TrainConfig(**{**CFG, "steps": 1, "classifier_steps": 3})
    folder = train(cfg, data, tmp_path / "shown")
    bars = capsys.readouterr().err
    assert "noise classifier: 100%" in bars and "3/3" in bars, bars
    assert (folder / "classifier.safetensors").is_file()
    train(cfg, data, tmp_path / "quiet", progress=False)
    assert "noise classifier" not in capsys.readouterr().err


def test_a_signal_during_the_noise_classifier_keeps_its_steps(tmp_path, data, monkeypatch, capsys):
    """SIGTERM (or Ctrl-C) while the noise classifier trains, after the model: the step in
    progress ends, the classifier's state is saved beside the checkpoints, and the resumed run
    goes on from that step (its bar from 5 of 20) to the classifier of a run never stopped,
    leaving no state behind. (The classifier was trained again from its start.)"""
    import contextlib

    import diffvision.train.trainer as trainer_module
    from diffvision.train.trainer import CLASSIFIER_STATE

    cfg = TrainConfig(**{**CFG, "steps": 2, "classifier_steps": 20})
    full, parts = tmp_path / "full", tmp_path / "parts"
    train(cfg, data, full, progress=False)
    real_bar = trainer_module.loss_bar

    @contextlib.contextmanager
    def signalling_bar(total, what, shown):
        with real_bar(total, what, shown) as tick:

            def progress(step, loss):
                tick(step, loss)
                if step == 5:
                    os.kill(os.getpid(), signal.SIGTERM)
                    time.sleep(0.01)  # the handler runs here

            yield progress

    monkeypatch.setattr(trainer_module, "loss_bar", signalling_bar)
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # as the command does
    try:
        with pytest.raises(KeyboardInterrupt):
            train(cfg, data, parts, progress=False)
    finally:
        signal.signal(signal.SIGTERM, previous)
    state = parts / "checkpoints" / CLASSIFIER_STATE
    assert torch.load(state, weights_only=True)["step"] == 5
    assert not (parts / "model" / "classifier.safetensors").exists()
    monkeypatch.setattr(trainer_module, "loss_bar", real_bar)
    capsys.readouterr()
    folder = train(cfg, data, parts, resume=True)
    assert " 5/20" in capsys.readouterr().err  # the bar starts where the classifier stopped
    a = weights(full / "model", "classifier.safetensors")
    b = weights(folder, "classifier.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not state.exists()
