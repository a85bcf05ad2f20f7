"""A synthetic ground-truth benchmark: images of one object at a known position (so the localization metrics have
exact masks), a tiny CNN trained in seconds in PyTorch (fixed seed) and ported to Keras, and every method's
pointing game and energy pointing game on both frameworks.

The task: 32x32 images of dark noise holding one 8x8 shape, a filled square (class 0), a cross (1) or a ring (2),
in one of six bright colours at a random position, plus a distractor (a 4x4 dot of another of the colours)
elsewhere. The mask is the target shape's own pixels. A map that points at the shape is right; one that points at
the dot or the centre is not.
"""

from collections import OrderedDict

import numpy as np

from xcam import metrics as M
from xcam.methods import get_method, method_names

SIZE, OBJECT, DOT = 32, 8, 4
CLASSES = ("square", "cross", "ring")
LAYER = "relu3"
PALETTE = np.array([(1, 0.2, 0.2), (0.2, 1, 0.2), (0.3, 0.3, 1), (1, 1, 0.2), (1, 0.2, 1), (0.2, 1, 1)])
TOLERANCE = 2  # TorchRay's 15 pixels at 224 scaled to 32x32 (15 * 32 / 224 = 2.1)


def _shape(kind: int) -> np.ndarray:
    """The 8x8 mask of a class: a filled square, a cross two pixels thick, or a ring (the square's 2-pixel
    border)."""
    if kind == 0:
        return np.ones((OBJECT, OBJECT), bool)
    m = np.zeros((OBJECT, OBJECT), bool)
    if kind == 1:
        m[3:5, :] = True
        m[:, 3:5] = True
    else:
        m[:, :] = True
        m[2:-2, 2:-2] = False
    return m


def make_dataset(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images (n, 3, 32, 32) float32, labels (n,) int64, masks (n, 32, 32) bool): balanced classes, the object
    and the distractor dot at random non-overlapping positions in two different colours of ``PALETTE``, on dark
    noise (0.2 + N(0, 0.05^2))."""
    rng = np.random.default_rng(seed)
    images = (0.2 + 0.05 * rng.standard_normal((n, 3, SIZE, SIZE))).astype(np.float32)
    labels = np.arange(n) % len(CLASSES)
    rng.shuffle(labels)
    masks = np.zeros((n, SIZE, SIZE), bool)
    for i in range(n):
        colour, other = PALETTE[rng.choice(len(PALETTE), 2, replace=False)]
        shape = _shape(int(labels[i]))
        while True:
            y, x = rng.integers(0, SIZE - OBJECT + 1, 2)
            dy, dx = rng.integers(0, SIZE - DOT + 1, 2)
            if dy + DOT <= y or dy >= y + OBJECT or dx + DOT <= x or dx >= x + OBJECT:
                break
        masks[i, y:y + OBJECT, x:x + OBJECT] = shape
        images[i][:, masks[i]] = colour[:, None]
        images[i][:, dy:dy + DOT, dx:dx + DOT] = other[:, None, None]
    return images, labels.astype(np.int64), masks


def torch_model(seed: int = 0):
    """The tiny CNN (PyTorch): conv 3->16 -> ReLU -> max pool 2 -> conv 16->32 -> ReLU -> conv 32->32 -> ReLU
    ["relu3", 16x16] -> global average pool -> linear 32->3; random init with ``seed``."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(3, 16, 3, padding=1)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(16, 32, 3, padding=1)), ("relu2", nn.ReLU()),
        ("conv3", nn.Conv2d(32, 32, 3, padding=1)), ("relu3", nn.ReLU()),
        ("gap", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()), ("fc", nn.Linear(32, len(CLASSES)))]))


def train(seed: int = 0, n: int = 2048, epochs: int = 6, batch: int = 64):
    """The tiny CNN trained on ``make_dataset(n, seed)`` with Adam (lr 3e-3, cross-entropy, 6 epochs of batches
    of 64), fixed seeds and one thread so the weights are the same on every run; returns the model in eval mode
    (about 10 s on one CPU core)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = torch_model(seed)
        x, y, _ = make_dataset(n, seed)
        x, y = torch.from_numpy(x), torch.from_numpy(y)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        g = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(epochs):
            order = torch.randperm(n, generator=g)
            for start in range(0, n, batch):
                idx = order[start:start + batch]
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
                opt.step()
        for p in model.parameters():
            p.grad = None
        return model.eval()
    finally:
        torch.set_num_threads(threads)


def keras_twin(model):
    """The trained PyTorch model rebuilt in Keras with the same weights (``xcam.app.porting_*``)."""
    from xcam.app.models.porting_keras import build
    from xcam.app.models.porting_torch import describe

    return build(describe(model, (3, SIZE, SIZE)), (SIZE, SIZE, 3))


def accuracy(predict, images, labels) -> float:
    """Share of images whose top-1 class is the label."""
    return float((np.asarray(predict(images)).argmax(axis=1) == labels).mean())


# fewer samples / masks than the defaults (thousands of forwards per image at the defaults)
FAST_OPTIONS = {"smoothgrad": {"samples": 10}, "rise": {"n_masks": 500}, "sobol": {"nb_design": 16},
                "hsic": {"nb_design": 200}, "sscam": {"num_samples": 10}}


def localization(adapter, model, images, labels, masks, methods=None, *, layer: str = LAYER) -> dict:
    """{method: {"pointing_game", "energy_pointing_game"}: per-image arrays} for every method (default: all
    registered ones but those for transformer blocks, SmoothGrad with 10 samples) and the three baselines,
    explaining each image's true class."""
    from xcam.app.jobs.metric_runs import baseline_maps

    inputs = images if adapter.LAYOUT == "channels_first" else np.ascontiguousarray(images.transpose(0, 2, 3, 1))
    if adapter.NAME == "torch":
        import torch

        inputs = torch.from_numpy(inputs)
    out = {}
    for m in methods or [n for n in method_names() if not get_method(n).needs_attention]:  # a CNN: no legrad
        name = get_method(m).name
        maps = adapter.cam(model, inputs, layer, name, targets=labels.tolist(), options=FAST_OPTIONS.get(name))
        out[name] = maps
    for b in ("random", "centre", "sobel"):
        out[b] = baseline_maps(b, images)
    return {name: {"pointing_game": M.pointing_game(maps, masks, tolerance=TOLERANCE).per_image,
                   "energy_pointing_game": M.energy_pointing_game(maps, masks).per_image}
            for name, maps in out.items()}


def benchmark(seed: int = 0, n_test: int = 200, methods=None) -> dict:
    """Train, port, and measure every method on ``n_test`` held-out images on both frameworks: accuracies and
    {method: {framework: {metric: mean}}}, plus the largest per-image difference between the frameworks."""
    import xcam_torch

    model = train(seed)
    images, labels, masks = make_dataset(n_test, seed + 1000)
    results = {"torch": localization(xcam_torch, model, images, labels, masks, methods)}
    acc = {"torch": accuracy(_torch_predict(model), images, labels)}
    import xcam_tf

    kmodel = keras_twin(model)
    results["tf"] = localization(xcam_tf, kmodel, images, labels, masks, methods)
    acc["tf"] = accuracy(lambda x: np.asarray(kmodel(x.transpose(0, 2, 3, 1), training=False)), images, labels)
    table = {}
    for name in results["torch"]:
        row = {}
        for metric in ("pointing_game", "energy_pointing_game"):
            t, k = results["torch"][name][metric], results["tf"][name][metric]
            row[metric] = {"torch": float(t.mean()), "tf": float(k.mean()), "max_diff": float(np.abs(t - k).max())}
        table[name] = row
    return {"accuracy": acc, "images": n_test, "seed": seed, "tolerance": TOLERANCE, "table": table,
            "object_share": float(masks.mean())}


def _torch_predict(model):
    import torch

    def predict(x):
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()
    return predict


def markdown(result: dict) -> str:
    """The benchmark as a Markdown table: a row per method and baseline, torch and Keras side by side."""
    lines = ["| method | pointing game (torch) | pointing game (Keras) | energy (torch) | energy (Keras) | "
             "max per-image diff |", "|---|---|---|---|---|---|"]
    for name, row in result["table"].items():
        pg, en = row["pointing_game"], row["energy_pointing_game"]
        label = f"*{name}* (baseline)" if name in ("random", "centre", "sobel") else f"`{name}`"
        lines.append(f"| {label} | {pg['torch']:.3f} | {pg['tf']:.3f} | {en['torch']:.3f} | {en['tf']:.3f} | "
                     f"{max(pg['max_diff'], en['max_diff']):.1e} |")
    acc = result["accuracy"]
    lines.append("")
    lines.append(f"{result['images']} held-out images, seed {result['seed']}; accuracy torch {acc['torch']:.3f}, "
                 f"Keras {acc['tf']:.3f}; pointing-game tolerance {result['tolerance']} px; the object covers "
                 f"{100 * result['object_share']:.1f}% of the pixels (the energy of a uniform map).")
    return "\n".join(lines)
