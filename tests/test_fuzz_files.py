"""Fuzz the file loaders (hypothesis; bounded, seeded): TOML configs, JSON/calibration files, student
checkpoints and the teacher-cache manifest. A damaged file is refused with a ValueError (ConfigError is
one) or FileNotFoundError naming the file; nothing else escapes, and nothing is written.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdr_tosc.calibrate import load_calibration
from sdr_tosc.channel.config import ChannelConfig
from sdr_tosc.config import load_config
from sdr_tosc.semantic.cache import MANIFEST, TeacherCache
from sdr_tosc.semantic.student import load_checkpoint, tensors_digest
from sdr_tosc.zoo import default_student_path

pytestmark = pytest.mark.timeout(120)
FUZZ = settings(max_examples=150, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
ZOO_CACHE = Path(__file__).resolve().parents[1] / "sdr_tosc" / "zoo" / "cache" / "fashion-mnist-effnetlite0"

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(1 << 70), 1 << 70),
              st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12)),
    lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(st.text(max_size=10), c, max_size=4)),
    max_leaves=10)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzzfiles")


@FUZZ
@given(blob=st.one_of(
    st.binary(max_size=200),
    st.builds(lambda k, v: f"[channel]\n{k} = {v}\n".encode(),
              st.sampled_from(["snr_db", "cfo_hz", "gap_samples", "taps", "multipath", "tx_gain_db", "bogus"]),
              st.sampled_from(["nan", "inf", "-inf", "1e999", "99999999999999999999999", "'x'", "[1, [2]]",
                               "true", "{a=1}", "1e308", "-7000", "0x10", "[[1e308, 1e308]]", "'custom'"]))))
def test_toml_configs(work, blob):
    p = work / "c.toml"
    p.write_bytes(blob)
    try:
        cfg = load_config(ChannelConfig, p, section="channel")
    except ValueError as exc:
        assert "c.toml" in str(exc)
        return
    cfg.validate()


@FUZZ
@given(doc=st.one_of(
    json_values,
    st.builds(lambda entries: {"format": "sdr-tosc-calibration", "version": 1, "device": "x", "entries": entries},
              st.dictionaries(st.one_of(st.text(max_size=6), st.sampled_from(["915000000", "2.4e9", "-1", "nan"])),
                              st.one_of(json_values, st.fixed_dictionaries({"fit": json_values})), max_size=3)),
    st.binary(max_size=80)))
def test_calibration_files(work, doc):
    p = work / "cal.json"
    p.write_bytes(doc if isinstance(doc, bytes) else json.dumps(doc).encode())
    try:
        load_calibration(p)
    except ValueError as exc:
        assert "cal.json" in str(exc)


@pytest.fixture(scope="module")
def student_bytes():
    return default_student_path().read_bytes()


@settings(max_examples=60, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_checkpoints(work, student_bytes, data):
    blob = bytearray(student_bytes)
    how = data.draw(st.sampled_from(["flip", "truncate", "header"]))
    if how == "truncate":
        blob = blob[: data.draw(st.integers(0, len(blob) - 1))]
    else:
        hlen = 8 + int.from_bytes(student_bytes[:8], "little")
        lo, hi = (0, hlen) if how == "header" else (hlen, len(blob))
        for i in data.draw(st.lists(st.integers(lo, hi - 1), min_size=1, max_size=20)):
            blob[i] ^= data.draw(st.integers(1, 255))
    p = work / "ck.safetensors"
    p.write_bytes(bytes(blob))
    try:
        m = load_checkpoint(p)
    except ValueError as exc:
        assert "ck.safetensors" in str(exc)
        return
    # only a change that leaves every tensor intact may load (e.g. a flipped byte of header padding)
    ref = load_checkpoint(default_student_path())
    assert tensors_digest(m.state_dict()) == tensors_digest(ref.state_dict())


@pytest.fixture(scope="module")
def cache_copy(tmp_path_factory):
    d = tmp_path_factory.mktemp("cache")
    for f in ZOO_CACHE.iterdir():
        if f.suffix == ".safetensors":
            (d / f.name).symlink_to(f)
    return d


def _mutate(obj, path, value):
    if not path:
        return value
    if isinstance(obj, dict) and obj:
        keys = sorted(obj)
        k = keys[path[0] % len(keys)]
        return {**obj, k: _mutate(obj[k], path[1:], value)}
    if isinstance(obj, list) and obj:
        i = path[0] % len(obj)
        return obj[:i] + [_mutate(obj[i], path[1:], value)] + obj[i + 1:]
    return value


@settings(max_examples=40, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(path=st.lists(st.integers(0, 50), min_size=1, max_size=4),
       value=st.one_of(json_values, st.just("__delete__")))
def test_damaged_cache_manifest(cache_copy, path, value):
    manifest = json.loads((ZOO_CACHE / MANIFEST).read_text())
    if value == "__delete__":  # drop one key somewhere (a shard without sha256 ...)
        def drop(obj, p):
            if isinstance(obj, dict) and obj:
                k = sorted(obj)[p[0] % len(obj)]
                return {kk: vv for kk, vv in obj.items() if kk != k} if len(p) == 1 else {**obj, k: drop(obj[k], p[1:])}
            if isinstance(obj, list) and obj:
                i = p[0] % len(obj)
                return obj[:i] + [drop(obj[i], p[1:])] + obj[i + 1:]
            return obj
        damaged = drop(manifest, path)
    else:
        damaged = _mutate(manifest, path, value)
    (cache_copy / MANIFEST).write_text(json.dumps(damaged))
    try:
        TeacherCache.open(cache_copy, verify=False)
    except (ValueError, FileNotFoundError) as exc:
        assert str(cache_copy) in str(exc) or MANIFEST in str(exc), exc


def test_zoo_cache_untouched_by_fuzzing():
    """The fuzzing above only ever read the shipped cache (symlinks to its shards, its manifest copied)."""
    shutil.disk_usage(ZOO_CACHE)
    TeacherCache.open(ZOO_CACHE, verify=True)
