"""ViT-B/16 Grad-CAM at batch 8 against the floor: one forward with a hook keeping the layer's tokens, then
torch.autograd.grad(score, tokens) (parameters keep requires_grad, as in a user's own script). The layer is the
last block's first layer norm (the default xcam picks: the last token layer before the last attention), and
xcam's time includes turning tokens into the 14x14 grid, the map and its bilinear resize to 224x224.

    python benchmarks/vit.py                  # CPU, random weights, random 224x224 inputs
    python benchmarks/vit.py --device cuda --runs 20
"""

import argparse
import os
import sys

import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import interleaved, torch_floor  # noqa: E402

import xcam_torch  # noqa: E402

LAYER = "encoder.layers.encoder_layer_11.ln_1"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = torchvision.models.vit_b_16(weights=None).eval().to(args.device)
    torch.nn.init.normal_(model.heads.head.weight, std=0.02)  # torchvision zero-initialises the head
    x = torch.randn(args.batch, 3, 224, 224, device=args.device)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else None
    module = dict(model.named_modules())[LAYER]
    times = interleaved([("floor", torch_floor(model, module, x, 1)),
                         ("xcam", lambda: xcam_torch.cam(model, x, LAYER, "gradcam", targets=1))],
                        runs=args.runs, warm=1, sync=sync)
    ratio = times["xcam"] / times["floor"]
    print(f"ViT-B/16 Grad-CAM B={args.batch} {args.device}: floor {times['floor'] * 1000:.1f} ms, "
          f"xcam {times['xcam'] * 1000:.1f} ms, ratio {ratio:.3f}")


if __name__ == "__main__":
    main()
