"""Image files a user may hand to ``xcam explain``, made on the spot (no downloads), with what reading each must
give: the uint8 RGB picture, or None where it must be refused with a one-line error naming the file."""

import os
import struct
from pathlib import Path

import cv2
import numpy as np

# left half red, right half blue, top-left 4x4 block green: orientation and channel order are visible
_RGB = np.zeros((12, 16, 3), np.uint8)
_RGB[:, :8] = (255, 0, 0)
_RGB[:, 8:] = (0, 0, 255)
_RGB[:4, :4] = (0, 255, 0)


def _jpeg(rgb) -> bytes:
    return cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes()


def with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """A JPEG with an APP1 Exif segment holding only the Orientation tag (0x0112), right after SOI."""
    tiff = b"MM\x00*" + struct.pack(">I", 8) + struct.pack(">H", 1) \
        + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
    payload = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def make_files(folder: Path, huge: bool = False) -> dict:
    """name -> (path, expected RGB array or None). ``huge`` adds a 10,000 x 10,000 PNG (about 1 s to write)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}

    def put(name, data: bytes, expected):
        path = folder / name
        path.write_bytes(data)
        out[name] = (path, expected)

    bgr = cv2.cvtColor(_RGB, cv2.COLOR_RGB2BGR)
    put("plain.png", cv2.imencode(".png", bgr)[1].tobytes(), _RGB)
    jpeg = _jpeg(_RGB)
    put("photo.jpg", jpeg, cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), 1), cv2.COLOR_BGR2RGB))
    put("truncated.jpg", jpeg[: len(jpeg) // 2], None)
    # orientation 6: the camera was turned; shown upright the picture is rotated 90 degrees clockwise
    decoded = out["photo.jpg"][1]
    put("rotated_exif.jpg", with_exif_orientation(jpeg, 6), np.ascontiguousarray(np.rot90(decoded, k=-1)))
    deep = (_RGB.astype(np.uint16) * 257 + np.where(_RGB < 255, 100, 0))[:, :, ::-1].astype(np.uint16)  # 257k+r
    put("deep16.png", cv2.imencode(".png", deep)[1].tobytes(), _RGB)
    put("one_pixel.png", cv2.imencode(".png", bgr[:1, :1])[1].tobytes(), _RGB[:1, :1])
    put("gray.png", cv2.imencode(".png", _RGB[:, :, 0])[1].tobytes(), np.repeat(_RGB[:, :, :1], 3, axis=2))
    put("palette.png", _palette_png(), np.array([[[1, 2, 3], [200, 100, 50]]], np.uint8))
    try:
        from PIL import Image

        path = folder / "cmyk.jpg"
        Image.fromarray(_RGB).convert("CMYK").save(path, quality=100)
        out["cmyk.jpg"] = (path, "cmyk")  # decoded colours are close to _RGB, compared with a tolerance
    except ImportError:
        pass
    put("empty.png", b"", None)
    put("text.jpg", b"this is not an image", None)
    (folder / "a_directory.png").mkdir(exist_ok=True)
    out["a_directory.png"] = (folder / "a_directory.png", None)
    loop = folder / "loop.png"
    if not loop.is_symlink():
        os.symlink(loop, loop)
    out["loop.png"] = (loop, None)
    out["missing.png"] = (folder / "missing.png", None)
    if huge:
        big = np.zeros((10_000, 10_000, 3), np.uint8)
        big[:, 5000:] = (255, 0, 0)  # BGR: the right half blue
        path = folder / "huge.png"
        cv2.imwrite(str(path), big, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        out["huge.png"] = (path, "huge")
    return out


def _palette_png() -> bytes:
    """A hand-written 2x1 palette PNG (colour type 3) with entries (1, 2, 3) and (200, 100, 50)."""
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 1, 8, 3, 0, 0, 0))
            + chunk(b"PLTE", bytes([1, 2, 3, 200, 100, 50])) + chunk(b"IDAT", zlib.compress(b"\x00\x00\x01"))
            + chunk(b"IEND", b""))


def check_read(name: str, expected, got: np.ndarray) -> None:
    """Assert that ``got`` is what reading file ``name`` must give."""
    assert got.dtype == np.uint8 and got.ndim == 3 and got.shape[2] == 3, (name, got.shape)
    if isinstance(expected, np.ndarray):
        np.testing.assert_array_equal(got, expected, err_msg=name)
    elif expected == "cmyk":
        assert np.abs(got.astype(int) - _RGB).max() <= 8, name
    elif expected == "huge":
        assert got.shape == (10_000, 10_000, 3)
        np.testing.assert_array_equal(got[0, [0, 9999]], [[0, 0, 0], [0, 0, 255]])
