"""Reading signals (1-D traces for models whose first convolution is 1-D): .npy (L,) or (C, L), or .csv with
one sample a row and one channel a column (a first row of column names is skipped), as float32 (C, L)."""

import numpy as np

from xcam.errors import XcamError

SIGNAL_SUFFIXES = (".csv",)


def _csv(path) -> np.ndarray:
    with open(path, encoding="utf-8") as f:
        lines = [line.strip() for line in f if line.strip()]
    if not lines:
        raise ValueError("the file is empty")
    first = lines[0].split(",")
    try:
        [float(v) for v in first]
    except ValueError:
        lines = lines[1:]  # a header row
    if not lines:
        raise ValueError("no rows of numbers")
    try:
        rows = [[float(v) for v in line.split(",")] for line in lines]
    except ValueError as exc:
        raise ValueError(f"not a table of numbers ({exc})") from None
    if len({len(r) for r in rows}) != 1:
        raise ValueError("rows have different numbers of columns")
    return np.asarray(rows, np.float32).T  # (channels, samples)


def read_signal(path) -> np.ndarray:
    """A signal as float32 (C, L): .npy (L,) or (C, L) as stored, .csv (L rows, C columns) transposed; an
    unreadable file or another shape is a one-line error."""
    try:
        sig = np.load(path, allow_pickle=False) if str(path).lower().endswith(".npy") else _csv(path)
    except (OSError, ValueError, EOFError, UnicodeDecodeError) as exc:
        raise XcamError(f"cannot read signal {str(path)!r}: {exc}") from None
    sig = np.asarray(sig, np.float32)
    if sig.ndim == 1:
        sig = sig[None]
    if sig.ndim != 2 or sig.shape[1] < 1:
        raise XcamError(f"signal {str(path)!r} has shape {sig.shape}; give (L,) or (C, L) (.csv: L rows, C columns)")
    return sig
