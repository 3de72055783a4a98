"""Smooth scalar profiles: easing, bumps and periodic cubic Hermite keyframes (vectorised)."""

from __future__ import annotations

import numpy as np


def smoothstep(x):
    """3x^2 - 2x^3 on [0, 1], clamped: zero slope at both ends."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def min_jerk(x):
    """10x^3 - 15x^4 + 6x^5 on [0, 1], clamped: zero velocity and acceleration at both ends."""
    x = np.clip(x, 0.0, 1.0)
    return x**3 * (10 + x * (-15 + 6 * x))


def launch(x, slope=0.5):
    """Cubic from 0 to 1 on [0, 1] leaving with ``slope`` and arriving with zero slope (clamped)."""
    x = np.clip(x, 0.0, 1.0)
    return slope * (x - 2 * x**2 + x**3) + 3 * x**2 - 2 * x**3


def early_bump(x):
    """A bump on [0, 1] with zero slope at both ends, peak 1 at x = 0.4 (x^2 (1-x)^3, scaled)."""
    x = np.clip(x, 0.0, 1.0)
    return x**2 * (1 - x) ** 3 / 0.03456


def beta_bump(x, a=2.0, b=3.0):
    """x^a (1-x)^b on [0, 1] scaled to peak 1 at x = a / (a + b); zero slopes at the ends for a, b > 1."""
    x = np.clip(x, 0.0, 1.0)
    m = a / (a + b)
    return x**a * (1 - x) ** b / (m**a * (1 - m) ** b)


def bump(x):
    """Symmetric bump on [0, 1]: 16 x^2 (1-x)^2, peak 1 at the middle, zero slopes at the ends."""
    x = np.clip(x, 0.0, 1.0)
    return 16 * x**2 * (1 - x) ** 2


def hermite(t, key_t, key_y, key_v=None, period=None):
    """Cubic Hermite through keys (times ``key_t`` [K], values ``key_y`` [K, ...], slopes ``key_v``).

    ``period``: the keys describe one cycle starting at key_t[0] and the curve repeats (the last key
    must not duplicate the first). Without a period the curve holds its end values outside the keys.
    Slopes default to Catmull-Rom (periodic when a period is given, zero at open ends). Cubic
    Hermite reproduces cubics exactly, so a ballistic flight is exact when its two keys carry the
    right heights and velocities.
    """
    t = np.asarray(t, dtype=np.float64)
    kt = np.asarray(key_t, dtype=np.float64)
    ky = np.asarray(key_y, dtype=np.float64)
    if period is not None:
        kt = np.concatenate([kt, kt[:1] + period])
        ky = np.concatenate([ky, ky[:1]])
        if key_v is not None:
            key_v = np.concatenate([np.asarray(key_v, dtype=np.float64), np.asarray(key_v)[:1]])
    if key_v is None:
        kv = np.zeros_like(ky)
        if period is not None:
            prev_t = np.concatenate([kt[-2:-1] - period, kt[:-1]])
            prev_y = np.concatenate([ky[-2:-1], ky[:-1]])
            next_t = np.concatenate([kt[1:], kt[1:2] + period])
            next_y = np.concatenate([ky[1:], ky[1:2]])
            dt = (next_t - prev_t).reshape((-1,) + (1,) * (ky.ndim - 1))
            kv = (next_y - prev_y) / dt
        else:
            dt = (kt[2:] - kt[:-2]).reshape((-1,) + (1,) * (ky.ndim - 1))
            kv[1:-1] = (ky[2:] - ky[:-2]) / dt
    else:
        kv = np.asarray(key_v, dtype=np.float64)
    if period is not None:
        t = kt[0] + np.mod(t - kt[0], period)
    else:
        t = np.clip(t, kt[0], kt[-1])
    i = np.clip(np.searchsorted(kt, t, side="right") - 1, 0, len(kt) - 2)
    h = kt[i + 1] - kt[i]
    s = (t - kt[i]) / h
    shape = (-1,) + (1,) * (ky.ndim - 1)
    s, h = s.reshape(shape), h.reshape(shape)
    h00 = 2 * s**3 - 3 * s**2 + 1
    h10 = s**3 - 2 * s**2 + s
    h01 = -2 * s**3 + 3 * s**2
    h11 = s**3 - s**2
    return h00 * ky[i] + h10 * h * kv[i] + h01 * ky[i + 1] + h11 * h * kv[i + 1]
