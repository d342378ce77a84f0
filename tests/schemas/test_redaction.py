"""Raw bearer tokens are replaced by keyed hashes wherever they hide."""

from __future__ import annotations

import re

import pytest

from schemas.redaction import (
    DEPTH_MARKER,
    FAILED_MARKER,
    MAX_DEPTH,
    is_secret_key,
    make_token_hasher,
    redact_text,
    redact_url,
    redact_value,
)

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


SECRET_NAMES = [
    "refreshToken", "x-refresh-token", "X-Api-Key", "SessionToken", "session_token", "apiKey", "APIKEY",
    "api.key", "client_secret", "secretAccessKey", "Password", "passwd", "db_pwd", "Authorization",
    "Proxy-Authorization", "cookie", "Set-Cookie", "credentials", "X-Amz-Signature", "x-amz-security-token",
    "client_assertion", "private_key", "id_token_hint", "tokenwatch_handle",
]
KEPT_NAMES = [
    "tokenId", "token_id", "refresh_token_id", "updated_refresh_token_id", "subject_token_id",
    "uniqueTokenIdentifier", "incomingTokenType", "tokenIssuerType", "refresh_token_type", "TokenIssuedAt",
    "accessKeyId", "authentication.kubernetes.io/credential-id", "authorization.k8s.io/decision", "jti",
    "sessionId", "client_auth_method", "expires_in", "token_endpoint", "key", "code_id", "errorCode",
]


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_secret_names_in_any_case_and_separator_style(name: str) -> None:
    assert is_secret_key(name)


@pytest.mark.parametrize("name", KEPT_NAMES)
def test_identifier_names_stay_readable(name: str) -> None:
    assert not is_secret_key(name)


def test_redact_value_hashes_every_shape_under_a_secret_name_and_keeps_ids(hasher) -> None:
    raw = {
        "details": {"refreshToken": "rt-raw", "token_id": "at-1", "refresh_token_type": "Refresh"},
        "x-refresh-token": ["rt-a", "rt-b"],
        "X-Api-Key": 1234567890,
        "SessionToken": {"value": "st-raw", "id": "sess-id", "nested": [{"v": "st-deep"}]},
        "credentials": {"accessKeyId": "ASIAEXAMPLE", "expiration": "2026-11-24", "sessionToken": "IQoJb3JpZ2lu"},
        "password": None, "cookie": True, "Authorization": "DPoP raw-dpop-token",
        "body": {"grant_type": "authorization_code", "code": "auth-code-1"}, "responseStatus": {"code": 201},
    }
    assert redact_value(raw, hasher) == {
        "details": {"refreshToken": hasher("rt-raw"), "token_id": "at-1", "refresh_token_type": "Refresh"},
        "x-refresh-token": [hasher("rt-a"), hasher("rt-b")],
        "X-Api-Key": hasher("1234567890"),
        "SessionToken": {"value": hasher("st-raw"), "id": "sess-id", "nested": [{"v": hasher("st-deep")}]},
        "credentials": {"accessKeyId": "ASIAEXAMPLE", "expiration": "2026-11-24",
                        "sessionToken": hasher("IQoJb3JpZ2lu")},
        "password": None, "cookie": True, "Authorization": hasher("raw-dpop-token"),
        "body": {"grant_type": "authorization_code", "code": hasher("auth-code-1")}, "responseStatus": {"code": 201},
    }


AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
STS_TOKENS = ["FwoGZXIvYXdzEBAaDPlantedSessionTokenValue0123", "IQoJb3JpZ2luX2VjEPlantedSessionTokenValue0123",
              "FQoGZXIvYXdzEBAaDPlantedSessionTokenValue0123", "AQoDYXdzEJr1PlantedSessionTokenValue0123"]


@pytest.mark.parametrize(("text", "secret", "expected"), [
    ('{"refreshToken":"rt-1","n":1}', "rt-1", '{"refreshToken":"<rt-1>","n":1}'),
    ('{"session_token":["s-a","s-b"],"tokenId":"t1"}', "s-a", '{"session_token":["<s-a>","<s-b>"],"tokenId":"t1"}'),
    ('{\\"x-refresh-token\\":\\"rt-esc\\"}', "rt-esc", '{\\"x-refresh-token\\":\\"<rt-esc>\\"}'),
    ("{'SessionToken': 'st-py'}", "st-py", "{'SessionToken': '<st-py>'}"),
    ('"password": 12345678, "pin": null', "12345678", '"password": <12345678>, "pin": null'),
    ('{"Authorization": "Bearer opaque-abc-123"}', "opaque-abc-123", '{"Authorization": "<opaque-abc-123>"}'),
    ('{"access_token": "cut-at-the-e', "cut-at-the-e", '{"access_token": "<cut-at-the-e>"'),
    ('{"code": "auth-code-9", "code_id": "k1"}', "auth-code-9", '{"code": "<auth-code-9>", "code_id": "k1"}'),
    ("X-Api-Key: key-123 rest", "key-123", "X-Api-Key: <key-123> rest"),
    ("Authorization: Bearer opaque-abc-123\r\n", "opaque-abc-123", "Authorization: Bearer <opaque-abc-123>\r\n"),
    ("Authorization: SSWS 00okta-api-token", "00okta-api-token", "Authorization: SSWS <00okta-api-token>"),
    ("Cookie: SID=s3cr3t-sid; theme=dark\r\nHost: a", "s3cr3t-sid", "Cookie: <SID=s3cr3t-sid; theme=dark>\r\nHost: a"),
    ("Authorization: Basic c3ZjOnBhc3N3b3Jk", "c3ZjOnBhc3N3b3Jk", "Authorization: Basic <c3ZjOnBhc3N3b3Jk>"),
    ("proxy sent basic c3ZjOnBhc3N3b3Jk", "c3ZjOnBhc3N3b3Jk", "proxy sent basic <c3ZjOnBhc3N3b3Jk>"),
    (f"aws_secret_access_key={AWS_SECRET}", AWS_SECRET, f"aws_secret_access_key=<{AWS_SECRET}>"),
    (f"AKIAIOSFODNN7EXAMPLE,{AWS_SECRET}", AWS_SECRET, f"AKIAIOSFODNN7EXAMPLE,<{AWS_SECRET}>"),
    *[(f"ua {t} x", t, f"ua <{t}> x") for t in STS_TOKENS],
    (f"Mozilla/5.0 {JWT}", JWT, f"Mozilla/5.0 <{JWT}>"),
    ("GET /cb?code=c-1&state=s#id_token=i-1", "c-1", "GET /cb?code=<c-1>&state=s#id_token=<i-1>"),
    ("grant_type=x&client_secret=cs-1&client_id=svc", "cs-1", "grant_type=x&client_secret=<cs-1>&client_id=svc"),
])
def test_redact_text_catches_each_spelling(hasher, text: str, secret: str, expected: str) -> None:
    def hashed(match: re.Match[str]) -> str:
        return hasher(match.group(1))

    assert redact_text(text, hasher) == re.sub(r"<([^<>]*)>", hashed, expected)
    assert secret not in redact_text(text, hasher)


@pytest.mark.parametrize("text", [
    '{"uniqueTokenIdentifier":"UTI-1","incomingTokenType":"refreshToken","tokenIssuerType":"AzureAD"}',
    '{"token_id":"at-1","refresh_token_id":"rt-1","TokenIssuedAt":"2026-11-24T09:00:00Z","jti":"j-1"}',
    '{"accessKeyId":"ASIAEXAMPLETEMP0001","authorization.k8s.io/decision":"allow","errorCode":"E1"}',
    "Basic authentication failed for user alice",
    "GET /authorize?client_id=portal&response_type=code&scope=openid&code_challenge=abc",
    '"token": null, "cookie": "", "password": true',
    "commit da39a3ee5e6b4b0d3255bfef95601890afd80709 by alice@example.org",
])
def test_redact_text_leaves_identifiers_and_prose_alone(hasher, text: str) -> None:
    assert redact_text(text, hasher) == text


def test_text_and_parsed_forms_hash_a_bearer_token_alike(hasher) -> None:
    """The adapters key a raw bearer token by hash_token(token): redaction keeps that id."""
    assert redact_value({"authorization": "Bearer opaque-abc-123"}, hasher)["authorization"] == hasher("opaque-abc-123")
    assert hasher("opaque-abc-123") in redact_text('{"authorization": "Bearer opaque-abc-123"}', hasher)
    assert hasher("a/b") in redact_text('{"token": "a\\/b"}', hasher)


@pytest.mark.parametrize(("url", "expected"), [
    ("/orders/42?access_token=at-9&page=2", "/orders/42?access_token=<at-9>&page=2"),
    ("/cb?CODE=c-9&X-Amz-Signature=s-9&X-Amz-Credential=AKIA/x",
     "/cb?CODE=<c-9>&X-Amz-Signature=<s-9>&X-Amz-Credential=<AKIA/x>"),
    ("/blob?sv=2024&sig=sas-9&key=api-9", "/blob?sv=2024&sig=<sas-9>&key=<api-9>"),
    ("/app;jsessionid=js-9?x=1", "/app;jsessionid=<js-9>?x=1"),
    ("/cb#access_token=at-8&token_type=Bearer", "/cb#access_token=<at-8>&token_type=Bearer"),
    ("/x?access%5Ftoken=at-7", "/x?access%5Ftoken=<at-7>"),
    ("https://svc:pa55word@host/p", "https://svc:<pa55word>@host/p"),
    (f"/verify/{JWT}/done", f"/verify/<{JWT}>/done"),
    ("/orders/42?page=2&token_type=Bearer&client_id=portal", "/orders/42?page=2&token_type=Bearer&client_id=portal"),
])
def test_redact_url_hashes_credential_parameters_and_keeps_the_path(hasher, url: str, expected: str) -> None:
    assert redact_url(url, hasher) == re.sub(r"<([^<>]*)>", lambda m: hasher(m.group(1)), expected)


def _nested(depth: int, leaf: object) -> object:
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


def test_redact_value_caps_depth_with_a_marker_and_never_raises(hasher) -> None:
    deep = redact_value(_nested(1000, {"refreshToken": "deep-secret"}), hasher)
    assert "deep-secret" not in repr(deep)
    cursor = deep
    for _ in range(MAX_DEPTH):
        cursor = cursor["a"]
    assert cursor == DEPTH_MARKER
    just_fits = _nested(MAX_DEPTH - 1, {"token": "t"})
    assert redact_value(just_fits, hasher) == _nested(MAX_DEPTH - 1, {"token": hasher("t")})
    lists: list[object] = []
    for _ in range(100_000):
        lists = [lists]
    assert "[redacted" in repr(redact_value(lists, hasher))
    cycle: dict[str, object] = {}
    cycle["self"] = cycle
    assert DEPTH_MARKER in repr(redact_value(cycle, hasher))


def test_redact_value_survives_odd_keys_huge_lists_and_hostile_objects(hasher) -> None:
    class Hostile:
        def __str__(self) -> str:
            raise RuntimeError("no")

    big = list(range(1_000_000))
    assert redact_value(big, hasher) == big
    assert redact_value({1: "a", None: "b", ("t",): {"token": "x"}}, hasher) == {
        "1": "a", "None": "b", "('t',)": {"token": hasher("x")}}
    assert redact_value({"token": 10**5000}, hasher) == {"token": FAILED_MARKER}
    assert redact_value({"token": Hostile()}, hasher) == {"token": FAILED_MARKER}
    assert redact_value({"tokens": (b"raw-bytes",)}, hasher) == {"tokens": [hasher("raw-bytes")]}
