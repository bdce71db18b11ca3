"""Which device a run trains on and in which precision: the policy, in one place."""
from pathlib import Path

import torch


def pick_device(name):
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cpu_has_native_bf16():
    """AVX512-BF16 or AMX: x86 instructions that compute in bf16; elsewhere oneDNN emulates it, slower than fp32."""
    capability = getattr(torch._C._cpu, "_get_cpu_capability", None)  # private; absent from older torch
    if capability is not None:
        flags = capability()
        return bool(flags.get("avx512_bf16") or flags.get("amx_bf16"))
    try:
        return bool({"avx512_bf16", "amx_bf16"} & set(Path("/proc/cpuinfo").read_text().split()))
    except OSError:  # not Linux: assume none
        return False


def choose_precision(precision, device):
    """(bf16?, why): bf16 autocast only where it was measured to win (CPUs that compute in bf16 natively), else fp32."""
    if precision != "auto":
        return precision == "bf16", "--precision " + precision
    if device.type == "cuda":  # this model's steps are too small for bf16 to pay for autocast's casts (NOTES.md)
        return False, "CUDA: fp32 steps (TF32 convolutions) beat bf16 autocast on an H100 for this small model"
    if device.type == "cpu":
        if cpu_has_native_bf16():
            return True, "CPU has native bf16 (AVX512-BF16 or AMX)"
        return False, "CPU has no native bf16 (AVX512-BF16 or AMX)"
    return False, f"{device.type}: bf16 autocast is not used there"

