"""Reading checkpoint files safely and lazily, and writing safetensors.

- safetensors files are read with `safe_open`: one tensor at a time, nothing else in memory.
- pickles (`.ckpt`, `.pth`, `.th`, `.bin`) are read ONLY with `torch.load(..., weights_only=True)`: a pickle that holds
  anything but tensors and plain containers (a class, a function such as `os.system`) is refused before any of it
  runs. Zip-format pickles (everything `torch.save` wrote since PyTorch 1.6) are memory-mapped, so tensors are read
  from disk when a component needs them.
- The format is told from the file's first bytes, not its name.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import pickle
import re
import struct
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from magicpose.errors import UserError

PICKLE_ADVICE = (
    "only weights-only pickles are accepted: use the .safetensors release of these weights, or re-save the "
    "tensors (torch.save of a dict of tensors, or safetensors) in an environment you trust"
)


def is_safetensors(path: Path) -> bool:
    """True when the file starts like a safetensors file (8-byte header length, then a JSON object)."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and 8 + length <= path.stat().st_size


def load_pickle(path: Path, mmap: bool | None = None) -> object:
    """`torch.load` with `weights_only=True` (always); memory-mapped by default when the file is a zip-format pickle."""
    return _load_pickle(path, zipfile.is_zipfile(path) if mmap is None else mmap)[0]


def _load_pickle(path: Path, mmap: bool) -> tuple[object, bool]:
    """(object, whether it is memory-mapped); falls back to reading the file when it cannot be mapped."""
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap), mmap
        except RuntimeError:
            if not mmap:
                raise
            return torch.load(path, map_location="cpu", weights_only=True, mmap=False), False
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL (\S+)", str(err))
        what = f"it references {found.group(1)}" if found else _first_line(err)
        raise UserError(f"{path}: refused: the pickle holds more than tensors ({what}); not loaded, nothing of it "
                        f"ran; {PICKLE_ADVICE}") from None
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, OSError) as err:
        raise UserError(f"{path}: not a readable PyTorch checkpoint ({_first_line(err)})") from None


@dataclass
class Checkpoint:
    """A flat `name -> tensor` view of one checkpoint file; tensors are read when asked for.

    `notes` says what was unwrapped (`state_dict`, a `module.` prefix) or set aside (training state beside the
    state dict), so that every entry of the file is accounted for.
    """

    path: Path
    _names: dict[str, str]  # our key -> key in the file
    _tensors: dict[str, torch.Tensor] | None = None  # pickles: the (memory-mapped) tensors
    _file: object | None = None  # safetensors: the safe_open handle
    _mapped: bool = False  # the pickle's tensors are a private read-only mapping of the file
    notes: list[str] = field(default_factory=list)

    def keys(self) -> list[str]:
        return list(self._names)

    def __contains__(self, key: str) -> bool:
        return key in self._names

    def __iter__(self):
        return iter(list(self._names))

    def shape(self, key: str) -> tuple[int, ...]:
        if self._tensors is not None:
            return tuple(self._tensors[self._names[key]].shape)
        return tuple(self._file.get_slice(self._names[key]).get_shape())

    def get(self, key: str) -> torch.Tensor:
        if self._tensors is not None:
            return self._tensors[self._names[key]]
        return self._file.get_tensor(self._names[key])

    def release(self, keys: Iterable[str]) -> None:
        """Forget these tensors: their memory (and, for a memory-mapped file, their pages) is given back."""
        for key in keys:
            name = self._names.pop(key, None)
            if name is None:
                continue
            if self._tensors is not None:
                tensor = self._tensors.pop(name, None)
                if tensor is not None and self._mapped:
                    _drop_pages(tensor)
            elif self._file is not None and self._mapped:
                _drop_pages(self._file.get_tensor(name))  # a view of the mapping: no data is read

    def close(self) -> None:
        self._tensors, self._file = None, None


def open_checkpoint(path: str | Path) -> Checkpoint:
    """Open a safetensors file or a weights-only pickle as a `Checkpoint` (a `UserError` names what is wrong)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: a folder; give one checkpoint file (.ckpt / .pth / .th / .safetensors)")
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    if is_safetensors(path):
        from safetensors import safe_open

        try:
            handle = safe_open(str(path), framework="pt", device="cpu")
        except Exception as err:  # safetensors raises its own error types
            raise UserError(f"{path}: not a readable safetensors file ({_first_line(err)})") from None
        names = {key: key for key in handle.keys()}  # noqa: SIM118 (safe_open is not a mapping)
        mapped = bool(names) and _is_file_mapping(handle.get_tensor(next(iter(names))), path)
        ckpt = Checkpoint(path, names, _file=handle, _mapped=mapped)
    else:
        obj, mapped = _load_pickle(path, zipfile.is_zipfile(path))
        tensors, notes = _state_dict_of(obj, path)
        ckpt = Checkpoint(path, {key: key for key in tensors}, _tensors=tensors, _mapped=mapped, notes=notes)
    _strip_module_prefix(ckpt)
    return ckpt


def _state_dict_of(obj: object, path: Path) -> tuple[dict[str, torch.Tensor], list[str]]:
    notes = []
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        others = sorted(str(k) for k in obj if k != "state_dict")
        notes.append("read the 'state_dict' entry" + (f"; set aside the training state beside it ({', '.join(others)})"
                                                      if others else ""))
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise UserError(f"{path}: holds a {type(obj).__name__}, not a state dict (a dict of tensors)")
    bad = [f"{k} ({type(v).__name__})" for k, v in obj.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if bad:
        raise UserError(f"{path}: {len(bad)} state-dict entries are not tensors: {_few(bad)}")
    return dict(obj), notes


def _strip_module_prefix(ckpt: Checkpoint) -> None:
    """A state dict saved from a DDP/DeepSpeed-wrapped model has every key under `module.`."""
    keys = list(ckpt._names)
    if keys and all(k.startswith("module.") for k in keys):
        ckpt._names = {k[len("module."):]: name for k, name in ckpt._names.items()}
        ckpt.notes.append("removed the 'module.' prefix of every key (a state dict of a wrapped model)")


def _drop_pages(tensor: torch.Tensor) -> None:
    """Give a memory-mapped tensor's pages back to the page cache (Linux; best effort, harmless elsewhere).

    Pickles are mapped private and read-only by us: the pages are clean copies of the file, so dropping them loses
    nothing (touching them again re-reads the file). Without this, every page a conversion has read stays in the
    process's resident set until the whole checkpoint is closed.
    """
    storage = tensor.untyped_storage()
    with contextlib.suppress(Exception):
        libc = _libc()
        page = 4096
        start = storage.data_ptr() // page * page
        end = storage.data_ptr() + storage.nbytes()
        libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), 4)  # MADV_DONTNEED


def _is_file_mapping(tensor: torch.Tensor, path: Path) -> bool:
    """Whether the tensor's memory lies in a private mapping of `path` (safetensors >= 0.6 hands out such views)."""
    address = tensor.untyped_storage().data_ptr()
    try:
        real = str(path.resolve())
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                if len(fields) == 6 and fields[5].strip() == real and fields[1][3] == "p":
                    start, end = (int(x, 16) for x in fields[0].split("-"))
                    if start <= address < end:
                        return True
    except OSError:
        pass
    return False


_LIBC = None


def _libc():
    global _LIBC
    if _LIBC is None:
        _LIBC = ctypes.CDLL(None, use_errno=True)
        _LIBC.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return _LIBC


# ---------------------------------------------------------------------------------------------- safetensors writing

_ST_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL",
}


@dataclass
class LazyTensor:
    """One entry of a streamed safetensors file: its shape and dtype now, its data when written."""

    dtype: torch.dtype
    shape: tuple[int, ...]
    load: Callable[[], torch.Tensor]
    done: Callable[[], None] | None = None  # called once the tensor is written (e.g. to release its pages)


def write_safetensors_streaming(path: Path, entries: dict[str, LazyTensor], metadata: dict[str, str] | None = None
                                ) -> None:
    """Write a safetensors file holding one tensor in memory at a time (the header only needs shapes and dtypes)."""
    header: dict[str, object] = {"__metadata__": dict(metadata or {"format": "pt"})}
    offset = 0
    for name, entry in entries.items():
        nbytes = _numel(entry.shape) * torch.empty((), dtype=entry.dtype).element_size()
        header[name] = {"dtype": _ST_DTYPES[entry.dtype], "shape": list(entry.shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for name, entry in entries.items():
            tensor = entry.load()
            if tensor.dtype != entry.dtype or tuple(tensor.shape) != tuple(entry.shape):
                raise RuntimeError(f"{name}: got {tensor.dtype} {tuple(tensor.shape)}, "
                                   f"announced {entry.dtype} {tuple(entry.shape)}")
            f.write(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().data)
            del tensor
            if entry.done is not None:
                entry.done()


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """`safetensors.torch.save_file` (no copy of the data), after un-sharing tensors that share storage."""
    from safetensors.torch import save_file

    seen: set[int] = set()
    owned = {}
    for name, tensor in tensors.items():
        tensor = tensor.contiguous()
        storage = tensor.untyped_storage()
        if storage.data_ptr() in seen or storage.nbytes() != tensor.numel() * tensor.element_size():
            tensor = tensor.clone()
        seen.add(tensor.untyped_storage().data_ptr())
        owned[name] = tensor
    save_file(owned, str(path), metadata={"format": "pt"})


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _few(items: list[str], n: int = 5) -> str:
    shown = ", ".join(items[:n])
    return shown + (f" (+{len(items) - n} more)" if len(items) > n else "")


def _first_line(err: BaseException) -> str:
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__
