"""Semantic vs digital schemes over the link: codecs, adaptive modulation, the channel process, measure --scheme."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sdr_tosc.link import LinkConfig
from sdr_tosc.link.digital import (
    DIGITAL_SCHEMES,
    KIND_LATENT,
    KIND_PNG,
    SCHEMES,
    DigitalLinkConfig,
    LatentCodec,
    PngCodec,
    decode_items,
    header_snr_db,
    load_default_teacher,
    make_codecs,
    open_scheme_loopback,
    run_schemes,
    schemes_for,
    scramble,
    simulate_frames,
    symbols_for_bytes,
)
from sdr_tosc.modem import DigitalConfig, DigitalMode


@pytest.fixture(scope="module")
def student():
    from sdr_tosc.semantic.student import load_checkpoint
    from sdr_tosc.zoo import default_student_path

    return load_checkpoint(default_student_path())


@pytest.fixture(scope="module")
def data():
    from sdr_tosc.semantic.datasets import load_dataset

    return load_dataset("fashion-mnist", "test").subset(np.arange(24))


@pytest.fixture(scope="module")
def codecs(student, data):
    return make_codecs(SCHEMES, student, load_default_teacher, data.image_shape, DigitalLinkConfig())


def test_scheme_choices_and_modulation_rule():
    assert schemes_for("both") == SCHEMES and schemes_for("digital") == DIGITAL_SCHEMES
    assert schemes_for("digital-png") == ("digital-png",)
    with pytest.raises(ValueError, match="choose one of"):
        schemes_for("analog")
    c = DigitalLinkConfig()
    assert [c.modulation_for(s) for s in (-5.0, 3.5, 9.5, 10.0, 16.0, 30.0)] == \
        ["bpsk", "qpsk", "qpsk", "16qam", "64qam", "64qam"]
    assert c.modulation_for(None) == "bpsk" and c.modulation_for(-5.0, lowest="qpsk") == "qpsk"
    assert DigitalLinkConfig(modulation="16qam").modulation_for(30.0) == "16qam"
    # the receiver reads the header's 0.5 dB steps: the transmitter decides on the same value
    assert header_snr_db(9.8) == 10.0 and header_snr_db(None) is None
    with pytest.raises(ValueError, match="increasing"):
        DigitalLinkConfig(thresholds_db=(10.0, 3.0, 16.0))
    with pytest.raises(ValueError, match="auto or one of"):
        DigitalLinkConfig(modulation="256qam")


def test_decode_items_batched_matches_decode_bytes():
    dm = DigitalMode(DigitalConfig(modulation="16qam"))
    msgs = [b"x" * 40, bytes(range(40))]
    assert scramble(scramble(msgs[1])) == msgs[1] and scramble(bytes(40)) != bytes(40)
    sym = np.stack([dm.encode_bytes(scramble(m)) for m in msgs])
    assert sym.shape[1] == symbols_for_bytes(dm, 40)
    rng = np.random.default_rng(0)
    noisy = sym + 0.05 * (rng.standard_normal(sym.shape) + 1j * rng.standard_normal(sym.shape))
    assert decode_items(dm, noisy, np.full(sym.shape, 0.005)) == msgs
    assert decode_items(dm, noisy[:1], np.full((1, sym.shape[1]), 0.005))[0] == scramble(dm.decode_bytes(noisy[0], 0.005))
    bad = noisy.copy()
    bad[1, :40] = -bad[1, :40]  # far beyond what the code corrects: the CRC says so
    assert decode_items(dm, bad, np.full(sym.shape, 0.005)) == [msgs[0], None]


def test_png_codec_is_lossless_and_refuses_garbage(codecs, data):
    png: PngCodec = codecs["digital-png"]
    assert png.kind == KIND_PNG
    blobs = png.encode(data.images[:4])
    assert all(b.startswith(b"\x89PNG") for b in blobs)
    assert 200 < np.mean([len(b) for b in blobs]) < 1000
    for im, b in zip(data.images[:4], blobs, strict=True):
        np.testing.assert_array_equal(png.decode_image(b + bytes(50)), im)  # burst padding after IEND is ignored
    assert png.decode_image(b"not a png") is None and png.decode_image(None) is None
    preds = png.classify([blobs[0], None, b"\x89PNG garbage", blobs[1]])
    assert preds[1] == -1 and preds[2] == -1 and preds[0] >= 0 and preds[3] >= 0


def test_latent_codec_error_free_equals_evaluate(codecs, student, data):
    from sdr_tosc.semantic.evaluate import _dequantise, _quantise

    lat: LatentCodec = codecs["digital-latent"]
    assert lat.kind == KIND_LATENT
    blobs = lat.encode(data.images)
    k = student.num_symbols_for(25.0)
    assert {len(b) for b in blobs} == {2 * k * 4 // 8}
    sym = np.ascontiguousarray(student.encode(data.images, 25.0), dtype=np.complex64)
    v = sym.view(np.float32).reshape(len(data), -1)
    ref = student.decode(_dequantise(_quantise(v, 4, 2.0), 2 * k, 4, 2.0).astype(np.float32).view(np.complex64), 25.0)
    np.testing.assert_array_equal(lat.classify(blobs), np.argmax(ref, 1))
    assert lat.classify([None])[0] == -1


@pytest.mark.timeout(300)
def test_schemes_through_channel_process(student, codecs, data):
    """All three schemes over the channel process at 15 and -5 dB: the digital ones match their own
    simulation, fall off the cliff at -5 dB while the semantic one keeps most of its accuracy, and the air
    each image used adds up to the bursts sent."""
    link = LinkConfig(batch_size=12)
    with open_scheme_loopback(SCHEMES, student, codecs, link, snr_db=15.0, cfo_hz=2000.0) as lb:
        run_schemes(lb.txs, lb.rx, data.images[:12], data.labels[:12], progress=False)  # feedback settles
        air0 = {s: tx.air_samples for s, tx in lb.txs.items()}
        hi = run_schemes(lb.txs, lb.rx, data.images, data.labels, progress=False, truth=lb.channel.truth)
        air = {s: tx.air_samples - air0[s] for s, tx in lb.txs.items()}
        lb.channel.set(snr_db=-5.0)
        run_schemes(lb.txs, lb.rx, data.images[:12], data.labels[:12], progress=False)
        lo = run_schemes(lb.txs, lb.rx, data.images, data.labels, progress=False, truth=lb.channel.truth)
    assert set(hi) == set(SCHEMES)
    for s in SCHEMES:
        r = hi[s]
        assert r.frame_loss == 0.0 and r.accuracy >= 0.8, (s, r.summary())
        assert all(f["scheme"] == s and f["snr_true_db"] == pytest.approx(15.0, abs=0.01) for f in r.frames)
        assert r.snr_db_mean == pytest.approx(15.0, abs=1.0)
    for s in DIGITAL_SCHEMES:
        assert {f["modulation"] for f in hi[s].frames} == {"16qam"}  # 10 <= 15 dB < 16
        assert all(f["crc_ok"] for f in hi[s].frames)
        sim = simulate_frames(codecs[s], data.images, data.labels, hi[s].frames)
        assert abs(hi[s].accuracy - sim["accuracy"]) <= 1 / 24 + 1e-9
        # the bursts of the warm-up (sent with 15 dB settings) are lost, so the transmitter falls back on its
        # initial guess until reports from -5 dB arrive; by the last batch it sends the scheme's lowest order
        assert lo[s].frames[-1]["modulation"] == codecs[s].lowest
        assert lo[s].accuracy <= 0.1, (s, lo[s].summary())  # the cliff: nothing decodes at -5 dB
    assert lo["semantic"].accuracy >= 0.5
    # honest air accounting: preamble, header and padding of every burst are shared by its images
    for s in SCHEMES:
        assert sum(f["air_samples"] for f in hi[s].frames) == pytest.approx(air[s])
        assert hi[s].air_samples_per_image == pytest.approx(air[s] / 24)
    assert hi["digital-png"].air_samples_per_image > 5 * hi["digital-latent"].air_samples_per_image
    assert hi["digital-latent"].air_samples_per_image > hi["semantic"].air_samples_per_image


@pytest.mark.timeout(300)
def test_measure_cli_scheme_both(tmp_path, capsys):
    from sdr_tosc.cli import main

    js, png = tmp_path / "m.json", tmp_path / "m.png"
    rc = main(["measure", "--sweep-snr-db", "20", "--scheme", "both", "--images", "8", "--batch-size", "8",
               "--no-progress", "--json", str(js), "--plot", str(png)])
    assert rc == 0, capsys.readouterr()
    res = json.loads(js.read_text())
    assert [p["scheme"] for p in res["points"]] == list(SCHEMES)
    for p in res["points"]:
        for key in ("accuracy", "frame_loss", "snr_db_mean", "air_samples_per_image", "crc_failed"):
            assert p[key] is not None, key
        assert p["snr_db_mean"] == pytest.approx(20.0, abs=1.0)
    assert {b["scheme"] for b in res["binned"]} == set(SCHEMES)
    assert png.stat().st_size > 10_000


def test_bad_scheme_flags_say_what_is_wrong(capsys):
    from sdr_tosc.cli import main

    assert main(["measure", "--sweep-snr-db", "20", "--scheme", "analog"]) != 0
    assert "invalid choice: 'analog'" in capsys.readouterr().err
    rc = main(["measure", "--sweep-snr-db", "20", "--scheme", "digital", "--digital-thresholds-db", "a,b,c",
               "--images", "2"])
    assert rc != 0
    assert "--digital-thresholds-db" in capsys.readouterr().err


def test_image_too_large_for_a_burst_is_refused(codecs, data):
    from sdr_tosc.link.digital import DigitalTransmitter
    from sdr_tosc.modem import Modem, ModemConfig

    class Nowhere:
        def tx(self, iq):  # pragma: no cover - never reached
            raise AssertionError("sent")

    tx = DigitalTransmitter(codecs["digital-png"], Modem(ModemConfig(max_payload_symbols=500)), Nowhere(),
                            LinkConfig(), DigitalLinkConfig(modulation="qpsk"))
    with pytest.raises(ValueError, match="more than one burst carries"):
        tx.send(data.images[:2])


@pytest.mark.timeout(120)
def test_heavily_padded_image_survives_the_air(codecs):
    """Regression: a 225-byte PNG padded to 623 bytes in its burst failed its CRC at 25 dB (the zero padding,
    unscrambled, made OFDM peaks that the back-off clipped); scrambled, every image decodes."""
    from sdr_tosc.semantic.datasets import load_dataset

    d = load_dataset("fashion-mnist", "test").subset(np.array([8, 10, 8, 10]))
    png = codecs["digital-png"]
    assert [len(b) for b in png.encode(d.images[:2])] == [225, 623]
    with open_scheme_loopback(["digital-png"], None, {"digital-png": png}, LinkConfig(batch_size=4),
                              DigitalLinkConfig(modulation="64qam"), snr_db=25.0) as lb:
        r = run_schemes(lb.txs, lb.rx, d.images, d.labels, progress=False)["digital-png"]
    assert r.bursts == 1 and all(f["crc_ok"] for f in r.frames), r.frames


@pytest.mark.timeout(120)
def test_demo_scheme_digital_latent(tmp_path, capsys):
    from sdr_tosc.cli import main

    js = tmp_path / "d.json"
    rc = main(["demo", "--scheme", "digital-latent", "--snr-db", "15", "--images", "8", "--batch-size", "8",
               "--no-progress", "--json", str(js)])
    out = capsys.readouterr()
    assert rc == 0, out
    res = json.loads(js.read_text())["schemes"]
    assert list(res) == ["digital-latent"] and res["digital-latent"]["summary"]["images"] == 8
    assert "digital-latent" in out.out


@pytest.mark.timeout(180)
def test_tx_and_rx_verbs_scheme_both_through_a_channel_process(tmp_path):
    """Two processes' worth of verbs (threads here) over the channel process: rx --scheme both scores every
    scheme; the digital bursts are told apart by header kind on one stream."""
    import socket
    import threading

    from sdr_tosc.channel import ChannelSimulator
    from sdr_tosc.cli import main

    rx_json = tmp_path / "rx.json"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        fb = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    with ChannelSimulator(snr_db=18.0, cfo_hz=1500.0, seed=4) as ch:
        rc = {}
        t = threading.Thread(target=lambda: rc.setdefault("rx", main(
            ["rx", "--uri", ch.out_endpoint, "--images", "8", "--feedback", fb, "--timeout-s", "20", "--no-progress",
             "--scheme", "both", "--json", str(rx_json)])))
        t.start()
        rc["tx"] = main(["tx", "--uri", ch.in_endpoint, "--images", "8", "--feedback-bind", fb, "--batch-size", "8",
                         "--scheme", "both"])
        t.join(90)
    assert rc == {"tx": 0, "rx": 0}
    res = json.loads(rx_json.read_text())
    assert set(res["schemes"]) == set(SCHEMES)
    for sc, r in res["schemes"].items():
        assert r["received"] == 8 and r["accuracy"] >= 0.75, (sc, r)
    assert {f["scheme"] for f in res["frames"]} == set(SCHEMES)
    assert all(f["crc_ok"] for f in res["frames"] if f["scheme"] != "semantic")
