"""How sampling uses the machine: torch's CPU threads and the model's precision.

Both defaults come from measurements (benchmarks/bench_fast.py, benchmarks/bench_steps.py; figures
in benchmarks/RESULTS.md):

- **Threads.** torch starts one thread per core. On a machine whose cores are busy with other work,
  those threads wait on each other at every operation's barrier, and sampling gets several times
  slower than with one thread; on an idle machine, more threads help. The default is the number of
  cores the other processes leave free, at least one: measured over a tenth of a second from the
  kernel's CPU counters (/proc/stat), as the one-minute load average still counts work that ended
  up to a minute ago (right after a test run it kept the main command at one thread on an idle
  machine: 9.4 s against 7.3 s at two); the load average where /proc/stat is missing.
- **Precision.** bf16 weights move a whole loop by more than the 1 cm (RMS over joints) we accept
  as invisible against fp32 from the same noise, and on CPUs without native bf16 arithmetic they are
  slower too, so fp32 is the default on every device; ``bf16`` is there for GPUs, where it is fast.
  ``mixed`` runs a bf16 copy of the model only at noise levels above ``MIXED_ABOVE`` and fp32 below,
  where the loop's details are decided: under 1 cm from fp32 on the demo model (0.43 cm mean over 50
  loops, seam and jerk metrics unchanged), for 17 of 30 evaluations in bf16; a full-size 6 s loop
  3.6-4.4 s instead of 4.9-5.7 s. It is the CPU default where the CPU has native bf16 arithmetic
  (``avx512_bf16`` or ``amx_bf16``), fp32 elsewhere.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "mixed": torch.float32}  # mixed: fp32 + a bf16 copy
DEFAULT_DTYPE = {"cpu": "fp32", "cuda": "fp32"}  # measured: see the module docstring (and native_bf16)
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 CPU flags of bf16 arithmetic in hardware
MIXED_ABOVE = 2.0  # --dtype mixed: bf16 at noise levels above this, fp32 at and below


def _cpu_times(stat: Path) -> tuple[int, int] | None:
    """(busy, total) CPU ticks of all cores since boot from /proc/stat's ``cpu`` line, or None."""
    try:
        fields = [int(v) for v in stat.read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    if len(fields) < 4:
        return None
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest time is inside user)
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return total - idle, total


def busy_cores(interval: float = 0.1, cpu_count: int | None = None, stat: Path = Path("/proc/stat")) -> float | None:
    """How many cores other processes keep busy now: the busy share of all cores' ticks over
    ``interval`` seconds (this process sleeps meanwhile) times the cores; None without /proc/stat."""
    cpu_count = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
    before = _cpu_times(stat)
    if before is None:
        return None
    time.sleep(interval)
    after = _cpu_times(stat)
    if after is None or after[1] <= before[1]:
        return None
    return cpu_count * (after[0] - before[0]) / (after[1] - before[1])


def free_cores(cpu_count: int | None = None, load: float | None = None) -> int:
    """Cores not busy with other processes: ``cpu_count - round(load)``, at least 1. ``load``
    defaults to :func:`busy_cores` (else the one-minute load average)."""
    cpu_count = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
    if load is None:
        load = busy_cores(cpu_count=cpu_count)
    if load is None:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, min(cpu_count, cpu_count - round(load)))


def default_threads(cpu_count: int | None = None, load: float | None = None) -> int:
    """torch threads for sampling: the free cores, at most torch's own default (the physical cores)."""
    return max(1, min(torch.get_num_threads(), free_cores(cpu_count, load)))


def set_threads(threads: int | None) -> int:
    """Use ``threads`` torch threads (None: :func:`default_threads`, unless $OMP_NUM_THREADS says);
    returns the number in use."""
    if threads is None:
        if os.environ.get("OMP_NUM_THREADS"):
            return torch.get_num_threads()
        threads = default_threads()
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    torch.set_num_threads(threads)
    return threads


def native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU does bf16 arithmetic in hardware (its flags in ``cpuinfo``; False where the
    file is missing or unreadable)."""
    try:
        flags = set(cpuinfo.read_text().split())
    except OSError:
        return False
    return any(flag in flags for flag in NATIVE_BF16_FLAGS)


def resolve_dtype(name: str, device: torch.device, cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, torch.dtype]:
    """``auto`` -> the measured default of the device type (on a CPU with native bf16: ``mixed``);
    else the named dtype."""
    if name == "auto":
        name = "mixed" if device.type == "cpu" and native_bf16(cpuinfo) else DEFAULT_DTYPE.get(device.type, "fp32")
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}: use {', '.join(DTYPES)} or auto")
    return name, DTYPES[name]


def fill_canvas(layout, canvas: int):
    """The layout a canvas model (no ``mask_frames``: every row is ``canvas`` frames wide) gets for
    free: the same windows' starts (same stride, same number of rows per call) with overlaps grown
    to 5/6 of the stride, as far as the canvas allows. Longer windows and overlaps give each piece
    more context at no cost; on the demo model (6 s loops, 10 kinds, seed 0) 2 x 110 overlapping by 50
    had a median seam jerk of 3.31 against 4.44 for 2 x 90 overlapping by 30, seam velocity 1.11
    against 1.61, kind accuracy 1.00 both. A ``mask_frames`` model pays for every frame, so it keeps
    the layout it is given. (A loop that fits the canvas is one window closing on itself instead,
    :func:`one_window_cycle`: see :func:`canvas_layout`.)"""
    from motion_loop.collage import Layout

    stride = layout.stride
    overlap = max(layout.overlap, min(canvas - stride, stride - max(1, stride // 6)))
    try:
        return Layout(stride + overlap, overlap, layout.n_windows, layout.cyclic)
    except ValueError:
        return layout


def canvas_layout(layout, canvas: int, one_window: bool = True):
    """The layout of a canvas model (every row ``canvas`` frames wide, whatever its piece): a loop
    that fits as one window closing on itself (:func:`one_window_cycle`, half the rows) when
    ``one_window`` (the CLI: unless ``--num_windows`` is given), else the same windows with the
    overlaps grown (:func:`fill_canvas`)."""
    one = one_window_cycle(layout, canvas) if one_window else None
    return one if one is not None else fill_canvas(layout, canvas)


def one_window_cycle(layout, canvas: int):
    """A loop short enough to fit the canvas with room to spare as ONE window that wraps onto
    itself (``Layout(length + o, o, 1, cyclic=True)``, ``o`` grown as :func:`fill_canvas` grows
    overlaps), when its overlap is at least ``layout``'s: half the rows of a two-window cycle
    (1 window + 1 overlap, x2 for guidance) with no less context at the seam. None otherwise
    (chains, loops too long for the canvas). The default for canvas models (:func:`canvas_layout`):
    on the demo model as a stand-in (72-frame loops on its 120-frame window, 10 kinds x 12 seeds,
    DPM-Solver++(3M) 30) its seams and worst frames were as good as two windows' or better, its
    composition edges alike once the metric's fewer edge frames are allowed for, kind accuracy
    0.92 against 0.95 (not significant); see benchmarks/RESULTS.md, "Full-size loops in seconds"."""
    from motion_loop.collage import Layout

    if not layout.cyclic or layout.n_windows < 2:
        return None
    length = layout.length
    overlap = min(canvas - length, length - max(1, length // 6))
    if overlap < layout.overlap:
        return None
    return Layout(length + overlap, overlap, 1, cyclic=True)
