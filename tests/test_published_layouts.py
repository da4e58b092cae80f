"""Checkpoint directories laid out exactly as the published Hugging Face repositories, loaded by vareff.

Each test builds a tiny random checkpoint with the published file names (and the published
absences: no ``tokenizer.json`` for NT, no ``vocab.txt`` for GROVER, ``pytorch_model.bin`` as the
only weights where the repository has no safetensors), the published config keys and the
published state-dict quirks, then compares vareff with an independent reference:

* GROVER (PoetschLab/GROVER): ``tokenizers`` / ``transformers`` tokenizer ids and
  ``transformers.BertForMaskedLM.from_pretrained`` logits (tolerance 1e-4, fp32, real positions),
  and ``vareff score -m DIR`` on real BRCA1 records;
* NT v1 (nucleotide-transformer-500m-human-ref), NT v2 (v2-250m: bin only; v2-500m: bin +
  safetensors), SegmentNT (segment_nt: bin only, with or without ``lm_head``): ``EsmTokenizer``
  ids and the references of tests/nt_fixtures.py (tolerance 1e-4).

Custom-code files the repositories ship (``modeling_esm.py``, ``modeling_segment_nt.py``) and the
GROVER ``tokenized_chromosomes/*.pkl`` are written as traps that would leave a marker file if any
of them were executed or unpickled; the marker must never appear.

Also here: the loader's refusals (tokenizer ids without embedding rows, pickled code, broken
``config.json``), the last two through the CLI.
"""
from __future__ import annotations

import json
import pickle
import random
import shutil
from pathlib import Path

import polars as pl
import pytest
import torch

import grover_fixtures as gf
import nt_fixtures as nf
from engine_helpers import BRCA_CONTIG, BRCA_OFFSET0, brca_paths, shifted_pangolin_vcf
from vareff.cli import main
from vareff.errors import CheckpointError
from vareff.models.load import load_model

TOL = 1e-4

#: file lists of the published repositories (Hugging Face "Files" pages; jax_model/, README and
#: .gitattributes left out where vareff never looks)
GROVER_FILES = {"config.json", "pytorch_model.bin", "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json", "README.md", "tokenized_chromosomes"}
NT_V1_FILES = {"config.json", "pytorch_model.bin", "tf_model.h5", "vocab.txt", "tokenizer_config.json",
               "special_tokens_map.json"}
NT_V2_FILES = {"config.json", "pytorch_model.bin", "esm_config.py", "modeling_esm.py", "vocab.txt",
               "tokenizer_config.json", "special_tokens_map.json"}
SEGMENT_NT_FILES = {"config.json", "pytorch_model.bin", "modeling_segment_nt.py", "segment_nt_config.py",
                    "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"}


# --------------------------------------------------------------------------- traps


class _Trap:
    """Unpickling this creates ``path``: proof that something ran pickled code."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def _code_trap(marker: Path) -> str:
    return f"from pathlib import Path\nPath({str(marker)!r}).touch()\nraise RuntimeError('checkpoint code was run')\n"


@pytest.fixture
def marker(tmp_path):
    m = tmp_path / "CODE_WAS_RUN"
    yield m
    assert not m.exists(), "a checkpoint's code or pickle was executed"


def _files(d: Path) -> set[str]:
    return {p.name for p in d.iterdir()}


# --------------------------------------------------------------------------- GROVER


@pytest.fixture(scope="module")
def grover_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("grover_published")
    hf = gf.make_published_grover(d, seed=3)
    return d, hf


def _with_trap_pickle(src: Path, dst: Path, marker: Path) -> Path:
    shutil.copytree(src, dst)
    (dst / "tokenized_chromosomes").mkdir()
    with open(dst / "tokenized_chromosomes" / "chr_21_mapper.pkl", "wb") as fh:
        pickle.dump({"mapper": _Trap(marker)}, fh)
    return dst


@pytest.mark.parametrize("specials", [gf.SPECIALS, ["[UNK]", "[PAD]", "[CLS]", "[SEP]", "[MASK]"]],
                         ids=["pad0-unk1", "unk0-pad1"])
def test_grover_published_layout_loads_and_equals_transformers(specials, tmp_path, marker):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer, BertForMaskedLM, PreTrainedTokenizerFast

    src = tmp_path / "src"
    gf.make_published_grover(src, specials=specials, seed=5)
    d = _with_trap_pickle(src, tmp_path / "GROVER", marker)
    assert _files(d) == GROVER_FILES
    spec = json.loads((d / "tokenizer.json").read_text())
    assert len(spec["model"]["vocab"]) == 610 and spec["model"]["vocab"][""] == 609
    assert spec["model"]["merges"][:4] == ["A ", "C ", "G ", "T "]
    assert json.loads((d / "config.json").read_text())["vocab_size"] == 609

    m = load_model(d, device="cpu")  # refused before: "tokenizer.json has 610 tokens but ... 609"
    assert m.tokenizer.vocab_size == 609 and len(m.tokenizer.token_strings) == 609
    ref_tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    assert ref_tok.get_vocab_size() == 610
    assert ref_tok.encode("[MASK]A").ids == [2, 4, 5, 3]  # the published example: CLS, MASK, A, SEP

    rng = random.Random(len(specials[0]))
    seqs = [gf.random_dna(rng.randint(1, 400), rng) for _ in range(40)]
    seqs[0] = "acgtNNacgt" + seqs[0]  # soft-masked bases and N: vareff upper-cases first
    ids, am = m.tokenize(seqs)
    for hf_tok in (AutoTokenizer.from_pretrained(str(d)), PreTrainedTokenizerFast.from_pretrained(str(d))):
        want = hf_tok([s.upper() for s in seqs], padding=True, return_tensors="pt")
        assert torch.equal(ids, want["input_ids"]) and torch.equal(am, want["attention_mask"])
    for s, row, n in zip(seqs, ids, am.sum(1)):
        assert row[:n].tolist() == ref_tok.encode(s.upper()).ids
    assert int(ids.max()) < 609  # the empty piece is never emitted

    hf = BertForMaskedLM.from_pretrained(str(d)).eval()  # transformers reads the same files
    batch_ids, batch_am = ids[:6], am[:6]
    batch_ids[1, 3] = m.tokenizer.mask_id
    out = m.forward(batch_ids, batch_am)
    with torch.no_grad():
        ref = hf(input_ids=batch_ids, attention_mask=batch_am, output_hidden_states=True)
    real = batch_am.bool()
    assert out.logits.shape[-1] == 609
    assert (out.logits - ref.logits)[real].abs().max() < TOL
    assert (out.last_hidden_state - ref.hidden_states[-1])[real].abs().max() < TOL


def test_grover_published_layout_scores_real_records_through_the_cli(grover_dir, shared_data, tmp_path, marker):
    d, hf = grover_dir
    d = _with_trap_pickle(d, tmp_path / "GROVER", marker)
    p = brca_paths(shared_data)
    full = shifted_pangolin_vcf(shared_data, tmp_path / "all.vcf").read_text().splitlines()
    head = [x for x in full if x.startswith("#")]
    body = [x for x in full if not x.startswith("#") and len(x.split("\t")) >= 8][:6]
    vcf = tmp_path / "few.vcf"
    vcf.write_text("\n".join(head + body) + "\n")
    out = tmp_path / "scores.parquet"
    rc = main(["score", str(vcf), "-f", p["fasta"], "--contig-map", p["contig_map"], "-m", str(d), "-o", str(out),
               "--device", "cpu", "--no-progress"])
    assert rc == 0
    df = pl.read_parquet(out)
    assert df.height == len(body) and (df["status"] == "ok").all()
    assert df["grover_llr"].null_count() == 0 and df["grover_embedding_distance"].null_count() == 0

    from transformers import AutoTokenizer

    # the published special_tokens_map.json names no [UNK]/[SEP]: tell transformers, or it counts them as DNA
    hf_tok = AutoTokenizer.from_pretrained(str(d), unk_token="[UNK]", sep_token="[SEP]")
    ref = gf.TransformersReference(p["fasta"], BRCA_CONTIG, BRCA_OFFSET0, hf, hf_tok)
    for row in df.head(3).iter_rows(named=True):
        want = ref.score(row["norm_pos"], row["norm_ref"], row["norm_alt"])
        for k, v in want.items():
            assert row[k] == pytest.approx(v, abs=TOL), (k, row["pos"])


def _edit_tokenizer(src: Path, dst: Path, edit) -> tuple[Path, str | None]:
    """Copy the checkpoint and edit its tokenizer.json; returns the copy and the edit's probe sequence."""
    shutil.copytree(src, dst)
    spec = json.loads((dst / "tokenizer.json").read_text())
    probe = edit(spec)
    (dst / "tokenizer.json").write_text(json.dumps(spec))
    return dst, probe


def _real_extra_piece(spec):
    """Id 609 becomes a real piece ("N", absent from the trained vocabulary): the tokenizer emits it."""
    v = spec["model"]["vocab"]
    assert "N" not in v
    del v[""]
    spec["model"]["merges"] = spec["model"]["merges"][4:]
    v["N"] = 609
    return "ACGNTA"


def _empty_piece_made_by_a_merge(spec):
    spec["model"]["merges"].insert(0, " ")  # ("", "") -> "": the empty piece becomes reachable


def _added_token_beyond_the_table(spec):
    spec["added_tokens"].append({"id": 610, "content": "[EXTRA]", "single_word": False, "lstrip": False,
                                 "rstrip": False, "normalized": False, "special": True})


def _post_processor_uses_the_extra_id(spec):
    spec["post_processor"]["special_tokens"]["[SEP]"]["ids"] = [609]


@pytest.mark.parametrize("edit, message", [
    (_real_extra_piece, r"id\(s\) 609 \('N'\) are real vocabulary pieces with no embedding row"),
    (_empty_piece_made_by_a_merge, r"the merge ' ' produces the empty piece"),
    (_added_token_beyond_the_table, r"added token\(s\) at id\(s\) 610 \('\[EXTRA\]'\)"),
    (_post_processor_uses_the_extra_id, r"the post-processor inserts 609"),
], ids=["real-piece", "merge-makes-empty", "added-token", "post-processor"])
def test_real_vocabulary_mismatches_stay_refused(grover_dir, tmp_path, edit, message):
    d, _ = grover_dir
    bad, probe = _edit_tokenizer(d, tmp_path / "bad", edit)
    with pytest.raises(CheckpointError, match=message) as e:
        load_model(bad, device="cpu")
    text = str(e.value)
    assert "vocab_size=609" in text and "tokenizer.json" in text and "Hint:" in text
    if probe:  # the refused id is really emitted by the tokenizer
        from tokenizers import Tokenizer

        assert 609 in Tokenizer.from_file(str(bad / "tokenizer.json")).encode(probe).ids


# --------------------------------------------------------------------------- Nucleotide Transformer


def _nt_tokenizer_files(d: Path, max_len: int) -> None:
    """tokenizer_config.json / special_tokens_map.json as small as the published ones; no tokenizer.json."""
    (d / "tokenizer_config.json").write_text(json.dumps({"model_max_length": max_len, "tokenizer_class": "EsmTokenizer"}))
    (d / "special_tokens_map.json").write_text(json.dumps(
        {"unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>", "cls_token": "<cls>"}))


def _esm_reference_tokenizer(d: Path):
    from transformers import EsmTokenizer

    return EsmTokenizer(str(d / "vocab.txt"), eos_token=None)


def _batch(tok, seed):
    rng = random.Random(seed)
    seqs = [nf.random_dna(rng.randint(20, 120), rng, "ACGTN") for _ in range(3)]
    e = tok(seqs, padding=True, return_tensors="pt")
    return seqs, e["input_ids"], e["attention_mask"]


def _close(a, b, mask, what):
    err = (a.double() - b.double())[mask.bool()].abs().max().item()
    assert err < TOL, f"{what}: max |diff| {err:.2e}"


def _shard(d: Path, sd: dict) -> list[str]:
    """Two ``pytorch_model-0000k-of-00002.bin`` shards + ``pytorch_model.bin.index.json`` (the 2.5b repositories)."""
    keys = list(sd)
    names = ["pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"]
    parts = [keys[: len(keys) // 2], keys[len(keys) // 2:]]
    for name, ks in zip(names, parts):
        torch.save({k: sd[k] for k in ks}, d / name)
    index = {"metadata": {"total_size": sum(v.numel() * v.element_size() for v in sd.values())},
             "weight_map": {k: name for name, ks in zip(names, parts) for k in ks}}
    (d / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    return names


@pytest.mark.parametrize("size", ["500m", "2.5b"])
def test_nt_v1_published_layout(size, tmp_path, marker):
    d = tmp_path / f"nucleotide-transformer-{size}"
    dims = dict(hidden_size=24, num_attention_heads=2, num_hidden_layers=2, intermediate_size=40)
    hf, _ = nf.make_nt_v1(d, seed=11, **dims)
    (d / "model.safetensors").unlink()  # the published repositories (main) have no safetensors
    sd = hf.state_dict()  # incl. esm.contact_head.*; plus the int64 position_ids buffer (LongStorage in the pickle)
    sd["esm.embeddings.position_ids"] = torch.arange(hf.config.max_position_embeddings)[None]
    expected = set(NT_V1_FILES)
    if size == "500m":
        torch.save(sd, d / "pytorch_model.bin")
    else:  # 2.5b: sharded pickles with an index
        expected = (expected - {"pytorch_model.bin", "tf_model.h5"}) | set(_shard(d, sd)) | {"pytorch_model.bin.index.json"}
    if "tf_model.h5" in expected:
        (d / "tf_model.h5").write_bytes(b"\x89HDF\r\n\x1a\n not read by vareff")
    _nt_tokenizer_files(d, 1000)
    assert _files(d) == expected and "auto_map" not in json.loads((d / "config.json").read_text())

    m = load_model(d, device="cpu")
    assert m.config.variant == "NT-v1" and {f.name for f in m.weight_files} == {
        n for n in expected if n.startswith("pytorch_model") and n.endswith(".bin")}
    tok = _esm_reference_tokenizer(d)
    seqs, ids, am = _batch(tok, 11)
    ids2, am2 = m.tokenize(seqs)
    assert torch.equal(ids2, ids) and torch.equal(am2, am)
    out = m.forward(ids, am)
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=am, output_hidden_states=True)
    _close(out.logits, ref.logits, am, "logits")
    _close(out.last_hidden_state, ref.hidden_states[-1], am, "hidden")


@pytest.mark.parametrize("weights", ["bin", "bin+safetensors"], ids=["v2-250m-main", "v2-500m-main"])
def test_nt_v2_published_layout(weights, tmp_path, marker):
    d = tmp_path / "nucleotide-transformer-v2"
    dims = dict(hidden_size=32, num_attention_heads=4, num_hidden_layers=2, intermediate_size=24)
    hf, tok = nf.make_nt_v2(d, seed=12, fmt="bin", **dims)
    sd = torch.load(d / "pytorch_model.bin", weights_only=True)
    assert any(k.endswith("inv_freq") for k in sd) and "esm.embeddings.position_embeddings.weight" in sd
    if weights == "bin+safetensors":
        nf.save_state(d, sd, "safetensors")
    for name in ("esm_config.py", "modeling_esm.py"):
        (d / name).write_text(_code_trap(marker))
    _nt_tokenizer_files(d, 2048)
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["add_bias_fnn"] is False and "auto_map" in cfg
    assert _files(d) == NT_V2_FILES | ({"model.safetensors"} if weights != "bin" else set())

    m = load_model(d, device="cpu")
    assert m.config.variant == "NT-v2"
    assert m.weight_files[0].name == ("pytorch_model.bin" if weights == "bin" else "model.safetensors")
    seqs, ids, am = _batch(_esm_reference_tokenizer(d), 12)
    ids2, am2 = m.tokenize(seqs)
    assert torch.equal(ids2, ids) and torch.equal(am2, am)
    ids[0, 2] = tok.mask_token_id
    out = m.forward(ids, am)
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=am, output_hidden_states=True)
    _close(out.logits, ref.logits, am, "logits")
    _close(out.last_hidden_state, ref.hidden_states[-1], am, "hidden")


@pytest.mark.parametrize("with_lm_head", [False, True], ids=["no-lm_head", "lm_head"])
def test_segment_nt_published_layout(with_lm_head, tmp_path, marker):
    d = tmp_path / "segment_nt"
    dims = dict(hidden_size=16, num_attention_heads=2, num_hidden_layers=1, intermediate_size=16)
    hf, head, _ = nf.make_segment_nt(d, seed=13, fmt="bin", with_lm_head=with_lm_head, **dims)
    for name in ("modeling_segment_nt.py", "segment_nt_config.py"):
        (d / name).write_text(_code_trap(marker))
    _nt_tokenizer_files(d, 2048)
    assert _files(d) == SEGMENT_NT_FILES
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["rescaling_factor"] == 2.44140625 and cfg["features"] == nf.FEATURES and cfg["architectures"] == ["SegmentNT"]
    sd = torch.load(d / "pytorch_model.bin", weights_only=True)  # readable as published: tensors only
    assert any(k.startswith("unet._downsample_blocks.") for k in sd) and "fc.weight" in sd
    assert any(k.startswith("lm_head.") for k in sd) == with_lm_head

    m = load_model(d, device="cpu")
    assert m.family == "segment_nt" and m.features == tuple(nf.FEATURES)
    assert m.weight_files[0].name == "pytorch_model.bin"
    seq = nf.random_dna(6 * 8, random.Random(13))
    tok = _esm_reference_tokenizer(d)
    ids = torch.tensor([tok(seq)["input_ids"]])
    ids2, am = m.tokenize([seq])
    assert torch.equal(ids2, ids)
    out = m.forward(ids2, am)
    hs = dims["hidden_size"] // dims["num_attention_heads"]
    _, l_ref, p_ref = nf.reference_segment_nt(hf, head, ids, base=nf.rescaled_base(2.44140625, hs))
    assert (out.logits.double() - l_ref).abs().max() < TOL
    assert (out.probabilities.double() - p_ref).abs().max() < TOL


# --------------------------------------------------------------------------- loader errors through the CLI


def _cli(shared_data, tmp_path, model_dir, capsys):
    p = brca_paths(shared_data)
    vcf = tmp_path / "one.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                   "chr17\t43045000\t.\tA\tG\t.\t.\t.\n")
    out = tmp_path / "out.tsv"
    rc = main(["score", str(vcf), "-f", p["fasta"], "--contig-map", p["contig_map"], "-m", str(model_dir),
               "-o", str(out), "-O", "tsv", "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err
    assert not out.exists()
    assert "Traceback" not in err
    return rc, err


@pytest.mark.parametrize("text, message", [
    ('{"model_type": "bert",', "is not valid JSON"),
    ("[1, 2]", "is not a JSON object"),
    ("", "is not valid JSON"),
], ids=["truncated", "list", "empty"])
def test_broken_config_json_is_one_error_line(grover_dir, shared_data, tmp_path, capsys, text, message):
    d, _ = grover_dir
    bad = tmp_path / "bad"
    shutil.copytree(d, bad)
    (bad / "config.json").write_text(text)
    rc, err = _cli(shared_data, tmp_path, bad, capsys)
    assert rc == 2
    lines = err.strip().splitlines()
    assert lines[0].startswith("vareff: error: ") and str(bad / "config.json") in lines[0] and message in lines[0]
    assert all(x.startswith("Hint: ") for x in lines[1:]) and len(lines) <= 2


@pytest.mark.parametrize("zipfile", [True, False], ids=["zip", "legacy"])
def test_pickled_code_is_refused_in_one_line_without_torch_advice(grover_dir, shared_data, tmp_path, capsys, marker,
                                                                  zipfile):
    d, hf = grover_dir
    bad = tmp_path / "evil"
    shutil.copytree(d, bad)
    torch.save({**hf.state_dict(), "extra": _Trap(marker)}, bad / "pytorch_model.bin",
               _use_new_zipfile_serialization=zipfile)
    rc, err = _cli(shared_data, tmp_path, bad, capsys)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 2 and lines[1].startswith("Hint: ") and "safetensors" in lines[1]
    assert lines[0].startswith("vareff: error: ") and str(bad / "pytorch_model.bin") in lines[0]
    assert "contains pickled code" in lines[0] and "will not run it" in lines[0]
    assert "weights_only=False" not in err


def test_legacy_pickle_format_loads_like_the_zip_format(grover_dir, tmp_path):
    """A pre-1.6 (non-zip) torch.save file cannot be memory-mapped; it is read without mmap, still weights_only."""
    d, hf = grover_dir
    old = tmp_path / "legacy"
    shutil.copytree(d, old)
    torch.save(hf.state_dict(), old / "pytorch_model.bin", _use_new_zipfile_serialization=False)
    m1, m2 = load_model(d, device="cpu"), load_model(old, device="cpu")
    ids, am = m1.tokenize(["ACGTTGCAAGGTAC" * 7, "TTAGC"])
    assert torch.equal(m1.forward(ids, am).logits, m2.forward(ids, am).logits)


def test_damaged_bin_is_one_error_line(grover_dir, tmp_path):
    d, _ = grover_dir
    bad = tmp_path / "cut"
    shutil.copytree(d, bad)
    data = (bad / "pytorch_model.bin").read_bytes()
    (bad / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot read .*pytorch_model.bin.* as a PyTorch checkpoint") as e:
        load_model(bad, device="cpu")
    assert "weights_only=False" not in str(e.value) and len(str(e.value).splitlines()) == 2
