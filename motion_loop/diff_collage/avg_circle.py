"""Seed module path `dc.avg_circle.AvgCircle`."""

from .workers import AvgCircle

__all__ = ["AvgCircle"]
