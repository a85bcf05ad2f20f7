"""Pictures for other ranks (xcam.montage) and the overlay video: exact pixels where the picture is only the map
or only the scan (alpha 1 / 0, gray colormap), sizes of the montages, and an MP4 read back with OpenCV."""

import cv2
import numpy as np
import pytest

import xcam
from xcam import XcamError
from xcam.app.outputs.files import write_video
from xcam.montage import evenly

RNG = np.random.default_rng(0)
VOL = RNG.normal(size=(4, 5, 6)).astype(np.float32)
HEAT = RNG.random((4, 5, 6)).astype(np.float32)


def gray(m):
    """What the gray colormap shows for a map in [0, 1]: the level repeated in R, G, B."""
    return np.repeat(np.clip(m * 255 + 0.5, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)


def test_evenly_spaced_indices_are_part_centres():
    np.testing.assert_array_equal(evenly(3, 9), [1, 4, 7])
    np.testing.assert_array_equal(evenly(2, 4), [1, 3])
    np.testing.assert_array_equal(evenly(5, 3), [0, 1, 2])
    with pytest.raises(XcamError, match=">= 1"):
        evenly(0, 3)


def test_volume_slices_show_the_map_and_the_scan_along_each_axis():
    only_map = xcam.volume_slices(VOL, HEAT, slices=2, alpha=1.0, colormap="gray")
    assert [i for i, _ in only_map["axial"]] == [1, 3] and [i for i, _ in only_map["sagittal"]] == [1, 4]
    np.testing.assert_array_equal(only_map["axial"][0][1], gray(HEAT[1]))
    np.testing.assert_array_equal(only_map["coronal"][1][1], gray(HEAT[:, 3]))
    np.testing.assert_array_equal(only_map["sagittal"][1][1], gray(HEAT[:, :, 4]))
    only_scan = xcam.volume_slices(VOL, HEAT, slices=2, alpha=0.0, colormap="gray")
    scaled = (VOL - VOL.min()) / (VOL.max() - VOL.min())           # min-max over the whole volume
    np.testing.assert_array_equal(only_scan["coronal"][0][1], gray(scaled[:, 1]))


def test_a_low_resolution_map_is_resized_trilinearly_to_the_volume():
    low = RNG.random((2, 3, 3)).astype(np.float32)
    tiles = xcam.volume_slices(VOL, low, slices=1, alpha=1.0, colormap="gray")
    up = xcam.resize(low[None], VOL.shape)[0]
    np.testing.assert_array_equal(tiles["axial"][0][1], gray(up[2]))


def test_volume_montage_has_a_row_per_plane():
    pic = xcam.volume_montage(VOL, HEAT, slices=3, height=20, pad=2)
    assert pic.dtype == np.uint8 and pic.shape[0] == 3 * 20 + 2 * 2 and pic.shape[2] == 3
    # the first row is 3 axial tiles 20 high: (5 x 6) -> 20 x 24 each, gaps of 2
    assert (pic[:20, 24:26] == 255).all() and not (pic[:20, :24] == 255).all()


def test_clip_frames_and_strip():
    frames = (RNG.random((4, 6, 8, 3)) * 255).astype(np.uint8)
    low = RNG.random((2, 3, 4)).astype(np.float32)
    shown = xcam.clip_frames(frames, low, alpha=1.0, colormap="gray")
    up = xcam.resize(low[None], (4, 6, 8))[0]
    np.testing.assert_array_equal(shown, np.stack([gray(f) for f in up]))
    np.testing.assert_array_equal(xcam.clip_frames(frames, low, alpha=0.0), frames)
    strip = xcam.clip_strip(frames, low, count=2, alpha=1.0, colormap="gray", pad=2)
    assert strip.shape == (6, 8 + 2 + 8, 3)
    np.testing.assert_array_equal(strip[:, :8], gray(up[1]))      # frames 1 and 3 of 4
    np.testing.assert_array_equal(strip[:, 10:], gray(up[3]))


def test_signal_plot_band_is_the_map_and_the_trace_reaches_the_top_at_the_peak():
    signal = np.sin(np.linspace(0, np.pi, 50)).astype(np.float32)   # peak in the middle
    heat = np.linspace(0, 1, 10).astype(np.float32)
    pic = xcam.signal_plot(signal, heat, width=50, height=40, band=6, colormap="gray")
    assert pic.shape == (46, 50, 3)
    band = xcam.resize(heat[None], (50,))[0]
    np.testing.assert_array_equal(pic[40:], np.repeat(gray(band[None]), 6, axis=0))
    top = np.flatnonzero(pic[0, :, 0] < 128)
    assert len(top) and abs(top.mean() - 24.5) < 2
    assert xcam.signal_plot(np.stack([signal, -signal]), heat).shape == (120 + 16, 50, 3)


def test_overlay_video_is_written_and_read_back(tmp_path):
    frames = np.zeros((5, 16, 24, 3), np.uint8)
    for t in range(5):
        frames[t, :, : 4 * (t + 1)] = 200
    try:
        write_video(tmp_path / "clip.mp4", frames, fps=5)
    except XcamError as exc:
        pytest.skip(str(exc))
    cap = cv2.VideoCapture(str(tmp_path / "clip.mp4"))
    read = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        read.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    cap.release()
    assert len(read) == 5 and read[0].shape == (16, 24, 3)
    assert np.abs(np.stack(read).astype(int) - frames).mean() < 12
    assert not list(tmp_path.glob(".*"))  # no staging file left
    with pytest.raises(XcamError, match="uint8 frames"):
        write_video(tmp_path / "bad.mp4", frames.astype(np.float32))
