"""RISE, Sobol and HSIC speed (issue 19): xcam vs its floor vs xplique 2.0.2, medians, on one Keras CNN (64x64x3,
seeded weights) and xplique's default settings, 2 images.

xcam: ``xcam_tf.attribute`` (masks, designs, resampling and estimators in NumPy; forwards through the adapter's
probe). Floor: the forwards it needs and nothing else: the same number of rows in the same batches through one
compiled ``model(x)`` (inputs made before timing), plus the one forward of the batch that gives the targets;
xcam and the floor are timed in turn, round after round.
xplique: its Rise / SobolAttributionMethod / HsicAttributionMethod ``explain`` on the same weights, run in its side
venv (xplique pins tensorflow<=2.20; see benchmarks/xplique_masks_reference.py) as a child process of this run.
Model calls: xcam's counted (its probe forwards: no layer capture), xplique's from its batching
(ceil(rows / batch_size) per image).

    PYTHONPATH=. python benchmarks/attributions_masks.py [repeats] [--xplique /tmp/xqvenv/bin/python]
        [--methods rise,sobol,hsic]
"""

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIZE, CLASSES, N = 64, 10, 2
# per method: xcam options, rows per image, batch size (xplique's defaults: Rise 32, GSA 256)
SETTINGS = {"rise": ({}, 4000, 32), "sobol": ({}, 32 * (64 + 2), 256), "hsic": ({"sampler": "sobol"}, 500, 256)}


def median_s(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def alternated(a, b, repeats):
    """Median seconds of a and of b, timed in turn (a, b, a, b, ...) so that both see the same machine."""
    a(), b()
    times = ([], [])
    for _ in range(repeats):
        for fn, out in ((a, times[0]), (b, times[1])):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    return float(np.median(times[0])), float(np.median(times[1]))


def build(weights=None):
    """A small CNN: conv 16 -> pool -> conv 32 -> pool -> conv 32 -> GAP -> dense 10 (seeded or given weights)."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((SIZE, SIZE, 3))
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="c1")(inp)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="c2")(h)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="c3")(h)
    out = keras.layers.Dense(CLASSES, name="fc")(keras.layers.GlobalAveragePooling2D()(h))
    model = keras.Model(inp, out)
    if weights is not None:
        model.set_weights(weights)
    return model


def inputs():
    return np.random.default_rng(1).standard_normal((N, SIZE, SIZE, 3)).astype(np.float32), np.array([1, 4])


def anchor(weights_path, repeats):
    """(child process, xplique's venv) median seconds of xplique's explain per method, as JSON."""
    from xplique.attributions import HsicAttributionMethod, Rise, SobolAttributionMethod

    data = np.load(weights_path)
    model = build([data[f"w{i}"] for i in range(len(data.files))])
    x, t = inputs()
    onehot = np.eye(CLASSES, dtype=np.float32)[t]
    explainers = {"rise": Rise(model), "sobol": SobolAttributionMethod(model), "hsic": HsicAttributionMethod(model)}
    print(json.dumps({k: median_s(lambda e=e: e.explain(x, onehot), repeats) for k, e in explainers.items()}))


def main(repeats, xplique_python, methods=tuple(SETTINGS)):
    import tensorflow as tf

    import xcam_tf
    from xcam_tf import _probe

    model = build()
    x, t = inputs()
    calls = {"n": 0}
    forward = _probe.Probe._forward

    def counted(self, *args, **kwargs):
        calls["n"] += 1
        return forward(self, *args, **kwargs)

    _probe.Probe._forward = counted
    step = tf.function(lambda b, idx: tf.gather(model(b, training=False), idx, axis=1, batch_dims=0),
                       input_signature=[tf.TensorSpec((None, SIZE, SIZE, 3)), tf.TensorSpec((), tf.int32)])
    results = {}
    for method, (options, rows, batch) in SETTINGS.items():
        if method not in methods:
            continue
        made = np.random.default_rng(2).standard_normal((rows, SIZE, SIZE, 3)).astype(np.float32)
        batches = [tf.constant(made[s:s + batch]) for s in range(0, rows, batch)]
        first = tf.constant(x)

        def floor():
            step(first, tf.constant(0)).numpy()
            for i in range(N):
                np.concatenate([step(b, tf.constant(int(t[i]))).numpy() for b in batches])

        def ours():
            xcam_tf.attribute(model, x, method, t, options=options)

        t_ours, t_floor = alternated(ours, floor, repeats)
        calls["n"] = 0
        ours()
        xcam_calls = calls["n"]                                            # no capture: probe forwards only
        results[method] = {"floor": t_floor, "xcam": t_ours, "xcam_calls": xcam_calls,
                           "anchor_calls": N * math.ceil(rows / batch), "rows": N * rows}
    anchor_times = {}
    if xplique_python and os.path.exists(xplique_python):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "w.npz"
            np.savez(path, **{f"w{i}": w for i, w in enumerate(model.get_weights())})
            env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "TF_CPP_MIN_LOG_LEVEL": "3"}
            done = subprocess.run([xplique_python, __file__, "--anchor", str(path), str(repeats)], env=env,
                                  capture_output=True, text=True, check=True)
            anchor_times = json.loads(done.stdout.strip().splitlines()[-1])
    for method, r in results.items():
        a = anchor_times.get(method)
        vs = f"  xplique {a * 1e3:.0f} ms  xcam/xplique {r['xcam'] / a:.2f}" if a else "  xplique: not run"
        print(f"{method:6s} {r['rows']} rows  floor {r['floor'] * 1e3:.0f} ms  xcam {r['xcam'] * 1e3:.0f} ms  "
              f"xcam/floor {r['xcam'] / r['floor']:.2f}{vs}  model calls: xcam {r['xcam_calls']}, "
              f"xplique {r['anchor_calls']}")


if __name__ == "__main__":
    if "--anchor" in sys.argv:
        anchor(sys.argv[sys.argv.index("--anchor") + 1], int(sys.argv[-1]))
    else:
        args = sys.argv[1:]
        py = args[args.index("--xplique") + 1] if "--xplique" in args else "/tmp/xqvenv/bin/python"
        chosen = tuple(args[args.index("--methods") + 1].split(",")) if "--methods" in args else tuple(SETTINGS)
        main(int(args[0]) if args and args[0].isdigit() else 3, py, chosen)
