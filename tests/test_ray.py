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



def test_a_volume_run_stopped_locally_is_finished_on_ray_to_the_same_files(cluster, tmp_path):
    """The same engine for every input kind: a folder of volumes stopped after one batch on this process and
    resumed on Ray (one actor) ends with the uninterrupted local run's bytes."""
    torch = pytest.importorskip("torch")
    from torch import nn

    rng = np.random.default_rng(0)
    (tmp_path / "vols").mkdir()
    for k in range(4):
        np.save(tmp_path / "vols" / f"v{k}.npy", rng.normal(size=(4, 6, 6)).astype(np.float32))
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv3d(1, 3, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(),
                        nn.Linear(3, 2)).eval()
    torch.save(net, tmp_path / "net.pth")
    spec = ModelSpec("torch", str(tmp_path / "net.pth"), trust_model=True)

    def vol_job(out, **kw):
        framework, model = spec.build()
        return Job(framework=framework, model=model, model_name="net.pth", images=[str(tmp_path / "vols")],
                   out=out, methods=["gradcam"], batch_size=2, log=None, model_spec=spec, **kw)

    assert run(vol_job(tmp_path / "local")) == 0
    local = tree(tmp_path / "local")
    assert "v3/gradcam_montage.png" in local and json.loads(local["run.json"])["kind"] == "media"
    real = results.commit

    def stop_at_batch_1(out, batch_no, records):
        if batch_no == 1:
            raise KeyboardInterrupt
        real(out, batch_no, records)

    import unittest.mock

    with unittest.mock.patch.object(results, "commit", stop_at_batch_1), pytest.raises(KeyboardInterrupt):
        run(vol_job(tmp_path / "mixed"))
    assert run(vol_job(tmp_path / "mixed", engine="ray", workers=1, resume=True)) == 0
    assert tree(tmp_path / "mixed") == local
