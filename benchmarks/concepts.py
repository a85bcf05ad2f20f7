"""Issue 18's dff (concepts) and legrad: medians and ratios in one run, xcam vs its floor vs the anchor.

dff: ResNet-18 (random weights, 10 classes), B=2 and B=8, 112 px, layer4, k=5. Floor: the forward to the layer
plus scikit-learn's NMF (Cython) on the same matrix (``concepts`` factorizes the batch jointly); the dff method
factorizes each sample alone, so its floor is the forward plus one scikit-learn NMF per sample; anchor:
pytorch-grad-cam's DeepFeatureFactorization with the classifier on the concepts. legrad: a small torchvision
ViT (random weights; 112 px, patch 16, 4 blocks of width 128, 4 heads), B=2, the last two blocks. Floor: one
forward with autograd plus one backward per block from its score to its attention's output; anchor: torchcam's
LeGrad.

    python benchmarks/concepts.py [runs]
"""

import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402

import xcam_torch  # noqa: E402


def dff_entries(batch=2):
    from pytorch_grad_cam import DeepFeatureFactorization
    from sklearn.decomposition import NMF

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    x = torch.randn(batch, 3, 112, 112)
    xn = x.numpy()

    def layer4():
        kept = {}
        handle = model.layer4.register_forward_hook(lambda m, a, out: kept.__setitem__("a", out))
        try:
            with torch.no_grad():
                model(x)
        finally:
            handle.remove()
        return kept["a"].numpy()

    def nmf(a):
        NMF(n_components=5, init="random", random_state=0).fit_transform(a - a.min(axis=1, keepdims=True))

    def floor():
        nmf(layer4().transpose(1, 0, 2, 3).reshape(512, -1))

    def floor_each():   # the dff method factorizes each sample alone
        for a in layer4():
            nmf(a.reshape(512, -1))

    def anchor():
        d = DeepFeatureFactorization(model, model.layer4, computation_on_concepts=model.fc)
        try:
            with torch.no_grad():
                d(x, 5)
        finally:
            d.activations_and_grads.release()

    return f"resnet18 B={batch} 112px layer4 k=5", [
        ("floor dff: fwd + sklearn NMF", floor),
        ("floor dff per sample: fwd + sklearn NMF of each sample", floor_each),
        ("xcam concepts", lambda: xcam_torch.concepts(model, xn, "layer4", 5)),
        ("xcam cam dff", lambda: xcam_torch.cam(model, xn, "layer4", "dff", 1)),
        ("pgc DeepFeatureFactorization", anchor)]


def legrad_entries():
    from torchcam.methods import LeGrad
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    model = VisionTransformer(image_size=112, patch_size=16, num_layers=4, num_heads=4, hidden_dim=128, mlp_dim=256,
                              num_classes=10)
    torch.nn.init.normal_(model.heads.head.weight, std=0.1)
    model.eval()
    x = torch.randn(2, 3, 112, 112)
    xn = x.numpy()
    blocks = ["encoder.layers.encoder_layer_2", "encoder.layers.encoder_layer_3"]
    modules = dict(model.named_modules())

    def floor():
        kept = {}
        hooks = [modules[b].register_forward_hook(lambda m, a, out, b=b: kept.__setitem__(b, out)) for b in blocks]
        hooks += [modules[b].self_attention.register_forward_hook(
            lambda m, a, out, b=b: kept.__setitem__(b + "/attn", out[0])) for b in blocks]
        try:
            with torch.enable_grad():
                model(x)
                for b in blocks:
                    score = model.heads(model.encoder.ln(kept[b].mean(1)))[:, 1].sum()
                    torch.autograd.grad(score, kept[b + "/attn"])
        finally:
            for h in hooks:
                h.remove()

    def anchor():
        with LeGrad(model, blocks) as extractor:
            extractor(class_idx=[1, 1], scores=model(x))

    return "vit 112px 4x128 B=2 2 blocks", [("floor legrad: fwd + a backward per block", floor),
                                           ("xcam legrad", lambda: xcam_torch.cam(model, xn, blocks, "legrad", 1)),
                                           ("torchcam LeGrad", anchor)]


def main(runs=5):
    warnings.filterwarnings("ignore")
    for case, entries in (dff_entries(2), dff_entries(8), legrad_entries()):
        t = bench.interleaved(entries, runs=runs, warm=1)
        floor, anchor = t[entries[0][0]], t[entries[-1][0]]
        for name, _ in entries:
            bench.row(case, name, t[name], floor)
        ours = [name for name, _ in entries if name.startswith("xcam")]
        print("ratio to anchor: " + ", ".join(f"{n} {t[n] / anchor:.2f}" for n in ours), flush=True)
        each = next((n for n, _ in entries if "per sample" in n), None)
        if each:
            print(f"xcam cam dff / its floor (per sample): {t['xcam cam dff'] / t[each]:.2f}", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
