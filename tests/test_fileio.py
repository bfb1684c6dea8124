from __future__ import annotations

import pytest

from sdr_tosc.fileio import atomic_open, atomic_write_json, read_json


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    p = tmp_path / "a.json"
    atomic_write_json(p, {"v": 1})
    with pytest.raises(RuntimeError), atomic_open(p, "w") as fh:
        fh.write("partial")
        raise RuntimeError("boom")
    assert read_json(p) == {"v": 1}
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.json"]


def test_read_json_errors_name_file(tmp_path):
    p = tmp_path / "t.json"
    p.write_text('{"a": 1')
    with pytest.raises(ValueError, match="t.json.*corrupt or truncated"):
        read_json(p)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        read_json(tmp_path / "missing.json")
