"""A job's folder from what a client sent: a drama archive (tar, tar.gz or zip), a chapter, a picture.

Archives are checked entry by entry before anything is written: no absolute paths, no `..`, no
links or devices, a bounded number of files and bytes. drama.toml may sit at the top of the archive
or inside its one top-level folder (what `tar czf d.tgz mydrama/` makes); so may series.toml, with
the episode folders beside it (a series job builds every episode).
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..project import DRAMA_FILE
from ..series import SERIES_FILE

MAX_FILES = 5_000
MAX_UNPACKED = 1 << 30
IMAGE_FORMATS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "BMP": ".bmp", "GIF": ".gif"}
MAX_PIXELS = 40_000_000


class UploadError(ValueError):
    """What is wrong with an upload, in words for the client (a 422, or 413 when `too_large`)."""

    def __init__(self, message: str, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


@dataclass(frozen=True)
class Entry:
    path: PurePosixPath
    data: bytes


def unpack_drama(archive: bytes, folder: Path) -> None:
    """Unpack a drama archive into `folder` (created), or raise UploadError having written nothing."""
    entries = _entries(archive)
    names = {e.path for e in entries}
    prefix = PurePosixPath()
    if not names & {PurePosixPath(DRAMA_FILE), PurePosixPath(SERIES_FILE)}:
        tops = {e.path.parts[0] for e in entries}
        top = PurePosixPath(next(iter(tops))) if len(tops) == 1 else None
        if top is not None and names & {top / DRAMA_FILE, top / SERIES_FILE}:
            prefix = top
        else:
            raise UploadError(f"the archive has no {DRAMA_FILE} (or {SERIES_FILE}) at its top (or in its one "
                              "top-level folder)")
    folder.mkdir(parents=True)
    for entry in entries:
        relative = entry.path.relative_to(prefix) if prefix.parts else entry.path
        target = folder.joinpath(*relative.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(entry.data)


def _entries(archive: bytes) -> list[Entry]:
    if archive[:4] == b"PK\x03\x04" or archive[:4] == b"PK\x05\x06":
        return _zip_entries(archive)
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:*") as tar:
            return _tar_entries(tar)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise UploadError(f"the archive is not a readable tar, tar.gz or zip file ({exc})") from None


def _tar_entries(tar: tarfile.TarFile) -> list[Entry]:
    entries: list[Entry] = []
    total = 0
    for member in tar:
        if member.isdir():
            _safe(member.name)
            continue
        if not member.isfile():
            what = "a link" if member.issym() or member.islnk() else "not a regular file"
            raise UploadError(f"archive entry {member.name!r} is {what}: only files and folders are accepted")
        total = _count(entries, total, member.size)
        source = tar.extractfile(member)
        assert source is not None
        entries.append(Entry(_safe(member.name), source.read()))
    return entries


def _zip_entries(archive: bytes) -> list[Entry]:
    entries: list[Entry] = []
    total = 0
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as zf:
            for info in zf.infolist():
                mode = info.external_attr >> 16
                if mode and (mode & 0o170000) not in (0, 0o100000, 0o040000):
                    raise UploadError(f"archive entry {info.filename!r} is a link or special file: only files "
                                      "and folders are accepted")
                if info.is_dir():
                    _safe(info.filename)
                    continue
                total = _count(entries, total, info.file_size)
                entries.append(Entry(_safe(info.filename), zf.read(info)))
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise UploadError(f"the archive is not a readable zip file ({exc})") from None
    return entries


def _count(entries: list[Entry], total: int, size: int) -> int:
    if len(entries) >= MAX_FILES:
        raise UploadError(f"the archive has more than {MAX_FILES} files", too_large=True)
    total += size
    if total > MAX_UNPACKED:
        raise UploadError(f"the archive unpacks to more than {MAX_UNPACKED >> 20} MiB", too_large=True)
    return total


def _safe(name: str) -> PurePosixPath:
    """The entry's path if it stays inside the drama folder."""
    if "\\" in name or "\x00" in name:
        raise UploadError(f"archive entry {name!r}: backslashes and NUL are not allowed in paths")
    path = PurePosixPath(name)
    if path.is_absolute() or (path.parts and ":" in path.parts[0]):
        raise UploadError(f"archive entry {name!r} is an absolute path: paths must be relative to the drama")
    parts = [p for p in path.parts if p not in ("", ".")]
    if ".." in parts:
        raise UploadError(f"archive entry {name!r} leaves the drama folder (..)")
    if not parts:
        raise UploadError(f"archive entry {name!r} has no name")
    return PurePosixPath(*parts)


def check_picture(data: bytes) -> str:
    """The file suffix of an uploaded picture, or UploadError when it is not one Pillow can read."""
    from PIL import Image

    if not data:
        raise UploadError("image: the file is empty")
    try:
        with Image.open(io.BytesIO(data)) as picture:
            if picture.width * picture.height > MAX_PIXELS:
                raise UploadError(f"image: {picture.width}×{picture.height} is more than {MAX_PIXELS} pixels",
                                  too_large=True)
            picture.verify()
            kind = picture.format or ""
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        if isinstance(exc, UploadError):
            raise
        raise UploadError(f"image: not a picture Pillow can read ({exc})") from None
    if kind not in IMAGE_FORMATS:
        raise UploadError(f"image: {kind or 'this format'} is not accepted (use PNG, JPEG, WebP, BMP or GIF)")
    return IMAGE_FORMATS[kind]
