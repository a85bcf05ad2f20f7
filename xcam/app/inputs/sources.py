"""What ``--images`` names, expanded to a deduplicated list of image files: files, directories (recursive,
image extensions only, sorted), glob patterns ("data/**/*.jpg", sorted), and text files with one path a line
(relative lines are relative to the text file). The order is the order given, so a run is reproducible."""

import glob
import os
from pathlib import Path

from xcam.errors import XcamError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pbm", ".pgm",
                              ".ppm", ".pnm", ".sr", ".ras", ".exr", ".hdr", ".pic"})
LIST_EXTENSIONS = frozenset({".txt", ".lst"})
_GLOB_CHARS = frozenset("*?[")


def is_image_name(path) -> bool:
    """Whether a file name has an image extension OpenCV reads (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _directory(folder: Path) -> list[str]:
    found: list[str] = []
    for root, dirs, names in os.walk(folder, followlinks=False):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [os.path.join(root, n) for n in names if not n.startswith(".") and is_image_name(n)]
    return sorted(found)


def _list_file(path: Path, depth: int) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise XcamError(f"cannot read image list {str(path)!r}: {exc}") from None
    found = []
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        entry = line if os.path.isabs(line) else str(path.parent / line)
        try:
            found += _expand_one(entry, depth + 1, listed=True)
        except XcamError as exc:
            raise XcamError(f"{str(path)!r} line {number}: {exc}") from None
    return found


def _expand_one(spec: str, depth: int, listed: bool = False) -> list[str]:
    if depth > 4:
        raise XcamError(f"image lists nest more than 4 deep at {spec!r}")
    path = Path(spec)
    if path.is_dir():
        return _directory(path)
    if path.is_file():
        if path.suffix.lower() in LIST_EXTENSIONS:
            return _list_file(path, depth)
        return [spec]  # named explicitly: kept whatever its extension; an undecodable file is reported later
    if _GLOB_CHARS & set(spec):
        found = []
        for m in sorted(glob.glob(spec, recursive=True)):
            if Path(m).is_dir():
                found += _directory(Path(m))
            elif is_image_name(m):
                found.append(m)
        if not found:
            raise XcamError(f"no image files match {spec!r} (extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})")
        return found
    if listed:
        raise XcamError(f"no such file or directory: {spec!r}")
    return [spec]  # a missing file given on the command line: reported as unreadable, the others still run


def expand_images(specs) -> list[str]:
    """Every image named by ``specs`` (files, directories, globs, .txt/.lst lists) in the order given, each
    directory and glob sorted, deduplicated by normalized path (first occurrence kept). A directory, glob or
    list without images is a one-line error."""
    if isinstance(specs, (str, os.PathLike)):
        specs = [specs]
    found = []
    for spec in specs:
        spec = os.fspath(spec)
        items = _expand_one(spec, 0)
        if not items:
            what = "directory" if Path(spec).is_dir() else "image list"
            raise XcamError(f"no image files in {what} {spec!r} (extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})")
        found += items
    unique: dict[str, str] = {}
    for item in found:
        unique.setdefault(os.path.normpath(item), item)
    if not unique:
        raise XcamError("no images given")
    return list(unique.values())
