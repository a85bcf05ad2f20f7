"""Layer layouts: how a layer lays its output out, and the way to the core's canonical channels-first
(N, C, *s) and back. An adapter detects the layout once per layer (``detect``), hands the core
``to_canonical(activations)`` and ``to_canonical(gradients)``, and writes perturbed activations back with
``from_canonical`` (Ablation-CAM). Every spatial rank: s is (L,), (h, w) or (d, h, w).

- ``channels_first``: (N, C, *s), PyTorch convolutions; nothing to do.
- ``channels_last``: (N, *s, C), Keras layers, Swin and timm stages; the channel axis moves.
- ``tokens``: (N, T, C), a transformer's tokens. The first ``prefix`` tokens (class, distillation, register
  tokens: counted from the model's parameters by ``count_prefix``, never guessed from T) are dropped and the
  other T - prefix tokens are laid out on ``grid``: under a 2-D input the input's grid under the model's
  patch-embedding convolution (``patch_grid``: 224x308 at 16/16 is 14x19) when it holds exactly those tokens,
  else a square sqrt(T - prefix) per side; the T - prefix positions themselves under a 1-D input. Written
  back, the prefix tokens keep their values.
- ``custom``: the user's ``reshape`` callable, (N, ...) -> (N, C, *s) on NumPy arrays (pytorch-grad-cam's
  ``reshape_transform``, written for NumPy). Its inverse is read off by running it on the elements' indices,
  so for writing back it must only move and select elements (a transpose, a reshape, a slice).
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import XcamError

KINDS = ("channels_first", "channels_last", "tokens", "custom")
PREFIX_NAMES = ("class_token", "cls_token", "dist_token", "distillation_token", "reg_token", "register_tokens")
"""Parameter names (a component of the parameter's path) of tokens prepended to the patch tokens."""


@dataclass(frozen=True)
class Layout:
    """One layer's output layout (see the module docstring): ``kind``, and for tokens the number of prefix
    tokens and the grid the others lie on; for ``custom`` the user's ``reshape`` callable."""

    kind: str = "channels_first"
    prefix: int = 0
    grid: tuple = ()
    reshape: Callable | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise XcamError(f"unknown layout {self.kind!r}; valid layouts: {', '.join(KINDS)}")
        if isinstance(self.prefix, bool) or int(self.prefix) != self.prefix or self.prefix < 0:
            raise XcamError(f"prefix must be a count of tokens >= 0, got {self.prefix!r}")
        if self.kind == "custom" and not callable(self.reshape):
            raise XcamError("a custom layout needs a reshape callable (N, ...) -> (N, C, *s)")

    def to_canonical(self, a: np.ndarray, lead: int = 1) -> np.ndarray:
        """The layer's output (or its gradient) (N, ...) in this layout as channels first (N, C, *s);
        ``lead=2`` for gradients with a class axis, (N, K, ...) -> (N, K, C, *s)."""
        a = np.asarray(a)
        if lead > 1:
            flat = self.to_canonical(a.reshape(-1, *a.shape[lead:]))
            return flat.reshape(*a.shape[:lead], *flat.shape[1:])
        if self.kind == "channels_first":
            out = a
        elif self.kind == "channels_last":
            out = np.moveaxis(a, -1, 1)
        elif self.kind == "tokens":
            if a.ndim != 3:
                raise XcamError(f"a token layout needs a layer output (N, T, C), got shape {a.shape}")
            grid = self.grid or token_grid(a.shape[1], self.prefix, 2)
            patches = a[:, self.prefix:]
            if patches.shape[1] != math.prod(grid):
                raise XcamError(f"the layer has {a.shape[1]} tokens: {self.prefix} prefix + {patches.shape[1]}, "
                                f"which do not fill the grid {'x'.join(map(str, grid))}")
            out = np.moveaxis(patches.reshape(a.shape[0], *grid, a.shape[2]), -1, 1)
        else:
            out = np.asarray(self.reshape(a))
            if out.ndim < 3 or out.ndim > 5 or out.shape[0] != a.shape[0]:
                raise XcamError(f"reshape= turned {a.shape} into {out.shape}; it must return (N, C, L), "
                                "(N, C, h, w) or (N, C, d, h, w)")
        return np.ascontiguousarray(out)

    def from_canonical(self, values: np.ndarray, original: np.ndarray) -> np.ndarray:
        """Canonical (B, C, *s) values back in this layout, (B, ...): what to hand the rest of the network.

        ``original`` is the layer's own output for one sample, (1, ...) in this layout: it supplies what the
        canonical view leaves out (prefix tokens, anything a custom reshape drops), unchanged.
        """
        values = np.asarray(values)
        original = np.asarray(original)
        b = values.shape[0]
        if self.kind == "channels_first":
            return np.ascontiguousarray(values)
        if self.kind == "channels_last":
            return np.ascontiguousarray(np.moveaxis(values, 1, -1))
        if self.kind == "tokens":
            tokens = np.moveaxis(values, 1, -1).reshape(b, -1, values.shape[1])
            prefix = np.broadcast_to(original[:1, :self.prefix], (b, self.prefix, original.shape[2]))
            return np.ascontiguousarray(np.concatenate([prefix.astype(tokens.dtype), tokens], axis=1))
        index = self.index_map(original.shape)
        out = np.repeat(original[:1].reshape(1, -1), b, axis=0).astype(values.dtype)
        out[:, index.reshape(-1)] = values.reshape(b, -1)
        return out.reshape(b, *original.shape[1:])

    def index_map(self, shape: tuple) -> np.ndarray:
        """Where each canonical element of one sample comes from: flat indices into a (1, ...) output of
        ``shape`` laid out canonically (1, C, *s). A custom reshape must only move and select elements."""
        size = math.prod(shape[1:])
        moved = np.asarray(self.to_canonical(np.arange(size, dtype=np.int64).reshape(1, *shape[1:])))
        if not np.issubdtype(moved.dtype, np.integer) or moved.min(initial=0) < 0 or moved.max(initial=0) >= size \
                or len(np.unique(moved)) != moved.size:
            raise XcamError("reshape= must only move and select elements (transpose, reshape, slice) for methods "
                            "that write the layer back (ablationcam); give such a reshape or use another method")
        return moved

    def canonical_shape(self, shape: tuple) -> tuple:
        """The channels-first shape (N, C, *s) of a layer output of ``shape`` in this layout."""
        if self.kind == "channels_first":
            return tuple(shape)
        if self.kind == "channels_last":
            return (shape[0], shape[-1], *shape[1:-1])
        if self.kind == "tokens":
            return (shape[0], shape[2], *(self.grid or token_grid(shape[1], self.prefix, 2)))
        return (shape[0], *self.to_canonical(np.zeros((1, *shape[1:]), np.float32)).shape[1:])

    def describe(self) -> str:
        """Short text for listings and reports: "tokens 1+14x14", "channels_last", "custom"."""
        if self.kind == "tokens":
            return f"tokens {self.prefix}+{'x'.join(map(str, self.grid))}" if self.grid else "tokens"
        return self.kind

    def to_json(self) -> dict:
        """A JSON-describable record of the layout (``summary.json``)."""
        out = {"kind": self.kind}
        if self.kind == "tokens":
            out.update(prefix=int(self.prefix), grid=[int(g) for g in self.grid])
        if self.kind == "custom":
            out["reshape"] = getattr(self.reshape, "__qualname__", type(self.reshape).__name__)
        return out


def patch_grid(spatial: tuple, kernel: tuple, stride: tuple, padding: tuple = (0, 0)) -> tuple:
    """The grid a patch-embedding convolution lays over an input of ``spatial`` size: per axis
    floor((s + 2 p - k) / stride) + 1 (a ViT's 16x16/16 convolution over 224x308: 14x19)."""
    return tuple((int(s) + 2 * int(p) - int(k)) // int(st) + 1 for s, k, st, p in zip(spatial, kernel, stride, padding))


def token_grid(tokens: int, prefix: int, rank: int, patches_grid: tuple | None = None) -> tuple:
    """The grid T - prefix tokens lie on: (T - prefix,) for rank 1; for rank 2 ``patches_grid`` (the input's
    grid under the model's patch embedding, ``patch_grid``) when its cells are exactly the patch tokens, else a
    square; else a one-line error that says what was counted and how to override it (``reshape=``)."""
    patches = tokens - prefix
    if patches < 1:
        raise XcamError(f"the layer has {tokens} tokens and {prefix} prefix tokens: no patch tokens left")
    if rank == 1:
        return (patches,)
    if patches_grid and len(patches_grid) == rank and math.prod(patches_grid) == patches:
        return tuple(int(g) for g in patches_grid)
    side = math.isqrt(patches)
    if rank == 2 and side * side == patches:
        return (side, side)
    if rank == 2:
        raise XcamError(f"the layer has {tokens} tokens = {prefix} prefix (class/distillation/register) + "
                        f"{patches} patch tokens, and {patches} is not a square grid; pass reshape= (a callable "
                        "(N, T, C) -> (N, C, h, w)) or a Layout('tokens', prefix, grid)")
    raise XcamError(f"{patches} tokens cannot be laid out on a {rank}-D grid without knowing its shape; pass "
                    "reshape= or Layout('tokens', prefix, grid=(d, h, w))")


def count_prefix(parameters: dict, declared: int | None = None) -> int:
    """Prefix tokens of a transformer, counted: ``declared`` when the model states it (timm's
    ``num_prefix_tokens``), else the sum of the token counts (second-to-last size) of the parameters named as
    in ``PREFIX_NAMES`` (torchvision ``class_token``, timm ``cls_token``/``dist_token``/``reg_token``,
    Hugging Face ``cls_token``/``distillation_token``). ``parameters`` maps parameter paths to shapes."""
    if declared is not None:
        return int(declared)
    total = 0
    for path, shape in parameters.items():
        parts = {p for p in str(path).replace("/", ".").replace(":", ".").split(".") if p}
        if parts & set(PREFIX_NAMES) and len(shape) >= 2:
            total += int(shape[-2])
    return total


def channel_axis(shape: tuple, default: str, own: tuple | None = None, sizes=()) -> str:
    """"first" or "last": where a layer output's channels are. ``own``: ("first" | "last", size) that the
    layer itself declares (a convolution or batch norm its channels, a linear layer or layer norm its width),
    used when that axis has that size; else the axis whose size is one of the model's feature ``sizes`` when
    only one of them is; else ``default`` (the framework's convention)."""
    if own is not None:
        axis, size = own
        if shape[1 if axis == "first" else -1] == size:
            return axis
    sizes = set(sizes)
    first, last = shape[1] in sizes, shape[-1] in sizes
    if first != last:
        return "first" if first else "last"
    return "first" if default == "channels_first" else "last"


def detect(shape: tuple, *, default: str, input_rank: int, own: tuple | None = None, sizes=(),
           prefix: int = 0, patches_grid: tuple | None = None) -> Layout:
    """The layout of a layer output of ``shape`` (N, ...), 3-D to 5-D.

    Rule: the channel axis is found by ``channel_axis``. Channels first -> ``channels_first``. Channels last
    with a 3-D output (N, T, C) under an image or volume input (``input_rank`` >= 2), or with counted
    ``prefix`` tokens -> ``tokens`` (prefix dropped, grid from ``token_grid``, which prefers the input's
    ``patches_grid`` under the model's patch embedding); otherwise ``channels_last``.
    """
    shape = tuple(shape)
    if not 3 <= len(shape) <= 5:
        raise XcamError(f"a layer output of shape {shape} has no spatial axes: a CAM needs (N, C, L), "
                        "(N, C, h, w) or (N, C, d, h, w) (or tokens (N, T, C), or channels last)")
    if channel_axis(shape, default, own, sizes) == "first":
        return Layout("channels_first")
    if len(shape) == 3 and (input_rank >= 2 or prefix):
        return Layout("tokens", prefix, token_grid(shape[1], prefix, max(1, min(input_rank, 3)), patches_grid))
    return Layout("channels_last")


def as_layout(reshape, shape: tuple, input_rank: int, prefix: int = 0, patches_grid: tuple | None = None) -> Layout:
    """The user's ``reshape=`` override as a concrete Layout for a layer output of ``shape``: a callable
    (custom), a layout name, or a Layout (a tokens layout without a grid gets one from ``token_grid``)."""
    if isinstance(reshape, str):
        reshape = Layout(reshape, prefix if reshape == "tokens" else 0)
    if callable(reshape) and not isinstance(reshape, Layout):
        return Layout("custom", reshape=reshape)
    if not isinstance(reshape, Layout):
        raise XcamError(f"reshape= takes a callable (N, ...) -> (N, C, *s), a Layout or one of {', '.join(KINDS)}; "
                        f"got {type(reshape).__name__}")
    if reshape.kind == "tokens" and not reshape.grid:
        if len(shape) != 3:
            raise XcamError(f"a token layout needs a layer output (N, T, C), got shape {tuple(shape)}")
        return Layout("tokens", reshape.prefix,
                      token_grid(shape[1], reshape.prefix, max(1, min(input_rank, 3)), patches_grid))
    return reshape
