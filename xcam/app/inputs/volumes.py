"""Reading volumes: .npy (D, H, W) or (C, D, H, W), or NIfTI .nii / .nii.gz through nibabel
(``pip install 'xcam[medical]'``), turned to axial slices first."""

import numpy as np

from xcam.errors import XcamError

VOLUME_SUFFIXES = (".npy", ".nii", ".nii.gz")


def read_volume(path) -> np.ndarray:
    """A volume as float32 (D, H, W) or (C, D, H, W): .npy as stored; NIfTI through nibabel, turned to the
    closest canonical (RAS+) orientation by its affine, then (x, y, z[, c]) as ([c,] z, y, x): axial slices first,
    whatever the scanner's voxel order."""
    name = str(path).lower()
    try:
        if name.endswith(".npy"):
            vol = np.load(path, allow_pickle=False)
        else:
            try:
                import nibabel
            except ImportError:
                raise XcamError("reading NIfTI needs nibabel: pip install 'xcam[medical]'") from None
            try:
                image = nibabel.as_closest_canonical(nibabel.load(str(path)))
            except nibabel.filebasedimages.ImageFileError as exc:
                raise ValueError(exc) from None
            data = np.asarray(image.get_fdata(dtype=np.float32))
            vol = data.transpose(2, 1, 0) if data.ndim == 3 else data.transpose(3, 2, 1, 0) if data.ndim == 4 \
                else data
    except (OSError, ValueError, EOFError) as exc:
        raise XcamError(f"cannot read volume {str(path)!r}: {exc}") from None
    vol = np.asarray(vol, np.float32)
    if vol.ndim not in (3, 4):
        raise XcamError(f"volume {str(path)!r} has shape {vol.shape}; give (D, H, W) or (C, D, H, W)")
    return vol
