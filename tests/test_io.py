"""End-to-end tests of the io layer through `shoal inspect`.

Safetensors files are written here by a small writer of our own (from the published format:
8-byte little-endian header length, JSON header, data section), from NumPy / PyTorch arrays, so
the reference is independent of shoal's writer. Corrupt files must make `shoal inspect` exit 1
with exactly one line on stderr naming the file, never crash.

Env: SHOAL_BIN (the shoal binary), SHOAL_TEST_TMP (scratch folder).
"""
import json
import os
import random
import shutil
import struct
import subprocess
import tempfile
import unittest

import numpy as np
import torch

SHOAL_BIN = os.environ.get("SHOAL_BIN", "shoal")
TMP_ROOT = os.environ.get("SHOAL_TEST_TMP", tempfile.gettempdir())

NUMPY_DTYPES = {
    np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.float64): "F64",
    np.dtype(np.int64): "I64", np.dtype(np.int32): "I32", np.dtype(np.int16): "I16",
    np.dtype(np.int8): "I8", np.dtype(np.uint8): "U8", np.dtype(np.uint16): "U16",
    np.dtype(np.uint32): "U32", np.dtype(np.uint64): "U64", np.dtype(np.bool_): "BOOL",
}


def raw(array):
    """(dtype name, shape, little-endian bytes) of a NumPy array or a torch tensor."""
    if isinstance(array, torch.Tensor):
        if array.dtype == torch.bfloat16:
            # NumPy has no bfloat16: reinterpret the 16-bit patterns.
            bits = array.contiguous().view(torch.int16).numpy()
            return "BF16", list(array.shape), bits.astype("<i2").tobytes()
        array = array.numpy()
    array = np.array(array, order="C")  # (ascontiguousarray would turn a 0-d array into 1-d)
    name = NUMPY_DTYPES[array.dtype]
    return name, list(array.shape), array.astype(array.dtype.newbyteorder("<")).tobytes()


def header_and_data(tensors, metadata=None):
    """tensors: list of (name, array) in data order. Returns (header dict, data bytes)."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    data = b""
    for name, array in tensors:
        dtype, shape, blob = raw(array)
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    return header, data


def encode(header, data, pad=True):
    text = json.dumps(header).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def write_safetensors(path, tensors, metadata=None):
    header, data = header_and_data(tensors, metadata)
    with open(path, "wb") as f:
        f.write(encode(header, data))


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


class InspectTest(unittest.TestCase):
    def setUp(self):
        os.makedirs(TMP_ROOT, exist_ok=True)
        self.tmp = tempfile.mkdtemp(prefix="test_io_", dir=TMP_ROOT)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def inspect(self, path, *flags):
        return subprocess.run([SHOAL_BIN, "inspect", str(path), *flags], capture_output=True,
                              text=True, errors="replace", timeout=120)

    def inspect_json(self, path):
        r = self.inspect(path, "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def assert_fails_cleanly(self, path, *must_contain):
        r = self.inspect(path)
        self.assertEqual(r.returncode, 1, f"{path}: rc {r.returncode}, stderr {r.stderr!r}")
        lines = r.stderr.splitlines()
        self.assertEqual(len(lines), 1, f"stderr is not one line: {r.stderr!r}")
        for text in must_contain:
            self.assertIn(text, lines[0])
        return lines[0]

    def sample_tensors(self):
        g = torch.Generator().manual_seed(1)
        rng = np.random.default_rng(2)
        return [
            ("model.embed_tokens.weight", torch.randn(16, 8, generator=g).to(torch.bfloat16)),
            ("model.layers.0.self_attn.q_proj.weight", rng.standard_normal((8, 8)).astype(np.float16)),
            ("model.layers.0.mlp.up_proj.weight", rng.standard_normal((12, 8)).astype(np.float32)),
            ("model.layers.1.self_attn.q_proj.weight", rng.standard_normal((8, 8)).astype(np.float16)),
            ("model.layers.1.mlp.up_proj.weight", rng.standard_normal((12, 8)).astype(np.float32)),
            ("model.layers.2.input_layernorm.weight", np.ones(8, dtype=np.float64)),
            ("model.norm.weight", np.ones(8, dtype=np.float32)),
            ("position_ids", np.arange(10, dtype=np.int64).reshape(1, 10)),
            ("mask", np.array([True, False, True])),
            ("bytes", np.arange(5, dtype=np.uint8)),
            ("scale", np.array(3.5, dtype=np.float32)),          # scalar, shape []
            ("empty", np.zeros((0, 4), dtype=np.float32)),       # no elements
            ("counts", np.array([1, 2], dtype=np.int32)),
        ]

    def check_report(self, report, tensors, file_of):
        got = {t["name"]: t for t in report["tensors"]}
        self.assertEqual(sorted(got), sorted(name for name, _ in tensors))
        for name, array in tensors:
            dtype, shape, _ = raw(array)
            self.assertEqual(got[name]["dtype"], dtype, name)
            self.assertEqual(got[name]["shape"], shape, name)
            self.assertEqual(got[name]["file"], file_of(name), name)
        self.assertEqual(report["parameters"], sum(numel(raw(a)[1]) for _, a in tensors))

    def test_folder_with_config(self):
        model = os.path.join(self.tmp, "model")
        os.makedirs(model)
        tensors = self.sample_tensors()
        write_safetensors(os.path.join(model, "model.safetensors"), tensors, {"format": "pt"})
        with open(os.path.join(model, "config.json"), "w") as f:
            json.dump({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                       "tie_word_embeddings": False}, f)
        report = self.inspect_json(model)
        self.check_report(report, tensors, lambda _: "model.safetensors")
        self.assertEqual(report["architecture"], "LlamaForCausalLM")
        self.assertEqual(report["model_type"], "llama")
        self.assertEqual(report["layers"], {"prefix": "model.layers", "count": 3})
        self.assertIs(report["tie_word_embeddings"], False)
        self.assertEqual(report["metadata"], {"format": "pt"})
        self.assertEqual(report["path"], model)

        text = self.inspect(model)
        self.assertEqual(text.returncode, 0, text.stderr)
        self.assertIn("LlamaForCausalLM", text.stdout)
        self.assertIn("model.layers x 3", text.stdout)
        for name, _ in tensors:
            self.assertIn(name, text.stdout)

    def test_single_file_and_tied_embeddings(self):
        path = os.path.join(self.tmp, "lone.safetensors")
        tensors = [("transformer.wte.weight", np.zeros((10, 4), np.float32)),
                   ("transformer.h.0.attn.c_attn.weight", np.zeros((4, 12), np.float32)),
                   ("transformer.h.1.attn.c_attn.weight", np.zeros((4, 12), np.float32))]
        write_safetensors(path, tensors)
        report = self.inspect_json(path)
        self.check_report(report, tensors, lambda _: "lone.safetensors")
        self.assertEqual(report["layers"], {"prefix": "transformer.h", "count": 2})
        self.assertIs(report["tie_word_embeddings"], True)  # wte and no lm_head
        self.assertIsNone(report["architecture"])
        self.assertEqual(report["metadata"], {})

    def test_sharded_folder(self):
        model = os.path.join(self.tmp, "sharded")
        os.makedirs(model)
        tensors = self.sample_tensors()
        parts = [tensors[:5], tensors[5:9], tensors[9:]]
        names = [f"model-{i + 1:05d}-of-00003.safetensors" for i in range(3)]
        weight_map = {}
        for part, name in zip(parts, names):
            write_safetensors(os.path.join(model, name), part)
            weight_map.update({t: name for t, _ in part})
        with open(os.path.join(model, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f)
        report = self.inspect_json(model)
        self.check_report(report, tensors, weight_map.__getitem__)

        # A shard the index names but the folder lacks.
        os.remove(os.path.join(model, names[1]))
        self.assert_fails_cleanly(model, names[1])

    def test_folder_without_safetensors(self):
        model = os.path.join(self.tmp, "bin_only")
        os.makedirs(model)
        open(os.path.join(model, "pytorch_model.bin"), "wb").close()
        line = self.assert_fails_cleanly(model, model)
        self.assertIn("safetensors", line)

    def corrupt_cases(self):
        """(file name, bytes, tensor named in the message or None)."""
        good_header, good_data = header_and_data(
            [("a.weight", np.ones(4, np.float32)), ("b.weight", np.ones(2, np.float16))])

        def with_entry(name, entry):
            h = json.loads(json.dumps(good_header))
            h[name] = entry
            return encode(h, good_data)

        cases = [
            ("short.safetensors", b"\x01\x02\x03", None),
            ("empty_file.safetensors", b"", None),
            ("len_past_end.safetensors", struct.pack("<Q", 1000) + b"{}", None),
            ("len_huge.safetensors", struct.pack("<Q", 2**63) + b"{}", None),
            ("not_json.safetensors", encode_raw(b"{not json"), None),
            ("not_object.safetensors", encode_raw(b"[1, 2]"), None),
            ("bad_dtype.safetensors",
             with_entry("a.weight", {"dtype": "F33", "shape": [4], "data_offsets": [0, 16]}),
             "a.weight"),
            ("size_mismatch.safetensors",
             with_entry("a.weight", {"dtype": "F16", "shape": [4], "data_offsets": [0, 16]}),
             "a.weight"),
            ("past_end.safetensors",
             with_entry("b.weight", {"dtype": "F16", "shape": [2], "data_offsets": [16, 20]})[:-2],
             "b.weight"),
            ("overlap.safetensors",
             with_entry("b.weight", {"dtype": "F16", "shape": [2], "data_offsets": [12, 16]}),
             "b.weight"),
            ("unknown_key.safetensors",
             with_entry("a.weight", {"dtype": "F32", "shape": [4], "data_offsets": [0, 16],
                                     "extra": 1}), "a.weight"),
            ("negative_dim.safetensors",
             with_entry("a.weight", {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}),
             "a.weight"),
            ("huge_shape.safetensors",
             with_entry("a.weight", {"dtype": "F32", "shape": [2**62, 2**62, 0],
                                     "data_offsets": [0, 16]}), "a.weight"),
            ("bad_metadata.safetensors", encode(dict(good_header, __metadata__={"k": 1}),
                                                good_data), None),
            ("trailing.safetensors", encode(good_header, good_data + b"\0" * 8), None),
            ("name_with_newline.safetensors",
             with_entry("evil\nname", {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}),
             None),
        ]
        return cases

    def test_corrupt_files_fail_with_one_line(self):
        for name, blob, tensor in self.corrupt_cases():
            with self.subTest(name):
                path = os.path.join(self.tmp, name)
                with open(path, "wb") as f:
                    f.write(blob)
                self.assert_fails_cleanly(path, path, *([tensor] if tensor else []))

    def test_truncated_and_mutated_files_never_crash(self):
        header, data = header_and_data(self.sample_tensors(), {"format": "pt"})
        good = encode(header, data)
        path = os.path.join(self.tmp, "fuzz.safetensors")
        rng = random.Random(7)
        blobs = [good[:n] for n in range(0, len(good), 37)]
        header_end = 8 + struct.unpack("<Q", good[:8])[0]
        for _ in range(60):
            b = bytearray(good)
            for _ in range(rng.randint(1, 4)):
                b[rng.randrange(0, header_end)] = rng.randrange(256)
            blobs.append(bytes(b))
        for i, blob in enumerate(blobs):
            with open(path, "wb") as f:
                f.write(blob)
            r = self.inspect(path, "--json")
            self.assertIn(r.returncode, (0, 1), f"case {i}: {r.stderr!r}")
            if r.returncode == 1:
                self.assertEqual(len(r.stderr.splitlines()), 1, f"case {i}: {r.stderr!r}")
                self.assertIn(path, r.stderr)


def encode_raw(header_bytes):
    return struct.pack("<Q", len(header_bytes)) + header_bytes


if __name__ == "__main__":
    unittest.main()
