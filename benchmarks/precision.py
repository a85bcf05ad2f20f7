"""16-bit models: how far their maps are from the same weights in float32 (torchvision AlexNet, random weights,
seed 0, batch of 4 random inputs, classes [0, 1, 0, 1]). xcam computes every map in float32 from the captured
tensors; what remains is the model's own 16-bit forward and backward.

    python benchmarks/precision.py            # bfloat16 and float16 (float16 convolutions are slow on CPU)
    python benchmarks/precision.py --bf16     # bfloat16 only (seconds)
"""

import argparse
import sys

import numpy as np


def main() -> int:
    import torch
    import torchvision

    import xcam_torch

    parser = argparse.ArgumentParser()
    parser.add_argument("--bf16", action="store_true", help="bfloat16 only")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = torchvision.models.alexnet(num_classes=2).eval()
    x = torch.randn(4, 3, 224, 224)
    dtypes = [torch.bfloat16] if args.bf16 else [torch.bfloat16, torch.float16]
    print("| layer | method | dtype | max abs | mean abs |")
    print("|---|---|---|---|---|")
    import warnings

    warnings.simplefilter("ignore")  # the LowPrecisionWarning this measures
    for layer in ("features.10", "features.11"):
        for method in ("gradcam", "gradcampp", "hirescam", "layercam"):
            ref = xcam_torch.cam(model, x, layer, method, [0, 1, 0, 1])
            for dtype in dtypes:
                low = torchvision.models.alexnet(num_classes=2).eval()
                low.load_state_dict(model.state_dict())
                diff = np.abs(xcam_torch.cam(low.to(dtype), x, layer, method, [0, 1, 0, 1]) - ref)
                print(f"| {layer} | {method} | {str(dtype)[6:]} | {diff.max():.3f} | {diff.mean():.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
