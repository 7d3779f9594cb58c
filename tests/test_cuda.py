"""CUDA checks (skipped without a GPU): training with bf16 on the GPU, a model trained there loads
on the CPU, and sampling and restoration on the GPU match the CPU.

Tolerances: TF32 is switched off, so GPU and CPU both compute in fp32 and differ only by the order
of summation (relative error ~1e-6 per layer). A 19-call Heun run or a 10-step restoration on
images in [-1, 1] amplifies that by at most the steps times the denoiser's Lipschitz constant
(a few), i.e. well under 1e-4; 1e-3 leaves a margin without hiding a wrong device or dtype.
"""

import json

import pytest
import torch

import diffvision
from diffvision.data import digits
from diffvision.denoiser import Denoiser
from diffvision.nets.unet import build_unet
from diffvision.process import get_schedule
from diffvision.restore import Inpaint, box_mask, solve
from diffvision.samplers import sample
from diffvision.train import TrainConfig, Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(autouse=True)
def no_tf32():
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def tiny_denoiser(channels: int = 1, classes: int = 0) -> Denoiser:
    torch.manual_seed(0)
    net = build_unet("tiny", in_channels=channels, num_classes=classes)
    null = classes if classes else None
    return Denoiser(net, "edm", get_schedule("edm"), null_cond=null).eval()


def test_bf16_training_on_cuda_loads_on_cpu(tmp_path):
    cfg = TrainConfig(preset="tiny", steps=6, batch=16, bf16=True, checkpoint_every=6, log_every=1)
    trainer = Trainer(cfg, digits(), tmp_path, device="cuda")
    assert trainer.dist.device.type == "cuda"
    trainer.fit(progress=False)
    trainer.close()
    losses = [
        json.loads(line)["loss"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
    ]
    assert len(losses) == 6 and all(torch.isfinite(torch.tensor(losses)))
    gpu_model = trainer.ema.module.eval()
    cpu_model = diffvision.load(tmp_path / "model")
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    sigma, labels = torch.full((4,), 0.7), torch.tensor([0, 3, 7, 10])
    with torch.no_grad():
        on_gpu = gpu_model(x.cuda(), sigma.cuda(), labels.cuda()).cpu()
        on_cpu = cpu_model(x, sigma, labels)
    assert (on_gpu - on_cpu).abs().max() < 1e-4


@pytest.mark.parametrize("sampler", ["heun", "ddpm"])
def test_sampling_on_cuda_matches_cpu(sampler):
    model = tiny_denoiser(classes=10)
    labels = torch.arange(4)
    out = {}
    for device in ("cpu", "cuda"):
        with torch.no_grad():
            out[device] = sample(
                model.to(device),
                (4, 1, 8, 8),
                sampler=sampler,
                steps=10,
                cond=labels.to(device),
                guidance=2.0,
                device=device,
                generator=torch.Generator().manual_seed(3),
            )
    assert out["cuda"].device.type == "cuda"
    assert (out["cuda"].cpu() - out["cpu"]).abs().max() < 1e-3


def test_restoration_on_cuda_matches_cpu_and_keeps_known_pixels():
    model = tiny_denoiser(channels=3)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(4)) * 2 - 1
    mask = box_mask(16, 16, (4, 4, 8, 8))
    out = {}
    for device in ("cpu", "cuda"):
        op = Inpaint(mask.to(device))
        y = op.forward(x.to(device))
        with torch.no_grad():
            out[device] = solve(
                model.to(device), op, y, solver="ddnm", steps=10,
                generator=torch.Generator().manual_seed(5),
            )  # fmt: skip
    assert out["cuda"].device.type == "cuda"
    assert (out["cuda"].cpu() - out["cpu"]).abs().max() < 1e-3
    known = mask.bool().expand_as(x)
    assert torch.allclose(out["cuda"].cpu()[known], x[known], atol=1e-5)


def test_torchrun_nccl(tmp_path, torchrun_worker):
    nproc = min(torch.cuda.device_count(), 2)
    ranks = torchrun_worker(nproc, "cuda")
    assert {r["world"] for r in ranks} == {nproc}
    assert len({r["sha256"] for r in ranks}) == 1
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step_00000003"]


def test_restore_command_on_cuda_matches_cpu(tiny_digits_model, tmp_path):
    """`diffvision restore --device cuda` (a class-conditional model used through its null
    class, a classical start moved to the GPU, two samples) writes the CPU's image. The command
    runs with cuDNN's default TF32 convolutions, so the 8-bit outputs may differ by rounding:
    at most 2 grey levels, where a wrong device, class or start would differ by tens."""
    import numpy as np
    from PIL import Image

    from tests.cli_run import run

    image = tmp_path / "in.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(image)
    outs = {}
    for device in ("cpu", "cuda"):
        outs[device] = tmp_path / f"{device}.png"
        result = run(
            "restore", "inpaint", str(tiny_digits_model), str(image), "--box", "4,4,6,6",
            "--samples", "2", "--tile", "8", "--overlap", "2", "--steps", "3",
            "--device", device, "--out", str(outs[device]),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
    a, b = (np.asarray(Image.open(outs[d]), dtype=int) for d in ("cpu", "cuda"))
    assert np.abs(a - b).max() <= 2


def test_restore_replay_on_cuda(tiny_digits_model, tmp_path):
    """`diffvision restore superres --samples 2 --device cuda`: the replay's draws come back from
    the GPU and are compared with a truth made on the CPU."""
    import numpy as np
    from PIL import Image

    from tests.cli_run import run

    image = tmp_path / "in.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(image)
    result = run(
        "restore", "superres", str(tiny_digits_model), str(image), "--factor", "2",
        "--samples", "2", "--tile", "8", "--overlap", "2", "--steps", "3",
        "--device", "cuda", "--out", str(tmp_path / "out.png"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "the solver, replayed on y" in result.stdout


def test_eval_command_on_cuda_matches_cpu(tiny_digits_model, tmp_path):
    """`diffvision eval --device cuda` samples on the GPU from the same CPU-drawn noise and
    scores on the CPU: its Fréchet distance is the CPU's up to rounding (cuDNN's TF32; 1%),
    where a wrong device, label or noise would move it by the seed-to-seed spread (~10%)."""
    import json

    from tests.cli_run import run

    feats = tmp_path / "features"
    result = run("eval", "train-features", "digits", "--steps", "20", "--out", str(feats))
    assert result.returncode == 0, result.stderr
    fd = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / f"{device}.json"
        result = run(
            "eval", str(tiny_digits_model), "--data", "digits", "--features", str(feats),
            "--n", "100", "--seeds", "1", "--steps", "3", "--bpd", "2", "--device", device,
            "--json", str(out),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        saved = json.loads(out.read_text())
        fd[device] = saved["metrics"]["fd"]["mean"]
        assert saved["bits_per_dim"]["n"] == 2
    assert abs(fd["cuda"] - fd["cpu"]) <= 0.01 * fd["cpu"]


@pytest.mark.parametrize(
    ("size", "extra"),
    [(8, {"preset": "tiny"}), (72, {"preset": "small", "bf16": True, "channels_last": True})],
)
def test_memory_check_on_cuda_is_a_lower_bound_of_the_peak(tmp_path, size, extra):
    """On CUDA the check's need (:func:`memory.step_bytes`: measured at 8 px, extrapolated from
    16/32/48 px at 72) is at most the bytes that two real steps allocate at their peak beyond
    what existed before, so a refused step could not have fit; a micro-batch twice what the free
    memory holds is refused. Blocks that PyTorch frees into its cache count as free: a freed
    GiB leaves the free memory where it was (64 MiB slack for the driver's own bookkeeping)."""
    from diffvision.memory import available_bytes
    from diffvision.train.memory import check_step_fits, step_bytes

    device = torch.device("cuda")
    free = available_bytes(device)
    block = torch.empty(2**30, dtype=torch.uint8, device=device)
    del block
    assert available_bytes(device) >= free - 2**26

    batch = 32
    cfg = TrainConfig(batch=batch, **extra)
    trainer = Trainer(cfg, digits(size), tmp_path, device="cuda")
    model = trainer.model
    factor = 2 ** (len(model.net.config.channel_mult) - 1)
    need, each = step_bytes(trainer._loss_on, model, batch, size, factor)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    for _ in range(2):
        trainer.train_step()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated(device) - before
    print(f"{size} px: need {need / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB")
    assert 0 < need <= peak
    check_step_fits(trainer._loss_on, model, batch, size, factor, device)  # fits
    too_many = int(2 * available_bytes(device) / each)
    with pytest.raises(ValueError, match="needs at least"):
        check_step_fits(trainer._loss_on, model, too_many, size, factor, device)


def test_sampling_memory_check_on_cuda_is_a_lower_bound_of_the_peak():
    """The sampling check's count (the starting x and one network call, measured on 1 and 2
    images) is at most the bytes that a real sampling run allocates at its peak on CUDA beyond
    what existed before, and a batch twice what the free memory holds is refused."""
    from diffvision.memory import available_bytes, batch_bytes
    from diffvision.samplers import check_sample_fits

    device = torch.device("cuda")
    model = tiny_denoiser(3).to(device)
    shape = (3, 32, 32)

    def run_on(n):
        with torch.no_grad():
            return model(torch.zeros((n, *shape), device=device), torch.ones(n, device=device))

    one, each = batch_bytes(run_on)
    n = 256
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    with torch.no_grad():
        sample(
            model, (n, *shape), steps=2, generator=torch.Generator().manual_seed(0), device=device
        )
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated(device) - before
    need = one + (n - 1) * each
    print(f"sampling {n} at 32 px: counted {need / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB")
    assert 0 < need <= peak
    check_sample_fits(model, (n, *shape), device=device)  # fits
    too_many = int(2 * available_bytes(device) / each)
    with pytest.raises(ValueError, match="needs at least"):
        check_sample_fits(model, (too_many, *shape), device=device)
