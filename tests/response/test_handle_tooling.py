"""Handle tooling: `tokenwatch handles keygen|seal|open` and the Envoy ext_authz reference sealer.

The reference sealer runs as a real WSGI server on loopback; what it returns is written into
an access-log line as the documented Envoy ``json_format`` would, and that line goes through
the normalizer, so the test shows the handle opens and is filed under the id the event carries.
"""

from __future__ import annotations

import base64
import io
import json
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

import httpx
import orjson
import pytest

from pipeline.cli.main import main
from pipeline.ingest.normalize import Normalizer
from pipeline.response.handles import HandleStore, load_private_key
from pipeline.response.reference.envoy_ext_authz_seal import (
    HEADER,
    PAYLOAD_HEADER,
    TokenSealer,
    bearer_token,
    make_app,
)
from schemas.redaction import make_token_hasher

HASH_KEY = "tooling-test-token-hash-key-0123456789"
HASH = make_token_hasher(HASH_KEY.encode())
SECRET_TOKEN = "opaque-Secret-Token-7f3a"


def jwt(**claims: object) -> str:
    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    return f"{part({'alg': 'ES256', 'typ': 'at+jwt'})}.{part(claims)}.c2lnbmF0dXJl"


@pytest.fixture
def keydir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Path:
    monkeypatch.setenv("TOKENWATCH_TOKEN_HASH_KEY", HASH_KEY)
    monkeypatch.delenv("TOKENWATCH_HANDLE_KEY", raising=False)
    monkeypatch.delenv("TOKENWATCH_HANDLE_KEY_FILE", raising=False)
    out = tmp_path / "keys"
    assert main(["handles", "keygen", "--out-dir", str(out)]) == 0
    capsys.readouterr()
    return out


def run(argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        stdin: str = "") -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_keygen_writes_a_0600_private_and_a_public_pem_and_never_overwrites(
    keydir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    private, public = keydir / "handle-key.pem", keydir / "handle-key.pub.pem"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    assert stat.S_IMODE(keydir.stat().st_mode) == 0o700
    assert private.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    load_private_key(path=private)  # an X25519 key tokenwatch opens handles with
    before = private.read_bytes()
    code, _, err = run(["handles", "keygen", "--out-dir", str(keydir)], monkeypatch, capsys)
    assert code == 2 and "not overwriting" in err and private.read_bytes() == before


def test_seal_then_open_round_trip_through_the_cli_never_prints_the_token(
    keydir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seal_args = ["handles", "seal", "--public-key", str(keydir / "handle-key.pub.pem"), "--token", "-",
                 "--token-type", "refresh_token", "--family-id", "fam-9", "--expires-at", "2999-01-01T00:00:00Z"]
    code, sealed, err = run(seal_args, monkeypatch, capsys, stdin=SECRET_TOKEN + "\n")
    assert code == 0 and SECRET_TOKEN not in sealed + err
    code, out, err = run(["handles", "open", "--key", str(keydir / "handle-key.pem")], monkeypatch, capsys,
                         stdin=sealed)
    assert code == 0 and SECRET_TOKEN not in out + err
    assert out.split()[:2] == [f"token_id={HASH(SECRET_TOKEN)}", "token_type=refresh_token"]
    assert "family_id=fam-9" in out

    monkeypatch.setenv("TW_TOKEN", jwt(jti="at-77", exp=4_000_000_000))
    code, sealed, _ = run(["handles", "seal", "--public-key", str(keydir / "handle-key.pub.pem"),
                           "--token-env", "TW_TOKEN"], monkeypatch, capsys)
    code, out, _ = run(["handles", "open", "--key", str(keydir / "handle-key.pem")], monkeypatch, capsys, stdin=sealed)
    assert code == 0 and "token_id=at-77" in out and "expires_at=" in out


def test_open_refuses_a_handle_whose_token_does_not_match_its_id(
    keydir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TW_TOKEN", "not-a-token")
    _, sealed, _ = run(["handles", "seal", "--public-key", str(keydir / "handle-key.pub.pem"), "--token-env",
                        "TW_TOKEN", "--token-id", HASH(SECRET_TOKEN)], monkeypatch, capsys)
    code, out, err = run(["handles", "open", "--key", str(keydir / "handle-key.pem")], monkeypatch, capsys,
                         stdin=sealed)
    assert (code, out) == (1, "") and "refused (unbound)" in err


def test_seal_without_a_token_or_with_a_private_key_is_a_usage_error(
    keydir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TW_EMPTY", raising=False)
    code, _, err = run(["handles", "seal", "--public-key", str(keydir / "handle-key.pub.pem"), "--token-env",
                        "TW_EMPTY"], monkeypatch, capsys)
    assert code == 2 and "no token in $TW_EMPTY" in err
    code, _, err = run(["handles", "seal", "--public-key", str(keydir / "handle-key.pem"), "--token", "-"],
                       monkeypatch, capsys, stdin=SECRET_TOKEN)
    assert code == 2 and "not a PEM public key" in err and SECRET_TOKEN not in err
    with pytest.raises(SystemExit):  # the token is never an argument value, nor echoed when given as one
        main(["handles", "seal", "--public-key", "k", "--token", SECRET_TOKEN])
    out, err = capsys.readouterr()
    assert "--token-env" in err and SECRET_TOKEN not in out + err


# -- the Envoy ext_authz reference sealer -------------------------------------------------------------


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # the base class's name
        pass


@pytest.fixture
def sealer_url(keydir: Path) -> Iterator[str]:
    app = make_app(TokenSealer((keydir / "handle-key.pub.pem").read_bytes()))
    server = make_server("127.0.0.1", 0, app, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)


def envoy_log_line(handle: str | None, claims: dict[str, object] | None, authorization: str | None) -> bytes:
    """The access-log line the documented ``json_format`` writes (the raw token is never logged)."""
    record: dict[str, object] = {"timestamp": "2026-11-24T09:00:05.120Z", "request_id": "req-1",
                                 "client_ip": "79.200.1.10", "method": "GET", "path": "/orders/42", "status": 200,
                                 "user_agent": "curl/8.5"}
    if claims is not None:
        record["jwt"] = claims
    else:  # a gateway without jwt_authn logs the token only as what the normalizer hashes
        record["authorization"] = authorization
    record["tokenwatch_handle"] = handle
    return orjson.dumps(record)


def test_the_envoy_sealers_jwt_handle_opens_and_binds_to_the_logged_jti(keydir: Path, sealer_url: str) -> None:
    exp = int(time.time()) + 600
    claims = {"jti": "at-0001", "sub": "alice", "client_id": "portal", "exp": exp,
              "iss": "https://sso.example.org/realms/main"}
    token = jwt(**claims)
    answer = httpx.get(f"{sealer_url}/orders/42", headers={"Authorization": f"Bearer {token}",
                                                          PAYLOAD_HEADER: verified_payload(claims)})
    assert answer.status_code == 200 and token not in answer.text
    handle = answer.headers[HEADER]

    store = HandleStore(load_private_key(path=keydir / "handle-key.pem"), HASH)
    normalizer = Normalizer(HASH, accept_handle=store.accept)
    result = normalizer.normalize(envoy_log_line(handle, claims, None), "envoy:1")
    assert normalizer.handle_counts == {"accepted": 1} and len(result.events) == 1
    event_token_id = result.events[0].token.id
    held = store.get(event_token_id)
    assert event_token_id == "at-0001" and held is not None and held.token.get_secret_value() == token
    assert held.expires_at == exp and held.issuer == claims["iss"]  # the JWT's own exp


def verified_payload(claims: dict[str, object]) -> str:
    """What jwt_authn's ``forward_payload_header`` carries: the verified payload, base64url."""
    return base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()


def test_the_envoy_sealer_seals_only_the_token_envoy_verified(sealer_url: str) -> None:
    """jwt_authn verifies only ``Authorization: Bearer`` (and ``?access_token``): a DPoP token, an
    opaque one, a JWT whose jti is not the verified payload's, or any token without the verified
    payload header was never checked, so it is not sealed. The benign twin is sealed."""
    claims = {"jti": "at-0007", "exp": int(time.time()) + 600}
    token, other = jwt(**claims), jwt(jti="at-0666", exp=int(time.time()) + 600)
    unverified = [
        {"Authorization": f"DPoP {token}", PAYLOAD_HEADER: verified_payload(claims)},
        {"Authorization": f"Bearer {SECRET_TOKEN}", PAYLOAD_HEADER: verified_payload(claims)},
        {"Authorization": f"Bearer {other}", PAYLOAD_HEADER: verified_payload(claims)},
        {"Authorization": f"Bearer {token}"},
        {"Authorization": f"Bearer {token}", PAYLOAD_HEADER: "not base64 json"},
    ]
    for headers in unverified:
        answer = httpx.get(sealer_url, headers=headers)
        assert answer.status_code == 200 and HEADER not in answer.headers
    verified = {"Authorization": f"bearer {token}", PAYLOAD_HEADER: verified_payload(claims)}
    sealed = httpx.get(sealer_url, headers=verified)
    assert sealed.status_code == 200 and HEADER in sealed.headers


def test_the_envoy_sealer_never_refuses_and_seals_only_bearer_tokens(sealer_url: str) -> None:
    for headers in ({}, {"Authorization": "Basic YWxpY2U6cGFzcw=="}, {"Authorization": "Bearer"}):
        answer = httpx.get(sealer_url, headers=headers)
        assert answer.status_code == 200 and HEADER not in answer.headers
    assert bearer_token("bearer  abc ") == "abc" and bearer_token("Bearer " + "x" * 20_000) is None
    assert bearer_token("DPoP abc") is None


def test_a_sealed_client_id_reaches_the_handle(tmp_path, capsys, monkeypatch) -> None:
    """RFC 7009 revokes with the credentials of the client the token was issued to: the seal
    may name it, and the opened handle carries it."""
    from pipeline.cli.main import main

    assert main(["handles", "keygen", "--out-dir", str(tmp_path / "k")]) == 0
    capsys.readouterr()
    monkeypatch.setenv("TW_T", "opaque-token-for-mobile")
    assert main(["handles", "seal", "--public-key", str(tmp_path / "k" / "handle-key.pub.pem"),
                 "--token-env", "TW_T", "--token-type", "refresh_token", "--client-id", "mobile"]) == 0
    sealed = capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO(sealed))
    assert main(["handles", "open", "--key", str(tmp_path / "k" / "handle-key.pem")]) == 0
    assert "client_id=mobile" in capsys.readouterr().out
