"""What the hardware does natively, for choosing settings and for reporting where a run ran.

bfloat16 autocast is fast only where the hardware computes in bfloat16: on a CPU without it,
oneDNN converts every operand to float32 and back, and a step is slower than plain float32
(2.2x per training step of the ``photos`` U-Net on a 2-core Xeon without AVX-512 BF16; README).
"""

from __future__ import annotations

import platform

import torch


def native_bf16(device: torch.device | str) -> bool | None:
    """Whether ``device`` computes in bfloat16 in hardware; None where torch cannot tell.

    CUDA: compute capability 8.0 (Ampere) or newer. x86 CPUs: AVX-512 BF16 or AMX-BF16. ARM
    CPUs: the BF16 extension (NEON or SVE). Other devices, and CPUs whose features this torch
    does not report (older releases report x86's alone, the oldest none), give None.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device)[0] >= 8
    if device.type != "cpu":
        return None
    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if capabilities is not None:
        found = capabilities()
        if found.get("architecture") in ("x86_64", "x86"):
            return bool(found.get("avx512_bf16") or found.get("amx_bf16"))
        if found.get("architecture") in ("aarch64", "arm64"):
            return bool(found.get("bf16") or found.get("sve_bf16"))
        return None
    avx512_bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    if avx512_bf16 is None or amx is None or platform.machine() not in ("x86_64", "AMD64"):
        return None
    return bool(avx512_bf16() or amx())
