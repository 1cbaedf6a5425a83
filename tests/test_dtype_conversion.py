"""Bit-exact dtype conversion through `shoal merge` (passthrough, scale 1) against NumPy's
float16 and PyTorch's bfloat16 conversions: every f16 and bf16 bit pattern widened to f32, and
f32 values (random bit patterns plus hand-picked halfway, subnormal and overflow cases) rounded
to f16 and bf16."""
import json
import unittest
from pathlib import Path

import numpy as np
import torch

import shoal_testlib as tl


def write_single_tensor_model(folder, dtype, raw):
    folder.mkdir(parents=True, exist_ok=True)
    n = len(raw) // {"F16": 2, "BF16": 2, "F32": 4}[dtype]
    header = {"__metadata__": {"format": "pt"},
              "model.norm.weight": {"dtype": dtype, "shape": [n], "data_offsets": [0, len(raw)]}}
    tl.write_raw_safetensors(folder / "model.safetensors", header, raw)
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))


def passthrough(test, src_dtype, raw, out_dtype):
    root = Path(tl.tmp_root()) / f"dtype-{test.id().split('.')[-1]}-{src_dtype}-{out_dtype}"
    write_single_tensor_model(root / "src", src_dtype, raw)
    recipe = root / "recipe.yml"
    recipe.write_text(f"merge_method: passthrough\nmodels:\n  - model: src\nout_dtype: {out_dtype}\n")
    res = tl.run_shoal(["merge", recipe, root / "out", "--force", "--quiet"])
    test.assertEqual(res.returncode, 0, res.stderr)
    header, _ = tl.read_safetensors(root / "out" / "model.safetensors")
    data = (root / "out" / "model.safetensors").read_bytes()
    header_len = int.from_bytes(data[:8], "little")
    begin, end = header["model.norm.weight"]["data_offsets"]
    return data[8 + header_len + begin:8 + header_len + end]


def edge_f32_values():
    """Halfway and near-halfway cases for both 16-bit formats, subnormals, overflow."""
    vals = [0.0, -0.0, 1.0, -2.5, 65504.0, 65519.0, 65520.0, 1e30, -1e38, 3.4028235e38,
            2.0 ** -14, 2.0 ** -24, 2.0 ** -25, 1.5 * 2.0 ** -25, 3 * 2.0 ** -25, 2.0 ** -126,
            2.0 ** -149, np.inf, -np.inf]
    ones = np.float32(1.0).view(np.uint32)
    bits = [ones + 0x8000, ones + 0x18000, ones + 0x8001, ones + 0x7fff,  # bf16 halfway cases
            ones + 0x1000, ones + 0x3000, ones + 0x1001, ones + 0x0fff]   # f16 halfway cases
    return np.concatenate([np.array(vals, dtype=np.float32),
                           np.array(bits, dtype=np.uint32).view(np.float32)])


class DtypeConversion(unittest.TestCase):
    def test_every_f16_pattern_widens_exactly(self):
        patterns = np.arange(65536, dtype=np.uint16)
        out = passthrough(self, "F16", patterns.astype("<u2").tobytes(), "float32")
        got = np.frombuffer(out, dtype="<f4")
        want = patterns.view(np.float16).astype(np.float32)
        nan = np.isnan(want)
        np.testing.assert_array_equal(np.isnan(got), nan)
        np.testing.assert_array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32))

    def test_every_bf16_pattern_widens_exactly(self):
        patterns = np.arange(65536, dtype=np.uint16)
        out = passthrough(self, "BF16", patterns.astype("<u2").tobytes(), "float32")
        got = np.frombuffer(out, dtype="<f4")
        want = torch.from_numpy(patterns.view(np.int16).copy()).view(torch.bfloat16).float().numpy()
        nan = np.isnan(want)
        np.testing.assert_array_equal(np.isnan(got), nan)
        np.testing.assert_array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32))

    def f32_inputs(self):
        rng = np.random.default_rng(7)
        random_bits = rng.integers(0, 2 ** 32, size=200_000, dtype=np.uint64).astype(np.uint32)
        values = random_bits.view(np.float32)
        values = values[~np.isnan(values)]
        # Values in the normal working range of weights, where most rounding happens.
        weights = rng.normal(0, 0.05, size=100_000).astype(np.float32)
        return np.concatenate([edge_f32_values(), values, weights])

    def test_f32_rounds_to_f16_like_numpy(self):
        x = self.f32_inputs()
        got = np.frombuffer(passthrough(self, "F32", x.astype("<f4").tobytes(), "float16"), "<u2")
        with np.errstate(over="ignore"):
            want = x.astype(np.float16).view(np.uint16)
        mismatch = np.nonzero(got != want)[0]
        self.assertEqual(len(mismatch), 0,
                         f"first mismatches: {[(float(x[i]), hex(got[i]), hex(want[i])) for i in mismatch[:5]]}")

    def test_f32_rounds_to_bf16_like_torch(self):
        x = self.f32_inputs()
        got = np.frombuffer(passthrough(self, "F32", x.astype("<f4").tobytes(), "bfloat16"), "<u2")
        want = torch.from_numpy(x.copy()).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
        mismatch = np.nonzero(got != want)[0]
        self.assertEqual(len(mismatch), 0,
                         f"first mismatches: {[(float(x[i]), hex(got[i]), hex(want[i])) for i in mismatch[:5]]}")


if __name__ == "__main__":
    unittest.main()
