"""Seed module path `dc.condind_circle.CondIndCircle`."""

from .workers import CondIndCircle

__all__ = ["CondIndCircle"]
