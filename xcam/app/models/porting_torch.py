"""Describe a plain PyTorch conv/pool/dense network as a framework-free plan (layers in execution order with
NumPy weights), for ``xcam.app.models.porting_keras.build`` to rebuild it in Keras with the same weights."""

from torch import nn

from xcam.errors import XcamError
from xcam_torch._capture import dry_run


def _np(t):
    return None if t is None else t.detach().float().cpu().numpy().copy()


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def describe(model: nn.Module, input_shape: tuple[int, int, int]) -> list[dict]:
    """Leaf modules in the order they run on zeros (1, C, H, W), as dicts; a flatten is inserted where a 4-D
    output feeds a 2-D input (``torch.flatten`` inside ``forward``)."""
    ran: list[tuple[str, nn.Module, int]] = []
    leaves = [(n, m) for n, m in model.named_modules() if not list(m.children())]
    dry_run(model, input_shape, [(m, lambda mod, args, out, n=n: ran.append((n, mod, args[0].ndim)))
                                 for n, m in leaves])
    plan, rank = [], 4
    for name, m, in_rank in ran:
        if rank == 4 and in_rank == 2:
            plan.append({"type": "flatten", "name": f"{name}_flatten"})
        rank = in_rank
        if isinstance(m, nn.Conv2d):
            if m.padding_mode != "zeros" or isinstance(m.padding, str):
                raise XcamError(f"cannot port {name}: only zero, numeric padding is supported")
            plan.append({"type": "conv", "name": name, "weight": _np(m.weight), "bias": _np(m.bias),
                         "stride": _pair(m.stride), "padding": _pair(m.padding), "groups": m.groups,
                         "dilation": _pair(m.dilation)})
        elif isinstance(m, nn.Linear):
            plan.append({"type": "dense", "name": name, "weight": _np(m.weight), "bias": _np(m.bias)})
            rank = 2
        elif isinstance(m, (nn.ReLU, nn.ReLU6)):
            plan.append({"type": "relu", "name": name, "max": 6.0 if isinstance(m, nn.ReLU6) else None})
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            if _pair(m.padding) != (0, 0) or getattr(m, "ceil_mode", False):
                raise XcamError(f"cannot port {name}: pooling with padding or ceil_mode")
            plan.append({"type": "maxpool" if isinstance(m, nn.MaxPool2d) else "avgpool", "name": name,
                         "kernel": _pair(m.kernel_size), "stride": _pair(m.stride or m.kernel_size)})
        elif isinstance(m, nn.AdaptiveAvgPool2d):
            plan.append({"type": "adaptive_avgpool", "name": name, "output": _pair(m.output_size)})
        elif isinstance(m, nn.BatchNorm2d):
            plan.append({"type": "batchnorm", "name": name, "gamma": _np(m.weight), "beta": _np(m.bias),
                         "mean": _np(m.running_mean), "var": _np(m.running_var), "eps": m.eps})
        elif isinstance(m, (nn.Dropout, nn.Dropout2d, nn.Identity)):
            continue
        elif isinstance(m, nn.Flatten):
            plan.append({"type": "flatten", "name": name})
            rank = 2
        else:
            raise XcamError(f"cannot port {name}: {type(m).__name__} is not a plain conv/pool/dense layer")
    return plan
