"""Whether the hardware computes in bfloat16 natively, and the note ``--bf16`` gets where not."""

import json
import platform
from pathlib import Path
from types import MappingProxyType

import pytest
import torch

from diffvision import hardware
from diffvision.hardware import native_bf16
from tests.cli_run import run_here


def _fake_cpu(monkeypatch, **found):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: MappingProxyType(found))


def test_cpu_bf16_is_read_from_the_features_torch_reports(monkeypatch):
    _fake_cpu(monkeypatch, architecture="x86_64", avx512_f=True, avx512_bf16=False)
    assert native_bf16("cpu") is False  # AVX-512 alone: bf16 is emulated
    _fake_cpu(monkeypatch, architecture="x86_64", avx512_bf16=True)
    assert native_bf16("cpu") is True
    _fake_cpu(monkeypatch, architecture="x86_64", avx512_bf16=False, amx_bf16=True)
    assert native_bf16("cpu") is True
    _fake_cpu(monkeypatch, architecture="aarch64", neon=True)
    assert native_bf16(torch.device("cpu")) is False
    _fake_cpu(monkeypatch, architecture="aarch64", bf16=True)
    assert native_bf16("cpu") is True
    _fake_cpu(monkeypatch, architecture="riscv64")
    assert native_bf16("cpu") is None


def test_older_torch_falls_back_to_x86_checks_or_says_unknown(monkeypatch):
    monkeypatch.delattr(torch.cpu, "get_capabilities", raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    assert native_bf16("cpu") is True
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert native_bf16("cpu") is False
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")  # x86 checks say nothing there
    assert native_bf16("cpu") is None
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    assert native_bf16("cpu") is None


def test_gpu_bf16_from_compute_capability_8(monkeypatch):
    for capability, native in (((7, 5), False), ((8, 0), True), ((9, 0), True)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device, c=capability: c)
        assert native_bf16("cuda") is native
    assert native_bf16("meta") is None


def _cpuinfo_flags() -> set[str] | None:
    info = Path("/proc/cpuinfo")
    if platform.machine() != "x86_64" or not info.is_file():
        return None
    for line in info.read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return None


def test_this_cpu_agrees_with_the_kernels_flags():
    """The answer on this machine against Linux's own list of the CPU's features."""
    flags = _cpuinfo_flags()
    if flags is None or native_bf16("cpu") is None:
        pytest.skip("needs Linux on x86_64 and a torch that reports the CPU's features")
    assert native_bf16("cpu") is bool({"avx512_bf16", "amx_bf16"} & flags)


EMULATED = "--bf16 is emulated here"


@pytest.mark.parametrize("native", [False, True, None])
def test_train_bf16_notes_emulation_only_where_known(monkeypatch, tmp_path, native):
    monkeypatch.setattr(hardware, "native_bf16", lambda device: native)
    out = tmp_path / "run"
    args = ("train", "--data", "digits", "--preset", "tiny", "--steps", "1", "--batch", "4")
    result = run_here(*args, "--bf16", "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    assert (EMULATED in result.stderr) is (native is False)
    assert "no AVX-512 BF16" in result.stderr or native is not False
    # The model records what the trainer's device can do (the trainer asks unpatched).
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["hardware"]["native_bf16"] is native_bf16("cpu")


def test_train_without_bf16_says_nothing_of_it(monkeypatch, tmp_path):
    monkeypatch.setattr(hardware, "native_bf16", lambda device: False)
    args = ("train", "--data", "digits", "--preset", "tiny", "--steps", "1", "--batch", "4")
    result = run_here(*args, "--out", str(tmp_path / "run"), "--quiet")
    assert result.returncode == 0, result.stderr
    assert EMULATED not in result.stderr


def test_inference_bf16_notes_emulation(monkeypatch, tmp_path, tiny_digits_model):
    """``sample``, ``restore`` and ``eval`` prepare the model in one place (``fast_inference``)."""
    monkeypatch.setattr(hardware, "native_bf16", lambda device: False)
    model = str(tiny_digits_model)
    result = run_here(
        "sample", model, "--n", "2", "--steps", "1", "--bf16", "--out", str(tmp_path / "s.png")
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count(EMULATED) == 1
    plain = run_here("sample", model, "--n", "2", "--steps", "1", "--out", str(tmp_path / "p.png"))
    assert plain.returncode == 0 and EMULATED not in plain.stderr


def test_the_gpu_note_names_its_compute_capability(monkeypatch, capsys):
    from diffvision.cli.common import note_emulated_bf16

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    note_emulated_bf16(torch.device("cuda"))  # a Turing GPU: no native bf16
    err = capsys.readouterr().err
    assert EMULATED in err and "compute capability 7.5" in err
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    note_emulated_bf16(torch.device("cuda"))
    assert capsys.readouterr().err == ""
