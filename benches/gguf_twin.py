#!/usr/bin/env python3
"""A GGUF file's twin: its header (metadata, tokenizer, tensor table) byte for byte, with random
tensor data of the same types and sizes.

Why: the device tool carries at most 64 MiB a call, the working tree is ~50 MiB of that, and the
SmolLM2 Q4_1 GGUF is 94 MiB. Its header is 1.8 MB, so that travels (`header`) and the device
builds the twin (`fill`): the same tensors, block formats, tokenizer and shapes, so the same
kernels run over the same bytes per token. Its speed is the real model's; its values are not, so
its GPU-vs-CPU rows check the kernels on the real layout, not the real model's text (the real
file's own rows are in results/gpu-h200/gpu-check-gguf.txt).

Values: Q4_1 blocks d in [0.008, 0.012] with m = -7.5 d (centred codes) (weights uniform in about +-0.08, so a
576-wide row gives outputs of unit scale), Q8_0 blocks d in [0.0005, 0.001] with uniform int8,
F32 (the norms) uniform in [0.9, 1.1]; a fixed seed, so every twin of one header is the same file.

  python3 benches/gguf_twin.py header MODEL.gguf HEADER.bin
  python3 benches/gguf_twin.py fill HEADER.bin TWIN.gguf
"""
import math
import os
import struct
import sys

# The GGML types the twin writes (F32, Q4_1, Q8_0) -> values a block
PER_BLOCK = {0: 1, 3: 32, 8: 32}
SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def read(self, fmt):
        (value,) = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return value

    def string(self):
        n = self.read("Q")
        s = self.data[self.pos:self.pos + n].decode("utf-8", "replace")
        self.pos += n
        return s

    def value(self, kind):
        if kind == 8:
            return self.string()
        if kind == 9:
            item, n = self.read("I"), self.read("Q")
            return [self.value(item) for _ in range(n)]
        return self.read(SCALAR[kind])


def parse(data):
    """(tensors as (name, type, element count, offset), alignment, data start)."""
    r = Reader(data)
    if data[:4] != b"GGUF":
        sys.exit("not a GGUF file (no GGUF magic)")
    r.pos = 4
    version, n_tensors, n_kv = r.read("I"), r.read("Q"), r.read("Q")
    if version != 3:
        sys.exit(f"GGUF version {version}: only 3 is handled")
    alignment = 32
    for _ in range(n_kv):
        key = r.string()
        value = r.value(r.read("I"))
        if key == "general.alignment":
            alignment = value
    tensors = []
    for _ in range(n_tensors):
        name = r.string()
        dims = [r.read("Q") for _ in range(r.read("I"))]
        kind, offset = r.read("I"), r.read("Q")
        tensors.append((name, kind, math.prod(dims), offset))
    start = (r.pos + alignment - 1) // alignment * alignment
    return tensors, alignment, start


def random_blocks(rng, kind, elements):
    import numpy as np  # `fill` only (the GPU machine has it); `header` runs without numpy
    if kind not in PER_BLOCK:
        sys.exit(f"GGML type {kind}: the twin handles F32, Q4_1 and Q8_0 (add its values here)")
    n = elements // PER_BLOCK[kind]
    if kind == 0:
        return rng.uniform(0.9, 1.1, n).astype("<f4").tobytes()
    if kind == 3:  # Q4_1: d, m (f16), 16 bytes of nibbles
        d = rng.uniform(0.008, 0.012, n).astype("<f2")
        m = (-7.5 * d.astype(np.float32)).astype("<f2")  # codes 0..15 centred: no shared bias
        q = rng.integers(0, 256, (n, 16), dtype=np.uint8)
        return np.concatenate([d.view(np.uint8).reshape(n, 2), m.view(np.uint8).reshape(n, 2), q], axis=1).tobytes()
    # Q8_0: d (f16), 32 int8
    d = rng.uniform(0.0005, 0.001, n).astype("<f2")
    q = rng.integers(-127, 128, (n, 32), dtype=np.int8).view(np.uint8)
    return np.concatenate([d.view(np.uint8).reshape(n, 2), q], axis=1).tobytes()


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("header", "fill"):
        sys.exit(__doc__)
    mode, src, dst = sys.argv[1:]
    data = open(src, "rb").read() if mode == "fill" else open(src, "rb").read(64 << 20)
    tensors, alignment, start = parse(data)
    if mode == "header":
        open(dst, "wb").write(data[:start])
        print(f"{dst}: {start} bytes of header, {len(tensors)} tensors")
        return
    import numpy as np

    rng = np.random.default_rng(0)
    with open(dst + ".tmp", "wb") as out:
        out.write(data[:start])
        for name, kind, elements, offset in sorted(tensors, key=lambda t: t[3]):
            pad = start + offset - out.tell()
            if pad < 0:
                sys.exit(f"{name}: overlaps the tensor before it")
            out.write(b"\0" * pad)
            out.write(random_blocks(rng, kind, elements))
        out.write(b"\0" * (-out.tell() % alignment))
    os.replace(dst + ".tmp", dst)
    print(f"{dst}: {len(tensors)} tensors of random values after {start} bytes of header")


if __name__ == "__main__":
    main()
