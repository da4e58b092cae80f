"""The one place that decides which backend runs a kernel: Triton or PyTorch.

Rules (see docs/kernels.md):

* The requested name comes from the call's ``backend=`` argument, else from
  :func:`set_backend`, else from the environment variable ``VAREFF_KERNELS``, else ``"auto"``.
* ``"torch"`` always runs the PyTorch path (SDPA / eager ops).
* ``"triton"`` runs the Triton kernel or raises :class:`~vareff.errors.BackendUnavailableError`
  saying why (Triton not importable, CPU tensors without ``TRITON_INTERPRET=1``, an input the
  kernel does not support).
* ``"auto"`` runs Triton on CUDA tensors when Triton imports and the kernel supports the input;
  everywhere else it runs PyTorch, and says so once in the log (one line per reason per process).
  CPU tensors always take the PyTorch path under ``"auto"``, even under the interpreter.

Nothing in this module imports Triton at import time.
"""
from __future__ import annotations

import functools
import importlib
import logging
import os
import threading

from vareff.errors import BackendUnavailableError, ConfigError, VareffError

__all__ = [
    "BACKENDS",
    "ENV_VAR",
    "KernelInputError",
    "get_backend",
    "set_backend",
    "resolve_backend",
    "triton_available",
    "interpreter_active",
    "attention_unsupported_reason",
]

log = logging.getLogger("vareff_kernels")

BACKENDS = ("auto", "triton", "torch")
ENV_VAR = "VAREFF_KERNELS"
#: the Triton kernel modules (imported lazily, only when the Triton path is chosen).  The attention
#: kernels live in ``flash_attention`` so that no submodule shadows the function ``attention``.
KERNEL_MODULES = ("flash_attention", "layernorm", "activations")

#: head dims the Triton attention kernel accepts (any even D in this range; GROVER and NT use 64,
#: NT-v2 50m/100m use 32, NT-v2 250m uses 48, NT-v1 2.5b uses 128)
MIN_HEAD_DIM = 16
MAX_HEAD_DIM = 256

_setting: str | None = None
_logged: set[str] = set()
_lock = threading.Lock()


class KernelInputError(VareffError, ValueError):
    """Tensors passed to a kernel entry point have the wrong shape, dtype or layout."""


def _check_name(name: str, where: str) -> str:
    if not isinstance(name, str) or name.strip().lower() not in BACKENDS:
        raise ConfigError(
            f"unknown kernel backend {name!r} (from {where})",
            hint=f"use one of {', '.join(BACKENDS)}",
        )
    return name.strip().lower()


def set_backend(name: str | None) -> None:
    """Set the process-wide backend (``"auto"``, ``"triton"``, ``"torch"``); ``None`` clears it,
    so that ``VAREFF_KERNELS`` (or ``"auto"``) applies again."""
    global _setting
    _setting = None if name is None else _check_name(name, "set_backend()")


def get_backend() -> str:
    """The process-wide backend name: :func:`set_backend`'s value, else ``$VAREFF_KERNELS``, else auto."""
    if _setting is not None:
        return _setting
    env = os.environ.get(ENV_VAR)
    if env is not None and env.strip():
        return _check_name(env, f"environment variable {ENV_VAR}")
    return "auto"


@functools.lru_cache(maxsize=None)
def triton_available() -> bool:
    """True if ``import triton`` works (cached; tests clear it with ``triton_available.cache_clear()``)."""
    try:
        importlib.import_module("triton")
        importlib.import_module("triton.language")
    except Exception:  # ImportError, or a broken install raising something else
        return False
    return True


def interpreter_active() -> bool:
    """True if the Triton kernels run under the CPU interpreter in this process.

    Triton chooses interpreter vs compiler when a ``@triton.jit`` function is *defined*, so once a
    kernel module is imported its mode is fixed; before that, ``TRITON_INTERPRET`` decides.
    """
    import sys

    for name in KERNEL_MODULES:
        mod = sys.modules.get(f"vareff_kernels.{name}")
        if mod is not None and hasattr(mod, "INTERPRETED"):
            return bool(mod.INTERPRETED)
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "yes", "on")


def _log_once(reason: str) -> None:
    with _lock:
        if reason in _logged:
            return
        _logged.add(reason)
    log.info("backend 'auto' uses PyTorch: %s", reason)


def attention_unsupported_reason(q, k, v, rotary=None) -> str | None:
    """Why the Triton attention kernel cannot take these (well-formed) inputs, or None if it can."""
    import torch

    d = q.shape[-1]
    if q.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        return f"dtype {q.dtype} (the kernel takes float16, bfloat16, float32)"
    if not (k.dtype == v.dtype == q.dtype):
        return f"q, k, v dtypes differ ({q.dtype}, {k.dtype}, {v.dtype})"
    if d < MIN_HEAD_DIM or d > MAX_HEAD_DIM or d % 2:
        return f"head dim {d} (the kernel takes even head dims {MIN_HEAD_DIM}..{MAX_HEAD_DIM})"
    if q.device.type == "cpu" and q.dtype == torch.bfloat16:
        return "bfloat16 under the CPU interpreter (numpy has no bfloat16)"
    return None


def resolve_backend(op: str, device, backend: str | None = None, unsupported: str | None = None) -> str:
    """Return ``"triton"`` or ``"torch"`` for one call of kernel ``op`` on ``device``.

    ``unsupported`` is a reason why the Triton kernel cannot take this input (None if it can).
    Raises :class:`BackendUnavailableError` if ``"triton"`` was asked for explicitly and cannot run.
    """
    name = get_backend() if backend is None else _check_name(backend, f"{op}(backend=...)")
    if name == "torch":
        return "torch"
    dev_type = getattr(device, "type", str(device))
    if name == "triton":
        if not triton_available():
            raise BackendUnavailableError(
                f"{op}: backend 'triton' was requested but triton cannot be imported",
                hint="install it with `pip install 'vareff[triton]'` (needs a CUDA build of torch), "
                "or use backend 'auto' or 'torch' (VAREFF_KERNELS=auto)",
            )
        if dev_type == "cpu":
            if not interpreter_active():
                raise BackendUnavailableError(
                    f"{op}: backend 'triton' was requested for CPU tensors, but the Triton "
                    "interpreter is off",
                    hint="move the tensors to a CUDA device, or set TRITON_INTERPRET=1 before "
                    "vareff_kernels' kernel modules are imported (slow; meant for tests), or use "
                    "backend 'auto' or 'torch'",
                )
        elif dev_type != "cuda":
            raise BackendUnavailableError(
                f"{op}: backend 'triton' cannot run on {dev_type} tensors",
                hint="use CUDA tensors, or backend 'auto' or 'torch'",
            )
        if unsupported:
            raise BackendUnavailableError(
                f"{op}: the Triton kernel does not support {unsupported}",
                hint="use backend 'auto' (falls back to PyTorch) or 'torch'",
            )
        return "triton"
    # auto
    if dev_type != "cuda":
        _log_once(f"tensors are on {dev_type}, not CUDA")
        return "torch"
    if not triton_available():
        _log_once("triton is not importable (pip install 'vareff[triton]' to use the fused kernels)")
        return "torch"
    if unsupported:
        _log_once(f"{op}: the Triton kernel does not support {unsupported}")
        return "torch"
    return "triton"


def _reset_for_tests() -> None:
    """Forget the process-wide setting, the log-once memory and the triton probe."""
    global _setting
    _setting = None
    _logged.clear()
    triton_available.cache_clear()
