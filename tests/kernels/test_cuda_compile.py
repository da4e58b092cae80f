"""The Triton kernels compile for real NVIDIA GPUs, checked offline on a machine without one.

A subprocess without TRITON_INTERPRET compiles each kernel with Triton's CUDA backend for a
given compute capability (sm_80 = A100, sm_86/89 = consumer Ampere/Ada, sm_90 = H100) down to a
cubin with the bundled ptxas, and reports the PTX facts checked here: tensor-core MMA for
fp16/bf16, no TF32 for fp32, shared memory within the smallest sm_8x/9x limit (99 KB).  It does
not run the kernels (no GPU here); the gpu-marked tests do that on a CUDA machine.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

pytestmark = pytest.mark.slow  # compiles eight kernels with ptxas in a subprocess (tens of seconds)

REPO = Path(__file__).resolve().parents[2]
SMALLEST_SHARED_LIMIT = 101376  # bytes per block on sm_86 / sm_89 (99 KB); sm_80 has 163 KB, sm_90 227 KB

SCRIPT = r'''
import json, os, sys, warnings
warnings.filterwarnings("ignore")
import torch, triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from vareff_kernels import flash_attention as fa, layernorm as ln, activations as act
assert not fa.INTERPRETED and not ln.INTERPRETED and not act.INTERPRETED
TD = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}

def build(fn, types, consts, cap, nw, ns):
    sig = {n: ("constexpr" if n in consts else types.get(n, "i32")) for n in fn.arg_names}
    k = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=consts),
                       target=GPUTarget("cuda", cap, 32), options={"num_warps": nw, "num_stages": ns})
    ptx = k.asm["ptx"]
    return {"shared": k.metadata.shared, "cubin": "cubin" in k.asm and len(k.asm["cubin"]) > 0,
            "mma": ("wgmma" in ptx) or ("mma.sync" in ptx), "tf32": "tf32" in ptx}

def attention(kind, dt, cap, rot, d):
    fn = fa._attn_fwd_padded if kind == "padded" else fa._attn_fwd_varlen
    types = {n: f"*{dt}" for n in ("Q", "K", "V", "Out", "Cos", "Sin")}
    types.update(Mask="*u8", KvLen="*i32", CuSeqlens="*i32", qk_scale="fp32")
    bd, bh = max(16, triton.next_power_of_2(d)), max(16, triton.next_power_of_2(d // 2))
    bm, bn, nw, ns = fa._config(d, TD[dt])
    consts = dict(HEAD_DIM=d, BLOCK_D=bd, HALF_D=d // 2, BLOCK_HALF=bh, BLOCK_M=bm, BLOCK_N=bn,
                  ROTARY=rot, EVEN_D=d == bd, PRECISION=fa.DOT_PRECISION_FP32)
    if kind == "padded":
        consts.update(HAS_MASK=True, SKIP_PADDED_Q=True, EVEN_M=False, EVEN_N=False)
    return build(fn, types, consts, cap, nw, ns)

out = {}
for kind, dt, cap, rot, d in json.loads(sys.argv[1]):
    out[f"{kind}-{dt}-sm{cap}-rot{int(rot)}-d{d}"] = attention(kind, dt, cap, rot, d)
out["layernorm-bf16-sm90"] = build(ln._layer_norm_fwd, {n: "*bf16" for n in ("X", "Res", "Y", "Sum", "W", "B")} | {"eps": "fp32"},
    dict(HAS_RESIDUAL=True, STORE_SUM=True, HAS_WEIGHT=True, HAS_BIAS=True, BLOCK_N=1024), 90, 4, 1)
out["bias_gelu-fp16-sm80"] = build(act._bias_gelu_fwd, {n: "*fp16" for n in ("X", "Bias", "Y")},
    dict(BLOCK=1024, EVEN_N=False), 80, 8, 1)
out["swiglu-bf16-sm90"] = build(act._swiglu_fwd, {n: "*bf16" for n in ("X", "Y")}, dict(BLOCK=1024, EVEN_I=False), 90, 8, 1)
print("RESULT " + json.dumps(out))
'''

ATTENTION_CASES = [
    ("padded", "fp16", 90, True, 64),    # NT / SegmentNT on an H100
    ("padded", "bf16", 86, True, 128),   # NT-v1 2.5b head dim on a consumer part
    ("padded", "fp16", 80, False, 48),   # NT-v2-250m head dim, GROVER-style plain attention, A100
    ("padded", "fp32", 90, True, 64),    # fp32 must not become TF32
    ("varlen", "bf16", 90, True, 64),
]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path_factory.mktemp("triton_cache"))  # really compile
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "kernels")] + (
        [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    res = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(ATTENTION_CASES)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)
    if res.returncode != 0 and "No module named 'triton.backends.nvidia'" in res.stderr:
        pytest.skip("this triton build has no CUDA backend")
    assert res.returncode == 0, f"offline CUDA compilation failed:\n{res.stderr[-4000:]}"
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def test_every_kernel_compiles_to_a_cubin(compiled):
    assert len(compiled) == len(ATTENTION_CASES) + 3
    for name, facts in compiled.items():
        assert facts["cubin"], name


def test_attention_uses_tensor_cores_for_half_precision_and_ieee_for_fp32(compiled):
    for name, facts in compiled.items():
        if not name.startswith(("padded", "varlen")):
            continue
        assert not facts["tf32"], f"{name}: TF32 in the PTX"
        if "-fp32-" in name:
            assert not facts["mma"], f"{name}: fp32 dots went to tensor cores (TF32)"
        else:
            assert facts["mma"], f"{name}: no tensor-core MMA in the PTX"


def test_shared_memory_fits_every_sm8x_sm9x_part(compiled):
    for name, facts in compiled.items():
        assert 0 <= facts["shared"] <= SMALLEST_SHARED_LIMIT, f"{name}: {facts['shared']} bytes of shared memory"
