"""Revocation handles: sealed to our key, opened in memory, filed by token id, purged at expiry."""

from __future__ import annotations

import base64
import json

import pytest

from pipeline.response.handles import (
    MAX_SEALED_CHARS,
    MAX_TOKEN_CHARS,
    HandleError,
    HandleFull,
    HandleLimits,
    HandleStore,
    HandleUnbound,
    generate_key_pem,
    load_private_key,
    seal,
)
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


def jwt(**claims: object) -> str:
    """A JWS-shaped token (the signature is not checked for binding, so any bytes do)."""
    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    return f"{part({'alg': 'ES256', 'typ': 'at+jwt'})}.{part(claims)}.c2lnbmF0dXJl"


def test_a_claimed_token_id_must_be_the_tokens_hash_or_its_jwt_jti(keys) -> None:
    key, public = keys
    store = HandleStore(key, HASH, clock=lambda: 100.0)
    assert store.accept(seal(public, "raw", "access_token", 500, token_id=HASH("raw"))) == HASH("raw")
    with pytest.raises(HandleUnbound):
        store.accept(seal(public, "raw-2", "access_token", 500, token_id="jti-7"))  # opaque: only its hash
    token = jwt(jti="jti-7", sub="alice")
    assert store.accept(seal(public, token, "access_token", 500)) == "jti-7"  # a JWT answers to its jti
    other = jwt(jti="jti-8")
    assert store.accept(seal(public, other, "access_token", 500, token_id=HASH(other))) == HASH(other)
    with pytest.raises(HandleUnbound):
        store.accept(seal(public, jwt(jti="jti-9"), "access_token", 500, token_id="jti-10"))
    with pytest.raises(HandleUnbound):  # the hasher passes ids through: an id smuggled as the token
        store.accept(seal(public, HASH("victim"), "access_token", 500, token_id=HASH("victim")))
    assert store.get("jti-10") is None and store.get(HASH("victim")) is None and store.get(HASH("raw-2")) is None
    assert len(store) == 3 and store.counts == {"accepted": 3, "unbound": 3}


def test_a_token_shaped_like_a_jwt_with_a_hostile_payload_is_treated_as_opaque(keys) -> None:
    key, public = keys
    store = HandleStore(key, HASH, clock=lambda: 100.0)
    deep = "x." + base64.urlsafe_b64encode(b"[" * 12_000).decode() + ".s"  # json.loads: RecursionError
    for token in (deep, "x.bm90LWpzb24.s", "x.WzFd.s", "a.b.c.d.e"):
        assert store.accept(seal(public, token, "access_token", 500)) == HASH(token)
    with pytest.raises(HandleUnbound):
        store.accept(seal(public, "x.WzFd.s2", "access_token", 500, token_id="1"))
    assert store.counts == {"accepted": 4, "unbound": 1}


def test_expired_handles_are_not_kept(keys) -> None:
    key, public = keys
    store = HandleStore(key, HASH, clock=lambda: 100.0)
    assert store.accept(seal(public, "old", "access_token", 50)) == HASH("old")
    assert store.accept(seal(public, jwt(jti="j-old", exp=90), "access_token", 500)) == "j-old"  # its own exp
    assert len(store) == 0 and store.counts == {"expired": 2}


def test_expiry_is_capped_by_the_jwts_exp_and_the_configured_maximum(keys) -> None:
    key, public = keys
    store = HandleStore(key, HASH, clock=lambda: 1000.0, limits=HandleLimits(max_ttl_s=3600))
    far = 10.0**10
    assert store.get(store.accept(seal(public, "opaque", "refresh_token", far))).expires_at == 4600.0
    assert store.get(store.accept(seal(public, jwt(jti="j1", exp=2000), "access_token", far))).expires_at == 2000.0
    assert store.get(store.accept(seal(public, jwt(jti="j2", exp=2000), "access_token", 1500))).expires_at == 1500.0
    for exp in (float("nan"), float("inf"), True):  # NaN would never compare as expired
        with pytest.raises(HandleError):
            store.accept(seal(public, "odd", "access_token", exp))
    assert store.counts["refused"] == 3


def test_count_cap_refuses_new_handles_and_keeps_the_held_ones(keys) -> None:
    key, public = keys
    now = [0.0]
    store = HandleStore(key, HASH, clock=lambda: now[0], limits=HandleLimits(max_count=3))
    for name, exp in (("a", 500), ("b", 400), ("c", 600)):
        store.accept(seal(public, name, "access_token", exp, family_id="fam"))
    with pytest.raises(HandleFull):
        store.accept(seal(public, "d", "access_token", 700, family_id="fam"))
    assert len(store) == 3 and store.get(HASH("b")) is not None and store.get(HASH("d")) is None
    assert store.counts == {"accepted": 3, "full": 1}
    now[0] = 450.0  # "b" expired: room is made by purging it, never by evicting a live handle
    assert store.accept(seal(public, "d", "access_token", 700)) == HASH("d")
    assert store.get(HASH("d")) is not None and store.get(HASH("a")) is not None
    family = store.for_target(RevocationTarget(kind="family", id="fam"))
    assert sorted(h.token_id for h in family) == sorted(HASH(n) for n in "ac")


def test_byte_cap_and_oversized_tokens(keys) -> None:
    key, public = keys
    store = HandleStore(key, HASH, clock=lambda: 0.0, limits=HandleLimits(max_bytes=5_000))
    for n in range(10):
        try:
            store.accept(seal(public, f"{n}" + "x" * 1_000, "access_token", 100 + n))
        except HandleFull:
            pass
    assert store.held_bytes <= 5_000 and len(store) == 3  # the first three stay
    assert store.get(HASH("0" + "x" * 1_000)) is not None and store.get(HASH("9" + "x" * 1_000)) is None
    assert store.counts == {"accepted": 3, "full": 7}
    with pytest.raises(HandleError, match="longer than"):
        store.accept(seal(public, "y" * (MAX_TOKEN_CHARS + 1), "access_token", 100))
    with pytest.raises(HandleError, match="longer than"):
        store.accept("A" * (MAX_SEALED_CHARS + 1))


def test_purge_forgets_in_expiry_order_and_frees_the_bytes(keys) -> None:
    key, public = keys
    now = [0.0]
    store = HandleStore(key, HASH, clock=lambda: now[0])
    for n in range(5):
        store.accept(seal(public, f"t{n}", "access_token", 10 * (n + 1), family_id="fam"))
    now[0] = 25.0
    assert store.purge() == 2 and len(store) == 3
    assert [h.token_id for h in store.for_target(RevocationTarget(kind="family", id="fam"))] == sorted(
        HASH(f"t{n}") for n in (2, 3, 4))
    assert store.purge(now=100.0) == 3 and store.held_bytes == 0


def test_missing_or_wrong_key_is_a_named_error(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv("TOKENWATCH_HANDLE_KEY", raising=False)
    monkeypatch.delenv("TOKENWATCH_HANDLE_KEY_FILE", raising=False)
    with pytest.raises(SecretError, match="TOKENWATCH_HANDLE_KEY"):
        load_private_key()
    bad = tmp_path / "k.pem"
    bad.write_text("not a key")
    with pytest.raises(SecretError, match="not a PEM private key"):
        load_private_key(path=bad)
