"""Turn a command's result document into text: JSON, YAML or a kubectl-style table.

Commands build one plain dict (the `-o json` contract in docs/json-contract.md) and, for
tables, rows; nothing here fetches or decides anything.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Sequence

API_VERSION = "cpumodel.kubevirt.io/v1alpha1"  # of every document we print; scripts can detect schema changes


@dataclass(frozen=True)
class TableStyle:
    """How tables are printed: -o wide lists everything, --no-headers drops the header rows."""

    wide: bool = False
    headers: bool = True


def report(kind: str, body: Dict[str, Any]) -> Dict[str, Any]:
    """A JSON/YAML document: apiVersion and kind first, then the command's keys."""
    return dict({"apiVersion": API_VERSION, "kind": kind}, **body)


def plural(count: int, word: str) -> str:
    return "%d %s%s" % (count, word, "" if count == 1 else "s")


def names(kind: str, items: Sequence[str]) -> str:
    """-o name: kubectl's TYPE/NAME lines."""
    return "".join("%s/%s\n" % (kind, item) for item in items)


class LazyList(list):
    """A list whose items are made one at a time as the JSON encoder reaches them, and dropped after: the
    document of a drain check over thousands of nodes never exists whole."""

    def __init__(self, source: Sequence[Any], make):
        super().__init__()
        self._source, self._make = source, make

    def __iter__(self):
        return (self._make(item) for item in self._source)

    def __len__(self) -> int:
        return len(self._source)

    def __bool__(self) -> bool:
        return bool(self._source)


def to_yaml(document: Any) -> str:
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    Dumper.add_representer(LazyList, lambda dumper, data: dumper.represent_list(list(data)))
    return yaml.dump(document, Dumper=Dumper, default_flow_style=False, sort_keys=True, allow_unicode=True)


def structured(document: Any, fmt: str) -> str:
    pieces: List[str] = []
    write_structured(document, fmt, pieces.append)
    return "".join(pieces)


def write_structured(document: Any, fmt: str, write) -> None:
    """The document, written in pieces of about 64 KiB as it is encoded: a drain check of thousands of nodes
    prints a hundred megabytes, which must not sit in memory twice (encoded pieces, then their join)."""
    if fmt != "json":
        write(to_yaml(document))
        return
    JsonWriter(write).document(document)


class JsonWriter:
    """Exactly what json.dumps(document, indent=4, ensure_ascii=False) prints (kubectl's layout, cli-runtime
    printers/json.go), written in
    pieces, about twice as fast: the standard library encodes indented JSON in pure Python, through a generator
    per nesting level; this appends to one list, and strings go through the C string encoder."""

    FLUSH = 1 << 16

    def __init__(self, write):
        self.write = write
        self.pieces: List[str] = []
        self.size = 0

    def document(self, value: Any) -> None:
        self.value(value, "\n")
        self.pieces.append("\n")
        self.write("".join(self.pieces))
        self.pieces.clear()

    def value(self, value: Any, newline: str) -> None:
        pieces = self.pieces
        if isinstance(value, str):
            pieces.append(_encode_string(value))
        elif isinstance(value, dict):
            self.object(value, newline)
        elif isinstance(value, (list, tuple)):
            self.array(value, newline)
        else:
            pieces.append(_scalar(value))

    def object(self, value: dict, newline: str) -> None:
        if not value:
            self.pieces.append("{}")
            return
        self.container("{", "}", ((_encode_string(k if isinstance(k, str) else _scalar(k)) + ": ", v)
                                  for k, v in value.items()), newline)

    def array(self, value: Sequence[Any], newline: str) -> None:
        if not value:
            self.pieces.append("[]")
            return
        self.container("[", "]", (("", v) for v in value), newline)

    def container(self, opening: str, closing: str, entries, newline: str) -> None:
        """One item a line, indented four more: `entries` are (what precedes the value, the value)."""
        inner = newline + "    "
        pieces = self.pieces
        pieces.append(opening)
        first = True
        for head, item in entries:
            pieces.append((inner if first else "," + inner) + head)
            first = False
            if isinstance(item, str):
                pieces.append(_encode_string(item))
            elif isinstance(item, (dict, list, tuple)):
                self.value(item, inner)
            else:
                pieces.append(_scalar(item))
        pieces.append(newline + closing)
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        if len(self.pieces) >= 4096:  # the same list stays: callers up the stack hold it
            self.write("".join(self.pieces))
            self.pieces.clear()


def _encode_string(text: str) -> str:
    return _ENCODE_STRING(text)


def _scalar(value: Any) -> str:
    """Numbers, booleans and null as json.dumps writes them."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if value in (float("inf"), float("-inf")):
            return "Infinity" if value > 0 else "-Infinity"
        return float.__repr__(value)
    raise TypeError("Object of type %s is not JSON serializable" % type(value).__name__)


def _string_encoder():
    from json import encoder

    return encoder.c_encode_basestring or encoder.py_encode_basestring  # type: ignore[attr-defined]


_ENCODE_STRING = _string_encoder()


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], style: TableStyle = TableStyle()) -> str:
    """kubectl's plain table: upper-case headers (unless --no-headers), columns padded with three spaces.

    Every cell is text, left-aligned. Written out by hand: tables of thousands of rows (audit,
    drain-check --all) must not spend their time guessing cell types.
    """
    if not rows:
        return ""
    # Cells are text already, except the odd number or None; they are not copied (a diff matrix over thousands
    # of nodes has millions of cells).
    texts = [row if all(type(c) is str for c in row) else ["" if c is None else str(c) for c in row] for row in rows]
    # Every column is at least two wider than its header, as kubectl's tables have always printed here.
    widths = [max([len(line[i]) for line in texts] + ([len(headers[i]) + 2] if style.headers else []))
              for i in range(len(headers))]
    out = ["   ".join(text.ljust(width) for text, width in zip(headers, widths)).rstrip()] if style.headers else []
    out.extend("   ".join(text.ljust(width) for text, width in zip(line, widths)).rstrip() for line in texts)
    return "\n".join(out) + "\n"


def key_values(rows: Sequence[Sequence[str]]) -> str:
    """A summary block: labels padded to one width, two spaces, then the values."""
    width = max((len(label) for label, _ in rows), default=0)
    return "".join(("%s  %s" % (label.ljust(width), value)).rstrip() + "\n" for label, value in rows)


def wrap_list(items: Sequence[str], width: int = 60, limit: int = 0) -> str:
    """A comma list wrapped to `width`; with `limit`, the rest summarised as `(+N more)`."""
    shown: List[str] = list(items[:limit]) if limit and len(items) > limit else list(items)
    extra = len(items) - len(shown)
    lines, line = [], ""
    for item in shown:
        piece = item if not line else ", " + item
        if line and len(line) + len(piece) > width:
            lines.append(line + ",")
            line = item
        else:
            line += piece
    if extra:
        more = "(+%d more)" % extra
        if len(line) + len(more) + 1 > width:
            lines.append(line + ",")
            line = more
        else:
            line += " " + more
    lines.append(line)
    return "\n".join(lines)


def brief_list(items: Sequence[str], limit: int = 0, width: int = 0) -> str:
    """A one-line comma list for a table cell: at most `limit` items and about `width`
    characters (0: no bound), the rest summarised as `(+N more)`."""
    shown: List[str] = []
    length = 0
    for item in items:
        if (limit and len(shown) >= limit) or (width and shown and length + len(item) + 2 > width):
            break
        shown.append(item)
        length += len(item) + 2
    rest = len(items) - len(shown)
    return ", ".join(shown) + (" (+%d more)" % rest if rest else "")


def section(title: str, body: str) -> str:
    return "%s\n%s" % (title, body if body.endswith("\n") else body + "\n")
