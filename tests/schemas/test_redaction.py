"""Raw bearer tokens are replaced by keyed hashes wherever they hide."""

from __future__ import annotations

import pytest

from schemas.redaction import make_token_hasher, redact_text, redact_value

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXZhbHVl"


def test_hash_is_keyed_stable_and_prefixed(hasher) -> None:
    other = make_token_hasher(b"another-key-of-enough-length!!")
    assert hasher("tok") == hasher("tok")
    assert hasher("tok") != other("tok")
    assert hasher("tok").startswith("hmac:")
    assert hasher(hasher("tok")) == hasher("tok")


def test_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        make_token_hasher(b"short")


def test_redact_value_replaces_secret_keys_and_embedded_tokens(hasher) -> None:
    raw = {
        "headers": {"Authorization": f"Bearer {JWT}"},
        "responseObject": {"status": {"token": "k8s-sa-token-value"}},
        "note": f"client sent {JWT} twice",
        "list": [{"refresh_token": "rt-raw-value-123"}],
    }
    clean = redact_value(raw, hasher)
    dumped = repr(clean)
    for secret in (JWT, "k8s-sa-token-value", "rt-raw-value-123"):
        assert secret not in dumped
    assert clean["headers"]["Authorization"] == hasher(JWT)


def test_redact_text_handles_truncated_and_unparsable_lines(hasher) -> None:
    text = '{"access_token": "opaque-abc-123", "x": "' + JWT[:30]
    clean = redact_text(text, hasher)
    assert "opaque-abc-123" not in clean
    assert JWT[:30] not in clean
