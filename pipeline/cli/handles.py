"""Revocation-handle tooling: `tokenwatch handles keygen|seal|open`.

``keygen`` makes the X25519 pair: the private PEM (mode 0600) for tokenwatch
(``[response] handle_key_file`` or ``$TOKENWATCH_HANDLE_KEY_FILE``), the public PEM for
the sources that seal. ``seal`` does what a source does, for tests and as a reference;
``open`` checks a handle a source produced, as the service would file it. The raw token is
read from stdin or an environment variable, never from the command line (shell history,
``ps``), and no command prints it.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipeline.cli.helptext import add_command, usage_only
from pipeline.response.handles import (
    TOKEN_TYPES,
    HandleError,
    HandleStore,
    generate_key_pem,
    jwt_claims,
    load_private_key,
    load_public_key,
    seal,
)
from pipeline.terminal import printable

PRIVATE_NAME = "handle-key.pem"
PUBLIC_NAME = "handle-key.pub.pem"
DEFAULT_TTL_S = 3600


def add_commands(sub: Any) -> None:
    """Register this module's sub-commands on the top-level sub-parser ``sub``."""
    handles = add_command(
        sub, "handles", help="revocation handles: make the key pair, seal and open a handle",
        description="A revocation handle is a token sealed by its source to tokenwatch's public key, so\n"
        "the service can revoke it (RFC 7009) without ever storing it in the clear. These\n"
        "commands make the key pair, seal a token as a source would, and check a handle.\n"
        "No command takes the token on its command line or prints it.",
        examples=["tokenwatch handles keygen --out-dir /etc/tokenwatch/keys",
                  "tokenwatch handles seal --public-key handle-key.pub.pem --token-env RT | "
                  "tokenwatch handles open --key handle-key.pem"],
    )
    handles.set_defaults(func=usage_only(handles))
    actions = handles.add_subparsers(metavar="ACTION")

    p = add_command(
        actions, "keygen", help=f"write {PRIVATE_NAME} (0600, for tokenwatch) and {PUBLIC_NAME} (for sources)",
        description=f"Makes an X25519 key pair: {PRIVATE_NAME} (mode 0600) for tokenwatch, named by\n"
        "[response] handle_key_file or $TOKENWATCH_HANDLE_KEY_FILE, and " + PUBLIC_NAME + " for the\n"
        "sources that seal. Never overwrites an existing key.",
        examples=["tokenwatch handles keygen --out-dir /etc/tokenwatch/keys"],
    )
    p.add_argument("--out-dir", required=True, type=Path, help="directory for the pair (created 0700 if missing)")
    p.set_defaults(func=cmd_keygen)

    p = add_command(
        actions, "seal", help="seal a token to the public key, as a source does; prints the handle",
        description="Seals a token read from stdin (--token -) or an environment variable (--token-env)\n"
        "to the public key, as a source does, and prints the handle: for tests, and as the\n"
        "reference for a source's implementation.",
        examples=["printf %s \"$REFRESH_TOKEN\" | tokenwatch handles seal --public-key handle-key.pub.pem --token -",
                  "tokenwatch handles seal --public-key handle-key.pub.pem --token-env RT --token-type refresh_token "
                  "--client-id portal"],
    )
    p.add_argument("--public-key", required=True, type=Path, help=f"the public PEM ({PUBLIC_NAME})")
    token = p.add_mutually_exclusive_group(required=True)
    token.add_argument("--token", metavar="-", type=_stdin_only, help="- : read the token from stdin")
    token.add_argument("--token-env", metavar="VAR", help="read the token from this environment variable")
    p.add_argument("--token-id", help="id the events carry for it (default: a JWT's jti, else the keyed hash)")
    p.add_argument("--token-type", choices=TOKEN_TYPES, default="access_token", help="(default: %(default)s)")
    p.add_argument("--expires-at", metavar="WHEN", type=_when,
                   help=f"epoch seconds or ISO 8601 (default: a JWT's exp, else now + {DEFAULT_TTL_S} s)")
    p.add_argument("--family-id", help="the token family (grant) it belongs to, when known")
    p.add_argument("--client-id", help="the client the token was issued to (RFC 7009 revokes with its credentials)")
    p.add_argument("--issuer", help="the issuer, when known")
    p.set_defaults(func=cmd_seal)

    p = add_command(
        actions, "open", help="open a handle from stdin with the private key and say how it is filed",
        description="Opens a handle read from stdin with the private key and prints how the service would\n"
        "file it (token id, type, expiry, family, issuer, client), never the token itself;\n"
        "exit 1 when it is refused or already expired.",
        examples=["tokenwatch handles open --key handle-key.pem < handle.txt"],
    )
    p.add_argument("--key", type=Path, help="the private PEM (default: $TOKENWATCH_HANDLE_KEY or _FILE)")
    p.set_defaults(func=cmd_open)


def cmd_keygen(args: argparse.Namespace) -> int:
    out: Path = args.out_dir
    private, public = out / PRIVATE_NAME, out / PUBLIC_NAME
    existing = [str(path) for path in (private, public) if path.exists()]
    if existing:
        return _fail(f"handles keygen: not overwriting {', '.join(existing)} (move or remove it first)")
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    private_pem, public_pem = generate_key_pem()
    _write_new(private, private_pem, 0o600)
    _write_new(public, public_pem, 0o644)
    print(printable(f"private key (tokenwatch only): {private}"))
    print(printable(f"public key (for sources): {public}"))
    where = private.resolve()
    print(printable(f'set [response] handle_key_file = "{where}" or TOKENWATCH_HANDLE_KEY_FILE={where}'))
    return 0


def cmd_seal(args: argparse.Namespace) -> int:
    try:
        public = load_public_key(args.public_key.read_bytes(), str(args.public_key))
    except OSError as exc:
        return _fail(f"handles seal: cannot read {args.public_key}: {exc.strerror}")
    if args.token_env:
        raw = os.environ.get(args.token_env, "")
        where = f"${args.token_env}"
    else:
        raw, where = sys.stdin.read(), "stdin"
    token = raw.strip()
    if not token:
        return _fail(f"handles seal: no token in {where}")
    expires_at = args.expires_at
    if expires_at is None:
        claims = jwt_claims(token) or {}
        jwt_exp = claims.get("exp")
        if isinstance(jwt_exp, (int, float)) and not isinstance(jwt_exp, bool) and math.isfinite(jwt_exp):
            expires_at = float(jwt_exp)
        else:
            expires_at = time.time() + DEFAULT_TTL_S
    extra = {name: value for name, value in (("token_id", args.token_id), ("family_id", args.family_id),
                                             ("issuer", args.issuer), ("client_id", args.client_id))
             if value is not None}
    print(seal(public, token, args.token_type, expires_at, **extra))
    return 0


def cmd_open(args: argparse.Namespace) -> int:
    from pipeline.secrets import token_hash_key
    from schemas.redaction import make_token_hasher

    key = load_private_key(path=args.key)
    store = HandleStore(key, make_token_hasher(token_hash_key()))
    sealed = sys.stdin.read().strip()
    try:
        token_id = store.accept(sealed)
    except HandleError as exc:
        return _fail(f"handles open: refused ({exc.counted_as}): {exc}", code=1)
    handle = store.get(token_id)
    if handle is None:
        return _fail(f"handles open: opens, but already expired (token id {token_id})", code=1)
    when = datetime.fromtimestamp(handle.expires_at, timezone.utc).isoformat()
    print(printable(f"token_id={token_id} token_type={handle.token_type} expires_at={when} "
                    f"family_id={handle.family_id or '-'} issuer={handle.issuer or '-'} "
                    f"client_id={handle.client_id or '-'}"))
    return 0


def _write_new(path: Path, text: str, mode: int) -> None:
    """Create ``path`` with exactly ``mode`` (never replacing a file that appeared meanwhile)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed it: make it exact
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _stdin_only(text: str) -> str:
    """``--token`` takes only ``-``: a token typed as an argument lands in shell history and
    ``ps``, and argparse would echo it in its error (this message does not)."""
    if text != "-":
        raise argparse.ArgumentTypeError("give - and the token on stdin, or use --token-env VAR")
    return text


def _when(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"not a finite time: {text!r}")
        return value
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not epoch seconds nor ISO 8601: {text!r}") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def _fail(message: str, code: int = 2) -> int:
    print(printable(f"tokenwatch: {message}"), file=sys.stderr)
    return code

