"""Seed module path `dc.avg_long.AvgLong`."""

from .workers import AvgLong

__all__ = ["AvgLong"]
