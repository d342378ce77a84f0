"""The `tokenwatch` command line.

Exit codes: 0 the run completed (whatever the input held), 2 usage or
configuration error, 1 could not run (unreadable input, unwritable output).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import sys
from collections.abc import Collection, Sequence
from pathlib import Path

from pipeline import DATA_DIR, exit_codes
from pipeline.cli.helptext import add_command, examples_text, usage_only, version
from pipeline.cli.interrupt import reported
from pipeline.config import (
    ConfigError,
    Settings,
    changed_settings,
    defaults_toml,
    load_settings,
    masked_dump,
    rules_markdown,
)
from pipeline.runtime.detect import DetectStopped, run_detect
from pipeline.runtime.files import open_output
from pipeline.secrets import SecretError
from pipeline.store.base import AlertStore, StoreNotFound
from pipeline.terminal import printable
from schemas.alerts import Alert
from schemas.sources import FORMATS

SAMPLE_STREAM = DATA_DIR / "sample.jsonl"


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    parser = _parser(words[0] if words else None)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except (ConfigError, SecretError) as exc:
        print(printable(f"tokenwatch: configuration error: {exc}"), file=sys.stderr)
        return 2
    except StoreNotFound as exc:
        print(printable(f"tokenwatch: {exc}"), file=sys.stderr)
        return exit_codes.NOT_FOUND
    except OSError as exc:
        print(printable(f"tokenwatch: cannot run: {exc}"), file=sys.stderr)
        return 1


DESCRIPTION = """\
Detects misuse of authentication tokens (refresh-token replay, use from two places
at once, impossible travel, scope escalation, use after revocation or expiry) in
identity-provider and resource-server logs, and helps triage and answer the alerts.

Settings come from a TOML file (--config) and from TOKENWATCH_<SECTION>__<KEY>
environment variables, which override it; `tokenwatch config defaults` lists every
key. Exit codes: 0 done, 1 ran and something failed, 2 configuration or usage error,
3 not found, 4 Kafka unreachable, 5 metrics port in use, 6 Elasticsearch refused; Ctrl-C
ends a command by SIGINT (130 in a shell), except `run`, which stops cleanly (0)."""

EXAMPLES = (
    "tokenwatch demo                                     # the whole flow on synthetic data, no servers",
    "tokenwatch detect -i events.jsonl -o alerts.jsonl   # batch detection",
    "tokenwatch alerts list --config demo-output/tokenwatch.toml",
    "tokenwatch config check tokenwatch.toml",
    "tokenwatch COMMAND --help                           # each command's options and examples",
)

RUN_DESCRIPTION = """\
The streaming service: joins the Kafka consumer group, runs the detectors on every
assigned partition, checkpoints state to a changelog topic, and writes alerts to
Elasticsearch and the alerts topic; /healthz and /metrics on service.metrics_port.

Its settings come from the TOML file (--config) with TOKENWATCH_<SECTION>__<KEY>
environment variables over it. The ones to set first:
  kafka.bootstrap_servers    brokers (default ["127.0.0.1:9092"])
  kafka.topics.input         topics to read (default ["tokenwatch.events"])
  kafka.group_id             consumer group (default "tokenwatch")
  elasticsearch.hosts        where alerts and events are indexed
  trust                      which topic carries which format; whose revocations count
  response.enabled           revoke tokens automatically (default false)
Secrets (TOKENWATCH_KAFKA__SASL_PASSWORD, TOKENWATCH_ELASTICSEARCH__API_KEY...) come
from the environment or *_file keys, never the file. `tokenwatch config check FILE`
validates it all; `tokenwatch config defaults` lists every key."""


# The command groups that live in their own modules (one job each: analyst triage, response,
# the anomaly model, revocation handles), with the commands each adds, in the order
# `tokenwatch --help` lists them. Importing them costs more CPU than most commands' work
# (the response group loads the HTTP and crypto clients), so a command imports only its own.
GROUPS: dict[str, tuple[str, ...]] = {
    "pipeline.cli.alerts": ("alerts",),
    "pipeline.cli.response": ("revoke", "actions", "breaker"),
    "pipeline.cli.model": ("model",),
    "pipeline.cli.handles": ("handles",),
}


def _groups(command: str | None, own: Collection[str]) -> list[str]:
    """The group modules to import for a command line starting with ``command``: none for a
    command of this module, the one that adds it, else (``--help``, an option, a misspelt
    command) every one, so the help and the error list every command."""
    if command in own:
        return []
    return [module for module, names in GROUPS.items() if command in names] or list(GROUPS)


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or with ``command`` (the first word of the command line) the parser
    that parses it the same way: the other groups' commands are left out."""
    parser = argparse.ArgumentParser(prog="tokenwatch", description=DESCRIPTION, epilog=examples_text(EXAMPLES),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(metavar="COMMAND")

    detect = add_command(
        sub, "detect", help="read JSON lines, write alert JSON lines",
        description="Batch detection: reads log lines (any supported format, detected per line unless\n"
        "--format names one), writes one alert JSON line per alert, and puts lines it cannot\n"
        "read in the dead-letter file with the reason. A summary goes to stderr. Settings:\n"
        "--config and TOKENWATCH_* environment variables (see `tokenwatch --help`).",
        examples=["tokenwatch detect -i events.jsonl -o alerts.jsonl",
                  "tokenwatch detect -i okta.jsonl -f okta --config tokenwatch.toml --store   # also into the store",
                  "cat events.jsonl | tokenwatch detect -i - > alerts.jsonl"],
    )
    detect.add_argument("--input", "-i", required=True, help="input file of JSON lines, or - for stdin")
    detect.add_argument("--output", "-o", default="-", help="alert JSON lines file, or - for stdout")
    detect.add_argument(
        "--format", "-f", default="auto", choices=["auto", *sorted(FORMATS)], help="input format (default: auto per line)"
    )
    detect.add_argument("--config", "-c", type=Path, help="TOML configuration file")
    detect.add_argument(
        "--dead-letter", type=Path, default=Path("tokenwatch-dead-letters.jsonl"),
        help="where rejected lines go, with their reason (default: %(default)s)",
    )
    detect.add_argument(
        "--store", action="store_true",
        help="also upsert the alerts into the configured alert store ([store]: SQLite file by default) for triage",
    )
    detect.add_argument(
        "--workers", "-w", type=_positive, default=1, metavar="N",
        help="processes that each normalise and judge their share of the lines, routed by the Kafka "
        "message-key rule as `run` partitions are, so the alerts are those of `run` with N partitions "
        "(README 'Detect': where that differs from one process); default 1: one process",
    )
    detect.set_defaults(func=cmd_detect)

    demo = add_command(
        sub, "demo", help="generate a synthetic world with injected attacks, detect, store, respond (dry run): no servers",
        description="The whole flow on one machine, no servers: generates a synthetic company (employees,\n"
        "services, their IdP and gateway logs) with one injected attack per rule, detects, stores\n"
        "the alerts, runs the responder in dry run against a local endpoint, and prints which\n"
        "attack each alert caught and the false positives. Everything lands in --output-dir,\n"
        "with a tokenwatch.toml the triage commands can read.",
        examples=["tokenwatch demo",
                  "tokenwatch demo --size 40 --duration 8h --output-dir /tmp/tw   # smaller and faster",
                  "tokenwatch alerts list --config demo-output/tokenwatch.toml   # then triage its alerts"],
    )
    demo.add_argument("--size", type=int, default=300, metavar="USERS", help="employees in the world (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=7, help="same seed, same world (default: %(default)s)")
    demo.add_argument("--duration", default="24h", metavar="SPAN",
                      help="simulated event time, e.g. 12h, 2d, 90m (at least 6h; default: %(default)s)")
    demo.add_argument("--output-dir", type=Path, default=Path("demo-output"),
                      help="events, labels, alerts, store and summary go here (default: %(default)s)")
    demo.add_argument("--sample", action="store_true", help="run the small bundled sample instead of the world")
    demo.set_defaults(func=cmd_demo)

    produce = add_command(
        sub, "produce", help="load JSON lines into a Kafka topic, keyed so one token family shares a partition",
        description="Loads log lines into a Kafka topic for `tokenwatch run`, keyed so that every line of\n"
        "one token family lands in one partition. Several inputs are merged by event time.\n"
        "The broker comes from --bootstrap, else the [kafka] table of --config, else\n"
        "TOKENWATCH_KAFKA__BOOTSTRAP_SERVERS, else 127.0.0.1:9092.",
        examples=["tokenwatch produce -i demo-output/events -t tokenwatch.events --bootstrap 127.0.0.1:9092 "
                  "--create-topics 3",
                  "tokenwatch produce -i okta.jsonl -t tokenwatch.events --config tokenwatch.toml"],
    )
    produce.add_argument(
        "--input", "-i", required=True, nargs="+", metavar="PATH",
        help="files or directories of JSON lines (several are merged by event time: the way to load a "
        "history exported per source), or - for stdin",
    )
    produce.add_argument("--topic", "-t", required=True, help="topic to produce to")
    produce.add_argument("--config", "-c", type=Path,
                         help="TOML configuration file: the service's, whose [kafka], [input] and [trust] tables "
                         "produce reads (lines are keyed as that service will map them)")
    produce.add_argument("--bootstrap", help="host:port[,host:port] overriding kafka.bootstrap_servers")
    produce.add_argument(
        "--format", "-f", default="auto", choices=["auto", *sorted(FORMATS)],
        help="input format used for keys (the service detects each line's format: leave it at auto, or "
        "lines may be keyed otherwise than the service maps them)"
    )
    produce.add_argument("--create-topics", type=int, metavar="PARTITIONS", help="create missing topics first")
    produce.set_defaults(func=cmd_produce)

    run = add_command(
        sub, "run", help="the streaming service: Kafka consumer group -> detectors -> Elasticsearch + alerts topic",
        description=RUN_DESCRIPTION,
        examples=["tokenwatch run --config tokenwatch.toml",
                  "tokenwatch config check tokenwatch.toml && tokenwatch run -c tokenwatch.toml   # check first",
                  "TOKENWATCH_KAFKA__BOOTSTRAP_SERVERS='[\"kafka-1:9092\"]' \\",
                  "  TOKENWATCH_ELASTICSEARCH__API_KEY=... tokenwatch run -c tokenwatch.toml"],
    )
    run.add_argument("--config", "-c", type=Path, required=True, metavar="FILE",
                     help="TOML configuration file; TOKENWATCH_* environment variables override its keys")
    run.add_argument(
        "--workers", "-w", type=_positive, default=1, metavar="N",
        help="member processes of the consumer group on this host, supervised (restarted if one dies); "
        "member I serves metrics on service.metrics_port + I (README 'Service'); default 1: one process",
    )
    run.add_argument("--member", type=int, help=argparse.SUPPRESS)  # set by --workers for its members
    run.set_defaults(func=cmd_run)

    rules = add_command(
        sub, "rules", help="print the detection rules as a Markdown table",
        description="Prints every detection rule (id, severity and risk score, the response it asks for,\n"
        "MITRE ATT&CK techniques, meaning) as a Markdown table: the README's rule table.",
        examples=["tokenwatch rules", "tokenwatch rules | grep replay"],
    )
    rules.set_defaults(func=lambda args: sys.stdout.write(rules_markdown()) and 0)

    config = add_command(
        sub, "config", help="validate or print configuration",
        description="The configuration: one TOML file plus TOKENWATCH_<SECTION>__<KEY> environment\n"
        "variables (`__` nests: TOKENWATCH_STORE__PATH sets [store] path).",
        examples=["tokenwatch config check tokenwatch.toml", "tokenwatch config defaults > tokenwatch.toml"],
    )
    config.set_defaults(func=usage_only(config))
    config_sub = config.add_subparsers(metavar="ACTION")
    check = add_command(
        config_sub, "check", help="validate a file (and the environment); --show prints the effective settings",
        description="Loads the settings as every command does (the file, then TOKENWATCH_* variables over\n"
        "it) and ends with one line: `OK: FILE is valid (N settings differ from the defaults)`,\n"
        "or `error: ...` naming the key (the nearest known key for a misspelt one) with exit 2.\n"
        "--show first prints the effective settings as JSON, secrets masked.",
        examples=["tokenwatch config check tokenwatch.toml",
                  "tokenwatch config check tokenwatch.toml --show   # every effective setting",
                  "TOKENWATCH_STORE__PATH=/var/lib/tw.db tokenwatch config check   # defaults + environment"],
    )
    check.add_argument("file", type=Path, nargs="?", metavar="FILE",
                       help="TOML configuration file (default: none: the defaults and the environment)")
    check.add_argument("--show", action="store_true",
                       help="print the effective settings as JSON (secrets masked) before the verdict")
    check.set_defaults(func=cmd_config_check)
    defaults = add_command(
        config_sub, "defaults", help="print every key with its default, as TOML",
        description="Prints every configuration key with its default and what it does, as TOML (the\n"
        "text of pipeline/data/tokenwatch.toml): a starting point for a configuration file.",
        examples=["tokenwatch config defaults", "tokenwatch config defaults | grep -A3 '^\\[store\\]'"],
    )
    defaults.set_defaults(func=cmd_config_defaults)

    for module in _groups(command, sub.choices):
        importlib.import_module(module).add_commands(sub)
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def cmd_detect(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    feed = StoreFeed(settings) if args.store else None
    try:
        with open_output(args.output) as output:
            summary = run_detect(settings, args.input, output, args.dead_letter, args.format, on_alerts=feed,
                                 workers=args.workers)
    except DetectStopped as exc:
        print(printable(f"tokenwatch: detect stopped: {exc}; {_incomplete(exc, args, feed)}"), file=sys.stderr)
        return 1
    finally:
        if feed is not None:
            feed.close()
    print(summary.render(), file=sys.stderr)
    if summary.dead_letters:
        print(printable(f"  dead letters written to {args.dead_letter}"), file=sys.stderr)
    if feed is None:
        return 0
    if feed.error is None:
        print(f"  alerts stored in the {feed.where}", file=sys.stderr)
        return 0
    output_name = "stdout" if args.output == "-" else args.output
    print(printable(
        f"tokenwatch: cannot store alerts in the {feed.where}: {feed.error}; stored {feed.stored} of "
        f"{feed.offered} alerts. Every alert is in {output_name}: once the store is usable, load them with "
        f"`tokenwatch alerts import --input FILE`"
    ), file=sys.stderr)
    return 1


def _incomplete(stopped: DetectStopped, args: argparse.Namespace, feed: StoreFeed | None) -> str:
    """Each output a stopped run wrote part of: the alerts, the dead letters (if it wrote any),
    the store (if it had one)."""
    where = "on stdout" if args.output == "-" else f"in {args.output}"
    parts = [f"the alerts {where} ({stopped.alerts_written} written)"]
    if stopped.dead_letters_written:
        parts.append(f"the dead letters in {args.dead_letter} ({stopped.dead_letters_written} written)")
    if feed is not None:
        failed = f", then storing failed: {feed.error}" if feed.error is not None else ""
        parts.append(f"the alerts in the {feed.where} ({feed.stored} stored{failed})")
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{listed} are incomplete"


class StoreFeed:
    """Alerts into the store beside the alerts file, which stays the complete record: when the
    store fails (locked, corrupt, unreachable) storing stops, detection goes on, and the
    failure is reported once at the end instead of killing the run."""

    def __init__(self, settings: Settings) -> None:
        from pipeline.store.base import open_store

        config = settings.store
        self.where = f"{config.backend} store" + (f" {config.path}" if config.backend == "sqlite" else "")
        self.stored = self.offered = 0
        self.error: str | None = None
        self.store: AlertStore | None = None
        try:
            self.store = open_store(settings)
        except Exception as exc:  # noqa: BLE001 -- whatever the backend raises, the run goes on without it
            self.error = _store_failure(exc)

    def __call__(self, alerts: list[Alert]) -> None:
        from pipeline.store.ingest import store_alerts

        self.offered += len(alerts)
        if self.store is None:
            return
        try:
            self.stored += store_alerts(self.store, alerts)
        except Exception as exc:  # noqa: BLE001 -- as above: reported at the end, exit 1
            self.error = _store_failure(exc)
            self.close()

    def close(self) -> None:
        store, self.store = self.store, None
        if store is not None:
            with contextlib.suppress(Exception):  # closing a broken store must not hide why it broke
                store.close()


def _store_failure(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


def cmd_demo(args: argparse.Namespace) -> int:
    from pipeline.cli.demo import show_demo, show_world_demo
    from pipeline.synthetic.world import WorldSpec, parse_duration

    if args.sample:
        return show_demo(SAMPLE_STREAM, args.output_dir)
    try:
        hours = parse_duration(args.duration)
        if args.size < 1 or hours < 6:
            raise ValueError("--size must be at least 1 and --duration at least 6h")
    except ValueError as exc:
        print(f"tokenwatch demo: {exc}", file=sys.stderr)
        return 2
    return show_world_demo(WorldSpec(users=args.size, seed=args.seed, hours=hours), args.output_dir)


def cmd_produce(args: argparse.Namespace) -> int:
    from pipeline.kafka.produce import run_produce

    return run_produce(args.input, args.topic, args.config, args.bootstrap, args.format, args.create_topics)


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline.service.runner import run_service

    settings = load_settings(args.config)
    refused = service_refusal(settings)
    if refused:
        print(printable(f"tokenwatch: configuration error: {refused}"), file=sys.stderr)
        return 2
    from pipeline.service.members import run_member, run_members
    from pipeline.service.startup import StartupError

    try:
        if args.member is not None:
            return run_member(settings, args.member, args.workers)
        if args.workers > 1:
            return run_members(args.config, settings, args.workers)
        return run_service(settings, settings.service)
    except StartupError as exc:
        print(printable(f"tokenwatch run: {exc}"), file=sys.stderr)
        return exc.code


def service_refusal(settings: Settings) -> str | None:
    """Why `run` refuses settings that load (None if it does not): checked by `config check` too."""
    unbound = settings.trust.unbound_authorities() if settings.response.enabled else []
    if not unbound:
        return None
    return (f"[response] is enabled but trust.authoritative believes {', '.join(unbound)} revocations from "
            f"any input topic, so anyone who can write to one could revoke sessions; name the topics each "
            f"source's logs arrive on (topics = [\"idp-events\"]), or topics = [\"*\"] to accept that")


def cmd_config_check(args: argparse.Namespace) -> int:
    """Load as every command does; print the settings only when asked; end with one verdict line."""
    try:
        settings = load_settings(args.file)
        refused = service_refusal(settings)
    except (ConfigError, SecretError) as exc:
        print(printable(f"error: {exc}"), file=sys.stderr)
        return exit_codes.CONFIG
    if args.show:
        print(json.dumps(masked_dump(settings), indent=2))  # secrets masked: output lands in tickets and logs
    if refused:
        print(printable(f"error: `tokenwatch run` would refuse it: {refused}"), file=sys.stderr)
        return exit_codes.CONFIG
    changed = len(changed_settings(settings))
    what = f"{changed} setting differs" if changed == 1 else f"{changed} settings differ"
    where = args.file if args.file is not None else "the configuration (defaults and environment)"
    print(printable(f"OK: {where} is valid ({what} from the defaults)"))
    return exit_codes.OK


def cmd_config_defaults(args: argparse.Namespace) -> int:
    sys.stdout.write(defaults_toml())
    return 0


if __name__ == "__main__":  # `python -m pipeline.cli.entry` reports Ctrl-C from its start; this, once imported
    with reported():
        raise SystemExit(main())
