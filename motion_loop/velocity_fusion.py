"""Decode joint positions from both the position and the velocity channels of HumanML3D features.

A HumanML3D frame (``motion_loop.humanml``) states every joint's position twice: as a position
(root-relative ``ric``, 4:67, and the root height, 3) and, through the next frame, as a velocity
(193:259, ``joints_{t+1} - joints_t`` in frame t's facing frame). In real data the two agree to
1e-7 m; a diffusion model predicts them separately, and where it glitches in one (a wrist that
stalls for a frame, then jumps 0.77 m in one frame) the other often does not (the velocity channel
said 1.3 cm). ``recover_from_ric`` reads the positions only.

:func:`fuse_velocities` replaces the positions by the least-squares fit to both channels. Per
joint, with ``P_t`` its position (x, z as one complex number in frame t's facing frame; y alone)::

    U = argmin  sum_t |U_t - P_t|^2  +  w sum_t |U_{t+1} - a_t (U_t + v_t) + r_t|^2

where ``v_t`` is the joint's velocity, ``r_t`` the root step (1:3, in frame t+1's facing frame; zero
for y) and ``a_t = exp(-i * 2 features[t, 0])`` turns frame t's facing frame into frame t+1's (one
for y). The sum over t runs to the last frame in a loop (whose last frame leads into its first)
and stops one short otherwise. The normal equations are tridiagonal (cyclic for loops): O(T).

What it does, in the frequency domain: where the channels agree, ``U = P`` exactly, at every
frequency (the fit is not a smoothing filter). Where they disagree, the disagreement is split by
frequency: below the crossover ``4 w sin^2(pi f / fps) = 1`` (0.8 Hz at ``w = 16`` and 20 fps) the
positions win, above it the velocities, so a one-frame jump that the velocities do not share is
spread over the frames around it, and the slow drift of integrated velocities never shows.
"""

from __future__ import annotations

import numpy as np

from .skeleton import NUM_JOINTS

# Weight of the velocity terms against the position terms. Crossover 0.8 Hz at 20 fps; chosen on
# benchmarks/eval_loops.py (see benchmarks/RESULTS.md, issue 13): 4 keeps more of the positions'
# jitter, 64 moves the positions further (99th percentile 17 cm against 10 cm) for little gain.
DEFAULT_WEIGHT = 16.0


def _tridiagonal_solve(lower: np.ndarray, diag: np.ndarray, upper: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve a tridiagonal system (Thomas algorithm, no pivoting: for diagonally dominant matrices).

    lower[t] multiplies x[t-1] in row t (lower[0] unused), upper[t] x[t+1] (upper[-1] unused);
    rhs ``[T, K]`` (K right-hand sides)."""
    n = len(diag)
    c = np.zeros(n, dtype=np.result_type(lower, diag, upper))
    d = np.zeros(rhs.shape, dtype=np.result_type(c, rhs))
    c[0], d[0] = upper[0] / diag[0], rhs[0] / diag[0]
    for t in range(1, n):
        m = diag[t] - lower[t] * c[t - 1]
        c[t] = upper[t] / m if t < n - 1 else 0.0
        d[t] = (rhs[t] - lower[t] * d[t - 1]) / m
    x = d
    for t in range(n - 2, -1, -1):
        x[t] = d[t] - c[t] * x[t + 1]
    return x


def _cyclic_solve(lower, diag, upper, beta, alpha, rhs):
    """Tridiagonal system with corners ``A[0, T-1] = beta`` and ``A[T-1, 0] = alpha`` (Sherman-Morrison
    on the tridiagonal part, Numerical Recipes' ``cyclic``)."""
    n = len(diag)
    gamma = -diag[0]
    d = diag.astype(np.result_type(diag, alpha, beta)).copy()
    d[0] -= gamma
    d[-1] -= alpha * beta / gamma
    x = _tridiagonal_solve(lower, d, upper, rhs)
    u = np.zeros((n, 1), dtype=d.dtype)
    u[0, 0], u[-1, 0] = gamma, alpha
    z = _tridiagonal_solve(lower, d, upper, u)
    factor = (x[0] + beta * x[-1] / gamma) / (1.0 + z[0, 0] + beta * z[-1, 0] / gamma)
    return x - z * factor[None]


def fit_channels(positions: np.ndarray, steps: np.ndarray, turn: np.ndarray, weight: float, cyclic: bool) -> np.ndarray:
    """``argmin_U sum_t |U_t - positions_t|^2 + weight sum_t |U_{t+1} - exp(-i turn_t) U_t - steps_t|^2``.

    positions ``[T, K]`` (real or complex: K independent series sharing ``turn``), steps ``[E, K]``
    with E = T (cyclic: the last step leads from frame T-1 to frame 0) or T-1, turn ``[T]`` radians
    (zero for real series). Returns ``[T, K]`` complex."""
    positions = np.asarray(positions, dtype=np.complex128)
    n = positions.shape[0]
    edges = n if cyclic else n - 1
    if weight == 0 or edges <= 0:
        return positions.copy()
    a = np.exp(-1j * np.asarray(turn, dtype=np.float64))[:edges]
    steps = np.asarray(steps, dtype=np.complex128)[:edges]
    # Normal equations: row t collects the position term, edge t (U_t -> U_{t+1}) and edge t-1.
    diag = np.ones(n)
    rhs = positions.copy()
    diag[:edges] += weight
    rhs[:edges] -= weight * np.conj(a)[:, None] * steps
    into = (np.arange(edges) + 1) % n  # frame each edge leads into
    np.add.at(diag, into, weight)
    np.add.at(rhs, into, weight * steps)
    upper = np.zeros(n, dtype=np.complex128)
    lower = np.zeros(n, dtype=np.complex128)
    upper[:n - 1] = -weight * np.conj(a[:n - 1])
    lower[1:] = -weight * a[:n - 1]
    if not cyclic:
        return _tridiagonal_solve(lower, diag, upper, rhs)
    if n < 3:  # the corners would fall on the tridiagonal band: solve densely
        matrix = np.diag(diag.astype(np.complex128))
        for t in range(n):
            matrix[t, (t + 1) % n] += -weight * np.conj(a[t])
            matrix[(t + 1) % n, t] += -weight * a[t]
        return np.linalg.solve(matrix, rhs)
    return _cyclic_solve(lower, diag, upper, -weight * a[n - 1], -weight * np.conj(a[n - 1]), rhs)


def fuse_velocities(features: np.ndarray, weight: float = DEFAULT_WEIGHT, cyclic: bool = False,
                    joints_num: int = NUM_JOINTS) -> np.ndarray:
    """Raw (denormalized) features ``[..., T, 12J-1]`` with the positions (root height and root-relative
    joints) replaced by their least-squares fit to the position and velocity channels (module
    docstring). ``cyclic``: a loop, whose last frame's velocity leads into its first frame.

    Consistent features (every encoded motion) come back unchanged; decode the result with
    ``humanml.recover_from_ric``. Returns float32 numpy."""
    features = np.asarray(features)
    dim = 12 * joints_num - 1
    if features.ndim < 2 or features.shape[-1] != dim:
        raise ValueError(f"expected raw features [..., T, {dim}], got {features.shape}")
    flat = features.reshape(-1, *features.shape[-2:]).astype(np.float64)
    out = flat.copy()
    ric = slice(4, 4 + 3 * (joints_num - 1))
    vel = slice(4 + 9 * (joints_num - 1), 4 + 9 * (joints_num - 1) + 3 * joints_num)
    for f, x in zip(out, flat):
        frames = x.shape[0]
        turn = 2.0 * x[:, 0]  # feature 0 is half the heading change
        root_step = x[:, 1] + 1j * x[:, 2]
        joints = x[:, ric].reshape(frames, joints_num - 1, 3)
        velocity = x[:, vel].reshape(frames, joints_num, 3)
        # x, z in frame t+1's facing frame: U_{t+1} = a_t (U_t + v_t) - r_t, i.e. step a_t v_t - r_t
        a = np.exp(-1j * turn)[:, None]
        horizontal = fit_channels(joints[..., 0] + 1j * joints[..., 2],
                                  a * (velocity[:, 1:, 0] + 1j * velocity[:, 1:, 2]) - root_step[:, None],
                                  turn, weight, cyclic)
        # heights (absolute; the root's too): no rotation, the step is the velocity's y
        heights = fit_channels(np.concatenate([x[:, 3:4], joints[..., 1]], axis=1), velocity[..., 1],
                               np.zeros(frames), weight, cyclic).real
        joints = np.stack([horizontal.real, heights[:, 1:], horizontal.imag], axis=-1)
        f[:, 3] = heights[:, 0]
        f[:, ric] = joints.reshape(frames, -1)
    return out.reshape(features.shape).astype(np.float32)
