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


def local_batches(framework, model, plan: Plan, todo, decode_workers: int = 2):
    """(batch_no, result lines) for every (batch_no, items) of ``todo``, explained in this process in batch
    order, the next batches decoded ahead (``prefetched``)."""
    worker = Worker(framework, model, plan)
    for batch_no, loaded in prefetched(plan, todo, workers=decode_workers, depth=2):
        yield batch_no, worker(batch_no, loaded)
