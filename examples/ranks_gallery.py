"""Pictures for the README's "Signals, volumes, video, transformers and several inputs" section: a synthetic
clip (a bright square crossing the frame) through torchvision r3d_18, a synthetic volume (a bright ball) through
a small 3-D U-Net with the Segmentation target, and a synthetic 12-lead signal through a 1-D classifier. The
weights are random (nothing downloaded), so the maps show where these untrained networks respond, not a trained
model's evidence; the pictures show what xcam draws for each input kind.

    python examples/ranks_gallery.py [OUT_DIR]      # default: examples/gallery_ranks
"""

import sys
from pathlib import Path

import cv2
import numpy as np
import torch
import torchvision
from torch import nn

import xcam
import xcam_torch
from xcam.targets import Segmentation


def save(path: Path, rgb: np.ndarray) -> None:
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])


def clip_picture(out: Path) -> None:
    frames = np.full((16, 112, 112, 3), 40, np.uint8)
    for t in range(16):
        frames[t, 40:70, 5 + 6 * t:35 + 6 * t] = (230, 200, 60)
    torch.manual_seed(0)
    model = torchvision.models.video.r3d_18(weights=None, num_classes=4).eval()
    x = ((frames.astype(np.float32) / 255 - 0.45) / 0.225).transpose(3, 0, 1, 2)[None]
    heat = xcam_torch.cam(model, x, "layer3", "gradcam", targets=0)[0]          # (16, 112, 112)
    save(out / "clip_strip.jpg", xcam.clip_strip(frames, heat, count=6))


class UNet3d(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc1 = nn.Sequential(nn.Conv3d(1, 8, 3, padding=1), nn.ReLU())
        self.enc2 = nn.Sequential(nn.MaxPool3d(2), nn.Conv3d(8, 16, 3, padding=1), nn.ReLU())
        self.up = nn.Upsample(scale_factor=2)
        self.head = nn.Conv3d(24, 2, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        return self.head(torch.cat([self.up(self.enc2(e1)), e1], 1))


def volume_picture(out: Path) -> None:
    d = np.stack(np.meshgrid(*[np.arange(32)] * 3, indexing="ij"))
    vol = (np.sqrt(((d - np.array([12, 18, 16])[:, None, None, None]) ** 2).sum(0)) < 7).astype(np.float32)
    vol += 0.2 * np.random.default_rng(0).normal(size=vol.shape).astype(np.float32)
    torch.manual_seed(0)
    model = UNet3d().eval()
    heat = xcam_torch.cam(model, vol[None, None], "enc2", "gradcam", targets=Segmentation(1))[0]
    save(out / "volume_montage.jpg", xcam.volume_montage(vol, heat, slices=5, height=96))


def signal_picture(out: Path) -> None:
    t = np.linspace(0, 4, 500, dtype=np.float32)
    beats = sum(np.exp(-((t - c) ** 2) / 0.002) for c in (0.5, 1.3, 2.1, 2.9, 3.7))
    ecg = np.stack([beats * (1 + 0.1 * k) + 0.05 * np.sin(7 * t + k) for k in range(12)]).astype(np.float32)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(12, 16, 9, padding=4), nn.ReLU(), nn.Conv1d(16, 16, 9, padding=4), nn.ReLU(),
                          nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(16, 3)).eval()
    heat = xcam_torch.cam(model, ecg[None], "3", "gradcam", targets=0)[0]         # (500,)
    save(out / "signal_plot.jpg", xcam.signal_plot(ecg[:3], heat, width=600, height=150, band=20))


def main():
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "gallery_ranks"
    out.mkdir(parents=True, exist_ok=True)
    clip_picture(out)
    volume_picture(out)
    signal_picture(out)
    print(f"wrote {', '.join(sorted(p.name for p in out.glob('*.jpg')))} to {out}")


if __name__ == "__main__":
    main()
