"""The journal's store (nodes.core.journal): records, digest, atomic writes, caps, corrupt records, settings."""

from __future__ import annotations

import json
import logging
import os
import time

import pytest

from comfyui_imgedit.nodes.core import journal as jr
from comfyui_imgedit.nodes.core.journal import Journal, Record, request_digest


def digest_of(n: int) -> str:
    return request_digest("dezgo", "http://127.0.0.1:1/image2image", {"seed": n}, [b"picture"])


def stored(journal: Journal, n: int, size: int = 1000, age_s: float = 0.0) -> str:
    """A done record of about ``size`` bytes whose files look ``age_s`` seconds old."""
    record = Record(digest=digest_of(n), provider="dezgo", endpoint="http://127.0.0.1:1/image2image")
    journal.save_results(record, [b"x" * size], seeds=[n])
    then = time.time() - age_s
    for item in (journal.folder / record.digest).iterdir():
        os.utime(item, (then, then))
    return record.digest


def test_record_round_trip_and_no_temporary_files(tmp_path):
    journal = Journal(tmp_path)
    record = journal.write(Record(digest=digest_of(1), provider="modelslab", endpoint="http://h/api"))
    record.job_id = "1234"
    journal.write(record)
    again = journal.read(record.digest)
    assert (again.state, again.job_id, again.provider) == ("submitted", "1234", "modelslab")
    journal.save_results(again, [b"png-0", b"png-1"], seeds=[5, 6])
    done = journal.read(record.digest)
    assert done.state == "done" and done.result["seeds"] == [5, 6]
    assert journal.result_files(done) == [b"png-0", b"png-1"]
    assert sorted(p.name for p in (tmp_path / record.digest).iterdir()) == ["0.png", "1.png", "record.json"]
    assert journal.read(digest_of(2)) is None


@pytest.mark.parametrize("damage", ["truncate", "garbage", "not-a-record", "empty"])
def test_corrupt_or_half_written_record_is_skipped_with_a_warning(tmp_path, caplog, damage):
    journal = Journal(tmp_path)
    record = journal.write(Record(digest=digest_of(1), provider="dezgo", endpoint="http://h/x"))
    path = tmp_path / record.digest / "record.json"
    text = path.read_bytes()
    path.write_bytes({"truncate": text[: len(text) // 2], "garbage": b"\xff\xfe\x00", "empty": b"",
                      "not-a-record": json.dumps({"format": 1, "state": "weird"}).encode()}[damage])
    with caplog.at_level(logging.WARNING, logger="comfyui_imgedit"):
        assert journal.read(record.digest) is None
    assert "corrupt or half-written" in caplog.text


def test_missing_result_picture_means_no_result(tmp_path, caplog):
    journal = Journal(tmp_path)
    record = journal.save_results(Record(digest=digest_of(1), provider="dezgo", endpoint="e"), [b"a"])
    (tmp_path / record.digest / "0.png").unlink()
    with caplog.at_level(logging.WARNING, logger="comfyui_imgedit"):
        assert journal.result_files(journal.read(record.digest)) is None
    assert "missing" in caplog.text


def test_size_cap_deletes_the_oldest_first(tmp_path):
    journal = Journal(tmp_path, max_bytes=10_000)
    oldest, middle, newest = (stored(journal, n, size=4000, age_s=age) for n, age in ((1, 300), (2, 200), (3, 100)))
    assert journal.enforce_caps() == 1
    assert not (tmp_path / oldest).exists()
    assert (tmp_path / middle).exists() and (tmp_path / newest).exists()
    records, size = journal.summary()
    assert records == 2 and size <= 10_000


def test_size_cap_never_deletes_the_running_calls(tmp_path):
    journal = Journal(tmp_path, max_bytes=1)
    oldest, newest = stored(journal, 1, age_s=50), stored(journal, 2)
    journal.enforce_caps(keep={oldest})
    assert (tmp_path / oldest).exists() and not (tmp_path / newest).exists()


def test_age_cap_deletes_only_expired_records(tmp_path):
    journal = Journal(tmp_path, max_age_s=3600)
    old = stored(journal, 1, age_s=7200)
    young = stored(journal, 2, age_s=60)
    assert journal.enforce_caps() == 1
    assert not (tmp_path / old).exists() and (tmp_path / young).exists()


def test_digest_covers_every_part_and_cannot_collide_by_concatenation():
    base = request_digest("modelslab", "http://h/a", {"prompt": "p", "seed": 1}, [b"ab", b"c"])
    assert base == request_digest("modelslab", "http://h/a", {"seed": 1, "prompt": "p"}, [b"ab", b"c"])
    variants = [
        request_digest("sdapi", "http://h/a", {"prompt": "p", "seed": 1}, [b"ab", b"c"]),
        request_digest("modelslab", "http://h/b", {"prompt": "p", "seed": 1}, [b"ab", b"c"]),
        request_digest("modelslab", "http://h/a", {"prompt": "p", "seed": 2}, [b"ab", b"c"]),
        request_digest("modelslab", "http://h/a", {"prompt": "p", "seed": 1}, [b"a", b"bc"]),
        request_digest("modelslab", "http://h/a", {"prompt": "p", "seed": 1}, [b"ab"]),
    ]
    assert len({base, *variants}) == 6


def test_folder_choice(monkeypatch, tmp_path):
    monkeypatch.setenv("IMGEDIT_JOURNAL_DIR", str(tmp_path / "here"))
    assert jr.journal_folder(tmp_path / "user") == tmp_path / "here"
    monkeypatch.delenv("IMGEDIT_JOURNAL_DIR")
    assert jr.journal_folder(tmp_path / "user") == tmp_path / "user" / "imgedit" / "journal"
    monkeypatch.setattr(jr.sys, "platform", "linux")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert jr.journal_folder() == tmp_path / "xdg" / "comfyui-imgedit" / "journal"


@pytest.mark.parametrize("word", ["0", "off", "False", "no"])
def test_environment_turns_it_off(monkeypatch, tmp_path, word):
    assert jr.open_journal(tmp_path) is not None
    monkeypatch.setenv("IMGEDIT_JOURNAL", word)
    assert jr.open_journal(tmp_path) is None


def test_settings_panel_switch_and_caps_from_environment(monkeypatch, tmp_path):
    jr.set_panel_enabled(tmp_path, False)
    assert jr.open_journal(tmp_path) is None
    assert json.loads((tmp_path / "imgedit" / "settings.json").read_text()) == {"journal": False}
    jr.set_panel_enabled(tmp_path, True)
    monkeypatch.setenv("IMGEDIT_JOURNAL_MAX_GB", "0.5")
    monkeypatch.setenv("IMGEDIT_JOURNAL_MAX_DAYS", "2")
    journal = jr.open_journal(tmp_path)
    assert journal.max_bytes == 512 * 1024**2 and journal.max_age_s == 2 * 86400
    (tmp_path / "imgedit" / "settings.json").write_text("{half")
    assert jr.open_journal(tmp_path) is not None  # an unreadable settings file keeps the default: on


def test_summary_line_names_records_and_size(tmp_path):
    journal = Journal(tmp_path / "j")
    assert "0 record(s)" in journal.summary_line()  # a missing folder is an empty journal
    stored(journal, 1, size=2_000_000)
    line = journal.summary_line()
    assert "1 record(s)" in line and "2.0 MB" in line and "2 GB" in line and "30 days" in line


@pytest.mark.parametrize("raw", ["lots", "inf", "-1", "nan"])
def test_a_bad_cap_in_the_environment_keeps_the_default(monkeypatch, tmp_path, caplog, raw):
    monkeypatch.setenv("IMGEDIT_JOURNAL_MAX_GB", raw)
    with caplog.at_level(logging.WARNING, logger="comfyui_imgedit"):
        assert jr.open_journal(tmp_path).max_bytes == jr.DEFAULT_MAX_BYTES
    assert "IMGEDIT_JOURNAL_MAX_GB" in caplog.text
