"""The kernel tests' shared fixture module: dtypes, tolerance table, random data and a comparison
that reports mismatch counts.

Imported as ``import kernel_utils as U`` (pytest puts this folder on ``sys.path``); the name is
unique, so it never collides with another test folder's helpers.
"""
from __future__ import annotations

import torch

#: dtypes the CPU runs test (the Triton interpreter has no bfloat16)
CPU_DTYPES = [torch.float32, torch.float16]

#: (atol, rtol) per dtype for kernel vs float32 eager reference.  fp32 uses ieee dot products
#: (never TF32), so only summation order differs; fp16/bf16 allow a few units in the last place
#: of outputs of magnitude ~1 (fp16 eps 9.8e-4, bf16 eps 7.8e-3).
TOLERANCES = {
    torch.float32: (2e-5, 2e-5),
    torch.float16: (2e-3, 2e-3),
    torch.bfloat16: (1.6e-2, 1.6e-2),
}


def randn(*shape, dtype=torch.float32, device="cpu", scale=1.0):
    """Random normal test data (never zeros), made in fp32 on the CPU then moved and cast."""
    t = torch.randn(*shape, dtype=torch.float32) * scale
    assert t.abs().max() > 0
    return t.to(device=device, dtype=dtype)


def assert_close_verbose(actual, expected, dtype=None, *, atol=None, rtol=None, rows=None, name="result"):
    """Assert ``|actual - expected| <= atol + rtol * |expected|`` elementwise (NaN never passes).

    ``rows``: optional bool mask broadcastable to the tensors selecting the elements to compare
    (e.g. real query positions).  On failure the message gives the number and share of
    mismatching elements, the worst one's index and values, and the tolerances.
    """
    if dtype is not None:
        d_atol, d_rtol = TOLERANCES[dtype]
        atol = d_atol if atol is None else atol
        rtol = d_rtol if rtol is None else rtol
    assert atol is not None and rtol is not None, "give dtype or atol and rtol"
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    a = actual.detach().to("cpu", torch.float64)
    e = expected.detach().to("cpu", torch.float64)
    assert e.abs().max() > 0, f"{name}: the reference is all zeros; the comparison would prove nothing"
    sel = torch.ones_like(a, dtype=torch.bool)
    if rows is not None:
        sel = sel & rows.to("cpu").expand_as(a)
    diff = (a - e).abs()
    bad = ~(diff <= atol + rtol * e.abs()) & sel
    n_bad = int(bad.sum())
    if n_bad:
        worst = torch.where(bad, torch.nan_to_num(diff, nan=float("inf")), torch.zeros_like(diff))
        idx = tuple(int(i) for i in torch.unravel_index(worst.argmax(), a.shape))
        raise AssertionError(
            f"{name}: {n_bad} of {int(sel.sum())} compared elements mismatch "
            f"({100.0 * n_bad / max(int(sel.sum()), 1):.3f}%) at atol={atol:g}, rtol={rtol:g}; "
            f"worst at {idx}: actual {a[idx].item():.6g}, expected {e[idx].item():.6g}, "
            f"|diff| {diff[idx].item():.3g}; max |diff| over compared elements "
            f"{torch.where(sel, diff, torch.zeros_like(diff)).max().item():.3g}"
        )
