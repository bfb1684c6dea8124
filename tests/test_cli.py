"""The CLI in-process: help, version, bad flags, info."""

from __future__ import annotations

import json

import pytest

from sdr_tosc import __version__
from sdr_tosc.cli import VERBS, main


def test_version(capsys):
    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out


def test_no_verb_prints_help_and_returns_2(capsys):
    assert main([]) == 2
    assert "VERB" in capsys.readouterr().out


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_every_verb_has_help_with_examples(verb, capsys):
    assert main([verb, "--help"]) == 0
    out = capsys.readouterr().out
    assert "examples:" in out
    assert f"sdr-tosc {verb}" in out


def test_unknown_flag_exits_2_and_names_flag(capsys):
    assert main(["info", "--frobnicate"]) == 2
    assert "--frobnicate" in capsys.readouterr().err


def test_unknown_verb_exits_2(capsys):
    assert main(["teleport"]) == 2
    assert "teleport" in capsys.readouterr().err


def test_info_reports_backends(tmp_path, capsys):
    out = tmp_path / "info.json"
    assert main(["info", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "radio backends" in text
    data = json.loads(out.read_text())
    assert set(data["backends"]) == {"zmq", "pluto", "usrp", "file"}
    assert data["packages"]["numpy"]
    # zmq is a hard dependency, so it must always be usable
    assert data["backends"]["zmq"]["usable"] is True


def test_verbose_and_quiet_flags_accepted():
    assert main(["-v", "info"]) == 0
    assert main(["info", "-q"]) == 0
