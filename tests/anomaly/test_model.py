"""Model files: round trip, refusal of corrupt or incompatible files, determinism, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detectors.anomaly import AnomalyConfig, AnomalyDetector
from detectors.anomaly.features import FEATURES
from detectors.anomaly.model import ModelError, calibrate, load, train
from pipeline.cli.main import main


def test_round_trip_keeps_version_features_window_threshold(trained, tmp_path: Path) -> None:
    model, path = trained
    again = load(path)
    assert (again.version, again.features, again.threshold) == (model.version, model.features, model.threshold)
    assert (again.trained_from, again.trained_to) == (model.trained_from, model.trained_to)
    rows = np.random.default_rng(0).random((5, len(model.features)))
    assert np.allclose(again.score(rows), model.score(rows))


def test_corrupt_model_file_is_refused_with_a_clear_message(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.skops"
    bad.write_bytes(b"not a zip archive")
    with pytest.raises(ModelError, match="not a readable skops model file"):
        load(bad)
    with pytest.raises(ModelError, match="file not found"):
        load(tmp_path / "missing.skops")
    # the detector logs and counts it, and stays harmless (rules keep running)
    det = AnomalyDetector(AnomalyConfig(model_path=bad))
    assert det.model is None and det.counters["model_errors"] == 1 and "bad.skops" in (det.model_error or "")
    assert main(["model", "evaluate", "--input", str(bad), "--labels", str(bad), "--model", str(bad)]) == 2
    assert "not a readable skops model file" in capsys.readouterr().err


def test_incompatible_feature_list_is_refused(trained, tmp_path: Path) -> None:
    import skops.io as sio

    _, path = trained
    document = sio.load(path, trusted=sio.get_untrusted_types(file=path))
    document["features"] = ["requests"]
    other = tmp_path / "old.skops"
    sio.dump(document, other)
    with pytest.raises(ModelError, match="retrain"):
        load(other)


def test_same_baseline_and_seed_give_the_same_model() -> None:
    rng = np.random.default_rng(1)
    rows = rng.random((300, len(FEATURES))).astype(np.float32)
    times = np.arange(300, dtype=float) * 600
    for kind in ("tail", "isolation_forest"):
        a = train(rows, times, 400, 20.0, seed=5, kind=kind, n_estimators=20)
        b = train(rows, times, 400, 20.0, seed=5, kind=kind, n_estimators=20)
        assert a.version == b.version and a.threshold == b.threshold
        assert np.array_equal(a.score(rows), b.score(rows))


def test_synthetic_set_is_deterministic() -> None:
    from pipeline.synthetic import anomaly_stream as synth

    assert synth.generate(11, scale=0.05, days=2, attack_days=1, attacks_per_kind=1) == \
        synth.generate(11, scale=0.05, days=2, attack_days=1, attacks_per_kind=1)


def test_calibration_respects_the_budget() -> None:
    scores = np.arange(1000, dtype=float)
    threshold = calibrate(scores, token_days=10_000, budget_per_10k=10)  # 60 % headroom: 6 allowed
    assert (scores > threshold).sum() == 6


def test_cli_generate_train_evaluate(tmp_path: Path, capsys) -> None:
    out = tmp_path / "set"
    assert main(["model", "generate", "--output-dir", str(out), "--seed", "2", "--scale", "0.1",
                 "--days", "4", "--attack-days", "1"]) == 0
    cfg = tmp_path / "tw.toml"
    cfg.write_text("[detectors.anomaly]\nmin_training_windows = 50\n")
    assert main(["model", "train", "--input", str(out / "train.jsonl"), "--output", str(tmp_path / "m.skops"),
                 "--config", str(cfg)]) == 0
    assert main(["model", "evaluate", "--input", str(out / "eval.jsonl"), "--labels", str(out / "labels.jsonl"),
                 "--model", str(tmp_path / "m.skops"), "--config", str(cfg)]) == 0
    text = capsys.readouterr().out
    assert "ROC AUC" in text and "precision" in text and "per 10k active tokens per day" in text
