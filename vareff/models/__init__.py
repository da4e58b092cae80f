"""Native PyTorch model families and the checkpoint loader.

Each family (``bert`` for GROVER, later ``esm`` for Nucleotide Transformer / SegmentNT) lives in its
own module with a config dataclass, a ``torch.nn.Module`` and a pure state-dict remap;
:mod:`vareff.models.load` reads a local Hugging Face directory and dispatches on ``config.json``.
"""
