"""The state of an ``xcam explain`` output directory, so a run can stop anywhere and be resumed.

- ``run.json``: the job's settings, written before the first batch; ``--resume`` refuses other settings.
- ``<key>/``: one folder per image, staged under ``.staging/b<batch>/`` and renamed into place whole.
- ``results.jsonl``: one line per image (or unreadable image), appended per batch only after that batch's
  folders are in place. It is the record of what is done: a batch is done when all its lines are there.

On resume, lines of an unfinished batch (a torn append) are cut, the staging area is removed, and the run
goes on from the first unfinished batch; a folder renamed before its lines were appended is redone and
replaced, so the final outputs are byte for byte those of an uninterrupted run.
"""

import json
import os
import shutil
from pathlib import Path

from xcam.app.outputs import files
from xcam.errors import XcamError

RUN_FILE = "run.json"
RESULTS_FILE = "results.jsonl"
STAGING = ".staging"


def staging_dir(out, batch_no: int) -> Path:
    """The staging folder of one batch (a fresh, empty directory)."""
    path = Path(out) / STAGING / f"b{batch_no:09d}"
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def start(out, settings: dict) -> None:
    """A fresh run: create ``out`` with ``run.json`` and an empty ``results.jsonl``."""
    out = Path(out)
    out.mkdir(parents=True)
    files.write_json(out / RUN_FILE, settings)
    files.write_bytes(out / RESULTS_FILE, b"")


def _differences(old: dict, new: dict) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [f"{k}: {old.get(k)!r} then, {new.get(k)!r} now" for k in keys if old.get(k) != new.get(k)]


def resume(out, settings: dict, batch_sizes: list[int]) -> int:
    """Check that ``out`` holds a run with the same settings and tidy it; return the number of batches done
    (the first ``n`` of ``batch_sizes``, whose lines are all in results.jsonl)."""
    out = Path(out)
    run_file = out / RUN_FILE
    try:
        old = json.loads(run_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise XcamError(f"cannot resume: {str(out)!r} has no {RUN_FILE} (not an xcam explain output); "
                        "run without --resume, with --overwrite to replace it") from None
    except (OSError, ValueError) as exc:
        raise XcamError(f"cannot resume: {str(run_file)!r} is unreadable: {exc}") from None
    new = json.loads(json.dumps(settings))
    if old != new:
        diff = "; ".join(_differences(old, new))
        raise XcamError(f"cannot resume {str(out)!r}: the settings differ from the interrupted run ({diff}); "
                        "run with the same options, or without --resume and with --overwrite to start again")
    shutil.rmtree(out / STAGING, ignore_errors=True)
    done, keep = _done_prefix(out / RESULTS_FILE, batch_sizes)
    with open(out / RESULTS_FILE, "r+b") as f:
        f.truncate(keep)
    return done


def _done_prefix(path: Path, batch_sizes: list[int]) -> tuple[int, int]:
    """(batches whose lines are complete, byte length of those lines) in results.jsonl."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        path.write_bytes(b"")
        return 0, 0
    done, keep, count, pos = 0, 0, 0, 0
    while done < len(batch_sizes):
        end = data.find(b"\n", pos)
        if end < 0:
            break
        try:
            json.loads(data[pos:end])
        except ValueError:
            break
        pos, count = end + 1, count + 1
        if count == batch_sizes[done]:
            done, keep, count = done + 1, pos, 0
    return done, keep


def commit(out, batch_no: int, records: list[dict]) -> None:
    """Move a staged batch's folders into place, then append its lines to results.jsonl (one write, synced)."""
    out = Path(out)
    stage = out / STAGING / f"b{batch_no:09d}"
    if stage.is_dir():
        for folder in sorted(stage.iterdir()):
            target = out / folder.name
            if target.exists():  # left by a run stopped between this rename and its lines: redone, replaced
                shutil.rmtree(target)
            os.replace(folder, target)
        stage.rmdir()
    data = "".join(json.dumps(r, sort_keys=False) + "\n" for r in records).encode()
    with open(out / RESULTS_FILE, "ab") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def read(out):
    """The records of results.jsonl, in order (streamed: one line at a time)."""
    with open(Path(out) / RESULTS_FILE, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def finish(out) -> None:
    """Remove the (empty) staging area at the end of a run."""
    shutil.rmtree(Path(out) / STAGING, ignore_errors=True)
