"""Throughput of ``xcam explain`` end to end (decode, preprocess, forward, backward, maps, files, report)
against the floor: a bare forward + backward to the layer on the same batches, already decoded and
preprocessed in memory. Also the Ray Data job against the single-process run on this machine, and peak RSS
of whole runs on 100 and on 5,000 images (each in a fresh process).

    python benchmarks/throughput.py                       # torch and Keras, 256 images (a few minutes)
    python benchmarks/throughput.py --ray                  # + Ray (local cluster) against the local engine
    python benchmarks/throughput.py --rss 100 5000         # + peak RSS per image count (Keras; --rss-framework)
    python benchmarks/throughput.py --device cuda --frameworks torch  # PyTorch on the GPU (--device-note labels it)
    python benchmarks/throughput.py --workers 8            # + the runs with 8 decoding and 8 picture threads

Model: the demo's EfficientNet-Lite0 with the cat/dog head (bundled ImageNet weights, both frameworks), its
demo layer, Grad-CAM for each image's top-1 class, batch 32. Images: JPEGs of 320x240 to 640x480 made from
the demo photos. The end-to-end options are those for large runs: --map-size layer --map-dtype float16
--no-features --no-overlays (also timed with the defaults: overlays and feature grids at the input size, drawn
in the picture threads beside the model, and drawn inline). PyTorch rows come contiguous and channels-last.
Every row of a framework is timed in the same rounds, so their ratios to the floor are read off one run.
"""

import argparse
import os
import shutil
import statistics
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
    from xcam.app.inputs.images import load_image
    from xcam.app.models.zoo import demo_images

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


DEVICE = "auto"  # PyTorch: where the demo model runs ("auto": where xcam puts it, CUDA when available)


def setup(fw: str):
    from xcam.app.models.frameworks import load_framework
    from xcam.app.models.zoo import DEMO_LAYER, demo_model

    model = demo_model(fw)
    if fw == "torch" and DEVICE != "auto":
        model = model.to(DEVICE)
    return load_framework(fw), model, DEMO_LAYER[fw]


def job(framework, model, layer, images, out, batch_size, **options):
    from xcam.app.jobs.explain import Job

    return Job(framework=framework, model=model, model_name="lite0", images=images, out=Path(out),
               methods=["gradcam"], layer=layer, input_size=224, batch_size=batch_size, log=None, overwrite=True,
               **options)


def floor_fn(fw: str, framework, model, layer, batches):
    """Forward + backward to the layer for every batch (top-1 logit), nothing else. PyTorch: the layers
    before the explained one run without autograd and the graph starts at its output (the least work a
    backward to that layer needs); Keras: a compiled tape through a sub-model [layer output, logits]."""
    if fw == "torch":
        import torch

        from xcam_torch._capture import model_device

        module = dict(model.named_modules())[layer]
        device, _ = model_device(model)
        tensors = [torch.from_numpy(framework.to_inputs(b)).to(device) for b in batches]

        def start_graph(m, args, out):
            kept["a"] = out.detach().requires_grad_(True)
            torch.set_grad_enabled(True)
            return kept["a"]

        kept = {}

        def run():
            handle = module.register_forward_hook(start_graph)
            try:
                for x in tensors:
                    with torch.no_grad():
                        out = model(x)
                        torch.autograd.grad(out.max(1).values.sum(), kept["a"])
                    torch.set_grad_enabled(False)
            finally:
                handle.remove()
                torch.set_grad_enabled(True)
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


def fresh(out: Path) -> Path:
    shutil.rmtree(out, ignore_errors=True)
    return out


def interleaved(entries, rounds):
    """Median seconds of each (name, fn, out dir or None), run round-robin so load on a shared machine falls
    on all alike; an output directory is removed before each run, untimed."""
    times = {name: [] for name, _, _ in entries}
    for _ in range(rounds):
        for name, fn, out in entries:
            if out is not None:
                fresh(out)
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def throughput(fw: str, images, work: Path, batch_size: int, rounds: int, workers: int = 0) -> list[str]:
    """The floor, the large-run options and the defaults, all timed in the same rounds. PyTorch: each also
    contiguous and channels-last (the floor converted for its run; xcam's --memory-format), and the defaults
    with the pictures drawn inline (no picture threads), the way every run drew them before."""
    from xcam.app.inputs.images import load_image, preprocess
    from xcam.app.jobs.explain import run

    framework, model, layer = setup(fw)
    data = preprocess([load_image(p) for p in images], (224, 224))
    batches = [data[i:i + batch_size] for i in range(0, len(data), batch_size)]
    floor = floor_fn(fw, framework, model, layer, batches)
    floor()  # warm: compiles the Keras steps for every batch shape

    def explain(out, **options):
        return lambda: run(job(framework, model, layer, images, out, batch_size, **options))

    entries = [("floor", floor, None)]
    if fw == "torch":
        def floor_nhwc():
            with framework.memory_format(model, "channels_last"):
                floor()
        entries.append(("floor, channels-last", floor_nhwc, None))
    formats = [("", {})] if fw != "torch" else [(", contiguous", {"memory_format": "contiguous"}),
                                                 (", channels-last (auto)", {"memory_format": "auto"})]
    for note, kw in formats:
        entries.append((f"xcam explain, large-run options{note}", explain(work / f"fast{note}", **FAST, **kw),
                        work / f"fast{note}"))
    for note, kw in formats:
        entries.append((f"xcam explain, defaults (overlays, feature grids){note}", explain(work / f"full{note}", **kw),
                        work / f"full{note}"))
    entries.append(("xcam explain, defaults, pictures inline (no picture threads)" + formats[-1][0],
                    explain(work / "inline", picture_threads=0, **formats[-1][1]), work / "inline"))
    if workers:  # --workers N: the same runs with N decoding threads and N picture threads (a many-core host)
        threads = dict(decode_workers=workers, picture_threads=workers, **formats[-1][1])
        entries += [(f"xcam explain, large-run options, {workers} decoding threads{formats[-1][0]}",
                     explain(work / "fast_w", **FAST, **threads), work / "fast_w"),
                    (f"xcam explain, defaults, {workers} decoding + {workers} picture threads{formats[-1][0]}",
                     explain(work / "full_w", **threads), work / "full_w")]
    explain(fresh(work / "warm"), **FAST)()  # warm: the job's compiled steps
    t = interleaved(entries, rounds)
    n = len(images)
    return [f"| {fw} | {name}{' to ' + layer + ' (decoded in memory)' if name.startswith('floor') else ''} | "
            f"{n / t[name]:7.1f} | {t['floor'] / t[name]:4.2f} |" for name, _, _ in entries]


def ray_vs_local(images, work: Path, batch_size: int, workers: int, rounds: int) -> list[str]:
    """Each engine on N and on 2N images: the whole run's rate, and the marginal rate N / (t(2N) - t(N)),
    which leaves out what every run pays once (Ray: starting the actors and building a model in each)."""
    import ray

    from xcam.app.jobs.explain import run
    from xcam.app.models.modelspec import ModelSpec

    framework, model, layer = setup("torch")
    spec = ModelSpec("torch", demo=True)
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    half = images[:len(images) // 2]
    run(job(framework, model, layer, half[:batch_size], fresh(work / "warm"), batch_size, **FAST))

    def engine(paths, out, **kw):
        return lambda: run(job(framework, model, layer, paths, out, batch_size, **FAST, **kw))

    ray_kw = dict(engine="ray", model_spec=spec, workers=workers)
    t = interleaved([("local N", engine(half, work / "l1"), work / "l1"),
                     ("local 2N", engine(images, work / "l2"), work / "l2"),
                     ("ray N", engine(half, work / "r1", **ray_kw), work / "r1"),
                     ("ray 2N", engine(images, work / "r2", **ray_kw), work / "r2")], rounds)
    ray.shutdown()
    n = len(half)
    local_m, ray_m = n / (t["local 2N"] - t["local N"]), n / (t["ray 2N"] - t["ray N"])
    return [f"| torch | local engine (one process, decoding threads) | {2 * n / t['local 2N']:7.1f} | "
            f"{local_m:7.1f} | 1.00 |",
            f"| torch | ray engine, {workers} actors on this machine | {2 * n / t['ray 2N']:7.1f} | {ray_m:7.1f} | "
            f"{ray_m / local_m:4.2f} |"]


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(field)


def rss_child(count: int, work: Path, fw: str) -> None:
    """One whole run in this process; prints the RSS with the model loaded, the peak RSS during the run (the
    kernel's high-water mark, reset after loading through /proc/self/clear_refs) and the seconds."""
    if fw == "tf":
        import torch  # noqa: F401  (before tensorflow)
    from xcam.app.jobs.explain import run

    images = make_images(work / f"imgs{count}", count)
    framework, model, layer = setup(fw)
    base = _status_mib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current RSS
    start = time.perf_counter()
    run(job(framework, model, layer, [str(work / f"imgs{count}")], work / f"out{count}", 32, **FAST))
    seconds = time.perf_counter() - start
    assert len(os.listdir(work / f"out{count}")) >= len(images)
    print(f"{base:.1f} {_status_mib('VmHWM'):.1f} {seconds:.1f}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--frameworks", nargs="*", default=["torch", "tf"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ray", action="store_true")
    parser.add_argument("--ray-workers", type=int, default=2)
    parser.add_argument("--rss", nargs="*", type=int, default=None)
    parser.add_argument("--rss-framework", default="tf")
    parser.add_argument("--rss-child", nargs=3)
    parser.add_argument("--workers", type=int, default=0, help="+ rows with this many decoding/picture threads")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="PyTorch's device")
    parser.add_argument("--device-note", default="")
    args = parser.parse_args()
    global DEVICE
    DEVICE = args.device
    if args.rss_child:
        rss_child(int(args.rss_child[0]), Path(args.rss_child[1]), args.rss_child[2])
        return 0
    import torch  # (before tensorflow)

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: PyTorch sees no CUDA GPU here")
    work = Path(tempfile.mkdtemp(prefix="xcam-throughput-"))
    try:
        images = make_images(work / "imgs", args.images)
        gpu = torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu" else ""
        print(f"{args.images} images, batch {args.batch_size}, {os.cpu_count()} CPUs, torch {torch.__version__} "
              f"{gpu} {args.device_note}".rstrip(), flush=True)
        print("| framework | what | images/s | ratio to floor |\n|---|---|---|---|", flush=True)
        for fw in args.frameworks:
            lines = throughput(fw, images, work, args.batch_size, args.rounds, args.workers)
            print("\n".join(lines), flush=True)
        if args.ray:
            print("\n| framework | engine | images/s, whole run of 2N | images/s, marginal | marginal ratio to local |"
                  "\n|---|---|---|---|---|", flush=True)
            print("\n".join(ray_vs_local(images, work, args.batch_size, args.ray_workers, args.rounds)), flush=True)
        if args.rss is not None:
            print("\n| framework | images | peak RSS MiB | model loaded MiB | seconds |\n|---|---|---|---|---|",
                  flush=True)
            for count in args.rss or [100, 5000]:
                out = subprocess.run([sys.executable, __file__, "--rss-child", str(count), str(work),
                                      args.rss_framework], check=True, capture_output=True, text=True).stdout.split()
                print(f"| {args.rss_framework} | {count} | {float(out[1]):.1f} | {float(out[0]):.1f} | "
                      f"{float(out[2]):.1f} |", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
