"""Names kept for callers of the former clip job: videos, volumes and signals now run through the one job
engine (``jobs.explain.run``); their readers live in ``inputs`` (``clips``, ``volumes``, ``signals``, ``kinds``)."""

from xcam.app.inputs.clips import VIDEO_SUFFIXES, read_video
from xcam.app.inputs.kinds import IMAGENET, kind_of, model_input, split_inputs
from xcam.app.inputs.volumes import VOLUME_SUFFIXES, read_volume

__all__ = ["IMAGENET", "VIDEO_SUFFIXES", "VOLUME_SUFFIXES", "kind_of", "model_input", "read_video", "read_volume",
           "split_inputs"]
