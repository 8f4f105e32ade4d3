"""Streams that never crash on what they are given: text a terminal's encoding lacks is spelled in ASCII.

Some CI logs and `PYTHONIOENCODING=ascii` shells cannot encode ✓, ✗ or …; the output then uses
words and ASCII instead, and anything else unencodable is written as a backslash escape.
"""
from __future__ import annotations

import codecs
import re
TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations are strings here, and importing typing costs every start (--help) 4 ms
    from typing import TextIO

# C0 controls but tab and newline, DEL, and C1 controls: what could move a cursor or rewrite a terminal.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def escape_controls(text: str) -> str:
    """Text from a server or a file, made harmless for a terminal (kubectl escapes these too)."""
    if _CONTROLS.search(text) is None:  # the usual case: no copy of a table that may be tens of megabytes
        return text
    return _CONTROLS.sub(lambda m: "\\x%02x" % ord(m.group()), text)

ASCII_SPELLING = {"✓": "yes", "✗": "no", "…": "...", "≥": ">=", "≤": "<=", "→": "->", "×": "x", "÷": "/"}


def _encodable(stream: TextIO) -> str:
    name = getattr(stream, "encoding", None) or "utf-8"
    try:
        return codecs.lookup(name).name
    except LookupError:
        return "ascii"


class SafeStream:
    """Wraps a text stream; writes what its encoding can hold, spelling the rest out."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.encoding = _encodable(stream)
        self.unicode = self.encoding.startswith("utf")

    def write(self, text: str) -> int:
        if not self.unicode:
            try:
                text.encode(self.encoding)
            except UnicodeEncodeError:
                for glyph, spelling in ASCII_SPELLING.items():
                    text = text.replace(glyph, spelling)
                text = text.encode(self.encoding, "backslashreplace").decode(self.encoding)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())
