"""r3d_18 Grad-CAM at batch 2 on 16 x 112 x 112 clips against the floor (one forward with a hook keeping
``layer4``'s output, then torch.autograd.grad(score, output); parameters keep requires_grad, as in a user's own
script). xcam's time includes the trilinear resize of the maps to 16 x 112 x 112 and the normalization. Then
Score-CAM on a small volume network: the number of forwards it runs equals the number of distinct masks.

    python benchmarks/video.py                  # CPU, random weights, random clips
    python benchmarks/video.py --device cuda --runs 20
"""

import argparse
import os
import sys

import numpy as np
import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import interleaved, torch_floor  # noqa: E402

import xcam  # noqa: E402
import xcam_torch  # noqa: E402


def scorecam_forwards(device: str) -> tuple[int, int]:
    """(forwards Score-CAM ran, distinct normalized channels) on a 3-D conv net with duplicated channels."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool3d(1),
                              torch.nn.Flatten(), torch.nn.Linear(8, 3)).eval().to(device)
    with torch.no_grad():
        net[0].weight[4:] = net[0].weight[:4]  # channels 4..7 repeat 0..3: 4 distinct masks
        net[0].bias[4:] = net[0].bias[:4]
    x = torch.randn(1, 1, 8, 16, 16, device=device)
    rows = []
    handle = net.register_forward_pre_hook(lambda m, args: rows.append(len(args[0])))
    try:
        cap = xcam_torch.capture(net, x, "1", gradients=False)
        xcam_torch.cam(net, x, "1", "scorecam")
    finally:
        handle.remove()
    distinct = len(np.unique(xcam.normalize_minmax(cap.activations[0]).reshape(8, -1), axis=0))
    return sum(rows) - 2, distinct  # minus the capture's forward and the probe-free capture inside cam


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = torchvision.models.video.r3d_18(weights=None).eval().to(args.device)
    x = torch.randn(args.batch, 3, 16, 112, 112, device=args.device)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else None
    times = interleaved([("floor", torch_floor(model, model.layer4, x, 1)),
                         ("xcam", lambda: xcam_torch.cam(model, x, "layer4", "gradcam", targets=1))],
                        runs=args.runs, warm=1, sync=sync)
    print(f"r3d_18 Grad-CAM B={args.batch} 16x112x112 {args.device}: floor {times['floor'] * 1000:.1f} ms, "
          f"xcam {times['xcam'] * 1000:.1f} ms, ratio {times['xcam'] / times['floor']:.3f}")
    forwards, distinct = scorecam_forwards(args.device)
    print(f"Score-CAM on a volume: {forwards} masked inputs run for {distinct} distinct masks of 8 channels")


if __name__ == "__main__":
    main()
