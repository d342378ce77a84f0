"""Tables that fit the terminal: column widths, cutting, and colour only where it is seen.

The width is ``$COLUMNS`` when set, else the terminal's (``shutil.get_terminal_size``) when
the output is one; piped output (``| awk``, ``> file``) keeps every cell whole. A table
wider than that gives way column by column in a stated order (:class:`Step`), so the column
that carries the meaning (an alert's summary) keeps its room longest; long values are cut
in the middle (ARNs, rule ids: both ends say something) or at the end, with ``…``. Colour
(ANSI SGR) is added after widths are decided, only when the output is a terminal and
``$NO_COLOR`` is unset (https://no-color.org).

Cells arrive already passed through :func:`pipeline.terminal.printable`.
"""

from __future__ import annotations

import os
import shutil
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, TextIO

ELLIPSIS = "…"
GAP = "  "
RESET = "\x1b[0m"
Cut = Literal["end", "middle", "prefix", "auto"]


def output_width(stream: TextIO) -> int | None:
    """Columns available to ``stream``: ``$COLUMNS``, else the terminal's; None (no limit) when piped."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if _is_tty(stream):
        return shutil.get_terminal_size().columns
    return None


def use_colour(stream: TextIO, choice: str = "auto") -> bool:
    """``always``/``never``, or (``auto``) only on a terminal and without ``$NO_COLOR``."""
    if choice != "auto":
        return choice == "always"
    return _is_tty(stream) and not os.environ.get("NO_COLOR")


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False


def display_width(text: str) -> int:
    """Terminal cells ``text`` takes: wide (East Asian) characters two, combining marks none."""
    if text.isascii():
        return len(text)
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
               for c in text)


def cut(text: str, width: int, how: Cut = "end") -> str:
    """``text`` in at most ``width`` cells: its head (``prefix``: no mark, for ids a command
    resolves by prefix), or its head (``end``) or both ends (``middle``) around ``…``;
    ``auto`` cuts paths and ARNs (text with ``:`` or ``/``) in the middle, the rest at the end."""
    if display_width(text) <= width:
        return text
    if width <= 0:
        return ""
    if how == "auto":
        how = "middle" if ":" in text or "/" in text else "end"
    if how == "prefix":
        return _head(text, width)
    if how == "middle" and width >= 5:
        tail_width = (width - 1) // 2
        head = _head(text, width - 1 - tail_width)
        tail = _head(text[::-1], tail_width)[::-1]
        return head + ELLIPSIS + tail
    return _head(text, width - 1) + ELLIPSIS


def _head(text: str, width: int) -> str:
    out, used = [], 0
    for char in text:
        w = display_width(char)
        if used + w > width:
            break
        out.append(char)
        used += w
    return "".join(out)


def pad(text: str, width: int) -> str:
    return text + " " * max(0, width - display_width(text))


@dataclass
class Column:
    """One column: its full cells, optional shorter renderings for when it is narrowed
    (``compact``), how a cell too long is cut, and an SGR colour per cell."""

    header: str
    cells: list[str]
    compact: list[str] | None = None
    how: Cut = "end"
    colours: list[str | None] | None = None
    short_header: str | None = None
    keep: bool = False  # never narrowed (times, ids an analyst copies into the next command)
    width: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.width = self.natural()

    def natural(self) -> int:
        return max([display_width(self.header), *(display_width(c) for c in self.cells)])

    def floor(self) -> int:
        """Narrowest this column goes: whole if ``keep``, else down to its (short) header."""
        return self.natural() if self.keep else display_width(self.short_header or self.header)

    def title(self) -> str:
        fits = display_width(self.header) <= self.width or self.short_header is None
        return self.header if fits else self.short_header or self.header

    def narrowed(self) -> bool:
        """Whether the column shows its compact cells (all of them: a column reads one way)."""
        return self.compact is not None and self.width < self.natural()

    def settle(self) -> None:
        """A narrowed column with compact cells takes no more room than they need."""
        if self.compact is not None and self.narrowed():
            compact = max([display_width(self.short_header or self.header), *(display_width(c) for c in self.compact)])
            self.width = min(self.width, compact)

    def cell(self, row: int) -> str:
        shown = self.compact[row] if self.compact is not None and self.narrowed() else self.cells[row]
        return cut(shown, self.width, self.how)


@dataclass(frozen=True)
class Step:
    """Give way: narrow ``column`` to ``width`` cells, or drop it (``width`` None)."""

    column: str
    width: int | None = None


def fit(columns: list[Column], limit: int | None, steps: Sequence[Step] = (), flex: str | None = None,
        flex_wanted: int = 0) -> list[Column]:
    """The columns to show, with widths set to fit ``limit``.

    With ``flex`` (the column that absorbs what is left), ``steps`` apply in order while
    ``flex`` would get fewer than ``flex_wanted`` cells; then ``flex`` takes the rest. Without
    it (or when that is not enough), the widest column is narrowed one cell at a time down to
    its header. :func:`render` clips whatever still overflows.
    """
    shown = list(columns)
    if limit is None:
        return shown
    by_name = {c.header: c for c in shown}
    if flex is not None and flex in by_name:
        target = by_name[flex]
        wanted = min(target.natural(), flex_wanted)

        def room() -> int:
            others = sum(c.width for c in shown if c is not target)
            return limit - others - len(GAP) * (len(shown) - 1)

        for step in steps:
            if room() >= wanted:
                break
            col = by_name.get(step.column)
            if col is None or col not in shown:
                continue
            if step.width is None:
                shown.remove(col)
            else:
                col.width = min(col.width, max(step.width, col.floor()))
                col.settle()
        target.width = max(min(target.natural(), room()), target.floor())
    _narrow_widest(shown, limit)
    return shown


def _narrow_widest(shown: list[Column], limit: int) -> None:
    def total() -> int:
        return sum(c.width for c in shown) + len(GAP) * (len(shown) - 1)

    while total() > limit:
        widest = max((c for c in shown if c.width > c.floor()), key=lambda c: c.width, default=None)
        if widest is None:
            return
        widest.width -= 1


def render(shown: list[Column], rows: int, limit: int | None = None, colour: bool = False) -> str:
    """Header and ``rows`` lines, left-aligned, two spaces apart, no trailing spaces, none
    longer than ``limit`` cells; colour codes do not count (they take no cell)."""
    lines = [_line([(c.title(), c.width, None) for c in shown], limit, colour)]
    for r in range(rows):
        lines.append(_line([(c.cell(r), c.width, c.colours[r] if c.colours else None) for c in shown],
                           limit, colour))
    return "\n".join(lines) + "\n"


def _line(cells: list[tuple[str, int, str | None]], limit: int | None, colour: bool) -> str:
    parts: list[str] = []
    used = 0
    for i, (text, width, sgr) in enumerate(cells):
        last = i == len(cells) - 1
        shown = text if last else pad(text, width)
        if i:
            shown = GAP + shown
        if limit is not None and used + display_width(shown) > limit:
            shown = cut(shown, limit - used)
            last = True
        used += display_width(shown)
        if colour and sgr and shown.strip():
            lead = len(shown) - len(shown.lstrip(" "))
            body = shown.rstrip(" ")
            shown = body[:lead] + f"\x1b[{sgr}m" + body[lead:] + RESET + shown[len(body):]
        parts.append(shown)
        if last:
            break
    return "".join(parts).rstrip(" ")
