"""Images of any mode and size, 1-channel models, and the other model formats (TorchScript, Keras .h5)."""

import json

import cv2
import numpy as np
import pytest

from xcam import XcamError
from xcam.app.cli import main
from xcam.app.inputs.images import load_image, parse_normalization, preprocess


def test_image_modes_become_rgb(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    np.testing.assert_array_equal(load_image(tmp_path / "gray.png"), np.repeat(gray[:, :, None], 3, axis=2))
    bgra = np.zeros((2, 2, 4), np.uint8)
    bgra[..., 0], bgra[..., 2], bgra[..., 3] = 10, 200, 7      # B=10, R=200, alpha 7
    cv2.imwrite(str(tmp_path / "rgba.png"), bgra)
    np.testing.assert_array_equal(load_image(tmp_path / "rgba.png")[0, 0], [200, 0, 10])



@pytest.mark.parametrize("spec, mean, std", [("imagenet", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
                                             ("none", (0, 0, 0), (1, 1, 1)), ("0.5,0.25", (0.5,) * 3, (0.25,) * 3)])
def test_preprocess_is_the_normalization_formula_on_every_pixel_value(spec, mean, std):
    # every uint8 value in every channel, at the model's size (no resize): the looked-up table gives exactly the
    # float32 (x / 255 - mean) / std, channel by channel
    img = np.stack([np.arange(256, dtype=np.uint8).reshape(16, 16), np.arange(256)[::-1].reshape(16, 16),
                    (np.arange(256) * 7 % 256).reshape(16, 16)], axis=2).astype(np.uint8)
    x = preprocess([img], (16, 16), spec)
    want = (img.astype(np.float32) / 255.0 - np.array(mean, np.float32)) / np.array(std, np.float32)
    assert x.shape == (1, 16, 16, 3) and x.dtype == np.float32 and x.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(x[0], want.astype(np.float32))
    assert abs(x[0, 15, 15, 0] - (1 - mean[0]) / std[0]) < 1e-6   # pixel 255 of channel 0, by hand


def test_16_bit_png_is_scaled_not_truncated(tmp_path):
    # 257 k + r (0 <= r < 257) -> k: the 16-bit value scaled by 255/65535 (floor). The low byte (astype(uint8))
    # would give (k + r) % 256 and the high byte (>> 8) k + 1 once k + r >= 256: the ramps tell all three apart
    k = np.arange(255, dtype=np.uint16)
    rows = np.stack([257 * k, 257 * k + 200, 257 * k + 256]).astype(np.uint16)   # (3, 255)
    bgr = np.stack([rows, rows[::-1], np.full_like(rows, 65535)], axis=2)          # B, G, R planes
    cv2.imwrite(str(tmp_path / "deep.png"), bgr)
    got = load_image(tmp_path / "deep.png")
    assert got.dtype == np.uint8 and got.shape == (3, 255, 3)
    np.testing.assert_array_equal(got[..., 2], np.broadcast_to(k, (3, 255)))           # R <- B plane
    np.testing.assert_array_equal(got[..., 1], np.broadcast_to(k, (3, 255))[::-1])     # G
    np.testing.assert_array_equal(got[..., 0], 255)                                    # B <- R plane
    assert (got[1, :, 2] != (rows[1] & 0xFF)).any() and (got[1, :, 2] != rows[1] >> 8).any()
    gray = (257 * k + 100).astype(np.uint16)[None]
    cv2.imwrite(str(tmp_path / "gray16.png"), gray)
    np.testing.assert_array_equal(load_image(tmp_path / "gray16.png"), np.repeat(k[None, :, None], 3, axis=2))


def test_palette_png_is_read(tmp_path):
    # a hand-written 1x1 palette PNG (colour type 3) whose only entry is (1, 2, 3)
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 3, 0, 0, 0))
           + chunk(b"PLTE", bytes([1, 2, 3])) + chunk(b"IDAT", zlib.compress(b"\x00\x00")) + chunk(b"IEND", b""))
    (tmp_path / "pal.png").write_bytes(png)
    np.testing.assert_array_equal(load_image(tmp_path / "pal.png")[0, 0], [1, 2, 3])


def test_preprocess_normalizations_and_grayscale():
    img = np.full((4, 4, 3), 255, np.uint8)
    img[..., 0] = 0
    x = preprocess([img], (2, 2), "none")
    np.testing.assert_allclose(x[0, 0, 0], [0, 1, 1])
    x = preprocess([img], (2, 2), "imagenet")
    np.testing.assert_allclose(x[0, 0, 0], [-0.485 / 0.229, (1 - .456) / .224, (1 - .406) / .225], rtol=1e-5)
    x = preprocess([img], (2, 2), "caffe")
    np.testing.assert_allclose(x[0, 0, 0], [255 - 103.939, 255 - 116.779, 0 - 123.68], rtol=1e-5)
    x = preprocess([img], (2, 2), "0.5,0.25")
    np.testing.assert_allclose(x[0, 0, 0], [-2, 2, 2])
    g = preprocess([img], (2, 2), "none", channels=1)
    assert g.shape == (1, 2, 2, 1)
    np.testing.assert_allclose(g[0, 0, 0, 0], 0.587 + 0.114, rtol=1e-5)
    with pytest.raises(XcamError, match="unknown normalization 'fancy'; valid: imagenet, none, caffe"):
        parse_normalization("fancy")


@pytest.mark.torch
def test_one_channel_model_gets_a_grayscale_image(tmp_path):
    torch = pytest.importorskip("torch")
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 2)).eval()
    torch.save(model, tmp_path / "gray_net.pt")
    rgb = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "photo.png"), rgb)
    out = tmp_path / "o"
    code = main(["explain", "--model", str(tmp_path / "gray_net.pt"), "--trust-model", "--images",
                 str(tmp_path / "photo.png"),
                 "--layer", "1", "--methods", "gradcam", "--input-size", "32", "--normalize", "none",
                 "--out", str(out), "--quiet"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    x = preprocess([load_image(tmp_path / "photo.png")], (32, 32), "none", channels=1)
    with torch.no_grad():
        probs = torch.softmax(model(torch.from_numpy(x).permute(0, 3, 1, 2)), 1)[0].numpy()
    assert list(summary["images"][0]["probabilities"].values()) == pytest.approx(probs, abs=1e-5)


@pytest.mark.torch
def test_torchscript_is_refused_with_the_reason(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated in this torch
        torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1))).save(str(tmp_path / "m.pt"))
    code = main(["layers", "--model", str(tmp_path / "m.pt")])
    err = capsys.readouterr().err
    assert code == 2 and "TorchScript model: PyTorch cannot hook layers inside a ScriptModule" in err


@pytest.mark.tf
def test_keras_h5_file(tmp_path, capsys):
    pytest.importorskip("tensorflow")
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")])
    model.save(tmp_path / "net.h5")
    code = main(["layers", "--model", str(tmp_path / "net.h5")])
    assert code == 0
    assert "conv" in capsys.readouterr().out


@pytest.mark.tf
def test_savedmodel_directory_is_refused_with_the_reason(tmp_path, capsys):
    pytest.importorskip("tensorflow")
    (tmp_path / "sm").mkdir()
    (tmp_path / "sm" / "saved_model.pb").write_bytes(b"")
    code = main(["layers", "--model", str(tmp_path / "sm")])
    err = capsys.readouterr().err
    assert code == 2 and "is a TensorFlow SavedModel: Keras 3 cannot reach the layers inside it" in err


@pytest.mark.torch
def test_unknown_arch_lists_valid_ones(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    torch.save({"w": torch.zeros(2, 3)}, tmp_path / "state.pth")
    code = main(["layers", "--model", str(tmp_path / "state.pth"), "--arch", "alexnett"])
    err = capsys.readouterr().err
    assert code == 2 and "unknown --arch 'alexnett'; torchvision classifiers include: alexnet" in err


def test_every_kind_of_image_file_is_read_right_or_refused_in_one_line(tmp_path):
    from imagefiles import check_read, make_files

    for name, (path, expected) in make_files(tmp_path).items():
        if expected is None:
            with pytest.raises(XcamError) as err:
                load_image(path)
            msg = str(err.value)
            assert msg.startswith(f"cannot read image {str(path)!r}: ") and "\n" not in msg, msg
        else:
            check_read(name, expected, load_image(path))


def test_unreadable_files_say_why(tmp_path):
    from imagefiles import make_files

    files = make_files(tmp_path)
    reasons = {"truncated.jpg": "a JPEG file OpenCV cannot decode (truncated or corrupt)",
               "empty.png": "the file is empty", "text.jpg": "not an image file OpenCV can decode",
               "a_directory.png": "Is a directory", "loop.png": "Too many levels of symbolic links",
               "missing.png": "No such file or directory"}
    for name, reason in reasons.items():
        with pytest.raises(XcamError) as err:
            load_image(files[name][0])
        assert str(err.value) == f"cannot read image {str(files[name][0])!r}: {reason}"
