"""Config machinery: TOML < flags, type checks, atomic save, round trip."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from sdr_tosc.config import ConfigError, load_config, replace, save_config, to_dict


@dataclass(frozen=True)
class Inner:
    gain_db: float = 10.0


@dataclass(frozen=True)
class Demo:
    sample_rate_hz: float = 1e6
    n: int = 4
    name: str = "x"
    snrs: tuple[float, ...] = (0.0, 10.0)
    inner: Inner = field(default_factory=Inner)
    mode: str | None = None


def test_defaults_file_then_overrides(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('sample_rate_hz = 2e6\nn = 8\n[inner]\ngain_db = 3\n')
    cfg = load_config(Demo, p, {"n": 16, "name": None})
    assert cfg.sample_rate_hz == 2e6 and cfg.n == 16 and cfg.name == "x" and cfg.inner.gain_db == 3.0


def test_section(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[demo]\nn = 3\n')
    assert load_config(Demo, p, section="demo").n == 3


def test_unknown_key_is_named(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("smaple_rate_hz = 1\n")
    with pytest.raises(ConfigError, match="smaple_rate_hz"):
        load_config(Demo, p)


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match="n: expected an integer"):
        load_config(Demo, overrides={"n": "many"})


def test_bad_toml_names_file(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("n = [\n")
    with pytest.raises(ConfigError, match="bad.toml"):
        load_config(Demo, p)


def test_round_trip_and_atomic_save(tmp_path):
    cfg = Demo(n=5, snrs=(1.0, 2.0), inner=Inner(7.0), mode="a")
    path = save_config(cfg, tmp_path / "out.toml")
    assert load_config(Demo, path) == cfg
    assert [p.name for p in tmp_path.iterdir()] == ["out.toml"]  # no temp files left
    assert to_dict(replace(cfg, n=6))["n"] == 6
