#!/usr/bin/env bash
# The GPU checks in one run, on a machine with a CUDA GPU and PyTorch (the device tool's H200, say):
#   bash benchmarks/gpu_checks.sh [OUT_DIR]
# the GPU tests (tests/test_gpu.py and the gpu-marked ones), then benchmarks/throughput.py and benchmarks/bench.py
# on CUDA. Packages missing there (the demo weights, the anchors) may lie as wheels in .whl/: installed to /tmp/site.
set -uo pipefail
out=${1:-${OUT:-/tmp/xcam-gpu}}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="$PWD:/tmp/site"
else
  export PYTHONPATH="$PWD"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, torchvision, cv2, numpy; print('torch', torch.__version__, 'torchvision', torchvision.__version__,
'cv2', cv2.__version__, 'numpy', numpy.__version__, torch.cuda.get_device_name(), 'cpus', __import__('os').cpu_count())" \
  | tee -a "$out/gpu.txt"
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_torch_specific.py -m gpu 2>&1 \
  | tee "$out/tests.log"
timeout 210 python3 benchmarks/throughput.py --device cuda --frameworks torch --images 320 --rounds 3 --workers 8 2>&1 \
  | tee "$out/throughput.md"
timeout 150 python3 benchmarks/bench.py --device cuda --only gradients 2>&1 | tee "$out/bench.md"
# TF32 (PyTorch's default for cuDNN convolutions): how far it moves the demo's maps from plain float32
timeout 60 python3 - <<'PY' 2>&1 | tee "$out/tf32.txt"
import numpy as np, torch, xcam_torch
from xcam.app.inputs.images import load_image, preprocess
from xcam.app.models.zoo import DEMO_LAYER, demo_images, demo_model
model = demo_model("torch")
x = preprocess([load_image(p) for p in demo_images()], (224, 224)).transpose(0, 3, 1, 2)
cpu = xcam_torch.cam(model.cpu(), x, DEMO_LAYER["torch"], "gradcam", [0, 1])
model.cuda()
for tf32 in (True, False):
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
    gpu = xcam_torch.cam(model, x, DEMO_LAYER["torch"], "gradcam", [0, 1])
    print(f"demo gradcam maps, GPU (TF32 {'on' if tf32 else 'off'}) vs CPU: max |diff| {np.abs(gpu - cpu).max():.2e}")
PY
