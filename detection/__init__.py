"""detection: a reproducible object-detection training pipeline.

Each pipeline stage is one function of this package (see ``detection.stages``);
the CLI (``detection.cli``), ``dvc.yaml`` and the Prefect flow all reach the
same functions. The package knows nothing of DVC or Prefect.
"""

from detection.errors import DetectionError

__all__ = ["DetectionError", "__version__"]
__version__ = "0.1.0"
