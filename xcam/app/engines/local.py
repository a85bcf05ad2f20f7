"""The local engine: the batches of a run explained in this process by the per-batch function (``batch``).
Decoding and preprocessing happen in a background thread pool (OpenCV releases the GIL) while the model runs
on the previous batch; at most ``depth`` batches are decoded ahead, so memory stays flat whatever the number of
images."""

from collections import deque
from concurrent.futures import ThreadPoolExecutor

from xcam.app.engines.batch import Plan, Worker, load_one


def batches_of(items: list, batch_size: int) -> list[list]:
    """Consecutive batches of ``batch_size`` items (the last one may be shorter); fixed by the item order, so
    a resumed run explains exactly the batches an uninterrupted run would."""
    return [items[i:i + batch_size] for i in range(0, len(items), batch_size)]


def prefetched(plan: Plan, batches, workers: int = 2, depth: int = 2):
    """Yield (batch_no, [Loaded]) for (batch_no, [(index, key, path)]) pairs, in order, decoded ahead in a
    pool of ``workers`` threads with at most ``depth`` batches waiting (a bounded queue)."""
    pending: deque = deque()
    source = iter(batches)
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="xcam-decode") as pool:
        try:
            while True:
                while len(pending) < max(1, depth):
                    nxt = next(source, None)
                    if nxt is None:
                        break
                    batch_no, items = nxt
                    pending.append((batch_no, [pool.submit(load_one, plan, i, k, p) for i, k, p in items]))
                if not pending:
                    return
                batch_no, futures = pending.popleft()
                yield batch_no, [f.result() for f in futures]
        finally:  # stopped early (an error, Ctrl-C): drop what was queued, do not wait for it
            for _, futures in pending:
                for f in futures:
                    f.cancel()


def local_batches(framework, model, plan: Plan, todo, decode_workers: int = 2, picture_threads: int = 2,
                  picture_depth: int = 2):
    """(batch_no, result lines) for every (batch_no, items) of ``todo``, explained in this process in batch
    order, the next batches decoded ahead (``prefetched``) and the pictures drawn beside the model in
    ``picture_threads`` threads (0: inline). A batch is yielded once its pictures are written; at most
    ``picture_depth`` explained batches wait for theirs (so memory stays bounded). The model runs in
    ``plan.memory_format`` meanwhile and is restored at the end (or when the run stops)."""
    worker = Worker(framework, model, plan, picture_threads=picture_threads)
    drawing: deque = deque()
    with framework.memory_format(model, plan.memory_format):  # for the job's duration, then restored
        yield from _explained(worker, plan, todo, drawing, decode_workers, picture_depth)


def _explained(worker, plan, todo, drawing, decode_workers, picture_depth):
    try:
        for batch_no, loaded in prefetched(plan, todo, workers=decode_workers, depth=2):
            try:
                lines, pending = worker.submit(batch_no, loaded)
            except BaseException:  # the batches explained before this one are still done once drawn
                while drawing:
                    done_no, done_lines, done_pending = drawing.popleft()
                    for f in done_pending:
                        f.result()
                    yield done_no, done_lines
                raise
            drawing.append((batch_no, lines, pending))
            while len(drawing) > max(0, picture_depth - 1) or (drawing and all(f.done() for f in drawing[0][2])):
                done_no, done_lines, done_pending = drawing.popleft()
                for f in done_pending:
                    f.result()
                yield done_no, done_lines
        while drawing:
            done_no, done_lines, done_pending = drawing.popleft()
            for f in done_pending:
                f.result()
            yield done_no, done_lines
    finally:  # stopped early: drop the pictures not started, wait for those being written
        for _, _, pending in drawing:
            for f in pending:
                f.cancel()
        worker.close()
