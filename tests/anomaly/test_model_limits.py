"""Model files are bounded before loading: file size, member count, directory size, and what
the members inflate to (one member, all of them, and the compression ratio).

The attack: a real model file with one extra member, ~2 MB on disk, that inflates to 2.2 GB.
Its twin: the models `tokenwatch model train` writes (stored or deflated) load as before.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from pathlib import Path

import pytest

from detectors.anomaly import AnomalyConfig, AnomalyDetector
from detectors.anomaly.archive import ArchiveLimits, check_archive
from detectors.anomaly.model import ModelError, load, save
from pipeline.cli.main import main

BOMB_BYTES = 2200 * (1 << 20)  # 2.2 GB of zeros
_CHUNK = 1 << 23


def _zip(path: Path, members: list[tuple[str, bytes, int, int, int]], zip64_locator: bool = False) -> None:
    """Write a zip by hand from (name, raw data, method, crc, inflated size): zipfile would
    compress the data itself, and a bomb must carry a deflate stream we built."""
    body, directory = b"", b""
    for name, data, method, crc, size in members:
        encoded = name.encode()
        directory += struct.pack("<4s6H3I5HII", b"PK\x01\x02", 20, 20, 0, method, 0, 0x21, crc, len(data), size,
                                 len(encoded), 0, 0, 0, 0, 0, len(body)) + encoded
        body += struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, method, 0, 0x21, crc, len(data), size,
                            len(encoded), 0) + encoded + data
    locator = struct.pack("<4sIQI", b"PK\x06\x07", 0, 0, 1) if zip64_locator else b""
    end = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, len(members), len(members), len(directory), len(body), 0)
    path.write_bytes(body + directory + locator + end)


def _stored_members(model: Path) -> list[tuple[str, bytes, int, int, int]]:
    with zipfile.ZipFile(model) as archive:
        return [(i.filename, archive.read(i), zipfile.ZIP_STORED, i.CRC, i.file_size) for i in archive.infolist()]


def _zeros_deflated(size: int) -> tuple[bytes, int]:
    """A raw deflate stream of ``size`` zero bytes, and their CRC-32, without compressing
    gigabytes: after a full flush each 8 MB chunk compresses to the same bytes."""
    assert size % _CHUNK == 0
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(_CHUNK)) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc, zeros = 0, bytes(_CHUNK)
    for _ in range(size // _CHUNK):
        crc = zlib.crc32(zeros, crc)
    return block * (size // _CHUNK) + compressor.flush(), crc


@pytest.fixture(scope="module")
def bomb(trained, tmp_path_factory) -> Path:
    _, model = trained
    data, crc = _zeros_deflated(BOMB_BYTES)
    path = tmp_path_factory.mktemp("bomb") / "bomb.skops"
    _zip(path, [*_stored_members(model), ("pad.npy", data, zipfile.ZIP_DEFLATED, crc, BOMB_BYTES)])
    return path


@pytest.fixture
def skops_never_runs(monkeypatch):
    import skops.io as sio

    def refuse(*args, **kwargs):
        raise AssertionError("skops opened a file that should have been refused")

    monkeypatch.setattr(sio, "get_untrusted_types", refuse)
    monkeypatch.setattr(sio, "load", refuse)


def test_the_bomb_is_a_real_one(bomb: Path) -> None:
    """The attack file is small and really inflates to 2.2 GB (zipfile would read it)."""
    assert bomb.stat().st_size < 3 * (1 << 20)
    with zipfile.ZipFile(bomb) as archive:
        member = archive.getinfo("pad.npy")
        assert member.file_size == BOMB_BYTES
        with archive.open(member) as stream:
            assert stream.read(_CHUNK) == bytes(_CHUNK)


def test_a_zip_bomb_model_is_refused_before_anything_is_inflated(bomb: Path, skops_never_runs) -> None:
    with pytest.raises(ModelError, match=r"refused before loading: member 'pad.npy' inflates to "
                                         r"2,306,867,200 bytes, above the limit of 134,217,728"):
        load(bomb)


def test_cli_evaluate_refuses_the_bomb_with_exit_2(bomb: Path, skops_never_runs, capsys) -> None:
    assert main(["model", "evaluate", "--input", str(bomb), "--labels", str(bomb), "--model", str(bomb)]) == 2
    err = capsys.readouterr().err
    assert "refused before loading" in err and "Traceback" not in err


def test_the_detector_refuses_the_bomb_and_rules_keep_running(bomb: Path, skops_never_runs) -> None:
    detector = AnomalyDetector(AnomalyConfig(model_path=bomb))
    assert detector.model is None and detector.counters["model_errors"] == 1
    assert "refused before loading" in (detector.model_error or "")


def test_a_high_ratio_member_under_the_size_limits_is_refused(trained, tmp_path: Path, skops_never_runs) -> None:
    _, model = trained
    data, crc = _zeros_deflated(64 * (1 << 20))  # 64 MB from ~64 KB: under 128 MB, but 1,000:1
    path = tmp_path / "ratio.skops"
    _zip(path, [*_stored_members(model), ("pad.npy", data, zipfile.ZIP_DEFLATED, crc, 64 * (1 << 20))])
    with pytest.raises(ModelError, match=r"member 'pad.npy' inflates 1,0\d\d times .* above the limit of 100"):
        load(path)


def test_many_stored_members_are_refused_by_their_total(trained, tmp_path: Path, skops_never_runs) -> None:
    _, model = trained
    members = _stored_members(model)
    path = tmp_path / "total.skops"
    _zip(path, members * 3)  # names repeat: the listing is what is checked
    total = sum(m[4] for m in members) * 3
    limits = ArchiveLimits(max_total_bytes=total - 1)
    with pytest.raises(ModelError, match=rf"members inflate to {total:,} bytes in all, above the limit"):
        load(path, limits)


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (ArchiveLimits(max_file_bytes=1000), r"file is [\d,]+ bytes, above the limit of 1,000"),
        (ArchiveLimits(max_members=2), r"archive lists 3 members, above the limit of 2"),
        (ArchiveLimits(max_directory_bytes=100), r"archive directory is [\d,]+ bytes, above the limit of 100"),
        (ArchiveLimits(max_member_bytes=1000), r"member '\d+\.npy' inflates to [\d,]+ bytes"),
    ],
)
def test_each_limit_is_checked_on_a_normal_model(trained, limits: ArchiveLimits, message: str,
                                                 skops_never_runs) -> None:
    _, model = trained
    with pytest.raises(ModelError, match=message):
        load(model, limits)


def test_a_listing_larger_than_it_claims_is_refused(tmp_path: Path) -> None:
    """The end record says 1 member; zipfile would list them all: counted again after opening."""
    path = tmp_path / "liar.skops"
    _zip(path, [(f"{n}.npy", b"", zipfile.ZIP_STORED, 0, 0) for n in range(50)])
    raw = bytearray(path.read_bytes())
    struct.pack_into("<HH", raw, len(raw) - 14, 1, 1)
    path.write_bytes(bytes(raw))
    with pytest.raises(ModelError, match="archive holds 50 members, above the limit of 10"):
        load(path, ArchiveLimits(max_members=10))


def test_a_zip64_archive_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "zip64.skops"
    _zip(path, [("schema.json", b"{}", zipfile.ZIP_STORED, zlib.crc32(b"{}"), 2)], zip64_locator=True)
    with pytest.raises(ModelError, match="zip64 archive"):
        load(path)


def test_models_as_written_load_stored_or_deflated(trained, tmp_path: Path) -> None:
    model, path = trained
    check_archive(path)
    assert load(path).version == model.version
    import skops.io as sio

    deflated = tmp_path / "deflated.skops"
    document = sio.load(path, trusted=sio.get_untrusted_types(file=path))
    sio.dump(document, deflated, compression=zipfile.ZIP_DEFLATED, compresslevel=9)
    assert load(deflated).threshold == model.threshold


def test_an_isolation_forest_of_the_default_size_loads(small_set, tmp_path: Path) -> None:
    from pipeline.config import Settings
    from pipeline.model.train import anomaly_config, train_from_events

    settings = Settings()
    config = anomaly_config(settings, min_training_windows=100, model_kind="isolation_forest")
    model = train_from_events(small_set[0], config, settings)  # 200 trees of up to 512 samples
    path = tmp_path / "forest.skops"
    save(model, path)
    with zipfile.ZipFile(path) as archive:
        assert len(archive.infolist()) > 1000  # the listing a real forest has is within the limits
    assert load(path).kind == "isolation_forest"
