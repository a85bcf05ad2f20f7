"""``xcam evaluate``: which map can be trusted, measured. Every method's maps and the baselines (random, centre,
Sobel) go through the chosen metrics (``xcam.metrics``, run by ``metric_runs``); the output directory gets
``metrics.json`` (every per-image value, curve and forward count), ``metrics.csv``, ``plots/*.png`` (score curves
per method, a bar chart per metric with error bars over images) and ``report.html``; the table goes to stdout."""

import csv
import html
import io
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from xcam.app.inputs.images import load_image, parse_normalization, preprocess
from xcam.app.jobs.explain import choose_layer, class_indices, parse_labels, say
from xcam.app.jobs.metric_runs import BASELINES, GROUPS, SPECS, Settings, check_methods, merge, parse_metrics, run_batch
from xcam.app.jobs.sanity import randomization_summary
from xcam.app.outputs import files
from xcam.app.outputs.plots import bar_chart, colours, curve_plot
from xcam.app.outputs.report import png_data_uri
from xcam.errors import XcamError
from xcam.metrics import boxes_to_masks


@dataclass
class EvalJob:
    """One ``xcam evaluate`` run: model, images, methods, metrics, optional ground truth, where the outputs go."""

    framework: object
    model: object
    model_name: str
    images: list
    out: Path
    methods: list = field(default_factory=lambda: ["gradcam", "layercam"])
    metrics: list = field(default_factory=lambda: ["deletion", "insertion", "confidence"])
    layer: str | None = None
    target: str = "top1"          # 'top1' (each image's predicted class), or one class index / label for all
    labels: list | None = None
    input_size: int | None = None
    normalize: str = "imagenet"
    masks: list | None = None      # one mask image per image (non-zero = object)
    boxes: str | None = None       # a JSON file of boxes (x0, y0, x1, y1) in each image's own pixels
    baselines: bool = True
    settings: Settings = field(default_factory=Settings)
    overwrite: bool = False
    batch_size: int = 8
    log: object = sys.stderr
    table: bool = True             # print the table on stdout
    shown_out: Path | None = None
    capture_options: dict = field(default_factory=dict)  # as explain.Job's: extra keywords for the capture (none yet)


def read_masks(paths, size) -> list[np.ndarray]:
    """Mask images -> bool (H, W) at the input size (nearest neighbour; a pixel brighter than 127 is object)."""
    out = []
    for path in paths:
        gray = load_image(path).mean(axis=2)
        out.append(cv2.resize(gray, (size[1], size[0]), interpolation=cv2.INTER_NEAREST) > 127)
    return out


def read_boxes(path, images: list[tuple[str, np.ndarray]], size) -> list[np.ndarray]:
    """A JSON file of boxes -> bool (H, W) masks at the input size. The file holds a list (one entry per image, in
    order) or an object keyed by image file name or stem; an entry is a box [x0, y0, x1, y1] or a list of them, in
    the image's own pixels (x1, y1 exclusive), scaled to the input size."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise XcamError(f"cannot read boxes file {str(path)!r}: {exc}") from None
    entries = []
    for i, (name, img) in enumerate(images):
        if isinstance(data, list):
            if len(data) != len(images):
                raise XcamError(f"the boxes file lists {len(data)} entries but {len(images)} images were read")
            entry = data[i]
        elif isinstance(data, dict):
            key = next((k for k in (Path(name).name, Path(name).stem, name) if k in data), None)
            if key is None:
                raise XcamError(f"the boxes file has no entry for {Path(name).name!r} (keys: file name or stem)")
            entry = data[key]
        else:
            raise XcamError("the boxes file must hold a list (one entry per image) or an object keyed by image name")
        arr = np.asarray(entry, dtype=np.float64)
        arr = arr[None] if arr.ndim == 1 else arr
        if arr.ndim != 2 or arr.shape[1] != 4:
            raise XcamError(f"boxes of {Path(name).name!r} must be [x0, y0, x1, y1] or a list of them, got {entry!r}")
        h, w = img.shape[:2]
        entries.append(arr * np.array([size[1] / w, size[0] / h, size[1] / w, size[0] / h]))
    return list(boxes_to_masks([list(e) for e in entries], (len(entries), *size)))


def _finite(v):
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else v


def _clean(obj):
    """JSON-safe: NaN and infinities become null."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, np.floating | float):
        return _finite(float(obj))
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def run_evaluation(job: EvalJob) -> int:
    """Evaluate; returns the exit code (0 all done, 1 some images could not be read)."""
    files.check_new_dir(Path(job.out), job.overwrite)
    summary = evaluate_images(job)
    write_evaluation(job, summary)
    return 1 if summary["errors"] else 0


def evaluate_images(job: EvalJob) -> dict:
    """Every metric of every method and baseline on the job's images, nothing written: the summary that
    ``metrics.json`` holds (with ``errors``, the images that could not be read). ``write_evaluation`` writes it;
    ``xcam demo`` also shows it on its report (``render_section``)."""
    methods = check_methods(job.methods)
    metrics = parse_metrics(job.metrics)
    norm = parse_normalization(job.normalize)
    if not job.images:
        raise XcamError("no images given")
    if job.masks is not None and job.boxes is not None:
        raise XcamError("give either --masks or --boxes, not both")
    if job.masks is not None and len(job.masks) != len(job.images):
        raise XcamError(f"{len(job.masks)} masks given for {len(job.images)} images; give one mask per image")
    needs_truth = [m for m in metrics if SPECS[m].needs == "masks"]
    if needs_truth and job.masks is None and job.boxes is None:
        raise XcamError(f"{needs_truth[0]} needs ground truth: give --masks (one image per image) or --boxes (a "
                        "JSON file)")
    names = methods + (list(BASELINES) if job.baselines else [])
    channels, hw, layer = choose_layer(job)

    errors, loaded, mask_paths = [], [], []
    for i, path in enumerate(job.images):
        try:
            loaded.append((str(path), load_image(path)))
            if job.masks is not None:
                mask_paths.append(job.masks[i])
        except XcamError as exc:
            errors.append(str(exc))
            say(job, f"error: {exc}")
    if not loaded:
        raise XcamError("none of the images could be read: " + "; ".join(errors))
    truth = None
    if job.masks is not None:
        truth = read_masks(mask_paths, hw)
    elif job.boxes is not None:
        truth = read_boxes(job.boxes, loaded, hw)

    labels, fixed, parts, entries = job.labels, None, [], []
    for start in range(0, len(loaded), job.batch_size):
        chunk = loaded[start:start + job.batch_size]
        batch = preprocess([img for _, img in chunk], hw, norm, channels)
        logits = job.framework.probe(job.model, batch, layer).predict(
            np.ascontiguousarray(np.moveaxis(batch, -1, 1)))
        k = logits.shape[1]
        if start == 0:
            if labels is not None and len(labels) != k:
                raise XcamError(f"{len(labels)} labels given but the model has {k} classes")
            labels = labels or [str(i) for i in range(k)]
            if str(job.target) != "top1":
                picked = class_indices([str(job.target)], labels, k)
                if len(picked) != 1 or not 0 <= picked[0] < k:
                    raise XcamError(f"--target must be 'top1' or one class (index 0..{k - 1} or a label), "
                                    f"got {job.target!r}")
                fixed = picked[0]
        targets = logits.argmax(axis=1) if fixed is None else np.full(len(chunk), fixed)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        masks = None if truth is None else np.stack(truth[start:start + len(chunk)])
        _, results = run_batch(job.framework, job.model, batch, layer, names, metrics, targets, masks=masks,
                               settings=job.settings, scores=logits)
        parts.append(results)
        for i, (path, _) in enumerate(chunk):
            t = int(targets[i])
            entries.append({"image": path, "target": t, "label": labels[t], "probability": float(probs[i, t])})
        say(job, f"evaluated {len(entries)}/{len(loaded)} images")
    summary = summarize(job, layer, hw, names, metrics, entries, merge(parts))
    summary["errors"] = errors
    return summary


def write_evaluation(job: EvalJob, summary: dict) -> dict:
    """metrics.json, metrics.csv, plots/*.png and report.html into ``job.out`` (staged, then moved into place);
    the table on stdout when ``job.table``. Returns {plot file: RGB picture}."""
    out = Path(job.out)
    table = format_table(summary)
    with files.staged_dir(out, job.overwrite) as tmp:
        plots = write_outputs(tmp, summary)
        files.write_text(tmp / "report.html", render_html(summary, plots, table))
    if job.table:
        print(table)
    say(job, f"wrote {(job.shown_out or out) / 'report.html'} ({len(summary['images'])} images, "
             f"{len(summary['errors'])} unreadable)")
    return plots


def summarize(job, layer, hw, names, metrics, entries, results) -> dict:
    """The JSON summary: settings, per-image targets, and per metric and method the mean, std, per-image values,
    forwards per image and the mean curve; the randomization cascade per layer."""
    s = job.settings
    out = {"model": job.model_name, "framework": job.framework.name, "layer": layer, "input_size": list(hw),
           "normalize": job.normalize, "methods": [n for n in names if n not in BASELINES],
           "baselines": [n for n in names if n in BASELINES], "images": entries,
           "settings": {"step": s.step, "road_percentiles": list(s.road_percentiles),
                        "sensitivity_samples": s.sensitivity_samples, "sensitivity_radius": s.sensitivity_radius,
                        "cascade_top": s.cascade_top, "tolerance": s.tolerance, "seed": s.seed}, "metrics": {}}
    n = len(entries)
    for name in metrics:
        spec = SPECS[name]
        per = {}
        for m in names:
            r = results[name][m]
            row = {"mean": r.mean, "std": r.std, "per_image": r.per_image.tolist(), "forwards": int(r.forwards),
                   "forwards_per_image": r.forwards / n}
            if r.curves is not None:
                row["curve"] = {"x": np.asarray(r.x, float).tolist(), "mean": _column_means(r.curves)}
            per[m] = row
        out["metrics"][name] = {"title": spec.title, "better": spec.better, "methods": per}
    if "cascade" in results:
        out["randomization"] = {m: randomization_summary(c) for m, c in results["cascade"].items()}
    return _clean(out)


def _column_means(curves: np.ndarray) -> list:
    """NaN-aware mean of each column (NaN where a column has no finite value)."""
    ok = np.isfinite(curves)
    total = np.where(ok, curves, 0.0).sum(axis=0)
    count = ok.sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan).tolist()


def format_table(summary: dict) -> str:
    """The terminal table: a row per method and baseline, a column per metric, mean +- std over images."""
    metrics = list(summary["metrics"])
    names = summary["methods"] + summary["baselines"]
    head = ["method"] + [f"{m} ({'v' if summary['metrics'][m]['better'] == 'lower' else '^'})" for m in metrics]
    rows = []
    for name in names:
        cells = [name + (" *" if name in summary["baselines"] else "")]
        for m in metrics:
            v = summary["metrics"][m]["methods"][name]
            cells.append("n/a" if v["mean"] is None else f"{v['mean']:.4g} +- {v['std']:.2g}")
        rows.append(cells)
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(f"({len(summary['images'])} images; mean +- std over images; v lower is better, ^ higher; "
                 "* baseline)")
    return "\n".join(lines)


def write_outputs(tmp: Path, summary: dict) -> dict:
    """metrics.json, metrics.csv and plots/*.png; returns {plot file: RGB picture} for the report."""
    files.write_json(tmp / "metrics.json", summary)
    buf = io.StringIO()
    writer = csv.writer(buf)
    keys = [Path(e["image"]).name for e in summary["images"]]
    writer.writerow(["metric", "method", "mean", "std", "forwards_per_image", *keys])
    names = summary["methods"] + summary["baselines"]
    for metric, block in summary["metrics"].items():
        for m in names:
            v = block["methods"][m]
            writer.writerow([metric, m, v["mean"], v["std"], v["forwards_per_image"], *v["per_image"]])
    files.write_text(tmp / "metrics.csv", buf.getvalue())
    (tmp / "plots").mkdir()
    plots = draw_plots(summary)
    for rel, pic in plots.items():
        files.write_png(tmp / rel, pic)
    return plots


def draw_plots(summary: dict) -> dict:
    """{plot file: RGB picture}: a bar chart per metric (mean +- std over images) and, for the metrics with a
    curve (deletion, insertion, ROAD, the cascade), the mean curve of every method and baseline."""
    names = summary["methods"] + summary["baselines"]
    pal = colours(names, summary["baselines"])
    plots = {}
    for metric, block in summary["metrics"].items():
        spec = SPECS[metric]
        rows = [block["methods"][m] for m in names]
        plots[f"plots/{metric}.png"] = bar_chart(
            f"{block['title']} ({block['better']} is better)", names,
            [np.nan if r["mean"] is None else r["mean"] for r in rows],
            [0.0 if r["std"] is None else r["std"] for r in rows], [pal[m] for m in names],
            note=f"mean over {len(summary['images'])} images, error bars +-1 std")
        if spec.curve:
            xlabel = "layers randomized, from the top" if metric.startswith("mprt") else "fraction of pixels"
            series = [(m, r["curve"]["x"], [np.nan if v is None else v for v in r["curve"]["mean"]], pal[m])
                      for m, r in zip(names, rows)]
            plots[f"plots/{metric}_curves.png"] = curve_plot(f"{block['title']}: mean curve", series,
                                                             xlabel=xlabel, ylabel="score")
    return plots


def render_html(summary: dict, plots: dict, table: str) -> str:
    """One self-contained page: the table, the curves, the bar charts and the randomization cascade."""
    esc = html.escape
    errors = "".join(f"<li class='err'>{esc(e)}</li>" for e in summary.get("errors", []))
    meta = (f"model: {esc(summary['model'])} ({esc(summary['framework'])}) &middot; layer <b>{esc(summary['layer'])}"
            f"</b> &middot; input {summary['input_size'][0]}x{summary['input_size'][1]} &middot; "
            f"{len(summary['images'])} images")
    style = ("body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;"
             "margin-bottom:1em}th,td{border:1px solid #ccc;padding:5px 8px;text-align:right}th{background:#f3f3f3}"
             "figure{display:inline-block;margin:6px}.meta{color:#555}.err{color:#b00}pre{background:#f7f7f7;"
             "padding:8px}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>xcam evaluation</title><style>{style}</style>"
            f"</head><body><h1>xcam evaluation</h1><p class='meta'>{meta}</p>"
            f"{'<ul>' + errors + '</ul>' if errors else ''}{render_section(summary, plots, table)}</body></html>\n")


def render_section(summary: dict, plots: dict, table: str, level: int = 2) -> str:
    """The evaluation as a block of HTML for a page (``xcam evaluate``'s report, ``xcam demo``'s): the table
    (``table.xcam-metrics``; each cell also holds its mean and std exactly as metrics.json has them, in
    ``data-mean`` / ``data-std``, with ``data-metric`` and ``data-method``), the terminal table, the plots
    (inline PNGs), the randomization cascade and the images' targets; its headings are ``<h{level}>``."""
    esc = html.escape
    h = f"h{level}"
    names = summary["methods"] + summary["baselines"]
    head = "".join(f"<th>{esc(b['title'])}<br><small>{esc(b['better'])} is better</small></th>"
                   for b in summary["metrics"].values())
    rows = []
    for m in names:
        cells = []
        for metric, block in summary["metrics"].items():
            means = [block["methods"][x]["mean"] for x in names if block["methods"][x]["mean"] is not None]
            v = block["methods"][m]
            where = f"data-metric='{esc(metric)}' data-method='{esc(m)}'"
            if v["mean"] is None:
                cells.append(f"<td {where}>n/a</td>")
                continue
            best = max(means) if block["better"] == "higher" else min(means)
            text = f"{v['mean']:.4g} &plusmn; {v['std']:.2g}"
            cells.append(f"<td {where} data-mean='{v['mean']!r}' data-std='{v['std']!r}'>"
                         f"{'<b>' + text + '</b>' if v['mean'] == best else text}</td>")
        kind = " <small>(baseline)</small>" if m in summary["baselines"] else ""
        rows.append(f"<tr><th>{esc(m)}{kind}</th>{''.join(cells)}</tr>")
    pics = "".join(f"<figure><img src='{png_data_uri(pic, 800)}'><figcaption>{esc(rel)}</figcaption></figure>"
                   for rel, pic in plots.items())
    cascade = ""
    for m, block in summary.get("randomization", {}).items():
        lines = "".join(f"<tr><td>{r['step']}</td><td>{esc(r['layer'])}</td><td>{_num(r['spearman_mean'])}</td>"
                        f"<td>{_num(r['ssim_mean'])}</td></tr>" for r in block["rows"])
        cascade += (f"<h{level + 1}>{esc(m)}</h{level + 1}><table><tr><th>step</th><th>layer randomized</th>"
                    f"<th>Spearman</th><th>SSIM</th></tr>{lines}</table>")
    if cascade:
        cascade = f"<{h}>Cascading randomization (Adebayo et al., 2018), per layer</{h}>" + cascade
    imgs = "".join(f"<li>{esc(Path(e['image']).name)}: class {esc(e['label'])} (p = {e['probability']:.3f})</li>"
                   for e in summary["images"])
    return (f"<table class='xcam-metrics'><tr><th>method</th>{head}</tr>{''.join(rows)}</table>"
            f"<details><summary>terminal table</summary><pre>{esc(table)}</pre></details>"
            f"<{h}>Plots</{h}>{pics}{cascade}<{h}>Images and targets</{h}><ul>{imgs}</ul>")


def _num(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def add_subparser(sub, model_args, output_args) -> None:
    """``xcam evaluate``'s arguments, on the CLI's subparsers (``model_args`` / ``output_args``: the shared ones)."""
    e = sub.add_parser("evaluate", help="measure how faithful each method's maps are: deletion, insertion, ...")
    model_args(e)
    e.add_argument("--images", nargs="+", required=True, help="image files (any size or mode)")
    e.add_argument("--layer", help="layer name (default: the last layer with a spatial output)")
    e.add_argument("--methods", nargs="+", default=["gradcam", "layercam"], metavar="METHOD",
                   help="methods to evaluate (default: gradcam layercam); the baselines random, centre, sobel "
                        "are added unless --no-baselines")
    e.add_argument("--metrics", nargs="+", default=["deletion", "insertion", "confidence"], metavar="METRIC",
                   help=f"any of: {', '.join(SPECS)}; groups: {', '.join(GROUPS)} "
                        "(default: deletion insertion confidence)")
    e.add_argument("--masks", nargs="+", help="ground-truth mask images, one per image (non-zero = object)")
    e.add_argument("--boxes", help="ground-truth boxes: a JSON list (one entry per image) or object keyed by image "
                                   "name; a box is [x0, y0, x1, y1] in the image's pixels")
    e.add_argument("--target", default="top1", help="class to explain: 'top1' (default, each image's predicted "
                                                     "class), an index, or a label name")
    e.add_argument("--labels", help="class names, 'cat,dog' or a file with one name a line")
    e.add_argument("--normalize", default="imagenet", help="input normalization: imagenet, none, caffe, MEAN,STD")
    e.add_argument("--step", type=float, default=0.05, help="deletion/insertion step, a fraction of the pixels")
    e.add_argument("--cascade-top", type=int, help="randomize only the top N layers (default: every layer)")
    e.add_argument("--tolerance", type=float, default=15, help="pointing game tolerance in input pixels (15)")
    e.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    e.add_argument("--no-baselines", action="store_true", help="leave out the random, centre and sobel baselines")
    output_args(e, "xcam-eval")


def command(args, framework, model) -> int:
    """Run ``xcam evaluate`` from parsed arguments and a loaded model."""
    settings = Settings(step=args.step, cascade_top=args.cascade_top, tolerance=args.tolerance, seed=args.seed)
    job = EvalJob(framework=framework, model=model, model_name=str(args.model), images=args.images,
                  out=Path(args.out), methods=args.methods, metrics=args.metrics, layer=args.layer,
                  target=args.target, labels=parse_labels(args.labels), input_size=args.input_size,
                  normalize=args.normalize, masks=args.masks, boxes=args.boxes, baselines=not args.no_baselines,
                  settings=settings, overwrite=args.overwrite, batch_size=args.batch_size,
                  log=None if args.quiet else sys.stderr)
    return run_evaluation(job)
