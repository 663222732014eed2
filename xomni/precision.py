"""bfloat16 autocast, one flag for every training stage: `--bf16 auto|true|false`.

auto turns it on where the device computes bfloat16 natively (a CPU with AVX512-BF16 / AMX, a bf16-capable GPU),
where it pays; elsewhere bf16 is emulated and slower than float32 (bench/ar_step.py, bench/decoder_speed.py,
bench/grpo_throughput.py). A stage resolves the flag once and records what ran (true or false) in its meta.json.
"""

from __future__ import annotations

import torch

CHOICES = ("auto", "true", "false")


def native_bf16(device: torch.device | str) -> bool:
    """Whether `device` computes bfloat16 natively."""
    device = torch.device(device)
    if device.type == "cuda":  # this device's own (emulated bf16 on pre-Ampere GPUs is slower, as on a CPU)
        return torch.cuda.is_available() and torch.cuda.get_device_capability(device)[0] >= 8
    return device.type == "cpu" and torch.cpu._is_avx512_bf16_supported()


def check_bf16(flag: str) -> None:
    if flag not in CHOICES:
        raise ValueError(f"bf16 is true, false or auto, got {flag!r}")


def resolve_bf16(flag: str, device: torch.device | str) -> bool:
    """`--bf16` -> whether to autocast: auto means where `device` computes bf16 natively."""
    check_bf16(flag)
    return native_bf16(device) if flag == "auto" else flag == "true"


def autocast(device: torch.device | str, enabled: bool):
    """bfloat16 autocast on `device` when `enabled` (a no-op context otherwise)."""
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=enabled)
