"""The DiffCollage seed API: ``import motion_loop.diff_collage as dc``; see :mod:`.workers`."""

from . import avg_circle, avg_long, condind_circle, condind_long
from .workers import AvgCircle, AvgLong, BaseWorker, CondIndCircle, CondIndLong, sampling

__all__ = ["BaseWorker", "CondIndLong", "CondIndCircle", "AvgLong", "AvgCircle", "sampling"]
