"""`pipeline.terminal.printable`: controls, bidi and invisible characters shown as escapes."""

from __future__ import annotations

import sys
import unicodedata

import pytest

from pipeline.terminal import printable, printable_lines

DANGEROUS_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}


def _escape(code: int) -> str:
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


@pytest.mark.parametrize("code", [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)])
def test_every_c0_c1_and_del_character_is_escaped(code: int) -> None:
    named = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}
    assert printable(f"a{chr(code)}b") == f"a{named.get(code, _escape(code))}b"


@pytest.mark.parametrize("code", [
    *range(0x202A, 0x202F),  # LRE RLE PDF LRO RLO
    *range(0x2066, 0x206A),  # LRI RLI FSI PDI
    0x200E, 0x200F, 0x061C,  # LRM RLM ALM
    0x200B, 0x200C, 0x2060, 0xFEFF, 0x00AD,  # zero-width space, ZWNJ, word joiner, BOM, soft hyphen
    0xE0041, 0xE007F,  # tag characters ("ASCII smuggling")
    0x2028, 0x2029,  # line and paragraph separators
    0xD800, 0xDFFF,  # lone surrogates (from a "\ud800" JSON escape): also unencodable on stdout
])
def test_bidi_invisible_separator_and_surrogate_characters_are_escaped(code: int) -> None:
    assert printable(f"user{chr(code)}name") == f"user{_escape(code)}name"


def test_the_fake_row_and_screen_clear_of_the_issue() -> None:
    hostile = "req-1\x1b[2J\r\n| fake | row\u202egnp.exe"
    assert printable(hostile) == "req-1\\x1b[2J\\r\\n| fake | row\\u202egnp.exe"


@pytest.mark.parametrize("text", [
    "", "plain ascii", "München", "Ünïcödé façade", "日本語のユーザー", "Ελληνικά", "עברית",
    "العربية", "emoji 🙂 🚀", "👩‍💻 developer", "👨‍👩‍👧 family", "❤️‍🔥", "👍🏽", "🇩🇪",
    "CORP\\alice", "no\u00a0break space", "literal \\x1b stays", "~!@#$%^&*()_+{}|:\"<>?",
])
def test_ordinary_text_accents_scripts_and_emoji_are_untouched(text: str) -> None:
    assert printable(text) == text


def test_a_zero_width_joiner_between_letters_is_escaped() -> None:
    assert printable("ad\u200dmin") == "ad\\u200dmin"
    assert printable("\u200dadmin") == "\\u200dadmin"


def test_fast_path_returns_the_same_object() -> None:
    text = "Token at-1 misused by alice from München."
    assert printable(text) is text


def test_idempotent() -> None:
    hostile = "a\x1b[31m\u202e\n\t\x9b\U000e0041\ud800z"
    once = printable(hostile)
    assert printable(once) == once
    assert once.isascii() and once.isprintable()


def test_no_code_point_survives_as_a_dangerous_character() -> None:
    for code in range(sys.maxunicode + 1):
        shown = printable(chr(code))
        if shown != chr(code):
            assert shown.isascii() and shown.isprintable(), hex(code)
        else:
            assert unicodedata.category(shown) not in DANGEROUS_CATEGORIES, hex(code)


def test_printable_lines_keeps_line_breaks_and_escapes_the_rest() -> None:
    assert printable_lines("first\nsecond\x1b[2J\r\u202e\nthird") == "first\nsecond\\x1b[2J\\r\\u202e\nthird"
    assert printable_lines("a\nb") == "a\nb"
