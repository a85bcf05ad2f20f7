"""Issue 18's gradient CAMs: medians and ratios in one run, xcam vs its floor (a forward plus the backward to
the layer) vs the anchor (pytorch-grad-cam), on a random-weight ResNet-18.

    python benchmarks/cams_gradient.py [runs]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402

import xcam_torch  # noqa: E402


def main(runs=5):
    from pytorch_grad_cam import GradCAMElementWise
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    x = torch.randn(8, 3, 112, 112)
    targets = [ClassifierOutputTarget(1)] * x.shape[0]

    def pgc(eigen):
        def run():
            with bench.quiet_stderr(), GradCAMElementWise(model=model, target_layers=[model.layer4]) as cam:
                cam(input_tensor=x, targets=targets, eigen_smooth=eigen)
        return run

    entries = [("floor", bench.torch_floor(model, model.layer4, x, 1)),
               ("xcam gradcamelementwise", lambda: xcam_torch.cam(model, x, "layer4", "gradcamelementwise", 1)),
               ("pgc GradCAMElementWise", pgc(False)),
               ("xcam gradcamelementwise eigen_smooth", lambda: xcam_torch.cam(
                   model, x, "layer4", "gradcamelementwise", 1, options={"eigen_smooth": True})),
               ("pgc GradCAMElementWise eigen_smooth", pgc(True))]
    t = bench.interleaved(entries, runs=runs, warm=1)
    case = f"resnet18 B={x.shape[0]} 112px layer4"
    for name, _ in entries:
        bench.row(case, name, t[name], t["floor"])
    print(f"ratio to anchor: gradcamelementwise {t['xcam gradcamelementwise'] / t['pgc GradCAMElementWise']:.2f}, "
          f"eigen_smooth {t['xcam gradcamelementwise eigen_smooth'] / t['pgc GradCAMElementWise eigen_smooth']:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
