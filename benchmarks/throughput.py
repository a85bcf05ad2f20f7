"""Throughput of ``xcam explain`` end to end (decode, preprocess, forward, backward, maps, files, report)
against the floor: a bare forward + backward to the layer on the same batches, already decoded and
preprocessed in memory. Also the Ray Data job against the single-process run on this machine, and peak RSS
of whole runs on 100 and on 5,000 images (each in a fresh process).

    python benchmarks/throughput.py                       # torch and Keras, 256 images (a few minutes)
    python benchmarks/throughput.py --ray                  # + Ray (local cluster) against the local engine
    python benchmarks/throughput.py --rss 100 5000         # + peak RSS per image count (about 5 minutes)
    python benchmarks/throughput.py --device-note "H200"   # label the table (a GPU is used when present)

Model: the demo's EfficientNet-Lite0 with the cat/dog head (bundled ImageNet weights, both frameworks), its
demo layer, Grad-CAM for each image's top-1 class, batch 32. Images: JPEGs of 320x240 to 640x480 made from
the demo photos. The end-to-end options are those for large runs: --map-size layer --map-dtype float16
--no-features --no-overlays (also timed with the defaults: overlays and feature grids at the input size).
"""

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

FAST = dict(map_size="layer", map_dtype="float16", overlays=False, features=False)


def make_images(folder: Path, count: int) -> list[str]:
    """``count`` JPEGs cut and scaled from the demo photos (seeded, so every run gets the same files)."""
    from xcam.app.images import load_image
    from xcam.app.zoo import demo_images

    folder.mkdir(parents=True, exist_ok=True)
    photos = [load_image(p) for p in demo_images()]
    rng = np.random.RandomState(0)
    paths = []
    for i in range(count):
        src = photos[i % len(photos)]
        w = int(rng.randint(320, 641))
        img = cv2.resize(src, (w, w * 3 // 4), interpolation=cv2.INTER_AREA)
        path = folder / f"img{i:05d}.jpg"
        cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(str(path))
    return paths


def setup(fw: str):
    from xcam.app.frameworks import load_framework
    from xcam.app.zoo import DEMO_LAYER, demo_model

    return load_framework(fw), demo_model(fw), DEMO_LAYER[fw]


def job(framework, model, layer, images, out, batch_size, **options):
    from xcam.app.explain import Job

    return Job(framework=framework, model=model, model_name="lite0", images=images, out=Path(out),
               methods=["gradcam"], layer=layer, input_size=224, batch_size=batch_size, log=None, overwrite=True,
               **options)


def floor_fn(fw: str, framework, model, layer, batches):
    """Forward + backward to the layer for every batch (top-1 logit), nothing else."""
    if fw == "torch":
        import torch

        from xcam_torch._capture import model_device

        module = dict(model.named_modules())[layer]
        device, _ = model_device(model)
        tensors = [torch.from_numpy(framework.to_inputs(b)).to(device) for b in batches]

        def run():
            for x in tensors:
                kept = {}
                handle = module.register_forward_hook(lambda m, a, out: kept.__setitem__("a", out))
                try:
                    out = model(x)
                    torch.autograd.grad(out.max(1).values.sum(), kept["a"])
                finally:
                    handle.remove()
            if device.type == "cuda":
                torch.cuda.synchronize()
        return run
    import keras
    import tensorflow as tf

    sub = keras.Model(model.inputs, [model.get_layer(layer).output, model.output])
    tensors = [tf.constant(b) for b in batches]

    @tf.function(reduce_retracing=True)
    def step(x):
        with tf.GradientTape() as tape:
            a, out = sub(x, training=False)
            y = tf.reduce_sum(tf.reduce_max(out, axis=1))
        return tape.gradient(y, a)

    def run():
        for x in tensors:
            step(x).numpy()
    return run


def best_of(fn, rounds, out=None):
    """Fastest of ``rounds`` runs; ``out`` (a directory the run writes) is removed before each, untimed."""
    times = []
    for _ in range(rounds):
        if out is not None:
            shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), times


def throughput(fw: str, images, work: Path, batch_size: int, rounds: int):
    from xcam.app.explain import run
    from xcam.app.images import load_image, preprocess

    framework, model, layer = setup(fw)
    data = preprocess([load_image(p) for p in images], (224, 224))
    batches = [data[i:i + batch_size] for i in range(0, len(data), batch_size)]
    floor = floor_fn(fw, framework, model, layer, batches)
    floor()  # warm: compiles the Keras steps for every batch shape
    run(job(framework, model, layer, images, work / "fast", batch_size, **FAST))
    n = len(images)
    t_floor, tf_all = best_of(floor, rounds)
    t_fast, te_all = best_of(lambda: run(job(framework, model, layer, images, work / "fast", batch_size, **FAST)),
                             rounds, work / "fast")
    t_full, _ = best_of(lambda: run(job(framework, model, layer, images, work / "full", batch_size)), 1, work / "full")
    return [f"| {fw} | floor: fwd + bwd to {layer} (decoded in memory) | {n / t_floor:7.1f} | 1.00 |",
            f"| {fw} | xcam explain, large-run options | {n / t_fast:7.1f} | {t_floor / t_fast:4.2f} |",
            f"| {fw} | xcam explain, defaults (overlays, feature grids) | {n / t_full:7.1f} | "
            f"{t_floor / t_full:4.2f} |"], (tf_all, te_all)


def ray_vs_local(images, work: Path, batch_size: int, workers: int, rounds: int) -> list[str]:
    import ray

    from xcam.app.explain import run
    from xcam.app.modelspec import ModelSpec

    framework, model, layer = setup("torch")
    spec = ModelSpec("torch", demo=True)
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    run(job(framework, model, layer, images[:batch_size], work / "warm", batch_size, **FAST))
    local, _ = best_of(lambda: run(job(framework, model, layer, images, work / "local", batch_size, **FAST)), rounds,
                       work / "local")
    remote, _ = best_of(lambda: run(job(framework, model, layer, images, work / "ray", batch_size, engine="ray",
                                        model_spec=spec, workers=workers, **FAST)), rounds, work / "ray")
    ray.shutdown()
    n = len(images)
    return [f"| torch | local engine (one process, decoding threads) | {n / local:7.1f} | 1.00 |",
            f"| torch | ray engine, {workers} actors on this machine (incl. actor start) | {n / remote:7.1f} | "
            f"{local / remote:4.2f} |"]


def rss_child(count: int, work: Path) -> None:
    from xcam.app.explain import run

    images = make_images(work / f"imgs{count}", count)
    framework, model, layer = setup("torch")
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    run(job(framework, model, layer, [str(work / f"imgs{count}")], work / f"out{count}", 32, **FAST))
    seconds = time.perf_counter() - start
    assert len(os.listdir(work / f"out{count}")) >= len(images)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{base:.1f} {peak:.1f} {seconds:.1f}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--frameworks", nargs="+", default=["torch", "tf"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ray", action="store_true")
    parser.add_argument("--ray-workers", type=int, default=2)
    parser.add_argument("--rss", nargs="*", type=int, default=None)
    parser.add_argument("--rss-child", nargs=2)
    parser.add_argument("--device-note", default="")
    args = parser.parse_args()
    if args.rss_child:
        rss_child(int(args.rss_child[0]), Path(args.rss_child[1]))
        return 0
    import torch  # noqa: F401  (before tensorflow)

    work = Path(tempfile.mkdtemp(prefix="xcam-throughput-"))
    try:
        images = make_images(work / "imgs", args.images)
        print(f"{args.images} images, batch {args.batch_size}, {os.cpu_count()} CPUs {args.device_note}".rstrip(),
              flush=True)
        print("| framework | what | images/s | ratio to floor |\n|---|---|---|---|", flush=True)
        for fw in args.frameworks:
            lines, _ = throughput(fw, images, work, args.batch_size, args.rounds)
            print("\n".join(lines), flush=True)
        if args.ray:
            print("\n| framework | engine | images/s | ratio to local |\n|---|---|---|---|", flush=True)
            print("\n".join(ray_vs_local(images, work, args.batch_size, args.ray_workers, args.rounds)), flush=True)
        if args.rss is not None:
            print("\n| images | peak RSS MiB | model loaded MiB | seconds |\n|---|---|---|---|", flush=True)
            for count in args.rss or [100, 5000]:
                out = subprocess.run([sys.executable, __file__, "--rss-child", str(count), str(work)], check=True,
                                     capture_output=True, text=True).stdout.split()
                print(f"| {count} | {float(out[1]):.1f} | {float(out[0]):.1f} | {float(out[2]):.1f} |", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
