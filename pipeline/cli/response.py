"""Response commands: `tokenwatch revoke --alert ID`, `tokenwatch actions list|approve|deny|cancel`,
`tokenwatch breaker status|reset`.

They act on the configured store. The commands that change something take the analyst as
actor (``--actor``, else ``$TOKENWATCH_ACTOR``, else the login name) and audit every step; the
read-only ones (``actions list``, ``breaker status``) take no actor, and ``breaker reset`` with
nothing tripped changes nothing and audits nothing. ``revoke`` runs the
policy's action for the alert at once through the configured responder; an RFC 7009
responder needs the token's revocation handle, which only the running service holds in
memory, so without one here the action is queued for the service's retry job instead.
Neither ``revoke`` nor ``actions approve`` touches an action when this configuration has no
responder to carry it out: they say which keys to set instead (an attempt without a
responder would give the action up for good). ``approve`` queues the action for the
executor (the service's retry job); ``deny`` and ``cancel`` end it.
Printed ids, targets and errors (an IdP's reply) go through :func:`pipeline.terminal.printable`.
"""

from __future__ import annotations

import argparse
import json
import sys
import typing
from datetime import datetime, timezone
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from pipeline.actor import ActorError, resolve_actor
from pipeline.analyst import render
from pipeline.cli.alerts import ACTION_STATES, UsageError, json_option, opened_store, with_store
from pipeline.cli.helptext import add_command, usage_only
from pipeline.config import ConfigError, load_settings
from pipeline.response.breaker import Breaker
from pipeline.response.config import ResponderSettings, ResponseConfig
from pipeline.response.executor import Executor
from pipeline.response.policy import plan, responder_for
from pipeline.response.responders import build_responders
from pipeline.secrets import SecretError
from pipeline.store.base import ActionConflict, AlertStore
from pipeline.terminal import printable
from schemas.actions import RevocationTarget


def add_commands(sub: Any) -> None:
    """Register this module's sub-commands on the top-level sub-parser ``sub``."""
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument("--config", "-c", type=Path, help="TOML configuration file ([store] and [response])")
    actor = argparse.ArgumentParser(add_help=False)
    actor.add_argument("--actor", default=None, help="who you are, for the audit trail "
                       "(default: $TOKENWATCH_ACTOR, else your login name)")
    reads, writes = [config], [config, actor]  # --actor only where something changes

    p = add_command(
        sub, "revoke", parents=writes, help="run the policy's revocation for an alert now (as you)",
        description="Runs the response policy's action for an alert at once, through the responder\n"
        "[response.routes] names for its source, and audits it under --actor. An RFC 7009\n"
        "responder needs the token's revocation handle, which only the running service\n"
        "holds: the action is then queued for the service. Without a configured responder\n"
        "nothing changes and the keys to set are named.",
        examples=["tokenwatch revoke --alert tw-9a3f1c0d5e7b2a4c6d8e0f12 --config tokenwatch.toml",
                  "tokenwatch revoke --alert tw-9a3f1c0d5e7b2a4c6d8e0f12 -c tokenwatch.toml --actor ana@example.com"],
    )
    p.add_argument("--alert", required=True, metavar="ID", help="alert id (see `tokenwatch alerts list`)")
    p.set_defaults(func=cmd_revoke)

    as_json = json_option()
    actions = add_command(
        sub, "actions", help="response actions in the store: list, approve, deny, cancel",
        description="Response actions (revocations the policy planned) in the configured store, and the\n"
        "analyst's decisions on those that wait: approve, deny, cancel. Each decision is one\n"
        "audited state change under --actor.",
        examples=["tokenwatch actions list --state awaiting_approval -c tokenwatch.toml",
                  "tokenwatch actions approve act-5d41402abc4b2a76b9719d91 -c tokenwatch.toml --note 'confirmed with the user'"],
    )
    actions.set_defaults(func=usage_only(actions))
    xsub = actions.add_subparsers(metavar="ACTION")
    p = add_command(
        xsub, "list", parents=[*reads, as_json], help="actions, newest first (--json: JSON lines)",
        description="Response actions in the store, newest first: id, alert, target, responder, state.",
        examples=["tokenwatch actions list -c tokenwatch.toml",
                  "tokenwatch actions list --alert tw-9a3f1c0d5e7b2a4c6d8e0f12 --json -c tokenwatch.toml"],
    )
    p.add_argument("--alert", metavar="ID", help="only this alert's actions (alert id)")
    p.add_argument("--state", choices=ACTION_STATES, help="only actions in this state")
    p.add_argument("--limit", type=int, default=100, help="at most this many (default: %(default)s)")
    p.set_defaults(func=with_store(cmd_actions))
    for verb, text, then in (
        ("approve", "approve an action awaiting approval: the executor runs it",
         "It becomes pending: the running service's retry job carries it out."),
        ("deny", "deny an action awaiting approval: it is never run", "It ends; nothing is revoked."),
        ("cancel", "cancel an action that waits (awaiting approval, pending or retrying)",
         "It ends; nothing more is attempted."),
    ):
        p = add_command(
            xsub, verb, parents=writes, help=text,
            description=f"{text[0].upper()}{text[1:]}.\n{then}\nThe change is audited under --actor, with --note.",
            examples=[f"tokenwatch actions {verb} act-5d41402abc4b2a76b9719d91 -c tokenwatch.toml --note 'why'"],
        )
        p.add_argument("id", metavar="ID", help="action id (see `tokenwatch actions list`)")
        p.add_argument("--note", help="why; kept in the audit trail")
        p.set_defaults(func=with_store(cmd_transition), verb=verb)

    breaker = add_command(
        sub, "breaker", help="the automatic-revocation circuit breaker",
        description="The circuit breaker stops automatic revocations when too many happen at once\n"
        "([response] max_auto_per_minute, and per principal): later ones wait for approval\n"
        "until an analyst resets it.",
        examples=["tokenwatch breaker status -c tokenwatch.toml",
                  "tokenwatch breaker reset -c tokenwatch.toml --why 'storm over'"],
    )
    breaker.set_defaults(func=usage_only(breaker))
    bsub = breaker.add_subparsers(metavar="ACTION")
    p = add_command(
        bsub, "status", parents=reads, help="is the breaker tripped, globally or for whom?",
        description="Says whether the breaker is tripped, globally or for which principals, and the\n"
        "command that resets each.",
        examples=["tokenwatch breaker status -c tokenwatch.toml"],
    )
    p.set_defaults(func=cmd_breaker_status)
    p = add_command(
        bsub, "reset", parents=writes, help="close the breaker: automatic revocations resume",
        description="Closes a tripped breaker (the global one, or with --principal a principal's), audited\n"
        "under --actor with --why. When nothing matching is tripped it says so and changes\n"
        "nothing (no audit entry).",
        examples=["tokenwatch breaker reset -c tokenwatch.toml --why 'storm over'",
                  "tokenwatch breaker reset --principal 'user:*' -c tokenwatch.toml --why 'false positives'"],
    )
    p.add_argument("--why", default="", help="reason, for the audit trail")
    p.add_argument("--principal", default=None, metavar="NAME",
                   help="close this principal's breaker instead of the global one: user:ID, client:ID or "
                        "unknown (fnmatch patterns allowed: 'user:*')")
    p.set_defaults(func=cmd_breaker_reset)


def cmd_revoke(args: argparse.Namespace) -> int:
    try:
        actor = resolve_actor(args.actor)
    except ActorError as exc:
        print(printable(f"tokenwatch: {exc}"), file=sys.stderr)
        return 2
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
            missing = missing_responder(planned.target, config)
            if missing:
                print(printable(f"tokenwatch: alert {args.alert}: {missing}"), file=sys.stderr)
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


def missing_responder(target: RevocationTarget, config: ResponseConfig) -> str | None:
    """Why this configuration cannot revoke ``target``, with the keys to set; None if it can
    (or when ``dry_run`` sends nothing anyway)."""
    if config.dry_run:
        return None
    name = responder_for(target, config)
    if name is not None and name in config.responders:
        return None
    source = target.source or "*"
    if name is None:
        problem = f"no responder is routed for source {source!r} kind {target.kind} in this configuration"
    else:
        problem = f"[response.routes] names responder {name!r}, which is not configured"
    return (f"{problem}; nothing was changed. Set [response.routes] \"{source}\" = \"NAME\" and a "
            f"[response.responders.NAME] table: {responder_keys(target.kind)}. The README's \"Automated "
            "response\" section describes each type.")


def responder_keys(kind: str) -> str:
    """The responder types that revoke ``kind`` and the keys each one needs (from their models)."""
    from pipeline.response.responders import RESPONDERS

    parts = []
    for model in typing.get_args(typing.get_args(ResponderSettings)[0]):
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        kind_name = model.model_fields["type"].default
        if kind not in RESPONDERS[kind_name].kinds:
            continue
        keys = [n for n, f in model.model_fields.items() if f.is_required()]
        secrets = [n for n in model.model_fields if n.endswith(("_env", "_file"))]
        parts.append(f'type = "{kind_name}" with ' + ", ".join(keys)
                     + (f" and one of {', '.join(secrets)}" if secrets else ""))
    return "; ".join(parts) or f"no responder type revokes a {kind}"


def cmd_actions(args: argparse.Namespace, store: AlertStore) -> int:
    actions = store.list_actions(alert_id=args.alert, state=args.state, limit=args.limit)
    if args.json:
        for action in actions:
            sys.stdout.write(json.dumps(action.model_dump(mode="json"), separators=(",", ":")) + "\n")
    else:
        sys.stdout.write(render.table(render.ACTION_HEADERS, render.action_rows(actions)))
    return 0


def cmd_transition(args: argparse.Namespace, store: AlertStore) -> int:
    """``actions approve|deny|cancel ID``: one atomic, audited state change."""
    current = store.get_action(args.id)
    if current is None:
        raise UsageError(f"no action with id {args.id!r} in the store (see `tokenwatch actions list`)")
    config: ResponseConfig = args.settings.response
    responder = None
    if args.verb == "approve" and current.state == "awaiting_approval":
        missing = missing_responder(current.target, config)
        if missing:
            raise UsageError(f"action {args.id}: {missing}")
        responder = responder_for(current.target, config)
    try:
        changed = store.transition_action(args.id, args.verb, args.actor, note=args.note, responder=responder)
    except ActionConflict as exc:
        raise UsageError(str(exc)) from None
    then = {"pending": "; the service's retry job runs it within [response] retry_poll_s"}.get(changed.state, "")
    print(printable(f"{changed.id} {changed.target.label()}: {changed.state} by {args.actor}{then}"))
    return 0


def cmd_breaker_status(args: argparse.Namespace) -> int:
    with opened_store(args.config) as store:
        breaker = Breaker(store, load_settings(args.config).response.max_auto_per_minute)
        state, principals = breaker.state(), breaker.tripped_principals()
    if state is None:
        except_some = " (except for the principals below)" if principals else ""
        print(f"breaker closed: automatic revocations run{except_some}")
    else:
        print(printable(f"breaker TRIPPED at {state['tripped_at']} (alert {state['alert_id']}): automatic "
                        "revocations wait for approval; `tokenwatch breaker reset` resumes them"))
    for name, record in sorted(principals.items()):
        print(printable(f"{name} TRIPPED at {record['tripped_at']} (alert {record['alert_id']}): its automatic "
                        f"revocations wait for approval; `tokenwatch breaker reset --principal {name}` resumes them"))
    return 0


def cmd_breaker_reset(args: argparse.Namespace) -> int:
    try:
        actor = resolve_actor(args.actor)
    except ActorError as exc:
        print(printable(f"tokenwatch: {exc}"), file=sys.stderr)
        return 2
    settings = load_settings(args.config)
    now = datetime.now(timezone.utc)
    with opened_store(args.config) as store:
        breaker = Breaker(store, settings.response.max_auto_per_minute)
        tripped = breaker.tripped_principals()
        # Nothing tripped, nothing to reset: no audit entry claims a reset that changed nothing.
        if args.principal is None and breaker.state() is None:
            said = "breaker not tripped: nothing to reset"
            if tripped:
                said += (f" ({len(tripped)} principal breaker(s) are: see `tokenwatch breaker status`, "
                         "reset one with --principal)")
        elif args.principal is None:
            breaker.reset(actor, now, args.why)
            said = f"breaker reset by {actor}"
        elif not _any_matches(tripped, args.principal):
            said = f"no tripped principal matches {args.principal}: nothing to reset"
        else:
            closed = breaker.reset_principals(actor, now, args.principal, args.why)
            said = f"breaker reset by {actor} for {', '.join(closed)}"
    print(printable(said))
    return 0


def _any_matches(tripped: dict[str, Any], pattern: str) -> bool:
    """Whether ``Breaker.reset_principals(pattern)`` would close one of ``tripped``: the name
    itself, or an fnmatch pattern (``user:*``)."""
    return pattern in tripped or any(fnmatchcase(name, pattern) for name in tripped)
