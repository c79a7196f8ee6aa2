"""Reading members of an untrusted zip with a real byte counter.

Why: a zip's headers *declare* each member's size, and a crafted one lies: a 1 KB bzip2 member can inflate to
gigabytes in one decompressor call, whatever size it declares. So a member is read as a stream, in small chunks,
counting the bytes actually produced, and reading stops at the cap; only stored and deflate members (what
``shutil.make_archive`` and every zip tool write by default) are accepted, since deflate's decompressor is fed
chunk by chunk with a bounded output.
"""

from __future__ import annotations

import os
import struct
import zipfile
import zlib
from pathlib import Path

CHUNK = 64 * 1024
_END_RECORD = b"PK\x05\x06"  # the end of central directory record's signature
_END_RECORD_SIZE = 22
_MAX_COMMENT = 0xFFFF
ACCEPTED = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}


class ZipMemberError(ValueError):
    """A zip member that is not read: an unaccepted compression, more bytes than the cap, or a corrupt stream."""


def check_compression(info: zipfile.ZipInfo) -> None:
    """ZipMemberError unless the member is stored or deflate-compressed."""
    if info.compress_type not in ACCEPTED:
        raise ZipMemberError(f"{info.filename} is compressed with method {info.compress_type}; only stored and "
                             "deflate members are read (zip it again with an ordinary zip tool)")


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo | str, cap: int) -> bytes:
    """The member's bytes, read in ``CHUNK`` pieces; ZipMemberError once more than ``cap`` bytes come out, whatever
    its header declares, and for a corrupt stream (a wrong CRC, a truncated member)."""
    if isinstance(info, str):
        info = archive.getinfo(info)
    check_compression(info)
    parts, total = [], 0
    try:
        with archive.open(info) as stream:
            while chunk := stream.read(CHUNK):
                total += len(chunk)
                if total > cap:
                    raise ZipMemberError(f"{info.filename} unpacks to more than {cap / 2**20:.0f} MB, the most "
                                         "accepted here")
                parts.append(chunk)
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as err:  # a wrong CRC, a truncated stream
        raise ZipMemberError(f"{info.filename} is corrupt ({err})") from err
    return b"".join(parts)


def entry_count(path: str | Path) -> int:
    """How many members the zip at ``path`` declares, read from its end record alone (the last 64 KB).

    Why before ``zipfile.ZipFile``: opening a zip parses its whole central directory, and a zip of 300,000 empty
    members takes seconds and a hundred megabytes in that alone. A zip64 count (0xFFFF) is returned as it is:
    over any cap worth setting. ZipMemberError when there is no end record (not a zip).
    """
    with open(path, "rb") as stream:
        size = stream.seek(0, os.SEEK_END)
        tail_size = min(size, _END_RECORD_SIZE + _MAX_COMMENT)
        stream.seek(size - tail_size)
        tail = stream.read(tail_size)
    at = tail.rfind(_END_RECORD)
    if at < 0 or len(tail) - at < _END_RECORD_SIZE:
        raise ZipMemberError("not a zip file")
    _sig, _disk, _start_disk, _on_disk, total, _dir_size, _dir_at, _comment = struct.unpack(
        "<4s4H2LH", tail[at:at + _END_RECORD_SIZE])
    return total
