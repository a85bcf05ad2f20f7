"""On a CUDA GPU (each test skips without one): the CAMs, the pixel attributions, the demo model and a whole
``xcam explain`` job give the CPU's numbers, and the model is left on the GPU exactly as it was.

TF32 is switched off for these comparisons (``exact_float32``): cuDNN and cuBLAS otherwise round convolution and
matrix inputs to 10-bit mantissas on Ampere and newer GPUs, which moves normalized maps by about 1e-3."""

import copy
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import xcam_torch  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.gpu]


@pytest.fixture(autouse=True)
def exact_float32():
    """Plain float32 convolutions and matrix products for the test, then the settings as they were."""
    kept = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = kept


def small_net():
    torch.manual_seed(0)
    from torch import nn

    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)).eval()


def state_of(model):
    """What the model must keep: ``test_leaks.torch_state`` (hooks, .grad, modes) and every tensor's device and
    values."""
    from test_leaks import torch_state

    return torch_state(model), {k: (v.device.type, v.detach().cpu().clone()) for k, v in model.state_dict().items()}


def assert_kept(model, before):
    state, tensors = state_of(model)
    assert state == before[0]
    for key, (device, value) in tensors.items():
        assert device == before[1][key][0] == "cuda"
        assert torch.equal(value, before[1][key][1]), key


@pytest.mark.parametrize("method", ["gradcam", "gradcampp", "layercam", "scorecam", "fullgrad", "shapleycam",
                                    "eigencam"])
def test_cams_on_the_gpu_equal_the_cpus(method):
    net = small_net()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    cpu = xcam_torch.cam(net, x, "2", method, [0, 2])
    gpu_net = copy.deepcopy(net).cuda()
    before = state_of(gpu_net)
    on_gpu = xcam_torch.cam(gpu_net, x.cuda(), "2", method, [0, 2])
    from_numpy = xcam_torch.cam(gpu_net, x.numpy(), "2", method, [0, 2])  # NumPy rows go to the model's device
    assert cpu.max() > 0.5
    np.testing.assert_allclose(on_gpu, cpu, atol=1e-4)
    np.testing.assert_allclose(from_numpy, on_gpu, atol=1e-6)
    assert_kept(gpu_net, before)


@pytest.mark.parametrize("method,options", [("integratedgradients", {"steps": 16}), ("occlusion", {"window": 4}),
                                            ("smoothgrad", {"seed": 0}), ("rise", {"n_masks": 64, "seed": 0}),
                                            ("gradientxinput", {})])
def test_attributions_on_the_gpu_equal_the_cpus(method, options):
    net = small_net()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    cpu = xcam_torch.attribute(net, x, method, [1, 0], options=options)
    gpu_net = copy.deepcopy(net).cuda()
    before = state_of(gpu_net)
    on_gpu = xcam_torch.attribute(gpu_net, x.cuda(), method, [1, 0], options=options)
    scale = np.abs(cpu).max()
    assert scale > 0
    np.testing.assert_allclose(on_gpu, cpu, atol=1e-4 * scale)
    assert_kept(gpu_net, before)


def test_the_demo_model_goes_to_the_gpu_and_gives_the_cpus_maps():
    from xcam.app.inputs.images import load_image, preprocess
    from xcam.app.models.zoo import DEMO_LAYER, demo_images, demo_model

    model = demo_model("torch")
    assert next(model.parameters()).is_cuda  # where loaded models go: CUDA when available
    x = preprocess([load_image(p) for p in demo_images()], (224, 224)).transpose(0, 3, 1, 2)
    on_gpu = xcam_torch.cam(model, x, DEMO_LAYER["torch"], "layercam", [0, 1])
    on_cpu = xcam_torch.cam(copy.deepcopy(model).cpu(), x, DEMO_LAYER["torch"], "layercam", [0, 1])
    np.testing.assert_allclose(on_gpu, on_cpu, atol=1e-4)


def test_an_explain_job_on_the_gpu_writes_the_cpus_maps_in_either_memory_format(tmp_path):
    import cv2

    from xcam.app.jobs.explain import Job, run
    from xcam.app.models.frameworks import load_framework

    rng = np.random.RandomState(0)
    (tmp_path / "p").mkdir()
    for i in range(5):
        cv2.imwrite(str(tmp_path / "p" / f"img{i}.png"), rng.randint(0, 256, (20 + i, 18, 3)).astype(np.uint8))
    net = small_net()

    def job(model, out, fmt):
        return Job(framework=load_framework("torch"), model=model, model_name="net", images=[str(tmp_path / "p")],
                   out=tmp_path / out, methods=["gradcam", "layercam"], classes=["0", "2"], layer="2",
                   input_size=16, batch_size=2, log=None, memory_format=fmt)

    gpu_net = copy.deepcopy(net).cuda()
    before = state_of(gpu_net)
    assert run(job(net, "cpu", "contiguous")) == 0
    assert run(job(gpu_net, "gpu", "contiguous")) == 0
    assert run(job(gpu_net, "gpu_nhwc", "channels_last")) == 0
    assert_kept(gpu_net, before)
    summaries = {name: json.loads((tmp_path / name / "summary.json").read_text())["images"]
                 for name in ("cpu", "gpu", "gpu_nhwc")}
    for i, entry in enumerate(summaries["cpu"]):
        for method in ("gradcam", "layercam"):
            for cls, record in entry["maps"][method].items():
                ref = np.load(tmp_path / "cpu" / record["map"])
                gpu = np.load(tmp_path / "gpu" / summaries["gpu"][i]["maps"][method][cls]["map"])
                nhwc = np.load(tmp_path / "gpu_nhwc" / summaries["gpu_nhwc"][i]["maps"][method][cls]["map"])
                np.testing.assert_allclose(gpu, ref, atol=1e-4)
                np.testing.assert_allclose(nhwc, gpu, atol=1e-5)
