"""Anomaly model commands: `tokenwatch model train|evaluate|generate`.

Messages and reports name input files, labels and token ids: they are printed through
:mod:`pipeline.terminal`, so a control or bidi character in them shows as an escape.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

from pipeline.cli.helptext import add_command, usage_only
from pipeline.terminal import printable, printable_lines


def add_commands(sub: Any) -> None:
    """Register this module's sub-commands on the top-level sub-parser ``sub``."""
    model = add_command(
        sub, "model", help="train, evaluate and generate data for the anomaly model",
        description="The anomaly detector's model ([detectors.anomaly]): train it on a stream of normal\n"
        "activity, measure it on a labeled stream, or generate a labeled synthetic set to try it.",
        examples=["tokenwatch model generate -o evalset",
                  "tokenwatch model train -i evalset/train.jsonl -o model.skops",
                  "tokenwatch model evaluate -i evalset/eval.jsonl -l evalset/labels.jsonl -m model.skops"],
    )
    model.set_defaults(func=usage_only(model))
    actions = model.add_subparsers(metavar="ACTION")

    train = add_command(
        actions, "train", help="train an anomaly model on a stream of JSON lines",
        description="Trains the anomaly model on events (any supported format) that should be normal,\n"
        "and writes it where detectors.anomaly.model_path points, or to --output.",
        examples=["tokenwatch model train -i history.jsonl -o model.skops",
                  "tokenwatch model train -i history.jsonl --kind isolation_forest --config tokenwatch.toml"],
    )
    train.add_argument("--input", "-i", required=True, type=Path, help="events, any supported format")
    train.add_argument("--output", "-o", type=Path, help="model file (default: detectors.anomaly.model_path)")
    train.add_argument("--seed", type=int, help="random seed (default: detectors.anomaly.seed)")
    train.add_argument("--kind", choices=["tail", "isolation_forest"], help="model kind (default: from config)")
    train.add_argument("--config", "-c", type=Path, help="TOML configuration file")
    train.set_defaults(func=cmd_train)

    evaluate = add_command(
        actions, "evaluate", help="precision, recall, ROC AUC and alert volume on a labeled stream",
        description="Scores a labeled stream with a trained model and reports precision, recall, ROC AUC\n"
        "and how many alerts it would raise.",
        examples=["tokenwatch model evaluate -i eval.jsonl -l labels.jsonl -m model.skops"],
    )
    evaluate.add_argument("--input", "-i", required=True, type=Path, help="events, any supported format")
    evaluate.add_argument("--labels", "-l", required=True, type=Path, help="attack labels (JSON lines)")
    evaluate.add_argument("--model", "-m", type=Path, help="model file (default: detectors.anomaly.model_path)")
    evaluate.add_argument("--config", "-c", type=Path, help="TOML configuration file")
    evaluate.set_defaults(func=cmd_evaluate)

    generate = add_command(
        actions, "generate", help="write the labeled synthetic evaluation set",
        description="Writes a synthetic population's events: eval.jsonl (all days), train.jsonl (the\n"
        "attack-free days before), and labels.jsonl (the injected attacks), into --output-dir.",
        examples=["tokenwatch model generate -o evalset",
                  "tokenwatch model generate -o evalset --scale 0.5 --days 10 --attack-days 3"],
    )
    generate.add_argument("--output-dir", "-o", required=True, type=Path, metavar="DIR",
                          help="where train.jsonl, eval.jsonl and labels.jsonl go (created if missing)")
    generate.add_argument("--seed", type=int, default=7, help="same seed, same data (default: %(default)s)")
    generate.add_argument("--scale", type=float, default=1.0, help="population size factor (default: %(default)s)")
    generate.add_argument("--days", type=int, default=14, help="days of activity (default: %(default)s)")
    generate.add_argument("--attack-days", type=int, default=7,
                          help="the last days, with attacks: the evaluation part (default: %(default)s)")
    generate.set_defaults(func=cmd_generate)


def _fail(message: str) -> int:
    print(printable(f"tokenwatch: {message}"), file=sys.stderr)
    return 2


def cmd_train(args: argparse.Namespace) -> int:
    from detectors.anomaly.model import ModelError, save
    from pipeline.config import load_settings
    from pipeline.model.train import anomaly_config, read_events, train_from_events

    settings = load_settings(args.config)
    config = anomaly_config(settings, model_kind=args.kind)
    output = args.output or config.model_path
    if output is None:
        return _fail("model train: give --output or set detectors.anomaly.model_path")
    if not args.input.is_file():
        return _fail(f"model train: input not found: {args.input}")
    try:
        model = train_from_events(read_events(args.input, settings), config, settings, args.seed)
    except ModelError as exc:
        return _fail(f"model train: {exc}")
    save(model, output)
    print(printable(model.describe()))
    print(printable(f"written to {output}"))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from detectors.anomaly.model import ModelError, load
    from pipeline.config import load_settings
    from pipeline.model.evaluate import evaluate
    from pipeline.model.train import anomaly_config, read_events

    settings = load_settings(args.config)
    path = args.model or anomaly_config(settings).model_path
    if path is None:
        return _fail("model evaluate: give --model or set detectors.anomaly.model_path")
    try:
        model = load(path)
    except ModelError as exc:
        return _fail(f"model evaluate: {exc}")
    for name in (args.input, args.labels):
        if not name.is_file():
            return _fail(f"model evaluate: not found: {name}")
    labels = [orjson.loads(line) for line in args.labels.read_bytes().splitlines() if line.strip()]
    report = evaluate(read_events(args.input, settings), labels, model, settings)
    print(printable_lines(report.render()))
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from pipeline.synthetic.anomaly_stream import generate, split_time

    lines, labels = generate(args.seed, args.scale, args.days, args.attack_days)
    out: Path = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    split = split_time(args.days, args.attack_days).isoformat().replace("+00:00", "Z")
    with open(out / "train.jsonl", "wb") as train, open(out / "eval.jsonl", "wb") as full:
        for line in lines:
            data = orjson.dumps(line) + b"\n"
            full.write(data)
            if line["time"] < split:
                train.write(data)
    (out / "labels.jsonl").write_bytes(b"".join(orjson.dumps(label) + b"\n" for label in labels))
    print(printable(f"{len(lines):,} events ({args.days} days, attacks in the last {args.attack_days}), "
                    f"{len(labels)} labeled attacks -> {out}/eval.jsonl, labels.jsonl; "
                    f"attack-free prefix -> {out}/train.jsonl"))
    return 0
