"""Bounds on a model file, checked on its zip directory before anything is inflated.

A skops file is a zip archive. A 1 MB file can declare members that inflate to gigabytes
(a zip bomb), or a central directory of millions of tiny entries that costs gigabytes
just to list. Loading reads every member, so both are refused from what the archive
declares, before skops opens it: the end-of-central-directory record (entry count and
directory size, APPNOTE 4.3.16), then each member's declared and compressed size.
Declared sizes are binding: Python's zipfile never returns more than a member's
``file_size`` and fails its CRC check when the data disagrees.
"""

from __future__ import annotations

import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

MIB = 1 << 20
_EOCD = b"PK\x05\x06"  # end of central directory record
_EOCD_SIZE = 22
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_LOCATOR_SIZE = 20
_MAX_COMMENT = 0xFFFF


class ArchiveError(ValueError):
    """The archive exceeds a limit; the message says which (a file that is no zip at all
    raises ``zipfile.BadZipFile``)."""


@dataclass(frozen=True)
class ArchiveLimits:
    """Far above what `tokenwatch model train` writes (a 200-tree IsolationForest: 10 MB
    in 1,202 members, stored uncompressed; the tail model: 0.1 MB in 3)."""

    max_file_bytes: int = 256 * MIB
    max_members: int = 10_000
    max_directory_bytes: int = 4 * MIB  # the central directory, parsed in full when opened
    max_member_bytes: int = 128 * MIB
    max_total_bytes: int = 512 * MIB  # all members inflated
    max_ratio: float = 100.0  # inflated : compressed, for a member above ratio_floor_bytes
    ratio_floor_bytes: int = MIB


DEFAULT_LIMITS = ArchiveLimits()


def check_archive(path: Path, limits: ArchiveLimits = DEFAULT_LIMITS) -> None:
    """Raise ``ArchiveError`` unless the listing and inflated members of the zip ``path`` fit ``limits``."""
    size = path.stat().st_size
    if size > limits.max_file_bytes:
        raise ArchiveError(f"file is {size:,} bytes, above the limit of {limits.max_file_bytes:,}")
    with open(path, "rb") as handle:
        entries, directory_bytes = _directory_size(handle, size)
    if entries > limits.max_members:
        raise ArchiveError(f"archive lists {entries:,} members, above the limit of {limits.max_members:,}")
    if directory_bytes > limits.max_directory_bytes:
        raise ArchiveError(f"archive directory is {directory_bytes:,} bytes, above the limit of "
                           f"{limits.max_directory_bytes:,}")
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
    if len(members) > limits.max_members:
        raise ArchiveError(f"archive holds {len(members):,} members, above the limit of {limits.max_members:,}")
    total = 0
    for member in members:
        inflated = member.file_size
        if inflated > limits.max_member_bytes:
            raise ArchiveError(f"member {member.filename!r} inflates to {inflated:,} bytes, above the limit of "
                               f"{limits.max_member_bytes:,}")
        if inflated > limits.ratio_floor_bytes and inflated > limits.max_ratio * max(member.compress_size, 1):
            raise ArchiveError(f"member {member.filename!r} inflates {inflated / max(member.compress_size, 1):,.0f}"
                               f" times (from {member.compress_size:,} to {inflated:,} bytes), above the limit of "
                               f"{limits.max_ratio:g}")
        total += inflated
    if total > limits.max_total_bytes:
        raise ArchiveError(f"members inflate to {total:,} bytes in all, above the limit of {limits.max_total_bytes:,}")


def _directory_size(handle: BinaryIO, size: int) -> tuple[int, int]:
    """(entries, central directory bytes) from the end record, found as zipfile finds it:
    at the very end, else the last signature within a maximal comment's reach."""
    read_from = max(0, size - _EOCD_SIZE - _MAX_COMMENT - _ZIP64_LOCATOR_SIZE)
    handle.seek(read_from)
    tail = handle.read()
    at = len(tail) - _EOCD_SIZE
    if at < 0 or tail[at:at + 4] != _EOCD or tail[-2:] != b"\0\0":
        at = tail.rfind(_EOCD)
    if at < 0 or len(tail) - at < _EOCD_SIZE:
        raise zipfile.BadZipFile("not a zip archive (no end of central directory record)")
    if at >= _ZIP64_LOCATOR_SIZE and tail[at - _ZIP64_LOCATOR_SIZE:at - _ZIP64_LOCATOR_SIZE + 4] == _ZIP64_LOCATOR:
        raise ArchiveError("zip64 archive: model files are far smaller than what needs zip64")
    entries, directory_bytes = struct.unpack_from("<HI", tail, at + 10)
    return entries, directory_bytes
