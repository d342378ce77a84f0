"""Text made safe for a terminal: what an attacker wrote is shown, never obeyed.

Any field of an input line (request id, user agent, path, user or AS name) and anything an
analyst typed (notes, reasons) can reach the CLI's tables. Printed raw, an escape sequence
clears or rewrites the screen, a CR or LF forges a table row, and a bidi override reverses
what the analyst reads. :func:`printable` writes such characters as visible escapes
(``\\x1b``, ``\\n``, ``\\u202e``) and leaves ordinary text, accents and emoji alone.
Backslashes are kept as they are (``CORP\\alice`` stays readable); ``--json`` gives the
exact value when an escape and a literal backslash must be told apart.
"""

from __future__ import annotations

import unicodedata

# Controls (C0, DEL, C1), format characters (bidi embeddings, overrides and isolates, marks,
# zero-width characters, soft hyphen, tags), lone surrogates (which would also crash the
# encoder of stdout), and the Unicode line and paragraph separators.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_ZWJ = "\u200d"
_VARIATION_SELECTOR_16 = "\ufe0f"


def printable(text: str) -> str:
    """``text`` with every control, bidi or invisible format character as a visible escape.

    One line in, one line out: newlines are escaped too. Idempotent, and free (one C-level
    scan) for text that needs nothing.
    """
    if text.isprintable():
        return text
    out: list[str] = []
    previous = ""
    for char in text:
        out.append(char if _shows_as_itself(char, previous) else _escape(char))
        previous = char
    return "".join(out)


def printable_lines(text: str) -> str:
    """Multi-line text (a report built by the program) with its line breaks kept and every
    other control, bidi or format character escaped as :func:`printable` does."""
    return "\n".join(printable(line) for line in text.split("\n"))


def _shows_as_itself(char: str, previous: str) -> bool:
    if char.isprintable():
        return True
    category = unicodedata.category(char)
    if category not in _ESCAPED_CATEGORIES:
        return True  # non-ASCII spaces, private use, code points newer than this Python's tables
    # A zero-width joiner inside an emoji sequence (after a pictograph, a skin tone or the
    # emoji presentation selector) is part of the emoji; between letters it hides.
    return char == _ZWJ and previous != "" and (
        previous == _VARIATION_SELECTOR_16 or unicodedata.category(previous) in ("So", "Sk")
    )


def _escape(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"
