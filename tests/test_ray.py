"""The same explain job as a Ray Data job on a local cluster (ray.init(num_cpus=2)): every output file is
byte for byte the single-process run's, and a run stopped in one engine resumes in the other (through the
documented ``explain_on_ray``)."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from xcam.app.jobs.explain import Job, explain_on_ray, run
from xcam.app.models.modelspec import ModelSpec
from xcam.app.outputs import results

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def cluster():
    """A local cluster; the driver's PyTorch pinned to one thread, as Ray runs each one-CPU actor, because float
    sums in a convolution depend on how many threads split them (a feature grid's uint8 pixel can then differ)."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    folder = tmp_path_factory.mktemp("ray")
    torch.manual_seed(0)
    torch.save(torchvision.models.squeezenet1_1(num_classes=2).state_dict(), folder / "sq.pth")
    rng = np.random.RandomState(0)
    (folder / "imgs").mkdir()
    for i in range(10):
        cv2.imwrite(str(folder / "imgs" / f"p{i:02d}.jpg"), rng.randint(0, 256, (40 + i, 50, 3)).astype(np.uint8))
    (folder / "imgs" / "p03b.jpg").write_bytes(b"broken")
    spec = ModelSpec("torch", str(folder / "sq.pth"), arch="squeezenet1_1", num_classes=2)
    return folder, spec


def job(spec, folder, out, **kwargs):
    framework, model = spec.build()
    return Job(framework=framework, model=model, model_name="sq.pth", images=[str(folder / "imgs")], out=out,
               methods=["gradcam", "layercam"], classes=["all"], labels=["cat", "dog"], layer="features.12",
               input_size=64, batch_size=3, log=None, model_spec=spec, **kwargs)


def tree(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_ray_job_equals_the_single_process_run(cluster, setup, monkeypatch):
    folder, spec = setup
    assert run(job(spec, folder, folder / "local")) == 1  # one unreadable image
    assert run(job(spec, folder, folder / "ray", engine="ray", workers=2)) == 1
    local = tree(folder / "local")
    assert tree(folder / "ray") == local
    lines = [json.loads(x) for x in local["results.jsonl"].decode().splitlines()]
    assert len(lines) == 11 and sum("error" in r for r in lines) == 1
    assert np.load(folder / "local" / lines[0]["maps"]["layercam"]["dog"]["map"]).max() == 1.0

    # stopped after two batches on one process, finished on Ray: still the same files
    real = results.commit

    def stop_at_batch_2(out, batch_no, records):
        if batch_no == 2:
            raise KeyboardInterrupt
        real(out, batch_no, records)

    monkeypatch.setattr(results, "commit", stop_at_batch_2)
    with pytest.raises(KeyboardInterrupt):
        run(job(spec, folder, folder / "mixed"))
    monkeypatch.undo()
    # resumed through the documented Python function
    code = explain_on_ray(spec, [str(folder / "imgs")], folder / "mixed", workers=2, resume=True,
                          model_name="sq.pth", methods=["gradcam", "layercam"], classes=["all"],
                          labels=["cat", "dog"], layer="features.12", input_size=64, batch_size=3, log=None)
    assert code == 1 and tree(folder / "mixed") == local
