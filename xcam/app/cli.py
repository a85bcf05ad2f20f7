"""The command line: ``xcam explain``, ``xcam evaluate``, ``xcam demo``, ``xcam view``, ``xcam layers``,
``xcam methods``.

Bad input ends with one line on stderr (``xcam: error: ...``) and exit code 2; an image that cannot be read
is reported, the others are still explained, and the exit code is 1.
"""

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from xcam.app.engines.batch import MAP_DTYPES, MAP_SIZES, MEMORY_FORMATS
from xcam.app.inputs.images import NORMALIZATIONS
from xcam.app.inputs.kinds import split_inputs
from xcam.app.inputs.sources import expand_images
from xcam.app.jobs import detect, evaluate
from xcam.app.jobs.demo import run_demo
from xcam.app.jobs.explain import ENGINES, Job, parse_labels, run
from xcam.app.models.frameworks import FRAMEWORKS, available, infer_framework, load_framework
from xcam.app.models.hints import hints_of
from xcam.app.models.modelspec import ModelSpec
from xcam.app.models.zoo import CAT_DOG_LABELS, DEMO_INPUT_SIZE, DEMO_LAYER, demo_images, demo_model
from xcam.app.outputs import files
from xcam.app.outputs.files import check_new_dir
from xcam.app.outputs.report import REPORT_MODES, SINGLE_PAGE_LIMIT
from xcam.errors import XcamError
from xcam.filters import deprocess, kernel_grid
from xcam.layers import default_layer, format_table
from xcam.layouts import KINDS, Layout
from xcam.methods import get_method, method_names
from xcam.targets import parse_target
from xcam.viz import to_uint8_rgb


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``xcam explain: error: ...`` and exit code 2, without the usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (1, 2, ...), got {text!r}")
    return value


def input_size(text: str):
    """An argparse type: a square side (224) or HxW (224x308), every side a positive integer."""
    parts = text.lower().split("x")
    if len(parts) in (1, 2) and all(p.isdigit() and int(p) > 0 for p in parts):
        return int(parts[0]) if len(parts) == 1 else (int(parts[0]), int(parts[1]))
    raise argparse.ArgumentTypeError(f"must be a side (224) or HxW (224x308), got {text!r}")


def call_index(text: str) -> int:
    """An argparse type: a call index >= 0."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"must be a call index (0, 1, ...), got {text!r}")
    return int(text)


def _version() -> str:
    import xcam

    return f"xcam {xcam.__version__}"


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="xcam", description="Class activation maps for PyTorch and Keras CNNs.")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True)

    def model_args(s, required=True):
        s.add_argument("--model", required=required,
                       help="model file: .pt/.pth (PyTorch), .keras/.h5 (Keras), a Hugging Face save_pretrained "
                            "directory (pip install 'xcam[hf]'), weights of --arch timm:NAME (.safetensors, .pth), "
                            "a keras-hub save_to_preset directory (xcam[kerashub]), an ultralytics YOLO .pt "
                            "(--trust-model; xcam[yolo])")
        s.add_argument("--framework", choices=FRAMEWORKS, help="default: from the model file")
        s.add_argument("--trust-model", action="store_true",
                       help="allow loading a whole pickled model (this runs code from the file)")
        s.add_argument("--arch", help="torchvision architecture for a PyTorch state dict (alexnet, vgg16, ...), "
                                      "or timm:NAME (timm:convnext_tiny; pip install 'xcam[timm]')")
        s.add_argument("--num-classes", type=positive_int, help="classes of --arch (default: from the state dict)")
        s.add_argument("--input-size", type=input_size,
                       help="input side in pixels, or HxW (default: the model's, or 224)")

    e = sub.add_parser("explain", help="explain images with a model: overlays, maps, feature grids, report")
    model_args(e)
    e.add_argument("--images", nargs="+", required=True,
                   help="image files (any size or mode), directories (recursive), glob patterns ('data/**/*.jpg') "
                        "or .txt files with one path a line")
    e.add_argument("--layer", help="layer name (default: the last layer with a spatial output)")
    e.add_argument("--methods", nargs="+", default=["gradcam", "layercam"], metavar="METHOD",
                   help=f"any of: {', '.join(method_names())} (default: gradcam layercam)")
    e.add_argument("--classes", nargs="+", default=["top1"],
                   help="class indices or label names to explain for every image, 'all', or 'top1' (default)")
    e.add_argument("--labels", help="class names, 'cat,dog' or a file with one name a line")
    e.add_argument("--target", help="what to explain instead of --classes: class:281, class:281:probability, "
                                    "binary, binary:negative, regression, regression:2, segmentation:15, "
                                    "segmentation:15:predicted; YOLO detectors: boxes (its detections, score >= "
                                    "0.25), boxes:0.1, boxes:FILE.json (one map per box)")
    e.add_argument("--output", help="which model output the target sees: a dict key, a Keras output name, an "
                                    "attribute (logits) or a tuple index")
    e.add_argument("--normalize", help=f"input normalization: {', '.join(NORMALIZATIONS)} (default: the model "
                                       "file's preprocessing where it has one, else imagenet)")
    e.add_argument("--layer-output", help="for a layer that returns a tuple or an output object (Hugging Face Swin "
                                          "stages): the index or name of the tensor to explain (default: the first "
                                          "spatial one)")
    e.add_argument("--call", type=call_index, help="for a layer that runs several times in one forward (a shared "
                                                  "block): which call to explain, from 0")
    e.add_argument("--reshape", help="the layer's layout when it cannot be detected: channels_first, "
                                     "channels_last, tokens, or tokens:PREFIX:HxW (e.g. tokens:5:16x22)")
    e.add_argument("--frames", type=positive_int, default=16,
                   help="videos (.mp4, .avi, ...): frames sampled evenly per clip (default 16); volumes: .npy, "
                        ".nii, .nii.gz (NIfTI: pip install 'xcam[medical]'); signals (1-D models): .npy, .csv")
    _output_args(e, "xcam-out")
    _large_run_args(e)

    evaluate.add_subparser(sub, model_args, _output_args)

    d = sub.add_parser("demo", help="the lab on a bundled ImageNet EfficientNet-Lite0 with a cat/dog head")
    d.add_argument("--framework", choices=[*FRAMEWORKS, "both"], help="default: torch if installed, else tf")
    d.add_argument("--methods", nargs="+", default=["gradcam", "layercam"], metavar="METHOD")
    d.add_argument("--no-evaluation", action="store_true", help="skip the evaluation section (metrics of the maps)")
    _output_args(d, "xcam-demo")

    v = sub.add_parser("view", help="a live viewer in the browser: pick image, layer, method, class, alpha")
    model_args(v, required=False)
    v.add_argument("--demo", action="store_true", help="the bundled cat/dog EfficientNet-Lite0 (no --model)")
    v.add_argument("--images", nargs="+", default=[], help="images to pick from (files, directories, globs; "
                                                           "default with --demo: the demo photos)")
    v.add_argument("--layer", help="the layer preselected (default: the last layer with a spatial output)")
    v.add_argument("--labels", help="class names, 'cat,dog' or a file with one name a line")
    v.add_argument("--normalize", default="imagenet", help=f"input normalization: {', '.join(NORMALIZATIONS)}")
    v.add_argument("--output", help="which model output the classes are read from (as in explain)")
    v.add_argument("--top-k", type=positive_int, default=5, help="classes listed with probabilities (default 5)")
    v.add_argument("--port", type=positive_int, default=8000, help="port (default 8000)")
    v.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every interface)")
    v.add_argument("--quiet", action="store_true", help="no notes on stderr")

    f = sub.add_parser("filters", help="a conv layer's kernels as a grid, and inputs that excite its filters")
    model_args(f)
    f.add_argument("--layer", required=True, help="a convolution layer")
    f.add_argument("--channels", nargs="+", type=int, default=list(range(8)), help="filters to visualize")
    f.add_argument("--steps", type=positive_int, default=30, help="gradient-ascent steps")
    f.add_argument("--out", default="xcam-filters", help="output directory (default: xcam-filters)")
    f.add_argument("--overwrite", action="store_true")

    ls = sub.add_parser("layers", help="list a model's layers, output shapes, and which a CAM can use")
    model_args(ls)
    sub.add_parser("methods", help="list the methods with their papers")
    return p


def _output_args(s, default_out):
    s.add_argument("--out", default=default_out, help=f"output directory (default: {default_out})")
    s.add_argument("--overwrite", action="store_true", help="replace the output directory if it exists")
    s.add_argument("--batch-size", type=positive_int, default=8, help="images per forward (default: 8)")
    s.add_argument("--quiet", action="store_true", help="no progress or notes on stderr")


def _large_run_args(s):
    s.add_argument("--resume", action="store_true",
                   help="go on with an interrupted run in --out (same options), or start one if --out is missing")
    s.add_argument("--report", choices=REPORT_MODES, default="auto",
                   help="single: one self-contained page; paged: an index and pages of 100 that link to the files; "
                        f"auto (default): single up to {SINGLE_PAGE_LIMIT} images")
    s.add_argument("--map-size", choices=MAP_SIZES, default="input",
                   help="maps at the input size (default) or at the layer's own resolution")
    s.add_argument("--map-dtype", choices=MAP_DTYPES, default="float32", help="dtype of the .npy maps")
    s.add_argument("--no-overlays", action="store_true", help="do not write overlay PNGs")
    s.add_argument("--no-features", action="store_true", help="do not write the feature-grid PNGs")
    s.add_argument("--engine", choices=ENGINES, default="local",
                   help="local (default): this process; ray: a Ray Data job (pip install 'xcam[ray]')")
    s.add_argument("--address", help="Ray cluster address (default: the running cluster, or a local one)")
    s.add_argument("--workers", type=int, help="Ray actors (default: one per GPU, else half the CPUs)")
    s.add_argument("--memory-format", choices=MEMORY_FORMATS, default="auto",
                   help="PyTorch: run the model channels_last or contiguous for the job (restored after); auto "
                        "(default): channels_last for models with 2-D convolutions")


def _load(args):
    framework = load_framework(args.framework or infer_framework(args.model))
    model = framework.load_model(args.model, trust_model=args.trust_model, arch=args.arch,
                                 num_classes=args.num_classes)
    return framework, model


def _explain(args) -> int:
    for m in args.methods:
        get_method(m)
    if detect.is_boxes(args.target):  # detectors: one map per box (xcam.app.jobs.detect)
        detect.parse(args.target)
        return detect.run(args, *_load(args), labels=parse_labels(args.labels))
    if args.target:
        parse_target(args.target)  # a bad spec fails before the model is loaded
    images, media = split_inputs(args.images)
    if media and images:  # a model takes one input rank: images and clips never share a run
        raise XcamError(f"--images mixes videos/volumes/signals ({_some(media)}) with images ({_some(images)}); "
                        "explain them in separate runs, each with a model for that kind of input")
    if media and list(args.classes) != ["top1"]:
        raise XcamError("--classes is for images; videos, volumes and signals take --target (class:N)")
    labels = parse_labels(args.labels)
    options = _capture_options(args)
    if not args.resume:
        check_new_dir(args.out, args.overwrite)
    spec = ModelSpec(framework=args.framework or infer_framework(args.model), path=str(Path(args.model).resolve()),
                     trust_model=args.trust_model, arch=args.arch, num_classes=args.num_classes)
    framework, model = spec.build()
    hints = hints_of(model)
    if labels is None and hints.labels is not None:
        labels = list(hints.labels)
    normalize = args.normalize or (hints.normalize if hints.normalize is not None else "imagenet")
    if not args.quiet and (hints.size or hints.normalize or hints.labels) and not (args.normalize and args.input_size):
        print(f"xcam: input size, normalization and labels from the model's {hints.source} where not given",
              file=sys.stderr)
    job = Job(framework=framework, model=model, model_name=str(args.model), images=media or args.images,
              out=Path(args.out), frames=args.frames,
              methods=args.methods, classes=args.classes, labels=labels, layer=args.layer,
              input_size=args.input_size, normalize=normalize, overwrite=args.overwrite,
              batch_size=args.batch_size, log=None if args.quiet else sys.stderr, resume=args.resume,
              report=args.report, map_size=args.map_size, map_dtype=args.map_dtype, overlays=not args.no_overlays,
              features=not args.no_features, engine=args.engine, model_spec=spec, address=args.address,
              workers=args.workers, target=args.target, capture_options=options,
              memory_format=args.memory_format)
    return run(job)


def _some(names: list, shown: int = 3) -> str:
    """The first few names, and how many more."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(map(str, names[:shown])) + more


def _output_option(output: str | None) -> dict:
    """--output as the capture keyword: a tuple index when it is a number, else a name."""
    if output is None:
        return {}
    return {"output": int(output) if output.lstrip("-").isdigit() else output}


def _capture_options(args) -> dict:
    """--output, --layer-output, --call and --reshape as the keywords capture and probe take."""
    options = _output_option(args.output)
    if args.layer_output is not None:
        text = args.layer_output
        options["layer_output"] = int(text) if text.isdigit() else text
    if args.call is not None:
        options["call"] = args.call
    if args.reshape is not None:
        options["reshape"] = parse_reshape(args.reshape)
    return options


def parse_reshape(text: str):
    """--reshape: a layout name, or tokens:PREFIX:HxW (a ``xcam.layouts.Layout`` with that prefix and grid)."""
    if text in KINDS and text != "custom":
        return text
    parts = text.split(":")
    if len(parts) == 3 and parts[0] == "tokens" and parts[1].isdigit():
        grid = parts[2].lower().split("x")
        if grid and all(g.isdigit() and int(g) > 0 for g in grid):
            return Layout("tokens", int(parts[1]), tuple(int(g) for g in grid))
    raise XcamError(f"--reshape {text!r}: give channels_first, channels_last, tokens, or tokens:PREFIX:HxW "
                    "(e.g. tokens:1:14x14)")


def _evaluate(args) -> int:
    check_new_dir(args.out, args.overwrite)
    return evaluate.command(args, *_load(args))


def _demo(args) -> int:
    frameworks = list(FRAMEWORKS) if args.framework == "both" else \
        [args.framework or ("torch" if available("torch") else "tf")]
    return run_demo(frameworks, Path(args.out), args.methods, overwrite=args.overwrite,
                    batch_size=args.batch_size, log=None if args.quiet else sys.stderr,
                    evaluate=not args.no_evaluation)


def _view(args) -> int:
    from xcam.app.jobs import view  # Gradio loads only for this command

    if args.demo == bool(args.model):
        raise XcamError("xcam view takes --demo (the bundled model) or --model PATH, one of them")
    if args.demo:
        fw = args.framework or ("torch" if available("torch") else "tf")
        framework, model = load_framework(fw), demo_model(fw)
        name, labels, layer = "demo: EfficientNet-Lite0 (ImageNet) + cat/dog head", list(CAT_DOG_LABELS), \
            args.layer or DEMO_LAYER[fw]
        input_size, images = DEMO_INPUT_SIZE, args.images or demo_images()
    else:
        framework, model = _load(args)
        name, labels, layer, input_size = str(args.model), parse_labels(args.labels), args.layer, args.input_size
        images = args.images
    paths = expand_images(images) if images else []
    viewer = view.Viewer(framework, model, name, paths, labels=labels, layer=layer, input_size=input_size,
                         normalize=args.normalize, top_k=args.top_k, capture_options=_output_option(args.output))
    return view.serve(viewer, args.host, args.port, log=None if args.quiet else sys.stderr)


def _layers(args) -> int:
    framework, model = _load(args)
    channels, hw = framework.input_spec(model, args.input_size)
    records = framework.layer_records(model, channels, hw)
    print(format_table(records, default_layer(records).name))
    print(f"\n* = usable by a CAM (spatial output, runs once); input {channels}x{'x'.join(map(str, hw))}")
    return 0


def _filters(args) -> int:
    check_new_dir(args.out, args.overwrite)
    framework, model = _load(args)
    channels, hw = framework.input_spec(model, args.input_size)
    grid = kernel_grid(framework.adapter.kernels(model, args.layer))
    found = framework.adapter.visualize_filters(model, args.layer, args.channels, size=hw, input_channels=channels,
                                                steps=args.steps)
    tiles = [deprocess(x) for x in found]
    sep = np.full((tiles[0].shape[0], 4, 3), 255, np.uint8)
    strip = np.concatenate([t for tile in tiles for t in (tile, sep)][:-1], axis=1)
    with files.staged_dir(args.out, args.overwrite) as tmp:
        files.write_png(tmp / "kernels.png", grid)
        files.write_png(tmp / "filters.png", to_uint8_rgb(strip))
        files.write_json(tmp / "filters.json", {"layer": args.layer, "channels": args.channels,
                                                "steps": args.steps, "input_size": list(hw)})
    out = Path(args.out)
    print(f"xcam: wrote {out / 'kernels.png'} and {out / 'filters.png'}", file=sys.stderr)
    return 0


def _methods(_args) -> int:
    rows = [get_method(name) for name in method_names()]
    widths = [max(len(getattr(m, key)) for m in rows) for key in ("name", "title", "needs")]
    for m in rows:
        print(f"{m.name:<{widths[0]}}  {m.title:<{widths[1]}}  {m.kind:<7}  needs {m.needs:<{widths[2]}}  {m.paper}")
    return 0


def main(argv=None) -> int:
    """Run the command line; returns the exit code (0 done, 1 some images unreadable, 2 bad input; argparse's
    own errors, --help and --version return their code too instead of raising SystemExit)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    try:
        commands = {"explain": _explain, "evaluate": _evaluate, "demo": _demo, "layers": _layers, "methods": _methods,
                    "filters": _filters, "view": _view}
        return commands[args.command](args)
    except XcamError as exc:
        print(f"xcam: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        resume = " (run the same command with --resume to go on)" if getattr(args, "command", "") == "explain" else ""
        print(f"xcam: interrupted{resume}", file=sys.stderr)
        return 130
    except Exception as exc:  # never a bare traceback for the user; XCAM_DEBUG=1 shows it
        if os.environ.get("XCAM_DEBUG"):
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(f"xcam: error: unexpected {type(exc).__name__}: {first} (set XCAM_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return 2


