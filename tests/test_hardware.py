"""hardware.py: bf16 autocast only where the hardware computes in bf16; the device's capability is mocked."""
import unittest
from unittest import mock

import repo  # noqa: F401 - first: it puts the repository on the path

import torch

import hardware


def no_cpu_capability():
    """torch without its private CPU-capability call (as torch 2.6 is): hardware.py must read /proc/cpuinfo."""
    return mock.patch.object(torch._C._cpu, "_get_cpu_capability", None, create=True)


class PrecisionPolicyTest(unittest.TestCase):
    """bf16 autocast only where the hardware computes in bf16: the device's capability is mocked."""

    def auto(self, device):
        return hardware.choose_precision("auto", torch.device(device))

    def test_cuda_trains_in_fp32(self):
        bf16, why = self.auto("cuda")  # measured: bf16 slower on an H100, whatever the GPU's bf16 support
        self.assertFalse(bf16)
        self.assertIn("fp32", why)

    def test_cpu_follows_its_native_bf16(self):
        for native in (True, False):
            with self.subTest(native=native), mock.patch("hardware.cpu_has_native_bf16", return_value=native):
                self.assertEqual(self.auto("cpu")[0], native)

    def test_cpu_flags(self):
        for flags, expected in (({"avx512_bf16": True}, True), ({"amx_bf16": True, "avx512_bf16": False}, True),
                                ({"avx512_bf16": False, "amx_bf16": False, "avx512_f": True}, False)):
            with self.subTest(flags=flags), mock.patch.object(torch._C._cpu, "_get_cpu_capability", create=True,
                                                              return_value=flags):
                self.assertEqual(hardware.cpu_has_native_bf16(), expected)

    def test_mps_trains_in_fp32(self):
        self.assertEqual(self.auto("mps")[0], False)

    def test_cpu_flags_from_proc_cpuinfo_where_torch_cannot_say(self):
        for cpuinfo, expected in (("flags\t: fpu avx512f avx512_bf16 avx512_vnni\n", True),
                                  ("flags\t: fpu sse amx_bf16 amx_tile\n", True),
                                  ("flags\t: fpu avx2 avx512f avx512_vnni\n", False)):
            with self.subTest(cpuinfo=cpuinfo), no_cpu_capability(), \
                    mock.patch("pathlib.Path.read_text", return_value=cpuinfo):
                self.assertEqual(hardware.cpu_has_native_bf16(), expected)
        with no_cpu_capability(), mock.patch("pathlib.Path.read_text", side_effect=FileNotFoundError("/proc/cpuinfo")):
            self.assertFalse(hardware.cpu_has_native_bf16())  # not Linux

    def test_asking_wins_over_auto(self):
        self.assertEqual(hardware.choose_precision("bf16", torch.device("cuda")), (True, "--precision bf16"))
        with mock.patch("hardware.cpu_has_native_bf16", return_value=True):
            self.assertEqual(hardware.choose_precision("fp32", torch.device("cpu")), (False, "--precision fp32"))


if __name__ == "__main__":
    unittest.main()
