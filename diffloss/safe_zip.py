"""Reading members of an untrusted zip with a real byte counter.

Why: a zip's headers *declare* each member's size, and a crafted one lies: a 1 KB bzip2 member can inflate to
gigabytes in one decompressor call, whatever size it declares. So a member is read as a stream, in small chunks,
counting the bytes actually produced, and reading stops at the cap; only stored and deflate members (what
``shutil.make_archive`` and every zip tool write by default) are accepted, since deflate's decompressor is fed
chunk by chunk with a bounded output.
"""

from __future__ import annotations

import zipfile
import zlib

CHUNK = 64 * 1024
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
