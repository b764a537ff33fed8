#!/usr/bin/env python3
"""Seed corpora for the fuzz targets of tests/fuzz (standard library only).

    python3 tests/fuzz/make_corpus.py [OUT]     (OUT defaults to target/fuzz-corpus)

writes OUT/<target>/<sha256-prefix> for the targets pickle, checkpoint,
safetensors and npy from
  * the real checkpoints of ../shared/checkpoints: each zip checkpoint's
    data.pkl and each legacy checkpoint's five pickles (pickle target);
  * picklescan's test corpus, ../shared/reference/picklescan (every target);
  * small synthetic files built here: zip and legacy torch.save checkpoints
    with a few float32 tensors (one strided, one with a storage offset), made
    without torch by pickling stand-ins for torch's globals; safetensors
    blobs; .npy arrays (v1/v2/v3, little/big-endian, C/Fortran order).
Real checkpoints are megabytes, mostly tensor data; the synthetic ones keep
the inputs small so that mutations land on the structure.
"""
import collections
import hashlib
import io
import json
import os
import pickle
import pickletools
import struct
import sys
import types
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.path.join(os.path.dirname(ROOT), "shared")
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "fuzz-corpus")


def put(target, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha256(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def pickles(data, start=0):
    """Byte ranges of consecutive pickles starting at `start`."""
    out = []
    pos = start
    while pos < len(data):
        end = None
        for op, _arg, p in pickletools.genops(io.BytesIO(data[pos:])):
            if op.name == "STOP":
                end = pos + p + 1
                break
        if end is None:
            break
        out.append((pos, end))
        pos = end
        if len(out) == 5:
            break
    return out


# ---- stand-ins for torch's globals, so that pickle writes torch.save's opcodes
torch = types.ModuleType("torch")
torch_utils = types.ModuleType("torch._utils")


class FloatStorage:
    pass


class LongStorage:
    pass


for cls in (FloatStorage, LongStorage):
    cls.__module__ = "torch"
    setattr(torch, cls.__name__, cls)


def _rebuild_tensor_v2(*args):
    raise RuntimeError("never called")


_rebuild_tensor_v2.__module__ = "torch._utils"
torch_utils._rebuild_tensor_v2 = _rebuild_tensor_v2
torch._utils = torch_utils
sys.modules["torch"] = torch
sys.modules["torch._utils"] = torch_utils


class Storage:
    def __init__(self, key, numel, cls=FloatStorage):
        self.key, self.numel, self.cls = key, numel, cls


class Tensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())

    def __reduce__(self):
        return (_rebuild_tensor_v2, self.args)


class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", obj.cls, obj.key, "cpu", obj.numel)
        return None


def dumps(obj, protocol=2):
    b = io.BytesIO()
    Pickler(b, protocol=protocol).dump(obj)
    return b.getvalue()


def tiny_state():
    s0 = Storage("0", 12)
    s1 = Storage("1", 6)
    s2 = Storage("2", 1, LongStorage)
    sd = collections.OrderedDict()
    sd["module.conv.weight"] = Tensor(s0, 0, (2, 1, 2, 3), (6, 6, 3, 1))
    sd["module.conv.bias"] = Tensor(s1, 2, (2,), (1,))
    sd["module.t.weight"] = Tensor(s0, 1, (3, 2), (1, 3))  # strided view
    sd["module.bn.num_batches_tracked"] = Tensor(s2, 0, (), ())
    data = {
        "0": struct.pack("<12f", *range(12)),
        "1": struct.pack("<6f", *range(6)),
        "2": struct.pack("<q", 7),
    }
    return sd, data


def zip_checkpoint(obj, data, prefix="archive", protocol=2):
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_STORED) as z:
        z.writestr(prefix + "/data.pkl", dumps(obj, protocol))
        z.writestr(prefix + "/byteorder", "little")
        for k, v in data.items():
            z.writestr(prefix + "/data/" + k, v)
        z.writestr(prefix + "/version", "3\n")
    return b.getvalue()


def legacy_checkpoint(obj, data):
    sizes = {"0": 12, "1": 6, "2": 1}
    out = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
    out += pickle.dumps(1001, protocol=2)
    out += pickle.dumps(
        {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}},
        protocol=2,
    )
    out += dumps(obj, 2)
    keys = list(data)
    out += pickle.dumps(keys, protocol=2)
    for k in keys:
        out += struct.pack("<Q", sizes[k]) + data[k]
    return out


def safetensors(tensors, meta):
    header = {"__metadata__": meta} if meta is not None else {}
    blob = b""
    for name, (shape, values) in tensors.items():
        raw = struct.pack("<%df" % len(values), *values)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(blob), len(blob) + len(raw)]}
        blob += raw
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + blob


def npy(shape, values, descr="<f4", fortran=False, version=(1, 0)):
    header = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (
        descr, fortran, "(%s)" % "".join("%d," % s for s in shape) if shape else "()")
    pre = 10 if version[0] == 1 else 12
    header += " " * (-(pre + len(header) + 1) % 64) + "\n"
    h = header.encode("latin-1" if version[0] < 3 else "utf-8")
    lenfield = struct.pack("<H", len(h)) if version[0] == 1 else struct.pack("<I", len(h))
    fmt = {"<f4": "<%df", ">f4": ">%df", "<f8": "<%dd", ">f8": ">%dd", "<i8": "<%dq"}[descr]
    return b"\x93NUMPY" + bytes(version) + lenfield + h + struct.pack(fmt % len(values), *values)


def main():
    # Real checkpoints: their pickles.
    ck = os.path.join(SHARED, "checkpoints")
    for dirpath, _dirs, files in os.walk(ck):
        for fn in files:
            p = os.path.join(dirpath, fn)
            with open(p, "rb") as f:
                head = f.read(4)
            if head == b"PK\x03\x04":
                with zipfile.ZipFile(p) as z:
                    for n in z.namelist():
                        if n.endswith("data.pkl"):
                            put("pickle", z.read(n))
            elif head[:1] == b"\x80":
                data = open(p, "rb").read()
                ranges = pickles(data)
                for a, b in ranges:
                    put("pickle", data[a:b])
                if ranges:
                    # The legacy header plus a little data: the checkpoint reader's framing.
                    put("checkpoint", data[: ranges[-1][1] + 64])
    # picklescan's corpus: every file for every target.
    ps = os.path.join(SHARED, "reference", "picklescan")
    for dirpath, _dirs, files in os.walk(ps):
        for fn in files:
            if fn in ("LICENSE", "README.md"):
                continue
            data = open(os.path.join(dirpath, fn), "rb").read()
            for t in ("pickle", "checkpoint", "safetensors", "npy"):
                put(t, data)
    # Synthetic checkpoints.
    sd, data = tiny_state()
    for proto in (2, 4):
        put("pickle", dumps(sd, proto))
        put("checkpoint", zip_checkpoint(sd, data, protocol=proto))
    put("checkpoint", zip_checkpoint({"state_dict": sd, "epoch": 3}, data, prefix="model"))
    put("checkpoint", zip_checkpoint({"model": [sd]}, data))
    put("checkpoint", legacy_checkpoint(sd, data))
    put("pickle", dumps({"state_dict": sd, "args": {"a": 1.5, "b": "x", "c": [1, 2, (3, None)]}}, 2))
    # Safetensors blobs.
    put("safetensors", safetensors({"w": ([2, 3], list(range(6))), "b": ([2], [0.5, 1.5])},
                                   {"prior.format": "1", "prior.arch": "dncnn", "prior.hparams": "{\"depth\": 2}",
                                    "prior.noise_range": "0-100"}))
    put("safetensors", safetensors({"x": ([], [1.0])}, None))
    put("safetensors", safetensors({}, {}))
    # .npy arrays.
    put("npy", npy((2, 3), range(6)))
    put("npy", npy((2, 3), range(6), descr=">f8", fortran=True))
    put("npy", npy((1, 2, 2, 2), range(8), version=(2, 0)))
    put("npy", npy((3,), range(3), version=(3, 0)))
    put("npy", npy((), [1.0]))
    put("npy", npy((2,), [1, 2], descr="<i8"))
    for t in ("pickle", "checkpoint", "safetensors", "npy"):
        d = os.path.join(OUT, t)
        print(t, len(os.listdir(d)), "seeds in", d)


if __name__ == "__main__":
    main()
