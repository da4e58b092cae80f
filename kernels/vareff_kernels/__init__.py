"""Fused Triton kernels for vareff\x27s encoders, with eager PyTorch references."""
