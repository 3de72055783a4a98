"""Seed module path `dc.condind_long.CondIndLong`."""

from .workers import CondIndLong

__all__ = ["CondIndLong"]
