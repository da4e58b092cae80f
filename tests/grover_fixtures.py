"""Tiny random GROVER-like checkpoints written by ``transformers`` itself (the reference library).

``make_checkpoint(dir, ...)`` trains a real ``tokenizers`` BPE model on random DNA, wraps it in
``PreTrainedTokenizerFast`` and saves it, then saves a ``BertForMaskedLM`` with random weights
(every parameter, biases and LayerNorm affine included, drawn non-zero) with ``save_pretrained``.
The test modules compare vareff against these ``transformers`` objects.
"""
from __future__ import annotations

import math
import random
from pathlib import Path

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def random_dna(n: int, rng: random.Random, *, alphabet: str = "ACGT") -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def train_bpe(vocab_size: int, *, seed: int = 0, n_seqs: int = 60, seq_len: int = 3000, with_post_processor: bool = True,
              specials: list[str] = SPECIALS):
    """A BPE ``tokenizers.Tokenizer`` trained on random (slightly repetitive) DNA, [CLS] x [SEP] template.

    ``specials`` get ids 0.. in the order given; the bases follow (A, C, G, T), then the merges.
    """
    from tokenizers import Tokenizer, models, processors, trainers

    rng = random.Random(seed)
    motifs = [random_dna(rng.randint(3, 9), rng) for _ in range(12)]
    seqs = []
    for _ in range(n_seqs):
        parts, n = [], 0
        while n < seq_len:  # random DNA with recurring motifs and short homopolymers, so merges vary in length
            r = rng.random()
            s = rng.choice(motifs) if r < 0.3 else (rng.choice("ACGT") * rng.randint(3, 8) if r < 0.4 else random_dna(rng.randint(5, 40), rng))
            parts.append(s)
            n += len(s)
        seqs.append("".join(parts))
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(specials), show_progress=False)
    tok.train_from_iterator(seqs, trainer)
    if with_post_processor:
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
        )
    return tok


def make_checkpoint(
    directory: str | Path,
    *,
    vocab_size: int = 96,
    hidden_size: int = 32,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    intermediate_size: int = 48,
    max_position_embeddings: int = 512,
    hidden_act: str = "gelu",
    layer_norm_eps: float = 1e-12,
    tie_word_embeddings: bool = True,
    weight_std: float = 0.08,
    seed: int = 0,
    safe_serialization: bool = True,
    with_post_processor: bool = True,
):
    """Write a tiny random ``BertForMaskedLM`` + BPE tokenizer to ``directory``; returns (model, tokenizer)."""
    import torch
    from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tok = train_bpe(vocab_size, seed=seed, with_post_processor=with_post_processor)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]"
    )
    fast.save_pretrained(directory)
    cfg = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        hidden_act=hidden_act,
        layer_norm_eps=layer_norm_eps,
        tie_word_embeddings=tie_word_embeddings,
        pad_token_id=tok.token_to_id("[PAD]"),
    )
    torch.manual_seed(seed)
    model = BertForMaskedLM(cfg).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm.weight" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(weight_std * torch.randn(p.shape, generator=g))
    model.save_pretrained(directory, safe_serialization=safe_serialization)
    return model, fast


#: the published GROVER tokenizer_config.json (PoetschLab/GROVER at 5e45af8), key for key
GROVER_TOKENIZER_CONFIG = {
    "clean_up_tokenization_spaces": True, "do_lower_case": False, "model_max_length": 512,
    "special_tokens": {"mask_token": "[MASK]", "pad_token": "[PAD]", "sep_token": "[SEP]"},
    "tokenize_chinese_chars": False, "tokenizer_class": "PreTrainedTokenizerFast", "trust_remote_code": True,
}
#: the published GROVER special_tokens_map.json (at 6efc18c)
GROVER_SPECIAL_TOKENS_MAP = {"cls_token": "[CLS]", "mask_token": "[MASK]", "pad_token": "[PAD]"}


def published_grover_tokenizer_json(tok) -> dict:
    """A trained tokenizer's JSON edited into the published GROVER layout.

    An empty piece ``""`` is appended at id ``len(vocab)`` (the published file: 609), the merges are
    written in the legacy ``"a b"`` string form and begin with the four identity merges
    ``"A "``, ``"C "``, ``"G "``, ``"T "`` (a base merged with the empty piece).
    """
    import json

    d = json.loads(tok.to_str())
    vocab = d["model"]["vocab"]
    assert "" not in vocab
    vocab[""] = len(vocab)
    merges = [m if isinstance(m, str) else " ".join(m) for m in d["model"]["merges"]]
    d["model"]["merges"] = [f"{b} " for b in "ACGT"] + merges
    return d


def make_published_grover(
    directory: str | Path,
    *,
    vocab_size: int = 609,
    specials: list[str] = SPECIALS,
    hidden_size: int = 32,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    intermediate_size: int = 48,
    weight_std: float = 0.1,
    seed: int = 0,
):
    """A tiny random GROVER checkpoint laid out exactly as PoetschLab/GROVER publishes it.

    Files: ``config.json`` (written by ``transformers``, ``vocab_size`` = embedding rows),
    ``pytorch_model.bin`` (``torch.save`` of the ``BertForMaskedLM`` state dict: tensors only),
    ``tokenizer.json`` (BPE from ``tokenizers``, ``vocab_size`` + 1 entries: the extra one is the
    empty piece, see :func:`published_grover_tokenizer_json`), ``tokenizer_config.json``,
    ``special_tokens_map.json``, ``README.md`` and a ``tokenized_chromosomes/`` folder; no
    ``vocab.txt``, no safetensors.  Returns the ``transformers`` model (eval mode).
    """
    import json
    import shutil

    import torch
    from transformers import BertConfig, BertForMaskedLM

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tok = train_bpe(vocab_size, seed=seed, specials=specials)
    assert tok.get_vocab_size() == vocab_size
    (directory / "tokenizer.json").write_text(json.dumps(published_grover_tokenizer_json(tok), indent=2))
    (directory / "tokenizer_config.json").write_text(json.dumps(GROVER_TOKENIZER_CONFIG, indent=2))
    (directory / "special_tokens_map.json").write_text(json.dumps(GROVER_SPECIAL_TOKENS_MAP))
    (directory / "README.md").write_text("tiny random stand-in for PoetschLab/GROVER\n")
    cfg = BertConfig(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
                     num_attention_heads=num_attention_heads, intermediate_size=intermediate_size,
                     max_position_embeddings=512, pad_token_id=tok.token_to_id("[PAD]"))
    torch.manual_seed(seed)
    model = BertForMaskedLM(cfg).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_((1.0 + 0.2 * torch.randn(p.shape, generator=g)) if "LayerNorm.weight" in name
                    else weight_std * torch.randn(p.shape, generator=g))
    tmp = directory / "_save"
    model.save_pretrained(tmp)  # config.json as transformers writes it
    shutil.move(str(tmp / "config.json"), directory / "config.json")
    shutil.rmtree(tmp)
    torch.save(model.state_dict(), directory / "pytorch_model.bin")
    return model


class TransformersReference:
    """The score definitions of docs/grover.md computed independently of vareff.

    Uses ``transformers.BertForMaskedLM`` and its fast tokenizer (offsets from
    ``return_offsets_mapping``), pysam for the sequence and plain Python loops over the vocabulary
    for the base marginals; none of vareff's model, tokenizer or scoring code.  ``score(pos1, ref,
    alt)`` takes a trimmed allele on ``contig`` (genomic 0-based = contig 0-based + ``offset0``).
    """

    def __init__(self, fasta, contig, offset0, hf_model, hf_tok, *, window=1000, stride=500, min_flank=100):
        import pysam

        self.fa = pysam.FastaFile(str(fasta))
        self.contig, self.offset0 = contig, offset0
        self.win, self.stride, self.min_flank = window, stride, min_flank
        self.model, self.tok = hf_model, hf_tok
        self.special = set(hf_tok.all_special_ids)
        self.strings = {i: t for t, i in hf_tok.get_vocab().items() if i not in self.special}

    def window(self, pos0, ref_len):
        t = math.floor((pos0 + ref_len / 2 - self.win / 2) / self.stride + 0.5)
        start = t * self.stride
        if min(pos0 - start, start + self.win - pos0 - ref_len) < self.min_flank:
            start = math.floor(pos0 + ref_len / 2 - self.win / 2)
        lo, hi = self.offset0, self.offset0 + self.fa.get_reference_length(self.contig)
        return max(start, lo), min(start + self.win, hi)

    def encode(self, seq):
        e = self.tok(seq, return_offsets_mapping=True)
        spans = [None if i in self.special else tuple(o) for i, o in zip(e["input_ids"], e["offset_mapping"])]
        return list(e["input_ids"]), spans

    def run(self, ids, masked=()):
        import torch

        x = torch.tensor([ids])
        for k in masked:
            x[0, k] = self.tok.mask_token_id
        with torch.no_grad():
            out = self.model(input_ids=x, output_hidden_states=True)
        return out.hidden_states[-1][0].double(), torch.log_softmax(out.logits[0].double(), -1)

    def embedding(self, ids):
        h, _ = self.run(ids)
        keep = [i for i, t in enumerate(ids) if t not in self.special]
        return h[keep].mean(0)

    def score(self, pos1, ref, alt, *, wt_marginal=False):
        """Scores of one allele; ``wt_marginal``: substitutions read the unmasked reference pass."""
        pos0 = pos1 - 1
        ws, we = self.window(pos0, len(ref))
        wseq = self.fa.fetch(self.contig, ws - self.offset0, we - self.offset0).upper()
        s = pos0 - ws
        assert wseq[s:s + len(ref)] == ref
        aseq = wseq[:s] + alt + wseq[s + len(ref):]
        rids, rsp = self.encode(wseq)
        aids, asp = self.encode(aseq)
        llr = None
        if len(ref) == len(alt):
            llr = 0.0
            changed = [x for x in range(len(ref)) if ref[x] != alt[x]]
            cover = [k for k, sp in enumerate(rsp) if sp and sp[0] < s + changed[-1] + 1 and sp[1] > s + changed[0]]
            _, lp = self.run(rids, () if wt_marginal else cover)
            for x in changed:
                k = next(k for k in cover if rsp[k][0] <= s + x < rsp[k][1])
                o = s + x - rsp[k][0]
                num, den = {b: 0.0 for b in "ACGT"}, 0.0
                for v, string in self.strings.items():
                    if len(string) > o:
                        p = math.exp(lp[k, v].item())
                        den += p
                        num[string[o]] += p
                if num[alt[x]] == 0.0 or num[ref[x]] == 0.0:  # no token carries the base there
                    llr = None
                    break
                llr += math.log(num[alt[x]] / den) - math.log(num[ref[x]] / den)
            n = 0 if wt_marginal else len(cover)
        if llr is None:  # indels, complex alleles and unsupported substitutions: token level
            delta = len(alt) - len(ref)
            p = 0
            while p < min(len(rids), len(aids)) and rids[p] == aids[p] and rsp[p] == asp[p]:
                p += 1
            q = 0
            while q < min(len(rids), len(aids)) - p:
                a, b = rsp[-1 - q], asp[-1 - q]
                if rids[-1 - q] != aids[-1 - q] or (a is None) != (b is None) or (a and (a[0] + delta, a[1] + delta) != b):
                    break
                q += 1

            def cover(sp, lo, hi):
                if hi <= lo:
                    lo, hi = lo - 1, lo + 1
                ks = [k for k, x in enumerate(sp) if x and x[0] < hi and x[1] > lo]
                return ks[0], ks[-1] + 1

            cr, ca = cover(rsp, s, s + len(ref)), cover(asp, s, s + len(alt))
            start = min(p, cr[0], ca[0])
            tail = min(q, len(rids) - cr[1], len(aids) - ca[1])
            rk, ak = range(start, len(rids) - tail), range(start, len(aids) - tail)
            _, lpr = self.run(rids, rk)
            _, lpa = self.run(aids, ak)
            llr = sum(lpa[k, aids[k]].item() for k in ak) - sum(lpr[k, rids[k]].item() for k in rk)
            n = len(rk)
        import torch

        er, ea = self.embedding(rids), self.embedding(aids)
        cos = torch.nn.functional.cosine_similarity(er, ea, dim=0).item()
        return {"grover_llr": llr, "grover_embedding_distance": 1 - cos,
                "grover_embedding_l2": (er - ea).norm().item(), "grover_masked_tokens": n}
