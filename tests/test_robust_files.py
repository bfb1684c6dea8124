"""Damaged files are refused naming the file, and nothing is overwritten (issue 13)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from sdr_tosc.config import ConfigError, read_toml
from sdr_tosc.semantic.student import (
    load_checkpoint,
    read_checkpoint_metadata,
    save_checkpoint,
    tensors_digest,
)
from sdr_tosc.zoo import default_student_path

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_students_carry_a_verified_checksum():
    for p in sorted(default_student_path().parent.glob("student-*.safetensors")):
        meta = read_checkpoint_metadata(p)
        assert meta["tensors_sha256"] and len(meta["tensors_sha256"]) == 64, p
        model = load_checkpoint(p)  # verifies it
        assert tensors_digest(model.state_dict()) == meta["tensors_sha256"]


def test_flipped_bytes_in_weights_are_refused(tmp_path):
    src = default_student_path().read_bytes()
    header = 8 + int.from_bytes(src[:8], "little")  # safetensors: u64 header length, JSON header, data
    rng = np.random.default_rng(0)
    data = bytearray(src)
    for i in rng.choice(np.arange(header, len(data)), size=200, replace=False):
        data[i] ^= 0xFF
    bad = tmp_path / "flipped.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="flipped.safetensors.*sha256"):
        load_checkpoint(bad)


def test_truncated_and_garbage_checkpoints_are_refused_naming_the_file(tmp_path):
    src = default_student_path().read_bytes()
    for name, blob in (("trunc.safetensors", src[: len(src) // 2]), ("garbage.safetensors", os.urandom(4096)),
                       ("empty.safetensors", b"")):
        p = tmp_path / name
        p.write_bytes(blob)
        with pytest.raises(ValueError, match=name):
            load_checkpoint(p)


def test_resave_keeps_tensors_and_checksum(tmp_path):
    model, extra = load_checkpoint(default_student_path(), with_extra=True)
    out = save_checkpoint(model, tmp_path / "copy.safetensors", extra)
    assert read_checkpoint_metadata(out)["tensors_sha256"] == read_checkpoint_metadata(
        default_student_path())["tensors_sha256"]


@pytest.mark.parametrize("blob,match", [(b"\x00\xff\xfe binary", "not a text TOML"),
                                        (b"[channel\nsnr_db = ", "not valid TOML"),
                                        (b"[channel]\nsnr_db = nan\n", None)])
def test_bad_toml_files_name_the_file(tmp_path, blob, match):
    p = tmp_path / "bad.toml"
    p.write_bytes(blob)
    if match is None:  # parses, but the value is refused when the config is built
        from sdr_tosc.channel.config import ChannelConfig
        from sdr_tosc.config import load_config

        with pytest.raises(ConfigError, match="bad.toml.*snr_db.*finite"):
            load_config(ChannelConfig, p, section="channel")
        return
    with pytest.raises(ConfigError, match=f"bad.toml.*{match}"):
        read_toml(p)


def test_writer_killed_mid_write_keeps_the_old_file(tmp_path):
    """atomic_write_* replaces the file in one rename: a writer SIGKILLed at random points never leaves a
    half-written file where the old one was."""
    target = tmp_path / "result.json"
    target.write_text(json.dumps({"old": True}))
    code = textwrap.dedent(f"""
        import sys, time
        from sdr_tosc.fileio import atomic_write_json
        print("go", flush=True)
        while True:
            atomic_write_json({str(target)!r}, {{"new": list(range(200000))}})
    """)
    rng = np.random.default_rng(1)
    for delay in rng.uniform(0.0, 0.3, size=6):
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                                env=dict(os.environ, PYTHONPATH=str(ROOT)))
        proc.stdout.readline()
        import time

        time.sleep(float(delay))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        obj = json.loads(target.read_text())  # always a whole document, old or new
        assert obj == {"old": True} or len(obj["new"]) == 200000


def test_snr_db_flag_has_one_meaning_and_default(capsys):
    """--snr-db: the simulated channel's SNR per burst at TX gain 0, default 20, for every verb that runs it."""
    from sdr_tosc.channel.config import ChannelConfig
    from sdr_tosc.cli import main

    assert ChannelConfig().snr_db == 20.0
    for verb in ("channel", "demo", "measure", "calibrate"):
        assert main([verb, "--help"]) == 0
        text = " ".join(capsys.readouterr().out.split())
        i = text.index("--snr-db SNR_DB ")
        help_text = text[i:i + 220]
        assert "docs/design.md" in help_text and "default 20" in help_text and "TX gain 0" in help_text, (verb, help_text)


def test_no_project_file_cites_the_team_doc():
    hits = []
    for p in ROOT.rglob("*"):
        if any(part in (".git", ".venv", "node_modules") or part.endswith(".egg-info") for part in p.parts):
            continue
        if p.is_file() and p.suffix in (".py", ".md", ".toml", ".txt", ".grc") and "DESIGN" + ".md" in p.read_text(
                errors="ignore"):
            hits.append(str(p.relative_to(ROOT)))
    assert not hits, hits


def test_channel_config_file_keeps_the_verbs_own_settings(tmp_path):
    """demo --channel-config pn.toml (only phase noise) keeps the demo's SNR/CFO/seed, not ChannelConfig's."""
    import argparse

    from sdr_tosc.commands.linkargs import channel_settings

    pn = tmp_path / "pn.toml"
    pn.write_text("[channel]\nphase_noise_hz = 50.0\n")
    args = argparse.Namespace(channel_config=pn, snr_db=None, cfo_hz=None, multipath=None, fading=None, seed=None)
    s = channel_settings(args)
    assert (s["snr_db"], s["cfo_hz"], s["seed"], s["phase_noise_hz"]) == (20.0, 2000.0, 1, 50.0)
    pn.write_text("[channel]\nphase_noise_hz = 50.0\nsnr_db = 3.0\n")
    args.cfo_hz = 100.0
    s = channel_settings(args)
    assert (s["snr_db"], s["cfo_hz"]) == (3.0, 100.0)  # file < flags


def test_cache_manifest_shard_without_sha256_names_the_manifest(tmp_path):
    from sdr_tosc.semantic.cache import MANIFEST, TeacherCache

    src = default_student_path().parent / "cache" / "fashion-mnist-effnetlite0"
    for f in src.glob("*.safetensors"):
        (tmp_path / f.name).symlink_to(f)
    m = json.loads((src / MANIFEST).read_text())
    del m["shards"][0]["sha256"]
    (tmp_path / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(ValueError, match=f"{MANIFEST}.*damaged|{MANIFEST}.*sha256"):
        TeacherCache.open(tmp_path, verify=True)
