"""Detectors, built by name from a registry (``detection.models.registry``)."""

from detection.models.registry import ModelSpec, available, build_model, get_spec, register

__all__ = ["ModelSpec", "available", "build_model", "get_spec", "register"]
