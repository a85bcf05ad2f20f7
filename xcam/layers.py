"""Layer listings and the default layer choice, from records an adapter makes in one dummy forward."""

import math
from dataclasses import dataclass

import numpy as np

from .errors import XcamError, nearest


@dataclass(frozen=True)
class LayerRecord:
    """One layer as a forward on zeros showed it: name, type, output shape and how a CAM may use it."""

    name: str                   # as the user types it: "features.10", "vgg16/block5_conv3"
    kind: str                   # the layer's class name
    shape: tuple | None         # output shape, channels first (N, C, *s) for spatial layers; None if not a tensor
    calls: int = 1              # how often it ran in one forward (a CAM needs exactly one)
    is_pool: bool = False       # pooling, dropout or identity: a CAM on it repeats its input's map
    same_as: str | None = None  # an earlier-finished layer whose output tensor this one returns unchanged
    layout: str = "channels_first"  # ``Layout.describe()`` of its output; "" when no layout fits it

    @property
    def spatial(self) -> bool:
        """Whether the output is a map of rank 1, 2 or 3 (channels first after its layout) with > 1 position."""
        return self.shape is not None and bool(self.layout) and 3 <= len(self.shape) <= 5 \
            and math.prod(self.shape[2:]) > 1

    @property
    def tokens(self) -> bool:
        """Whether the output is transformer tokens (N, T, C) laid out on a grid."""
        return self.layout.startswith("tokens")

    @property
    def cam_ready(self) -> bool:
        return self.spatial and self.calls == 1


class LayerRecorder:
    """What one forward on zeros shows about each layer, fed by an adapter's hooks: how often it ran, its
    output shape (channels first) and which earlier layer's output tensor it hands on unchanged."""

    def __init__(self):
        self.order: list[str] = []
        self.info: dict[str, dict] = {}
        self.owner: dict[int, str] = {}
        self.kept: list = []

    def saw(self, name: str, shape: tuple | None, tensor=None, layout=None) -> None:
        """``name`` finished with an output of ``shape`` (None: not a tensor); ``tensor``: the output itself,
        kept for the recorder's lifetime so that its ``id`` is never reused by a later tensor (a freed output's
        id handed to a new one would make that layer look like a copy of an unrelated one); ``layout``: a
        function of the shape giving its ``Layout`` (channels first when None)."""
        entry = self.info.setdefault(name, {"calls": 0, "shape": None, "same": None, "layout": "channels_first"})
        entry["calls"] += 1
        if entry["calls"] == 1:
            self.order.append(name)
            if shape is not None:
                entry["shape"], entry["layout"] = tuple(shape), "channels_first"
                if layout is not None and 3 <= len(shape) <= 5:
                    try:
                        found = layout(tuple(shape))
                        entry["shape"], entry["layout"] = found.canonical_shape(tuple(shape)), found.describe()
                    except XcamError:
                        entry["layout"] = ""
                if tensor is not None:
                    self.kept.append(tensor)
                    entry["same"] = self.owner.get(id(tensor))
                    self.owner[id(tensor)] = name

    def records(self, kinds: dict, pools: set) -> list["LayerRecord"]:
        """One record per layer that ran, in the order they finished; ``kinds``: name -> class name;
        ``pools``: names of pooling, dropout and identity layers."""
        return [LayerRecord(name=n, kind=kinds[n], shape=self.info[n]["shape"], calls=self.info[n]["calls"],
                            is_pool=n in pools, same_as=self.info[n]["same"], layout=self.info[n]["layout"])
                for n in self.order]


def default_layer(records: list[LayerRecord]) -> LayerRecord:
    """The last layer (in the order layers finish) with a spatial output, skipping pooling layers and
    containers that only hand a pooling layer's output on (AlexNet -> features.11, ResNet -> layer4,
    Keras VGG16 -> block5_conv3). Token layers from the last attention layer on are skipped:
    tokens mix only in attention, so after it the patch tokens no longer reach the class token and their
    gradients are zero (ViT -> the last block's first layer norm); layers inside that attention layer (its
    projections, which finish before it) are skipped with it. Tokens without prefix tokens (a Swin stage, pooled
    by its head) are not skipped; maps of a lower rank than the model's highest (an MLP's (N, T, 4C) hidden
    tokens read as a 1-D map inside an image model) are skipped."""
    by_name = {r.name: r for r in records}
    attention = [i for i, r in enumerate(records) if "attention" in r.kind.lower()]
    last_attention = attention[-1] if attention else len(records)
    if attention:  # its projections finish before it does (a Hugging Face ViTAttention's o_proj): skipped too
        last = records[last_attention].name
        last_attention = min([last_attention, *[i for i, r in enumerate(records)
                                                if r.name.startswith((last + ".", last + "/"))]])
    ranks = [len(r.shape) for r in records if r.cam_ready and not r.is_pool]
    top = max(ranks, default=0)
    for i in range(len(records) - 1, -1, -1):
        rec = records[i]
        if not rec.cam_ready or rec.is_pool or (rec.tokens and i >= last_attention and _prefixed(rec)):
            continue
        if len(rec.shape) < top:   # a 1-D map inside an image model (an MLP's hidden tokens read as (N, C, L))
            continue
        if rec.same_as and by_name.get(rec.same_as, rec).is_pool:
            continue
        return rec
    raise XcamError("the model has no layer with a spatial output ((N, C, L), (N, C, h, w), (N, C, d, h, w) or "
                    "tokens), so no CAM can be made")


def _prefixed(rec: LayerRecord) -> bool:
    """Whether a token layer's tokens have prefix tokens (a class token the head reads); "tokens 0+4x4" (a Swin
    stage, whose head pools every token) has none, so its layers after the last attention still reach the output."""
    return not rec.layout.startswith("tokens 0+")


def default_layer_name(records_of, model, input_shape: tuple | None) -> str:
    """The layer a CAM explains when none is given (``layer=None`` in ``cam``/``capture``, no ``--layer`` in the
    CLI): the name of ``default_layer`` over ``records_of(model, input_shape)``, the adapter's layer listing from
    one forward on zeros of the input's shape (framework layout, without the batch axis); ``input_shape=None``
    (several inputs, which one forward on zeros cannot stand for) is a one-line error."""
    if input_shape is None:
        raise XcamError("layer=None picks the default layer from a forward on one input batch; with several "
                        "inputs give the layer (list them with layer_records)")
    return default_layer(records_of(model, tuple(input_shape))).name


def check_layer(records: list[LayerRecord], name: str) -> LayerRecord:
    """The record for ``name``, or a one-line error naming the nearest layers / why it cannot be used."""
    for rec in records:
        if rec.name == name:
            if not rec.spatial:
                raise XcamError(f"layer {name!r} outputs shape {rec.shape}, not a spatial map (N, C, L), (N, C, h, w), "
                                f"(N, C, d, h, w) or tokens; layers a CAM can use: "
                                f"{', '.join(spatial_names(records)[-5:])}")
            if rec.calls != 1:
                raise XcamError(f"layer {name!r} runs {rec.calls} times in one forward pass; "
                                "pick a layer that runs once")
            return rec
    raise unknown_layer(name, [r.name for r in records])


def spatial_names(records) -> list[str]:
    """Names of the layers a CAM can use (spatial output, run once)."""
    return [r.name for r in records if r.cam_ready]


def unknown_layer(name: str, names) -> XcamError:
    """The one-line error for a layer name the model lacks, with the nearest names."""
    close = nearest(str(name), names)
    hint = f"; nearest: {', '.join(close)}" if close else ""
    return XcamError(f"unknown layer {name!r}{hint} (list them with `xcam layers --model ...`)")


def format_table(records: list[LayerRecord], picked: str | None = None) -> str:
    """A text table: name, type, output shape (channels first), and '*' for the layers a CAM can use, with
    the layout when it is not channels first ("* tokens 1+14x14", "* channels_last")."""
    width = max([len(r.name) for r in records] + [5])
    kw = max([len(r.kind) for r in records] + [4])
    lines = [f"{'layer':<{width}}  {'type':<{kw}}  {'output':<22}  cam"]
    for r in records:
        shape = "x".join(str(s) for s in r.shape[1:]) if r.shape else "-"
        mark = "*" if r.cam_ready else ""
        if r.cam_ready and r.layout != "channels_first":
            mark += f" {r.layout}"
        if r.name == picked:
            mark += " (default)"
        lines.append(f"{r.name:<{width}}  {r.kind:<{kw}}  {shape:<22}  {mark}")
    return "\n".join(lines)


def check_call(call) -> int | None:
    """``call=`` of a layer that runs several times in one forward (a siamese encoder, a shared block): None, or
    which call to explain, counted from 0 in the order the forward runs them; anything else is a one-line error."""
    if call is None:
        return None
    if isinstance(call, bool) or not isinstance(call, (int, np.integer)) or call < 0:
        raise XcamError(f"call={call!r} is not a call index: give 0 for the layer's first call, 1 for its second, ...")
    return int(call)


def call_error(name: str, calls: int, call: int | None) -> XcamError:
    """The one-line error for a layer that runs ``calls`` times when ``call`` (None: not given) cannot pick one."""
    if call is None:
        return XcamError(f"layer {name!r} runs {calls} times in one forward pass (a shared module, e.g. a siamese "
                         f"encoder); pick one call with call=0 ... call={calls - 1} (one map per call: one cam per "
                         "call), or a layer that runs once")
    return XcamError(f"call={call} but layer {name!r} runs {calls} time{'s' if calls != 1 else ''} in one forward "
                     f"pass; give call=0 ... call={calls - 1}")
