"""The adapters' bounded memo: its ``get`` is its dict's own, so it must keep seeing the
items put after the memo was cleared for being full."""

from __future__ import annotations

from schemas.sources.common import MEMO_MAX_KEY_CHARS, Memo


def test_a_memo_finds_what_was_put_and_nothing_else() -> None:
    memo: Memo[str, int] = Memo()
    assert memo.get("a") is None
    assert memo.put("a", 1) == 1
    assert memo.get("a") == 1 and memo.get("b") is None


def test_a_full_memo_is_cleared_and_keeps_taking_items() -> None:
    memo: Memo[str, int] = Memo(limit=2)
    memo.put("a", 1)
    memo.put("b", 2)
    memo.put("c", 3)  # full: cleared, then c kept
    assert [memo.get(key) for key in "abc"] == [None, None, 3]
    memo.put("d", 4)
    assert [memo.get(key) for key in "cd"] == [3, 4]


def test_a_long_key_is_not_kept() -> None:
    memo: Memo[str, int] = Memo()
    key = "k" * (MEMO_MAX_KEY_CHARS + 1)
    assert memo.put(key, 1) == 1
    assert memo.get(key) is None
