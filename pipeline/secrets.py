"""Secrets come from the environment or a secrets file, never from config or code.

The token hash key makes token ids derived from raw bearer tokens stable (the
same token correlates across events and runs) without being reversible.
Order: ``TOKENWATCH_TOKEN_HASH_KEY`` (the key itself), then
``TOKENWATCH_TOKEN_HASH_KEY_FILE`` (a file holding it), then a key generated
once into the user's state directory (mode 0600) so a fresh install works.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

ENV_KEY = "TOKENWATCH_TOKEN_HASH_KEY"
ENV_KEY_FILE = "TOKENWATCH_TOKEN_HASH_KEY_FILE"


class SecretError(RuntimeError):
    """A secret is configured but unusable; the message says which and why."""


def state_dir() -> Path:
    base = os.environ.get("TOKENWATCH_STATE_DIR") or os.environ.get("XDG_STATE_HOME")
    root = Path(base) if base else Path.home() / ".local" / "state"
    return root if os.environ.get("TOKENWATCH_STATE_DIR") else root / "tokenwatch"


def token_hash_key() -> bytes:
    value = os.environ.get(ENV_KEY)
    if value:
        return _checked(value.encode(), ENV_KEY)
    path_value = os.environ.get(ENV_KEY_FILE)
    if path_value:
        return _read_key(Path(path_value), ENV_KEY_FILE)
    path = state_dir() / "token-hash.key"
    if path.exists():
        return _read_key(path, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32))
    print(f"tokenwatch: generated a token hash key in {path} (set {ENV_KEY} to share one)", file=sys.stderr)
    return _read_key(path, str(path))


def _read_key(path: Path, where: str) -> bytes:
    try:
        return _checked(path.read_bytes().strip(), where)
    except OSError as exc:
        raise SecretError(f"cannot read token hash key from {where}: {exc.strerror}") from None


def _checked(key: bytes, where: str) -> bytes:
    if len(key) < 16:
        raise SecretError(f"token hash key from {where} is shorter than 16 bytes")
    return key
