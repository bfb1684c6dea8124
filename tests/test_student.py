"""The semantic student: encode/decode contract, adaptive symbol count, checkpoints and their errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sdr_tosc.semantic.checkpoint import load_checkpoint, save_checkpoint
from sdr_tosc.semantic.student import MODELS, SemanticStudent, StudentConfig, create_model


def _randomised(adaptive: bool = True, seed: int = 0, **overrides) -> SemanticStudent:
    """A student with non-trivial weights everywhere (FiLM, BN statistics), in eval mode."""
    torch.manual_seed(seed)
    m = create_model("fmnist-cnn" if adaptive else "fmnist-cnn-fixed", **overrides)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 2.0)
    return m.eval()


def _edit_checkpoint_config(path, edit) -> None:
    """Rewrite the StudentConfig JSON in a checkpoint's safetensors header in place (``edit(dict) -> dict``)."""
    import json
    import struct

    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    header["__metadata__"]["config"] = json.dumps(edit(json.loads(header["__metadata__"]["config"])))
    new = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(new)) + new + raw[8 + n:])


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, size=(6, 28, 28, 1), dtype=np.uint8)


@pytest.mark.parametrize("snr", [-5.0, 0.0, 10.0, 17.5, 25.0])
def test_encode_shape_dtype_unit_power(images, snr):
    m = _randomised()
    sym = m.encode(images, snr)
    assert sym.dtype == np.complex64
    assert sym.shape == (6, m.num_symbols_for(snr))
    np.testing.assert_allclose(np.mean(np.abs(sym) ** 2, axis=1), 1.0, rtol=1e-4)
    one = m.encode(images[0], snr)  # a single [H, W, C] image
    np.testing.assert_allclose(one[0], sym[0], atol=1e-5)


def test_symbol_count_rule():
    m = create_model("fmnist-cnn")
    ks = [m.num_symbols_for(s) for s in range(-10, 31)]
    assert ks[0] == 64 and ks[-1] == 16
    assert all(a >= b for a, b in zip(ks, ks[1:], strict=False)), "fewer symbols as the SNR grows"
    assert all(k % 4 == 0 for k in ks)
    assert m.num_symbols_for(0.0) == 64 and m.num_symbols_for(10.0) == 40 and m.num_symbols_for(20.0) == 16
    fixed = create_model("fmnist-cnn-fixed")
    assert {fixed.num_symbols_for(s) for s in range(-10, 31)} == {40}
    assert fixed.encode(np.zeros((2, 28, 28, 1), np.uint8), 25.0).shape == (2, 40)


@pytest.mark.parametrize("adaptive", [True, False])
@pytest.mark.parametrize("snr", [-5.0, 10.0, 25.0])
def test_encode_decode_match_forward(images, adaptive, snr):
    """encode == the symbols forward() sends; decode(received) == forward()'s logits (same channel draw)."""
    m = _randomised(adaptive)
    out = m(images, snr, channel="awgn", generator=torch.Generator().manual_seed(3))
    k = int(out["num_symbols"][0])
    sym = m.encode(images, snr)
    np.testing.assert_allclose(sym, out["symbols"][:, :k].detach().numpy(), atol=1e-5)
    assert torch.all(out["symbols"][:, k:] == 0)
    logits = m.decode(out["received"][:, :k].detach().numpy(), snr)
    np.testing.assert_allclose(logits, out["logits"].detach().numpy(), atol=1e-4)


def test_round_trip_through_numpy_awgn_at_high_snr(images):
    """encode -> AWGN (numpy, 40 dB) -> decode gives the predictions of the noiseless path."""
    m = _randomised()
    sym = m.encode(images, 40.0)
    rng = np.random.default_rng(1)
    no = 10 ** (-40 / 10)
    noisy = sym + np.sqrt(no / 2) * (rng.standard_normal(sym.shape) + 1j * rng.standard_normal(sym.shape))
    clean = m.decode(sym, 40.0)
    assert np.array_equal(m.decode(noisy.astype(np.complex64), 40.0).argmax(1), clean.argmax(1))
    ref = m(images, 40.0, channel="awgn", generator=torch.Generator().manual_seed(0))["logits"].argmax(1).numpy()
    assert np.array_equal(clean.argmax(1), ref)


def test_decode_accepts_fewer_symbols_and_rejects_bad_input(images):
    m = _randomised()
    sym = m.encode(images, 25.0)  # 16 symbols
    assert m.decode(sym, 25.0).shape == (6, 10)
    assert m.decode(sym[:, :8], 25.0).dtype == np.float32  # fewer symbols: the rest count as zeros
    padded = np.concatenate([sym, np.zeros((6, 16), np.complex64)], axis=1)
    np.testing.assert_allclose(m.decode(padded, 25.0), m.decode(sym, 25.0), atol=1e-5)
    with pytest.raises(ValueError, match="1 <= k <= 64"):
        m.decode(np.zeros((2, 65), np.complex64), 10.0)
    with pytest.raises(ValueError, match="complex"):
        m.decode(np.zeros((2, 16), np.float32), 10.0)
    with pytest.raises(ValueError, match="finite"):
        m.decode(sym, float("nan"))
    with pytest.raises(ValueError, match="one SNR per call"):
        m.encode(images, np.arange(6.0))


@pytest.mark.parametrize("shape", [(2, 32, 32, 1), (2, 28, 28, 3), (2, 28, 28), (28, 28)])
def test_wrong_image_size_or_channels_is_a_clear_error(shape):
    m = create_model("fmnist-cnn")
    with pytest.raises(ValueError, match=r"expects images of shape \[B, 28, 28, 1\]"):
        m.encode(np.zeros(shape, np.uint8), 10.0)
    with pytest.raises(ValueError, match="expects images"):
        m(np.zeros(shape, np.uint8), 10.0)


def test_wrong_dtype_is_a_clear_error():
    m = create_model("fmnist-cnn")
    with pytest.raises(ValueError, match="uint8"):
        m.encode(np.zeros((1, 28, 28, 1), np.int32), 10.0)


def test_size_and_conditioning_memo():
    m = _randomised()
    assert m.num_parameters() <= 4_650_000 // 20  # <= 1/20 of the EfficientNet-Lite0 teacher
    assert create_model("fmnist-cnn-fixed").num_parameters() < m.num_parameters()
    x = np.zeros((1, 28, 28, 1), np.uint8)
    a = m.decode(m.encode(x, 7.0), 7.0)
    assert ("enc", 7.0) in m._cond_cache and ("dec", 7.0) in m._cond_cache
    with torch.no_grad():
        m.dec_snr.fc2.bias.add_(1.0)
    m.train()
    m.eval()  # switching modes drops the memo, so new weights are used
    assert not np.allclose(m.decode(m.encode(x, 7.0), 7.0), a)


def test_create_model_variants(tmp_path):
    assert create_model("fmnist-cnn").config == MODELS["fmnist-cnn"]
    assert create_model(StudentConfig(num_symbols=8, min_symbols=4)).k_max == 8
    assert create_model({"num_symbols": 12, "min_symbols": 8}).config.num_symbols == 12
    assert create_model("fmnist-cnn", adaptive=False).adaptive is False
    with pytest.raises(ValueError, match="unknown student"):
        create_model("resnet-9000")
    with pytest.raises(ValueError, match="unknown key"):
        create_model({"widthz": [1, 2, 3]})
    cifar = create_model("cifar-cnn")
    assert cifar.encode(np.zeros((1, 32, 32, 3), np.uint8), 10.0).shape == (1, 40)
    path = save_checkpoint(cifar, tmp_path / "c.safetensors")
    assert create_model(path).config == cifar.config


def test_checkpoint_round_trip(tmp_path, images):
    m = _randomised()
    path = save_checkpoint(m, tmp_path / "s.safetensors", extra={"note": "hello", "epoch": 3})
    back, extra = load_checkpoint(path, with_extra=True)
    assert extra == {"note": "hello", "epoch": 3}
    assert back.config == m.config and not back.training
    np.testing.assert_array_equal(back.encode(images, 3.0), m.encode(images, 3.0))
    assert path.stat().st_size < 2 * 1024 * 1024
    assert not list(tmp_path.glob("*.tmp")), "atomic write leaves no temporary file"


def test_checkpoint_errors(tmp_path):
    from safetensors.torch import save_file

    with pytest.raises(FileNotFoundError, match="not found"):
        load_checkpoint(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00\x01 not a safetensors file" * 10)
    with pytest.raises(ValueError, match="not a readable safetensors"):
        load_checkpoint(junk)
    good = save_checkpoint(create_model("fmnist-cnn"), tmp_path / "good.safetensors")
    truncated = tmp_path / "trunc.safetensors"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match=str(truncated.name)):
        load_checkpoint(truncated)
    other = tmp_path / "teacher.safetensors"
    save_file({"w": torch.zeros(3)}, str(other), metadata={"format": "sdr-tosc-teacher"})
    with pytest.raises(ValueError, match="not an sdr-tosc student checkpoint"):
        load_checkpoint(other)
    # weights of another architecture under this config: shape mismatch named
    small = create_model("fmnist-cnn", widths=(8, 16, 16))
    mixed = tmp_path / "mixed.safetensors"
    save_checkpoint(small, mixed)
    _edit_checkpoint_config(mixed, lambda cfg: {**cfg, "widths": [32, 64, 64]})
    with pytest.raises(ValueError, match="do not match the student architecture"):
        load_checkpoint(mixed)


def test_float_images_are_accepted_and_not_modified(images):
    m = _randomised()
    f = torch.from_numpy(images).float() / 255.0
    before = f.clone()
    np.testing.assert_allclose(m.encode(f, 10.0), m.encode(images, 10.0), atol=1e-5)
    assert torch.equal(f, before)


@pytest.mark.parametrize("stem_width", [0, 8])
def test_both_stems_fast_path_matches_forward(images, stem_width):
    """The 5x5/2 stem (stem_width 0, the first shipped students) and the full-resolution 3x3 stem."""
    m = _randomised(seed=1, stem_width=stem_width)
    assert hasattr(m, "conv0") == bool(stem_width)
    with torch.no_grad():
        out = m(images, 12.0, channel="none")
    k = int(out["num_symbols"][0])
    np.testing.assert_allclose(m.encode(images, 12.0), out["symbols"][:, :k].numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="stem_width"):
        create_model("fmnist-cnn", stem_width=-1)


def test_checkpoint_without_stem_field_loads_as_the_original_architecture(tmp_path, images):
    """Checkpoints written before ``stem_width`` existed carry no such key: they are the 5x5/2-stem model."""
    old = create_model("fmnist-cnn", stem_width=0).eval()
    path = save_checkpoint(old, tmp_path / "old.safetensors")
    _edit_checkpoint_config(path, lambda cfg: {k: v for k, v in cfg.items() if k != "stem_width"})
    back = load_checkpoint(path)
    assert back.config.stem_width == 0 and not hasattr(back, "conv0")
    np.testing.assert_array_equal(back.encode(images, 5.0), old.encode(images, 5.0))


def test_checkpoint_names_stay_importable_from_student(tmp_path):
    """Checkpoint I/O moved to semantic.checkpoint; the names it had in student resolve to the same objects."""
    from sdr_tosc.semantic import checkpoint, student

    for name in ("CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "load_checkpoint", "read_checkpoint_metadata",
                 "save_checkpoint", "tensors_digest"):
        assert getattr(student, name) is getattr(checkpoint, name)
    path = save_checkpoint(_randomised(), tmp_path / "s.safetensors")
    assert isinstance(create_model(path), SemanticStudent)  # a path goes through checkpoint.load_checkpoint
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        _ = student.no_such_name
