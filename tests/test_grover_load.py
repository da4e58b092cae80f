"""Checkpoint loading: file formats, strict key/shape checks, hub-cache resolution, family dispatch."""
from __future__ import annotations

import json
import shutil
import time

import pytest
import torch

from grover_fixtures import make_checkpoint
from vareff.errors import CheckpointError
from vareff.models import load as L
from vareff.models.load import load_model


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("grover_load")
    hf_model, _ = make_checkpoint(d, vocab_size=80, hidden_size=24, num_hidden_layers=2, num_attention_heads=3,
                                  intermediate_size=40, seed=2)
    return d, hf_model


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _logits(model, seqs=("ACGTTGCAAGGT" * 9, "TTAGC")):
    ids, mask = model.tokenize(list(seqs))
    return model.forward(ids, mask).logits, mask.bool()


def test_safetensors_and_bin_give_the_same_model(ckpt, tmp_path):
    d, hf_model = ckpt
    b = _copy(d, tmp_path / "bin")
    (b / "model.safetensors").unlink()
    torch.save(hf_model.state_dict(), b / "pytorch_model.bin")
    m1, m2 = load_model(d), load_model(b)
    assert m1.weight_files[0].name == "model.safetensors" and m2.weight_files[0].name == "pytorch_model.bin"
    (l1, mask), (l2, _) = _logits(m1), _logits(m2)
    assert torch.equal(l1[mask], l2[mask])
    assert m1.checksum().startswith("sha256:") and m1.checksum() != m2.checksum()


def test_legacy_layout_is_accepted(ckpt, tmp_path):
    """4.x-era files: position_ids buffer, explicit tied decoder weight/bias, pooler, gamma/beta names."""
    d, hf_model = ckpt
    b = _copy(d, tmp_path / "legacy")
    (b / "model.safetensors").unlink()
    sd = dict(hf_model.state_dict())
    sd["bert.embeddings.position_ids"] = torch.arange(hf_model.config.max_position_embeddings)[None]
    sd["cls.predictions.decoder.weight"] = sd["bert.embeddings.word_embeddings.weight"].clone()
    sd["cls.predictions.decoder.bias"] = sd["cls.predictions.bias"].clone()
    sd["bert.pooler.dense.weight"] = torch.randn(24, 24)
    sd["bert.pooler.dense.bias"] = torch.randn(24)
    sd["bert.embeddings.LayerNorm.gamma"] = sd.pop("bert.embeddings.LayerNorm.weight")
    sd["bert.embeddings.LayerNorm.beta"] = sd.pop("bert.embeddings.LayerNorm.bias")
    torch.save(sd, b / "pytorch_model.bin")
    (l1, mask), (l2, _) = _logits(load_model(d)), _logits(load_model(b))
    assert torch.equal(l1[mask], l2[mask])


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda sd: sd.pop("bert.encoder.layer.1.output.dense.weight"), r"missing 1 key\(s\): bert\.encoder\.layer\.1\.output\.dense\.weight"),
        (lambda sd: sd.__setitem__("bert.encoder.layer.2.output.dense.weight", torch.zeros(24, 40)), r"unexpected 1 key\(s\): bert\.encoder\.layer\.2\.output\.dense\.weight"),
        (lambda sd: sd.__setitem__("cls.predictions.bias", torch.zeros(81)), r"cls\.predictions\.bias: checkpoint \(81,\) vs expected \(80,\)"),
    ],
    ids=["missing", "extra", "shape"],
)
def test_key_and_shape_errors_name_the_keys(ckpt, tmp_path, edit, message):
    from safetensors.torch import load_file, save_file

    d, _ = ckpt
    b = _copy(d, tmp_path / "bad")
    sd = load_file(b / "model.safetensors")
    edit(sd)
    save_file(sd, b / "model.safetensors")
    with pytest.raises(CheckpointError, match=message) as e:
        load_model(b)
    assert "Hint:" in str(e.value)


def test_pickled_code_in_bin_is_refused_not_run(ckpt, tmp_path):
    d, hf_model = ckpt
    b = _copy(d, tmp_path / "evil")
    (b / "model.safetensors").unlink()
    torch.save({"weights": hf_model.state_dict(), "extra": _Payload()}, b / "pytorch_model.bin")
    _Payload.ran = False
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_model(b)
    assert not _Payload.ran


class _Payload:
    ran = False

    def __reduce__(self):
        return (_mark_ran, ())


def _mark_ran():
    _Payload.ran = True
    return None


def test_directory_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nope" / "x")
    with pytest.raises(CheckpointError, match="has no config.json"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(CheckpointError, match="not a model family"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "vocab_size": 10, "hidden_size": 8,
                                                      "num_attention_heads": 2}))
    with pytest.raises(CheckpointError, match="no tokenizer.json|no weights"):
        load_model(tmp_path)


def test_hub_id_from_local_cache(ckpt, tmp_path, monkeypatch):
    d, _ = ckpt
    cache = tmp_path / "hub"
    snap = cache / "models--PoetschLab--GROVER" / "snapshots" / "0123abc"
    shutil.copytree(d, snap)
    (cache / "models--PoetschLab--GROVER" / "refs").mkdir()
    (cache / "models--PoetschLab--GROVER" / "refs" / "main").write_text("0123abc")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    m = load_model("PoetschLab/GROVER")
    assert m.path == snap
    (l1, mask), (l2, _) = _logits(m), _logits(load_model(d))
    assert torch.equal(l1[mask], l2[mask])
    assert load_model("PoetschLab/GROVER@0123abc").path == snap


def test_hub_id_absent_offline_fails_fast_with_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    t0 = time.monotonic()
    with pytest.raises(CheckpointError, match="not in the local Hugging Face cache") as e:
        load_model("PoetschLab/GROVER")
    assert time.monotonic() - t0 < 5  # no network attempt
    assert "huggingface-cli download PoetschLab/GROVER" in str(e.value)


def test_families_can_be_registered_elsewhere(ckpt, tmp_path):
    d, _ = ckpt
    b = _copy(d, tmp_path / "toy")
    cfg = json.loads((b / "config.json").read_text())
    cfg["model_type"], cfg["architectures"] = "toyfam", ["ToyForMaskedLM"]
    (b / "config.json").write_text(json.dumps(cfg))
    seen = {}

    def loader(directory, config, *, device, dtype, name=None):
        seen.update(directory=directory, device=device, dtype=dtype)
        return "toy-model"

    L.register_family(L.Family("toyfam", ("toyfam",), ("ToyForMaskedLM",), loader))
    try:
        assert load_model(b, dtype="bf16") == "toy-model"
        assert seen["dtype"] == torch.bfloat16 and seen["device"] == torch.device("cpu")
    finally:
        L._FAMILIES.pop("toyfam", None)


def test_device_and_dtype_resolution():
    from vareff.errors import ConfigError

    assert L.resolve_dtype(None, torch.device("cpu")) == torch.float32
    assert L.resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(ConfigError, match="dtype"):
        L.resolve_dtype("int8", torch.device("cpu"))
    assert L.resolve_device("cpu") == torch.device("cpu")
