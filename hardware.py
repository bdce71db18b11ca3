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
    """(bf16?, why): bf16 autocast only where the hardware computes in bf16 natively, else fp32."""
    if precision != "auto":
        return precision == "bf16", "--precision " + precision
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        if major >= 8:  # Ampere and newer; is_bf16_supported() would also say yes to emulated bf16 (T4, V100)
            return True, f"GPU compute capability {major}.{minor} has native bf16"
        return False, f"GPU compute capability {major}.{minor} has no native bf16 (fp16 was not measured)"
    if device.type == "cpu":
        if cpu_has_native_bf16():
            return True, "CPU has native bf16 (AVX512-BF16 or AMX)"
        return False, "CPU has no native bf16 (AVX512-BF16 or AMX)"
    return False, f"{device.type}: bf16 autocast is not used there"

