"""vareff: variant-effect scoring with DNA foundation models."""
from vareff._version import __version__
