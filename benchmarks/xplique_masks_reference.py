"""Reference numbers for RISE, Sobol and HSIC from xplique 2.0.2, stored in tests/data/xplique_masks.npz.

xplique 2.0.2 does not install beside xcam's pinned dependencies: it requires tensorflow[and-cuda]<=2.20.0 (xcam's
venv has tensorflow 2.21), scikit-learn<=1.7.2 (1.9.1 there) and opencv-python (a second cv2 over xcam's
opencv-python-headless). So it runs once in a side venv and tests/test_attributions_masks.py compares xcam with the
stored numbers:

    python3.11 -m venv /tmp/xqvenv
    /tmp/xqvenv/bin/pip install "tensorflow-cpu==2.20.*" "tensorflow-probability==0.25.0" "tf-keras==2.20.*" \
        einops scipy opencv-python-headless deprecated matplotlib "scikit-learn<=1.7.2" "scikit-image<=0.25.2" tqdm
    /tmp/xqvenv/bin/pip install --no-deps xplique==2.0.2
    PYTHONPATH=. /tmp/xqvenv/bin/python benchmarks/xplique_masks_reference.py

The model: a tiny Keras CNN (16x16x3 -> conv 4 -> conv 4 -> flatten -> dense 3) with seeded NumPy weights (stored).
Sobol and HSIC run xplique as it is (its default samplers are the unscrambled tf.math.sobol_sample that
xcam's ``sampler="sobol"`` reproduces bit for bit). RISE draws its masks with TensorFlow's RNG, so xplique is fed
xcam's masks: ``Rise._get_masks`` returns xcam's low-resolution masks and the crop takes xcam's shifts (one mask per
batch, since xplique crops a whole batch at one offset); xcam's ``normalize="coverage"`` is xplique's normalisation.
"""

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "xplique_masks.npz"
SIZE, CLASSES = 16, 3
# (name, xcam options, xplique constructor arguments) for Sobol and HSIC
SOBOL = {"sobol_inpainting": ({"nb_design": 8}, {"nb_design": 8}),   # grid_size 8, inpainting: the defaults
         "sobol_blurring": ({"grid_size": 4, "nb_design": 16, "perturbation": "blurring"},
                            {"grid_size": 4, "nb_design": 16, "perturbation_function": "blurring"}),
         "sobol_amplitude": ({"grid_size": 4, "nb_design": 16, "perturbation": "amplitude"},
                             {"grid_size": 4, "nb_design": 16, "perturbation_function": "amplitude"})}
HSIC = {"hsic_binary": ({"sampler": "sobol", "nb_design": 128}, {"nb_design": 128}),
        "hsic_rbf": ({"sampler": "sobol", "estimator": "rbf", "grid_size": 4, "nb_design": 64},
                     {"grid_size": 4, "nb_design": 64, "estimator": "rbf"}),
        "hsic_sobolev": ({"sampler": "sobol", "estimator": "sobolev", "grid_size": 4, "nb_design": 64},
                         {"grid_size": 4, "nb_design": 64, "estimator": "sobolev"})}
RISE = {"n_masks": 48, "grid": 4, "p": 0.5, "seed": 3, "normalize": "coverage"}


def weights() -> dict:
    """Seeded NumPy weights of the tiny model (Keras layouts)."""
    rng = np.random.default_rng(0)
    return {"conv1_k": rng.standard_normal((3, 3, 3, 4)) * 0.4, "conv1_b": rng.standard_normal(4) * 0.1,
            "conv2_k": rng.standard_normal((3, 3, 4, 4)) * 0.3, "conv2_b": rng.standard_normal(4) * 0.1,
            "fc_k": rng.standard_normal((SIZE * SIZE * 4, CLASSES)) * 0.05, "fc_b": np.zeros(CLASSES)}


def tiny_model(w: dict):
    """16x16x3 -> conv(4, 3x3, same, relu) -> conv(4, 3x3, same, relu) -> flatten -> dense(3), weights ``w``."""
    import keras

    inp = keras.Input((SIZE, SIZE, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inp)
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv2")(h)
    out = keras.layers.Dense(CLASSES, name="fc")(keras.layers.Flatten()(h))
    model = keras.Model(inp, out)
    for name in ("conv1", "conv2", "fc"):
        model.get_layer(name).set_weights([np.asarray(w[f"{name}_k"], np.float32), np.asarray(w[f"{name}_b"],
                                                                                             np.float32)])
    return model


def main():
    import tensorflow as tf
    from xplique.attributions import HsicAttributionMethod, Rise, SobolAttributionMethod
    from xplique.attributions.global_sensitivity_analysis import RbfEstimator, SobolevEstimator, TFSobolSequence

    from xcam.methods import masks as mk

    w = weights()
    model = tiny_model(w)
    x = np.random.default_rng(1).standard_normal((2, SIZE, SIZE, 3)).astype(np.float32)
    targets = np.array([0, 2])
    onehot = np.eye(CLASSES, dtype=np.float32)[targets]
    out = {**{k: np.asarray(v, np.float32) for k, v in w.items()}, "x": x, "targets": targets}

    for name, (_, kw) in SOBOL.items():
        out[name] = np.asarray(SobolAttributionMethod(model, **kw).explain(x, onehot))
    estimators = {"rbf": RbfEstimator, "sobolev": SobolevEstimator}
    for name, (_, kw) in HSIC.items():
        kw = dict(kw)
        if "estimator" in kw:
            kw["estimator"] = estimators[kw["estimator"]](output_kernel="rbf")
            kw["sampler"] = TFSobolSequence(binary=False)
        out[name] = np.asarray(HsicAttributionMethod(model, **kw).explain(x, onehot))

    # RISE with xcam's masks and shifts (the draws of xcam.methods.masks.rise_attribution, per seed)
    rng = np.random.default_rng(RISE["seed"])
    grid = (RISE["grid"],) * 2
    low = mk.rise_masks(rng, RISE["n_masks"], grid, RISE["p"])
    shifts = mk.rise_shifts(rng, RISE["n_masks"], (SIZE, SIZE), grid)
    state = {"i": 0}

    def crop(values, size):
        o = shifts[state["i"] % len(shifts)]
        state["i"] += 1
        return values[:, o[0]:o[0] + size[1], o[1]:o[1] + size[2]]

    Rise._get_masks = staticmethod(lambda *args: tf.constant(low[..., None] > 0.5))
    Rise._apply_masks = staticmethod(Rise._apply_masks.python_function)  # eager, so each batch takes its shift
    tf.image.random_crop = crop
    out["rise_coverage"] = np.asarray(Rise(model, batch_size=1, nb_samples=RISE["n_masks"], grid_size=RISE["grid"],
                                           preservation_probability=RISE["p"]).explain(x, onehot))
    assert state["i"] == 2 * RISE["n_masks"]
    OUT.parent.mkdir(exist_ok=True)
    np.savez_compressed(OUT, **out)
    print(f"wrote {OUT}: " + ", ".join(f"{k} {v.shape}" for k, v in out.items() if k.startswith(("sobol", "hsic",
                                                                                                  "rise"))))


if __name__ == "__main__":
    sys.exit(main())
