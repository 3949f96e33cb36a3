"""The digest of a spec's bytes (the plan's `source.sha256`), apart from the parser: `hpoc
status` compares it with the spec on disk on every call, and needs nothing else of the
language."""

from __future__ import annotations

import hashlib


def _as_read(data: bytes) -> bytes:
    """A spec's bytes as it is read: without a UTF-8 BOM, every line ending `\n`. A file
    saved on Windows (CRLF) or by an old Mac editor (CR) is the same study, with the same
    lines and columns, and compiles to the same plan."""
    data = data.removeprefix(b"\xef\xbb\xbf")
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def spec_digest(data: bytes) -> str:
    """The plan's `source.sha256` of a spec's bytes: of its text as read, so line endings
    and a BOM do not make another plan."""
    return hashlib.sha256(_as_read(data)).hexdigest()
