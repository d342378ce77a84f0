"""The message-key rule (pipeline/kafka/keys.py) and the Kafka settings, without a broker."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.config import ConfigError, load_settings
from pipeline.ingest.config import InputConfig, TrustConfig
from pipeline.ingest.normalize import Normalizer
from pipeline.ingest.trust import TrustRules
from pipeline.kafka.config import (
    KafkaConfig,
    client_kwargs,
    consumer_kwargs,
    producer_kwargs,
)
from pipeline.kafka.keys import KEY_ORDER, event_key, line_key, partition_key
from pipeline.kafka.merge import keyed_lines
from pipeline.runtime.lines import LineReader
from tests.fuzzing import NOW

ROOT = Path(__file__).resolve().parents[2]
FORMATS_DIR = ROOT / "tests" / "data" / "formats"
SAMPLE = ROOT / "pipeline" / "data" / "sample.jsonl"

# The documented key of every bundled sample line: the subject id each format names.
EXPECTED = {
    "cloudtrail": [b"arn:aws:sts::111122223333:assumed-role/app-role/i-0abc123"] * 3,
    "entra": [b"2ce85a15-0000-4000-8000-0000000000aa"] * 2,
    "graph": [b"2ce85a15-0000-4000-8000-0000000000aa"] * 2,
    "gateway": [b"5b0e9a7c-3f21-4d8e-a1c2-77d9e4b1f0aa"] * 3,
    "keycloak": [b"5b0e9a7c-3f21-4d8e-a1c2-77d9e4b1f0aa"] * 6,
    "k8s": [b"system:serviceaccount:payments:ledger"] * 2,
    "okta": [b"00u8f2kq1zXyAbCdE5d7"] * 6,
}


def _lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().splitlines() if line.strip()]


@pytest.mark.parametrize("fmt", sorted(EXPECTED))
def test_each_format_sample_line_has_the_documented_key(fmt: str, hasher) -> None:
    lines = _lines(FORMATS_DIR / f"{fmt}.jsonl")
    keys = [line_key(line, hasher) for line in lines]
    assert [k.key for k in keys] == EXPECTED[fmt]
    assert {k.basis for k in keys} == {"subject"}
    assert [partition_key(orjson.loads(line), fmt, hash_token=hasher) for line in lines] == EXPECTED[fmt]


def test_issuer_and_resource_server_of_one_token_share_a_key(hasher) -> None:
    """Entra sign-in ↔ Graph use, Keycloak issuance ↔ gateway use: the pairs a family-first rule splits."""
    entra = {line_key(line, hasher).key for line in _lines(FORMATS_DIR / "entra.jsonl")}
    graph = {line_key(line, hasher).key for line in _lines(FORMATS_DIR / "graph.jsonl")}
    keycloak = {line_key(line, hasher).key for line in _lines(FORMATS_DIR / "keycloak.jsonl")}
    gateway = {line_key(line, hasher).key for line in _lines(FORMATS_DIR / "gateway.jsonl")}
    assert entra == graph and len(entra) == 1
    assert keycloak == gateway and len(keycloak) == 1


def _family_keys(paths: list[Path], hasher) -> dict[str, set[bytes]]:
    normalizer = Normalizer(hasher, InputConfig(), clock=lambda: NOW)
    families: dict[str, set[bytes]] = defaultdict(set)
    lineage: dict[str, str] = {}  # token id -> family, for uses that name only the token
    for path in paths:
        for line in _lines(path):
            key = line_key(line, hasher).key
            for event in normalizer.normalize(line, "t").events:
                token = event.token
                family = (token.family_id if token else None) or (lineage.get(token.id) if token else None)
                if token and family:
                    lineage[token.id] = family
                if family:
                    families[family].add(key)
    return families


def test_all_events_of_one_family_have_one_key(hasher) -> None:
    families = _family_keys([SAMPLE, *sorted(FORMATS_DIR.glob("*.jsonl"))], hasher)
    assert len(families) > 20
    assert {family: keys for family, keys in families.items() if len(keys) != 1} == {}


def test_keys_are_stable_across_processes() -> None:
    """No Python hash() (randomised per process) anywhere in the rule."""
    script = (
        "import sys\n"
        "from pipeline.kafka.keys import line_key\n"
        "from schemas.redaction import make_token_hasher\n"
        "h = make_token_hasher(b'k' * 32)\n"
        f"for line in open({str(SAMPLE)!r}, 'rb'):\n"
        "    sys.stdout.buffer.write(line_key(line.rstrip(b'\\n'), h).key + b'\\n')\n"
    )
    runs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
        runs.append(subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True).stdout)
    assert runs[0] == runs[1] and runs[0].count(b"\n") == len(SAMPLE.read_bytes().splitlines())


def _canonical(**fields: object) -> bytes:
    base: dict[str, object] = {
        "canonical_version": 1, "event_id": "e-1", "kind": "used", "time": "2026-11-23T01:00:00Z", "source": "idp",
    }
    return orjson.dumps(base | fields)


@pytest.mark.parametrize(
    ("fields", "key", "basis"),
    [
        ({"subject": {"id": "alice"}, "session_id": "s1", "token": {"id": "t1", "family_id": "f1"}}, b"alice", "subject"),
        ({"session_id": "s1", "token": {"id": "t1", "family_id": "f1"}}, b"s1", "session"),
        ({"token": {"id": "t1", "family_id": "f1"}}, b"f1", "family"),
        ({"token": {"id": "t1"}}, b"t1", "token"),
        ({}, b"e-1", "event"),
    ],
)
def test_precedence_subject_session_family_token_event(fields, key: bytes, basis: str, hasher) -> None:
    found = line_key(_canonical(**fields), hasher)
    assert (found.key, found.basis) == (key, basis)
    assert KEY_ORDER == ("subject", "session", "family", "token", "event")


def test_a_multi_event_line_takes_the_first_subject(hasher) -> None:
    line = _lines(FORMATS_DIR / "keycloak.jsonl")[1]  # CODE_TO_TOKEN: access and refresh token
    assert line_key(line, hasher).key == b"5b0e9a7c-3f21-4d8e-a1c2-77d9e4b1f0aa"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"\x00\xff garbage", "not JSON"),
        (b"[1, 2]", "not a JSON object but list"),
        (b'{"hello": "world"}', "unknown format"),
        (_canonical(kind="exploded"), "canonical: kind"),
    ],
)
def test_lines_that_map_to_nothing_are_keyed_by_the_dead_letter_hash(line: bytes, reason: str, hasher) -> None:
    found = line_key(line, hasher)
    assert found.basis == "content" and reason in (found.reason or "")
    dead = Normalizer(hasher, clock=lambda: NOW).normalize(line, "t").dead_letter
    assert dead is not None
    assert found.key == b"sha256:" + dead["raw_sha256"].encode() == b"sha256:" + hashlib.sha256(line).hexdigest().encode()


def test_a_line_dated_ahead_is_keyed_by_its_token_whatever_the_skew(hasher) -> None:
    """The service judges the future-skew bound when it reads a line, later than `produce`
    sends it (consumer lag, a replay), and perhaps with a raised bound (a source whose clock
    runs fast). Keyed with the bound, a line the service accepts went by its content hash, to
    another partition than its token's; a line the service refuses reaches no engine, so its
    key changes nothing."""
    ahead = datetime.now(timezone.utc) + timedelta(hours=2)  # past the shipped 900 s of skew
    line = _canonical(time=ahead.isoformat(), subject={"id": "alice"}, token={"id": "t1"})
    lenient = InputConfig(max_future_skew_s=86_400)
    assert Normalizer(hasher, lenient).normalize(line, "t").events  # what such a service maps

    for config in (None, lenient):
        found = line_key(line, hasher, config=config)
        assert (found.key, found.basis) == (b"alice", "subject")
    assert partition_key(orjson.loads(line), hash_token=hasher) == b"alice"


def test_a_record_dated_past_the_skew_does_not_take_the_key_from_the_records_kept(hasher) -> None:
    """The service drops an envelope's record dated past the bound and keeps the others: a
    record dated 2099 naming a decoy, first in the envelope, must not send the real use
    beside it to the decoy's partition. (A line all of whose events are ahead is keyed by its
    token, above, and has no event time: it keeps its place in a backfill merge.)"""
    use = orjson.loads(_lines(FORMATS_DIR / "gateway.jsonl")[0])
    decoy = {**use, "timestamp": "2099-01-01T00:00:00Z", "jwt": {**use["jwt"], "sub": "decoy", "jti": "at-decoy"}}
    line = orjson.dumps({"records": [decoy, use]})
    kept = Normalizer(hasher).normalize(line, "t").events  # what the service keeps
    assert [event.subject.id for event in kept if event.subject] == [use["jwt"]["sub"]]

    found = line_key(line, hasher)
    assert (found.key, found.basis) == (use["jwt"]["sub"].encode(), "subject")
    assert found.epoch == kept[0].epoch
    alone = line_key(orjson.dumps(decoy), hasher)
    assert (alone.key, alone.epoch) == (b"decoy", None)


def test_a_line_is_keyed_with_the_deployments_max_depth(hasher) -> None:
    """A service with a lower max_depth cuts what a deep envelope nests: the subject of its
    record is gone and the line is the event's. `produce` with that [input] keys it so."""
    record = orjson.loads(_canonical(subject={"id": "alice"}, token={"id": "t1"}))
    line = orjson.dumps({"records": [record]})
    shallow = InputConfig(max_depth=3)
    expected = event_key(Normalizer(hasher, shallow).normalize(line, "t").events)

    assert expected is not None and expected[0] != b"alice"  # the deployment's mapping differs
    assert line_key(line, hasher).key == b"alice"  # (the shipped one keeps the subject)
    found = line_key(line, hasher, config=shallow)
    assert (found.key, found.basis) == expected
    [keyed] = keyed_lines([line], "in", hasher, config=shallow)
    assert keyed.key == found


def test_a_record_the_topic_may_not_carry_does_not_take_the_key(hasher) -> None:
    """An envelope whose first record is a canonical event naming a decoy subject, on a topic
    not trusted with canonical events: the service refuses that record and keeps the gateway
    use of alice's token, so the line must go to alice's partition, not the decoy's."""
    decoy = orjson.loads(_canonical(subject={"id": "decoy"}, token={"id": "t-decoy"}))
    use = orjson.loads(_lines(FORMATS_DIR / "gateway.jsonl")[0])
    line = orjson.dumps({"records": [decoy, use]})
    trust = TrustRules(TrustConfig())
    judged = LineReader(Normalizer(hasher), trust).judge(Normalizer(hasher).normalize(line, "t"), "t", "events")
    assert [event.subject.id for event in judged.events if event.subject] == ["5b0e9a7c-3f21-4d8e-a1c2-77d9e4b1f0aa"]

    assert line_key(line, hasher).key == b"decoy"  # every record counted
    found = line_key(line, hasher, trust=trust, topic="events")
    assert (found.key, found.basis) == (b"5b0e9a7c-3f21-4d8e-a1c2-77d9e4b1f0aa", "subject")
    trusted = TrustRules(TrustConfig(trusted_topics=("events",)))
    assert line_key(line, hasher, trust=trusted, topic="events").key == b"decoy"  # a trusted topic keeps both
    only_decoy = orjson.dumps({"records": [decoy]})
    assert line_key(only_decoy, hasher, trust=trust, topic="events").reason == "every event refused by the trust rules"


def test_partition_key_of_an_unmappable_record_hashes_its_sorted_json(hasher) -> None:
    assert partition_key({"b": 1, "a": 2}, hash_token=hasher) == partition_key({"a": 2, "b": 1}, hash_token=hasher)
    with pytest.raises(ValueError, match="unknown format"):
        partition_key({"a": 1}, "nope", hash_token=hasher)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_get_a_key(data: bytes) -> None:
    from schemas.redaction import make_token_hasher

    found = line_key(data, make_token_hasher(b"k" * 32))
    assert found.key and found.basis in (*KEY_ORDER, "content")


# --- settings ---------------------------------------------------------------


def test_sasl_password_is_masked_and_reaches_only_the_client_kwargs(tmp_path: Path) -> None:
    config = KafkaConfig(
        security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_username="tw",
        sasl_password="s3cret-pw", ssl_cafile=tmp_path / "ca.pem",
    )
    assert "s3cret-pw" not in repr(config) and "s3cret-pw" not in config.model_dump_json()
    kwargs = client_kwargs(config)
    assert kwargs["sasl_plain_password"] == "s3cret-pw" and kwargs["ssl_cafile"] == str(tmp_path / "ca.pem")
    assert consumer_kwargs(config)["check_crcs"] is True
    assert consumer_kwargs(config)["enable_auto_commit"] is False
    assert producer_kwargs(config)["acks"] == "all"


def test_sasl_without_credentials_is_refused() -> None:
    with pytest.raises(ValueError, match="sasl_mechanism"):
        KafkaConfig(security_protocol="SASL_PLAINTEXT")
    with pytest.raises(ValueError, match="SASL_PASSWORD"):
        KafkaConfig(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username="u")


def test_settings_read_the_kafka_table_with_env_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "tw.toml"
    path.write_text('[kafka]\nbootstrap_servers = ["a:9092"]\n[kafka.topics]\nalerts = "my.alerts"\n')
    for name, value in {
        "TOKENWATCH_KAFKA__BOOTSTRAP_SERVERS": "b:9092,c:9092",
        "TOKENWATCH_KAFKA__TOPICS__INPUT": '["x", "y"]',
        "TOKENWATCH_KAFKA__SESSION_TIMEOUT_MS": "6000",
        "TOKENWATCH_KAFKA__HEARTBEAT_INTERVAL_MS": "1000",
    }.items():
        monkeypatch.setenv(name, value)
    config = load_settings(path).kafka
    assert config.bootstrap_servers == ["b:9092", "c:9092"]
    assert config.topics.input == ["x", "y"] and config.topics.alerts == "my.alerts"
    assert config.session_timeout_ms == 6000


def test_settings_refuse_secrets_in_the_file_and_name_bad_keys(tmp_path: Path) -> None:
    path = tmp_path / "tw.toml"
    for section, key in (("kafka", "sasl_password"), ("elasticsearch", "api_key"), ("elasticsearch", "password")):
        path.write_text(f'[{section}]\n{key} = "oops"\n')
        with pytest.raises(ConfigError, match=f"{section}.{key} is a secret and must not be in a config file"):
            load_settings(path)
    path.write_text('[kafka]\nbootstrap_server = "typo:1"\n')
    with pytest.raises(ConfigError, match="kafka.bootstrap_server"):
        load_settings(path)


def test_password_file_is_read_at_use(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    config = KafkaConfig(
        security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username="u", sasl_password_file=secret
    )
    assert client_kwargs(config)["sasl_plain_password"] == "from-file"
