"""Backend dispatch: the setting and its precedence, clear errors for an explicit backend that
cannot run, quiet fallback (one log line) for auto, and the `kernels` import-name check."""
from __future__ import annotations

import importlib.metadata
import logging
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

import vareff_kernels as vk
from vareff.errors import BackendUnavailableError, ConfigError
from vareff_kernels import dispatch

REPO = Path(__file__).resolve().parents[2]
HAS_TRITON = dispatch.triton_available()
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")


@pytest.fixture(autouse=True)
def _clean_dispatch(monkeypatch):
    monkeypatch.delenv(dispatch.ENV_VAR, raising=False)
    dispatch._reset_for_tests()
    yield
    dispatch._reset_for_tests()


def qkv(b=1, h=2, t=9, d=32, dtype=torch.float32, device="cpu"):
    return tuple((torch.randn(b, h, t, d, dtype=torch.float32) * 1.5).to(device=device, dtype=dtype)
                 for _ in range(3))


@pytest.fixture
def triton_spy(monkeypatch):
    """Count calls reaching the Triton attention launcher."""
    fa = pytest.importorskip("vareff_kernels.flash_attention")
    calls = []
    real = fa.attention_fwd

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(fa, "attention_fwd", spy)
    return calls


def _subprocess_env():
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", dispatch.ENV_VAR)}
    # the checkout's packages first, whether or not vareff is installed in this environment
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "kernels")] + (
        [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


# --------------------------------------------------------------------------- the setting


def test_default_is_auto_and_setting_precedence(monkeypatch):
    assert dispatch.get_backend() == "auto"
    monkeypatch.setenv(dispatch.ENV_VAR, "torch")
    assert dispatch.get_backend() == "torch"
    vk.set_backend("triton")  # set_backend beats the environment
    assert dispatch.get_backend() == "triton"
    vk.set_backend(None)
    assert dispatch.get_backend() == "torch"
    monkeypatch.setenv(dispatch.ENV_VAR, " Auto ")
    assert dispatch.get_backend() == "auto"


def test_unknown_backend_names_are_config_errors(monkeypatch):
    with pytest.raises(ConfigError, match=r"unknown kernel backend 'cuda' \(from set_backend\(\)\)"):
        vk.set_backend("cuda")
    q, k, v = qkv()
    with pytest.raises(ConfigError, match=r"unknown kernel backend 'fast' \(from attention\(backend=...\)\)"):
        vk.attention(q, k, v, backend="fast")
    monkeypatch.setenv(dispatch.ENV_VAR, "gpu")
    with pytest.raises(ConfigError, match="from environment variable VAREFF_KERNELS"):
        vk.swiglu(torch.randn(2, 8))


@needs_triton
def test_env_and_call_argument_choose_the_backend(monkeypatch, triton_spy):
    q, k, v = qkv()
    mask = torch.tensor([[True] * 6 + [False] * 3])
    expected = vk.reference.attention_reference(q, k, v, key_padding_mask=mask)

    monkeypatch.setenv(dispatch.ENV_VAR, "triton")  # CPU + interpreter: Triton runs
    out = vk.attention(q, k, v, key_padding_mask=mask)
    assert len(triton_spy) == 1
    assert torch.allclose(out[:, :, :6], expected[:, :, :6], atol=2e-5, rtol=2e-5)

    out_t = vk.attention(q, k, v, key_padding_mask=mask, backend="torch")  # the argument wins
    assert len(triton_spy) == 1
    assert torch.allclose(out_t[:, :, :6], expected[:, :, :6], atol=2e-5, rtol=2e-5)

    vk.set_backend("torch")
    vk.attention(q, k, v)
    assert len(triton_spy) == 1
    vk.attention(q, k, v, backend="triton")
    assert len(triton_spy) == 2


# --------------------------------------------------------------------------- auto


def test_auto_on_cpu_uses_torch_and_logs_once(caplog, monkeypatch):
    calls = []
    real = vk.reference.attention_torch
    monkeypatch.setattr(vk.reference, "attention_torch", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    q, k, v = qkv()
    with caplog.at_level(logging.INFO, logger="vareff_kernels"):
        out1 = vk.attention(q, k, v, backend="auto")
        out2 = vk.attention(q, k, v)  # default setting is auto
        vk.swiglu(torch.randn(3, 8))
    assert len(calls) == 2
    lines = [r for r in caplog.records if r.name == "vareff_kernels"]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert "backend 'auto' uses PyTorch" in lines[0].getMessage()
    assert "cpu" in lines[0].getMessage()
    assert torch.equal(out1, out2)
    assert torch.allclose(out1, vk.reference.attention_reference(q, k, v), atol=2e-5, rtol=2e-5)


def test_auto_rules_for_cuda_devices(monkeypatch, caplog):
    """The decision itself (no GPU needed: only the device type is consulted)."""
    cuda = torch.device("cuda", 0)
    with caplog.at_level(logging.INFO, logger="vareff_kernels"):
        if HAS_TRITON:
            assert dispatch.resolve_backend("attention", cuda, "auto") == "triton"
        assert dispatch.resolve_backend("attention", cuda, "auto", unsupported="head dim 7") == "torch"
        assert dispatch.resolve_backend("attention", cuda, "auto", unsupported="head dim 7") == "torch"
        monkeypatch.setitem(sys.modules, "triton", None)
        dispatch.triton_available.cache_clear()
        assert dispatch.resolve_backend("attention", cuda, "auto") == "torch"
    msgs = [r.getMessage() for r in caplog.records if r.name == "vareff_kernels"]
    assert len(msgs) == 2  # one line per reason, not per call
    assert "does not support head dim 7" in msgs[0]
    assert "triton is not importable" in msgs[1]


# --------------------------------------------------------------------------- explicit triton


def test_explicit_triton_without_triton_raises(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton", None)  # `import triton` now fails
    dispatch.triton_available.cache_clear()
    q, k, v = qkv()
    with pytest.raises(BackendUnavailableError, match=r"(?s)triton cannot be imported.*Hint: install it"):
        vk.attention(q, k, v, backend="triton")
    with pytest.raises(BackendUnavailableError, match="layer_norm: backend 'triton' was requested"):
        vk.layer_norm(q, None, None, 1e-5, backend="triton")
    out = vk.attention(q, k, v, backend="auto")  # auto still works
    assert torch.isfinite(out).all()


@needs_triton
def test_explicit_triton_on_cpu_without_interpreter_raises(monkeypatch):
    monkeypatch.setattr(dispatch, "interpreter_active", lambda: False)
    q, k, v = qkv()
    with pytest.raises(BackendUnavailableError, match=r"(?s)CPU tensors.*interpreter is off.*TRITON_INTERPRET=1"):
        vk.attention(q, k, v, backend="triton")
    with pytest.raises(BackendUnavailableError, match="interpreter is off"):
        vk.bias_gelu(torch.randn(2, 4), torch.randn(4), backend="triton")


@needs_triton
def test_explicit_triton_on_other_devices_and_unsupported_inputs_raise():
    q, k, v = qkv(device="meta")
    with pytest.raises(BackendUnavailableError, match="cannot run on meta tensors"):
        vk.attention(q, k, v, backend="triton")
    qb, kb, vb = qkv(dtype=torch.bfloat16)  # the interpreter has no bf16
    with pytest.raises(BackendUnavailableError, match="does not support bfloat16 under the CPU interpreter"):
        vk.attention(qb, kb, vb, backend="triton")
    q7 = torch.randn(1, 1, 5, 7)
    with pytest.raises(BackendUnavailableError, match="does not support head dim 7"):
        vk.attention(q7, q7, q7, backend="triton")
    with pytest.raises(BackendUnavailableError, match="does not support dtype torch.float64"):
        vk.swiglu(torch.randn(2, 8, dtype=torch.float64), backend="triton")
    # auto takes the same inputs on the PyTorch path
    assert vk.attention(qb, kb, vb, backend="auto").dtype == torch.bfloat16
    assert vk.attention(q7, q7, q7).shape == q7.shape


def test_bad_inputs_raise_input_errors_on_both_backends():
    q, k, v = qkv()
    for backend in ("torch", "auto"):
        with pytest.raises(vk.KernelInputError, match=r"must be 4-D \(B, H, T, D\)"):
            vk.attention(q[0], k[0], v[0], backend=backend)
        with pytest.raises(vk.KernelInputError, match="key_padding_mask must be bool"):
            vk.attention(q, k, v, key_padding_mask=torch.ones(1, 9), backend=backend)
    assert issubclass(vk.KernelInputError, ValueError)


@needs_triton
def test_real_process_without_interpreter():
    """A fresh process without TRITON_INTERPRET: explicit triton on CPU raises the clear error,
    auto falls back and logs exactly one line however many calls."""
    code = (
        "import logging, torch, vareff_kernels as vk\n"
        "logging.basicConfig(level=logging.INFO, format='LOG %(name)s %(message)s')\n"
        "q = torch.randn(1, 2, 5, 32)\n"
        "for _ in range(3): vk.attention(q, q, q); vk.layer_norm(q, None, None, 1e-5)\n"
        "try:\n"
        "    vk.attention(q, q, q, backend='triton')\n"
        "except Exception as e:\n"
        "    print('RAISED', type(e).__name__, str(e).replace(chr(10), ' '))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=_subprocess_env(),
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "RAISED BackendUnavailableError" in res.stdout
    assert "interpreter is off" in res.stdout and "Hint:" in res.stdout
    log_lines = [ln for ln in res.stderr.splitlines() if ln.startswith("LOG vareff_kernels")]
    assert len(log_lines) == 1, res.stderr


# --------------------------------------------------------------------------- the import name


def test_public_functions_are_not_shadowed_by_submodules():
    """Importing every kernel module leaves vk.attention & co. callable functions."""
    pkg_dir = Path(vk.__file__).parent
    for name in vk.__all__:
        assert not (pkg_dir / f"{name}.py").exists(), f"submodule {name}.py would shadow vareff_kernels.{name}"
    if HAS_TRITON:
        for mod in dispatch.KERNEL_MODULES:
            __import__(f"vareff_kernels.{mod}")
    for name in ("attention", "attention_varlen", "layer_norm", "layer_norm_residual", "bias_gelu", "swiglu"):
        fn = getattr(vk, name)
        assert callable(fn) and not isinstance(fn, types.ModuleType)


def test_kernels_name_cannot_collide_with_the_pypi_package():
    """`kernels/` is a plain folder: from the repo root, transformers must not see a `kernels`
    package, while `vareff_kernels` imports from kernels/vareff_kernels."""
    assert not (REPO / "kernels" / "__init__.py").exists()
    try:
        importlib.metadata.version("kernels")
        pytest.skip("the real PyPI package `kernels` is installed here; is_kernels_available may be True")
    except importlib.metadata.PackageNotFoundError:
        pass
    pytest.importorskip("transformers")
    code = (
        "import importlib.util, vareff_kernels\n"
        "from transformers.utils.import_utils import is_kernels_available\n"
        "print('AVAILABLE', is_kernels_available())\n"
        "print('VK', vareff_kernels.__file__)\n"
        "s = importlib.util.find_spec('kernels')\n"
        "print('KERNELS_ORIGIN', None if s is None else s.origin)\n"
        "print('KERNELS_IS_PACKAGE_WITH_CODE', s is not None and s.origin is not None)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=_subprocess_env(),
                         capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr
    out = dict(line.split(" ", 1) for line in res.stdout.splitlines() if " " in line)
    assert out["AVAILABLE"] == "False"
    assert Path(out["VK"]).resolve() == (REPO / "kernels" / "vareff_kernels" / "__init__.py").resolve()
    assert out["KERNELS_IS_PACKAGE_WITH_CODE"] == "False"
