"""Detection -> revocation latency against a local RFC 7009 server (Authlib, loopback).

Prints figures, asserts nothing (not part of the test suite). Per round: the server mints a
token family (password grant, refresh, a second redemption of the first refresh token);
the source's sealed revocation handles are accepted; the canonical events go through the
detection engine. The clock starts when the triggering event (the reuse) is handed to the
engine and stops when the executor has the server's 200 for every token of the family
(``replay.refresh_reuse`` -> policy ``auto`` -> ``revoke_family`` over RFC 7009, one request
per token held: refresh tokens first). Store: SQLite file in WAL mode (as in production).
Issue target: p99 < 1 s with a local IdP.
Run: ``python benchmarks/bench_response.py --rounds 200``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.response.config import ResponseConfig, Rfc7009Config  # noqa: E402 -- run as a script: the repository root goes on sys.path first
from pipeline.response.executor import Executor  # noqa: E402 -- run as a script: the repository root goes on sys.path first
from pipeline.response.handles import HandleStore, generate_key_pem, load_private_key, seal  # noqa: E402 -- run as a script: the repository root goes on sys.path first
from pipeline.response.responders.rfc7009 import Rfc7009Responder  # noqa: E402 -- run as a script: the repository root goes on sys.path first
from pipeline.store.sqlite import SqliteStore  # noqa: E402 -- run as a script: the repository root goes on sys.path first
from schemas.redaction import make_token_hasher  # noqa: E402 -- run as a script: the repository root goes on sys.path first
from tests.factories import SINGAPORE_VPS, engine, event  # noqa: E402 -- run as a script: the repository root goes on sys.path first
from tests.integration.oauth_server import OAuthServer  # noqa: E402 -- run as a script: the repository root goes on sys.path first

DAY = 86_400.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()

    os.environ["TW_BENCH_SECRET"] = "tokenwatch-secret"
    server = OAuthServer()
    key = load_private_key(generate_key_pem()[0])
    hash_token = make_token_hasher(b"bench-token-hash-key-0123456789")
    handles = HandleStore(key, hash_token)
    responder = Rfc7009Responder("idp", Rfc7009Config(revocation_endpoint=f"{server.url}/revoke",
                                                      client_id="tokenwatch", client_secret_env="TW_BENCH_SECRET"))
    config = ResponseConfig(enabled=True, routes={"*": "idp"}, max_auto_per_minute=1_000_000,
                            rule_modes={"replay.refresh_reuse": "auto"})
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "tokenwatch.db")
        executor = Executor(config, store, {"idp": responder}, handles)
        eng = engine({"geo_divergence": {"enabled": False}})
        latencies: list[float] = []
        requests = 0
        for n in range(args.rounds):
            login = server.login()
            rotated = server.refresh(login["refresh_token"])
            stolen = server.refresh(login["refresh_token"])
            family = f"fam-{n}"
            raws = {"rt1": login["refresh_token"], "rt2": rotated["refresh_token"], "rt2x": stolen["refresh_token"],
                    "at1": login["access_token"]}
            for name, raw in raws.items():
                kind = "refresh_token" if name.startswith("rt") else "access_token"
                handles.accept(seal(key.public_key(), raw, kind, time.time() + 3600, family_id=family))
            tid = {name: hash_token(raw) for name, raw in raws.items()}
            common = dict(family=family, session=f"s-{n}", scopes=("openid",), source="idp", subject=f"user-{n}")
            base = n * 1000.0
            for ev in (
                event("issued", base, token=tid["rt1"], token_type="refresh", expires_in=DAY, **common),
                event("issued", base, token=tid["at1"], token_type="access", expires_in=3600, **common),
                event("refreshed", base + 60, token=tid["rt2"], token_type="refresh", parent=tid["rt1"],
                      expires_in=DAY, **common),
            ):
                executor.submit(eng.submit(ev))
            trigger = event("refreshed", base + 360, token=tid["rt2x"], token_type="refresh", parent=tid["rt1"],
                            expires_in=DAY, place=SINGAPORE_VPS, **common)
            before = len(server.state.revocations)
            start = time.perf_counter()
            alerts = eng.submit(trigger) + eng.flush()
            actions = executor.submit(alerts)
            elapsed = time.perf_counter() - start
            states = [store.get_action(a.id).state for a in actions]  # type: ignore[union-attr]  # every submitted action is stored: a None fails the benchmark just the same
            if states != ["succeeded"]:
                raise SystemExit(f"round {n}: expected one succeeded action, got {states}")
            requests += len(server.state.revocations) - before
            latencies.append(elapsed)
        store.close()
    server.close()
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(round(0.99 * len(latencies))) - 1)]
    print(f"rounds: {args.rounds}, revocation requests per family: {requests / args.rounds:.1f}")
    print(f"detection->revocation latency: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
          f"max {latencies[-1] * 1000:.1f} ms (target p99 < 1000 ms)")


if __name__ == "__main__":
    main()
