"""The `tokenwatch` command line.

Exit codes: 0 the run completed (whatever the input held), 2 usage or
configuration error, 1 could not run (unreadable input, unwritable output).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline import DATA_DIR, exit_codes
from pipeline.config import ConfigError, Settings, defaults_toml, load_settings, masked_dump, rules_markdown
from pipeline.runtime.detect import run_detect
from pipeline.runtime.files import open_output
from pipeline.runtime.workers import WorkerFailed
from pipeline.secrets import SecretError
from pipeline.store.base import AlertStore, StoreNotFound
from pipeline.terminal import printable
from schemas.alerts import Alert
from schemas.sources import FORMATS

SAMPLE_STREAM = DATA_DIR / "sample.jsonl"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tokenwatch", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(metavar="COMMAND")

    detect = sub.add_parser("detect", help="read JSON lines, write alert JSON lines")
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
        help="engine processes, events routed by the Kafka message-key rule as `run` partitions are, so "
        "the alerts are those of `run` with N partitions (README 'Detect'); default 1: one process",
    )
    detect.set_defaults(func=cmd_detect)

    demo = sub.add_parser(
        "demo", help="generate a synthetic world with injected attacks, detect, store, respond (dry run): no servers"
    )
    demo.add_argument("--size", type=int, default=300, metavar="USERS", help="employees in the world (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=7, help="same seed, same world (default: %(default)s)")
    demo.add_argument("--duration", default="24h", metavar="SPAN",
                      help="simulated event time, e.g. 12h, 2d, 90m (at least 6h; default: %(default)s)")
    demo.add_argument("--output-dir", type=Path, default=Path("demo-output"),
                      help="events, labels, alerts, store and summary go here (default: %(default)s)")
    demo.add_argument("--sample", action="store_true", help="run the small bundled sample instead of the world")
    demo.set_defaults(func=cmd_demo)

    produce = sub.add_parser("produce", help="load JSON lines into a Kafka topic, keyed so one token family shares a partition")
    produce.add_argument(
        "--input", "-i", required=True, nargs="+", metavar="PATH",
        help="files or directories of JSON lines (several are merged by event time: the way to load a "
        "history exported per source), or - for stdin",
    )
    produce.add_argument("--topic", "-t", required=True, help="topic to produce to")
    produce.add_argument("--config", "-c", type=Path, help="TOML configuration file (its [kafka] table)")
    produce.add_argument("--bootstrap", help="host:port[,host:port] overriding kafka.bootstrap_servers")
    produce.add_argument(
        "--format", "-f", default="auto", choices=["auto", *sorted(FORMATS)], help="input format used for keys"
    )
    produce.add_argument("--create-topics", type=int, metavar="PARTITIONS", help="create missing topics first")
    produce.set_defaults(func=cmd_produce)

    run = sub.add_parser("run", help="the streaming service: Kafka consumer group -> detectors -> Elasticsearch + alerts topic")
    run.add_argument("--config", "-c", type=Path, required=True, help="TOML configuration file")
    run.set_defaults(func=cmd_run)

    rules = sub.add_parser("rules", help="print the detection rules as a Markdown table")
    rules.set_defaults(func=lambda args: sys.stdout.write(rules_markdown()) and 0)

    config = sub.add_parser("config", help="validate or print configuration")
    config_sub = config.add_subparsers(metavar="ACTION")
    check = config_sub.add_parser("check", help="validate a file and print the effective settings")
    check.add_argument("file", type=Path, nargs="?")
    check.set_defaults(func=cmd_config_check)
    defaults = config_sub.add_parser("defaults", help="print every key with its default, as TOML")
    defaults.set_defaults(func=cmd_config_defaults)

    # Command groups that live in their own modules (one job each): analyst triage,
    # response, the anomaly model. Each adds its sub-commands to ``sub``.
    from pipeline.cli import alerts, handles, model, response

    for module in (alerts, response, model, handles):
        module.add_commands(sub)
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
    except WorkerFailed as exc:
        output_name = "stdout" if args.output == "-" else args.output
        print(printable(f"tokenwatch: detect stopped: {exc}; the alerts in {output_name} are incomplete"),
              file=sys.stderr)
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
    unbound = settings.trust.unbound_authorities() if settings.response.enabled else []
    if unbound:
        print(printable(
            f"tokenwatch: configuration error: [response] is enabled but trust.authoritative believes "
            f"{', '.join(unbound)} revocations from any input topic, so anyone who can write to one could "
            f"revoke sessions; name the topics each source's logs arrive on (topics = [\"idp-events\"]), "
            f"or topics = [\"*\"] to accept that"), file=sys.stderr)
        return 2
    from pipeline.service.startup import StartupError

    try:
        return run_service(settings, settings.service)
    except StartupError as exc:
        print(printable(f"tokenwatch run: {exc}"), file=sys.stderr)
        return exc.code


def cmd_config_check(args: argparse.Namespace) -> int:
    settings = load_settings(args.file)
    print(json.dumps(masked_dump(settings), indent=2))  # secrets masked: output lands in tickets and logs
    return 0


def cmd_config_defaults(args: argparse.Namespace) -> int:
    sys.stdout.write(defaults_toml())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
