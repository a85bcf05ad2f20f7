"""Read a PyTorch state-dict file (``torch.save``) into NumPy arrays without importing torch.

Both on-disk formats: the zip format (torch >= 1.6) and the legacy pickle stream. Only tensors, dicts,
lists and tuples are rebuilt; anything else in the pickle (a whole model, custom classes) is refused,
so reading a file never runs code from it.
"""

import pickle
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from xcam.errors import XcamError

_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class _StorageType:
    def __init__(self, name):
        self.dtype = np.dtype(_DTYPES[name])


class _Storage:
    def __init__(self, dtype, numel=None):
        self.dtype, self.numel, self.data = dtype, numel, None


class _Tensor:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def array(self) -> np.ndarray:
        flat = self.storage.data
        item = flat.itemsize
        view = np.lib.stride_tricks.as_strided(flat[self.offset:], shape=self.size,
                                               strides=tuple(s * item for s in self.stride))
        return np.array(view)


def _rebuild_tensor(storage, offset, size, stride, *_):
    return _Tensor(storage, offset, size, stride)


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, storages, make_storage):
        super().__init__(file)
        self.storages, self.make_storage = storages, make_storage

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name in _DTYPES:
            return _StorageType(name)
        raise XcamError(f"the file holds a {module}.{name} object, not a plain state dict; "
                        "only tensors in dicts can be read without PyTorch")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, numel = pid[:5]
        if kind != "storage":
            raise XcamError(f"unsupported object {kind!r} in the state-dict file")
        if key not in self.storages:
            self.storages[key] = self.make_storage(storage_type.dtype, key, numel)
        return self.storages[key]


def _to_numpy(obj):
    if isinstance(obj, _Tensor):
        return obj.array()
    if isinstance(obj, dict):
        return OrderedDict((k, _to_numpy(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_numpy(v) for v in obj)
    return obj


def _load_zip(path: Path):
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = next(n for n in names if n.endswith("data.pkl"))
        root = pkl[: -len("data.pkl")]

        def make(dtype, key, numel):
            s = _Storage(dtype)
            s.data = np.frombuffer(zf.read(f"{root}data/{key}"), dtype=dtype)
            return s

        with zf.open(pkl) as f:
            return _Unpickler(f, {}, make).load()


def _load_legacy(path: Path):
    with open(path, "rb") as f:
        if pickle.load(f) != _LEGACY_MAGIC:
            raise XcamError(f"{str(path)!r} is not a PyTorch file")
        pickle.load(f)  # protocol version
        pickle.load(f)  # system info
        storages: dict = {}
        result = _Unpickler(f, storages, lambda dtype, key, numel: _Storage(dtype, numel)).load()
        for key in pickle.load(f):
            numel = struct.unpack("<q", f.read(8))[0]
            st = storages[key]
            st.data = np.frombuffer(f.read(numel * st.dtype.itemsize), dtype=st.dtype)
        return result


def load_state_dict(path) -> "OrderedDict[str, np.ndarray]":
    """The tensors of a ``torch.save``-d state dict as NumPy arrays, keys as saved."""
    path = Path(path)
    if not path.is_file():
        raise XcamError(f"cannot read weights file {str(path)!r}: no such file")
    try:
        obj = _load_zip(path) if zipfile.is_zipfile(path) else _load_legacy(path)
    except XcamError:
        raise
    except Exception as exc:  # a truncated or foreign file
        raise XcamError(f"cannot read weights file {str(path)!r}: {type(exc).__name__}: {exc}") from None
    return _to_numpy(obj)
