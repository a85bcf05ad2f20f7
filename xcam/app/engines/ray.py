"""``xcam explain`` as a Ray Data job: the batches of a run become the rows of a dataset, ``map_batches`` sends
them to a pool of actors (``ActorPoolStrategy``), each actor builds the model once from a ``ModelSpec`` and
runs the same per-batch function as the local engine (``batch.run_batch``), writing into the batch's
staging folder; the driver moves the folders into place and appends results.jsonl in batch order. So the
outputs equal the single-process run's (bit for bit when both use the same number of PyTorch threads: one
per actor by default; otherwise maps agree to about 1e-6), and ``--resume`` works across engines. The output
directory must be on a file system every node sees (it is the same machine for a local cluster).

    from xcam.app.jobs.explain import explain_on_ray
    from xcam.app.models.modelspec import ModelSpec
    explain_on_ray(ModelSpec("torch", "resnet50.pth", arch="resnet50"), ["val/"], "out", workers=4)

Ray is optional (``pip install 'xcam[ray]'``); nothing else in xcam imports it.
"""

import json

import numpy as np

from xcam.app.engines.batch import Worker, run_batch
from xcam.errors import XcamError


def _ray():
    try:
        import ray
        import ray.data
    except ImportError:
        raise XcamError("the ray engine needs Ray Data: pip install 'xcam[ray]'") from None
    return ray


class BatchActor:
    """One Ray actor: builds the model from the spec once, then explains batches (rows: batch number and
    its items as JSON) with ``batch.run_batch``; returns each batch's result lines as JSON once the batch's
    pictures are written (drawn in ``picture_threads`` threads, as in the local engine; 0: inline)."""

    def __init__(self, spec, plan, picture_threads: int = 0):
        framework, model = spec.build()
        self.memory_format = framework.memory_format(model, plan.memory_format)  # this actor's own model
        self.memory_format.__enter__()
        self.worker = Worker(framework, model, plan, picture_threads=picture_threads)

    def __call__(self, rows: dict) -> dict:
        numbers, lines = [], []
        for batch_no, items in zip(rows["batch"], rows["items"]):
            numbers.append(int(batch_no))
            lines.append(json.dumps(run_batch(self.worker, int(batch_no), json.loads(items))))
        return {"batch": np.array(numbers, dtype=np.int64), "lines": np.array(lines, dtype=object)}


def _default_workers(ray) -> tuple[int, float]:
    """(actors, GPUs per actor): one per GPU when the cluster has GPUs, else half the CPUs."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    if gpus:
        return gpus, 1.0
    return max(1, int(resources.get("CPU", 1)) // 2), 0.0


def ray_batches(spec, plan, todo, address=None, workers=None, picture_threads: int = 0):
    """(batch_no, result lines) for every (batch_no, items) of ``todo``, explained on a Ray cluster (the
    running one, ``address``, or a new local one), yielded in batch order as they finish; each actor draws a
    batch's pictures in ``picture_threads`` threads (0: inline)."""
    ray = _ray()
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR", configure_logging=False)
    if not todo:
        return
    count, gpus = _default_workers(ray)
    if workers:
        count = int(workers)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    rows = [{"batch": b, "items": json.dumps(items)} for b, items in todo]
    ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), count * 4)))
    remote = {"num_gpus": gpus} if gpus else {"num_cpus": 1}
    ds = ds.map_batches(BatchActor, batch_size=1, compute=ray.data.ActorPoolStrategy(size=count),
                        fn_constructor_args=(spec, plan, int(picture_threads)), **remote)
    waiting, expected = {}, [b for b, _ in todo]
    position = 0
    for row in ds.iter_rows():
        waiting[int(row["batch"])] = json.loads(row["lines"])
        while position < len(expected) and expected[position] in waiting:
            batch_no = expected[position]
            yield batch_no, waiting.pop(batch_no)
            position += 1
    if position < len(expected):
        raise XcamError(f"the Ray job returned {position} of {len(expected)} batches")

