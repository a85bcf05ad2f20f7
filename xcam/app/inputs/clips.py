"""Reading videos with OpenCV: ``frames`` frames sampled evenly over the clip, resized, uint8 RGB. Two passes
over the file (count the frames without decoding them, then decode only the ones picked), so memory holds the
picked frames only, whatever the length of the video."""

import cv2
import numpy as np

from xcam.errors import XcamError
from xcam.montage import evenly

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


def _open(path) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise XcamError(f"cannot read video {str(path)!r} (OpenCV could not open it)")
    return cap


def _count(path) -> int:
    cap = _open(path)
    try:
        count = 0
        while cap.grab():
            count += 1
        return count
    finally:
        cap.release()


def read_video(path, frames: int, size: tuple[int, int]) -> np.ndarray:
    """``frames`` frames sampled evenly over the video (the centres of equal parts), resized to ``size`` (H, W),
    uint8 RGB (T, H, W, 3); an unreadable or too short video is a one-line error."""
    total = _count(path)
    if total < frames:
        raise XcamError(f"video {str(path)!r} has {total} frames; --frames {frames} needs at least that many")
    wanted = evenly(frames, total)
    picked, position = [], 0
    cap = _open(path)
    try:
        for index in wanted:
            while position <= index:
                if not cap.grab():
                    raise XcamError(f"cannot read video {str(path)!r}: frame {position} of {total} is missing")
                position += 1
            ok, frame = cap.retrieve()
            if not ok:
                raise XcamError(f"cannot read video {str(path)!r}: frame {index} cannot be decoded")
            picked.append(cv2.cvtColor(cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_AREA),
                                       cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    return np.stack(picked)
