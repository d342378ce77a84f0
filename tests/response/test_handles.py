"""Revocation handles: sealed to our key, opened in memory, filed by token id, purged at expiry."""

from __future__ import annotations

import pytest

from pipeline.response.handles import HandleError, HandleStore, generate_key_pem, load_private_key, seal
from pipeline.secrets import SecretError
from schemas.actions import RevocationTarget
from schemas.redaction import make_token_hasher

HASH = make_token_hasher(b"0123456789abcdef0123456789abcdef")


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch):
    private_pem, public = generate_key_pem()
    monkeypatch.setenv("TOKENWATCH_HANDLE_KEY", private_pem)
    key = load_private_key()
    return key, key.public_key()


def test_a_sealed_handle_is_filed_under_the_tokens_keyed_hash(keys) -> None:
    key, public = keys
    now = [1000.0]
    store = HandleStore(key, HASH, clock=lambda: now[0])
    token_id = store.accept(seal(public, "raw-rt-1", "refresh_token", 2000, family_id="fam-1"))
    assert token_id == HASH("raw-rt-1")
    handle = store.get(token_id)
    assert handle is not None and handle.token.get_secret_value() == "raw-rt-1"
    assert "raw-rt-1" not in repr(handle) and "raw-rt-1" not in repr(store)
    store.accept(seal(public, "raw-at-1", "access_token", 1500, family_id="fam-1"))
    family = store.for_target(RevocationTarget(kind="family", id="fam-1"))
    assert [h.token_type for h in family] == ["refresh_token", "access_token"]
    now[0] = 1600.0  # the access token expired
    assert [h.token_id for h in store.for_target(RevocationTarget(kind="family", id="fam-1"))] == [token_id]
    assert store.purge() == 1 and len(store) == 1
    now[0] = 2000.0
    assert store.get(token_id) is None and store.purge() == 1 and len(store) == 0


def test_a_handle_for_another_key_or_tampered_is_refused_without_echoing(keys) -> None:
    key, public = keys
    other = load_private_key(generate_key_pem()[0])
    store = HandleStore(key, HASH, clock=lambda: 0.0)
    sealed = seal(other.public_key(), "raw-secret", "access_token", 10)
    with pytest.raises(HandleError) as err:
        store.accept(sealed)
    assert "raw-secret" not in str(err.value)
    with pytest.raises(HandleError):
        store.accept(seal(public, "raw", "id_token", 10))
    with pytest.raises(HandleError):
        store.accept("bm90LWEtaGFuZGxl")


def test_source_supplied_token_id_and_expired_handles(keys) -> None:
    key, public = keys
    store = HandleStore(key, HASH, clock=lambda: 100.0)
    assert store.accept(seal(public, "raw", "access_token", 500, token_id="jti-7")) == "jti-7"
    assert store.accept(seal(public, "old", "access_token", 50)) == HASH("old")
    assert len(store) == 1


def test_missing_or_wrong_key_is_a_named_error(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv("TOKENWATCH_HANDLE_KEY", raising=False)
    monkeypatch.delenv("TOKENWATCH_HANDLE_KEY_FILE", raising=False)
    with pytest.raises(SecretError, match="TOKENWATCH_HANDLE_KEY"):
        load_private_key()
    bad = tmp_path / "k.pem"
    bad.write_text("not a key")
    with pytest.raises(SecretError, match="not a PEM private key"):
        load_private_key(path=bad)
