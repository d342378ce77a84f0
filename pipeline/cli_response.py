"""Response commands: `tokenwatch revoke --alert ID`, `tokenwatch breaker status|reset`.

Both act on the configured store with the analyst as actor (``--actor``, else
``$TOKENWATCH_ACTOR``, else the login name), and every step is audited. ``revoke`` runs the
policy's action for the alert at once through the configured responder; an RFC 7009
responder needs the token's revocation handle, which only the running service holds in
memory, so without one here the action is queued for the service's retry job instead.
Printed ids, targets and errors (an IdP's reply) go through :func:`pipeline.terminal.printable`.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipeline.cli_analyst import default_actor, opened_store
from pipeline.config import ConfigError, load_settings
from pipeline.response.breaker import Breaker
from pipeline.response.executor import Executor
from pipeline.response.policy import plan
from pipeline.response.responders import build_responders
from pipeline.secrets import SecretError
from pipeline.terminal import printable


def add_commands(sub: Any) -> None:
    """Register this module's sub-commands on the top-level sub-parser ``sub``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", "-c", type=Path, help="TOML configuration file ([store] and [response])")
    common.add_argument("--actor", default=None, help="who you are, for the audit trail "
                        "(default: $TOKENWATCH_ACTOR, else your login name)")

    p = sub.add_parser("revoke", parents=[common], help="run the policy's revocation for an alert now (as you)")
    p.add_argument("--alert", required=True, metavar="ID", help="alert id (see `tokenwatch alerts list`)")
    p.set_defaults(func=cmd_revoke)

    breaker = sub.add_parser("breaker", help="the automatic-revocation circuit breaker")
    bsub = breaker.add_subparsers(metavar="ACTION")
    p = bsub.add_parser("status", parents=[common], help="is the breaker tripped?")
    p.set_defaults(func=cmd_breaker_status)
    p = bsub.add_parser("reset", parents=[common], help="close the breaker: automatic revocations resume")
    p.add_argument("--why", default="", help="reason, for the audit trail")
    p.set_defaults(func=cmd_breaker_reset)


def cmd_revoke(args: argparse.Namespace) -> int:
    actor = args.actor or default_actor()
    try:
        settings = load_settings(args.config)
        config = settings.response
        responders = build_responders(config.responders)
    except (ConfigError, SecretError) as exc:
        print(printable(f"tokenwatch: {exc}"), file=sys.stderr)
        return 2
    try:
        with opened_store(args.config) as store:
            doc = store.get_alert(args.alert)
            if doc is None:
                print(printable(f"tokenwatch: no alert {args.alert}"), file=sys.stderr)
                return 2
            planned = plan(doc, config, datetime.now(timezone.utc), mode="manual", actor=actor)
            if planned is None:
                print(printable(f"tokenwatch: alert {args.alert}: its rule asks for no revocation"), file=sys.stderr)
                return 2
            responder = responders.get(planned.responder or "")
            execute = not (responder is not None and responder.needs_handle)
            action = Executor(config, store, responders).revoke_alert(args.alert, actor, execute=execute)
    finally:
        for responder in responders.values():
            responder.close()
    queued = " (queued for the running service, which holds the revocation handles)" if not execute else ""
    error = f": {action.last_error}" if action.last_error else ""
    via = action.responder or "-"
    print(printable(f"{action.id} {action.target.label()} via {via}: {action.state}{queued}{error}"))
    return 0 if action.state in ("succeeded", "dry_run", "pending") else 1


def cmd_breaker_status(args: argparse.Namespace) -> int:
    with opened_store(args.config) as store:
        state = Breaker(store, load_settings(args.config).response.max_auto_per_minute).state()
    if state is None:
        print("breaker closed: automatic revocations run")
    else:
        print(printable(f"breaker TRIPPED at {state['tripped_at']} (alert {state['alert_id']}): automatic "
                        "revocations wait for approval; `tokenwatch breaker reset` resumes them"))
    return 0


def cmd_breaker_reset(args: argparse.Namespace) -> int:
    actor = args.actor or default_actor()
    settings = load_settings(args.config)
    with opened_store(args.config) as store:
        was = Breaker(store, settings.response.max_auto_per_minute).reset(actor, datetime.now(timezone.utc), args.why)
    print(printable(f"breaker reset by {actor}" if was else f"breaker was not tripped (reset recorded for {actor})"))
    return 0
