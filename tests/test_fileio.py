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


def test_atomic_files_get_normal_permissions(tmp_path):
    """Files written through atomic_path (also by writers that re-create the file, as safetensors does) get
    the permissions a plain open() would give them, not mkstemp's 0600."""
    import os
    import stat

    import torch
    from safetensors.torch import save_file

    from sdr_tosc.fileio import atomic_path

    mask = os.umask(0)
    os.umask(mask)
    want = 0o666 & ~mask
    with atomic_path(tmp_path / "w.safetensors") as tmp:
        save_file({"a": torch.zeros(2)}, str(tmp))
    atomic_write_json(tmp_path / "j.json", {"v": 1})
    for name in ("w.safetensors", "j.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == want, name
