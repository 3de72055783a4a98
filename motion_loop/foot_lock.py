"""Foot locking: feet that touch the floor stay where they landed.

Diffusion models of joint positions let a planted foot drift (foot skating) when the root and the
legs disagree by a few centimetres per frame. Animators remove it with a foot lock, and so do we,
on joint positions ``[T, 22, 3]`` (metres, y up, floor at y = 0):

1. Contacts: when to plant a foot. Best is the model's own answer: HumanML3D features end with
   foot contact channels (`toe_contacts`), which MDM predicts with the motion; they tell a stance
   from a swing that passes low over the floor. A plant then lasts while the toe stays within
   ``height`` of the floor (5 cm, the floor band of GMD's skating metric): the frames around a
   predicted contact in which the foot lands and rolls off belong to it (`settle_contacts`).
   Without contacts a foot is planted while its toe is in the floor band. Runs of planted frames
   are contact spans.
2. Body speed: the steady part of the planted feet's slide (smoothed over half a second) is taken
   off the whole body's travel (`root_drift`), so the body moves as fast as its legs carry it and
   the pose is untouched.
3. Targets: in each span the toe is pinned, horizontally, to its mean position over the span; the
   foot (ankle and toe) moves by that horizontal offset, heights are kept.
4. Between spans the offset goes from one span's to the next along the quintic that continues both
   spans' offsets in position, velocity and acceleration: the toe lifts off and lands at rest, and
   neither the correction nor its speed or acceleration jumps (a jump in acceleration is a spike of
   jerk at every plant). Before the first and after the last span it is held.
5. Legs: two-bone IK moves the knee so the thigh and shin keep their lengths in every frame and the
   knee stays in its own bending plane; an ankle the leg cannot reach is pulled back towards the hip.

Loops are locked as loops: the loop is tiled three times with `render.tile_loop`, locked as one
sequence and the correction of the middle cycle is mapped back onto the loop, so a span that runs
across the seam is one span; what of the correction does not repeat from cycle to cycle is spread
over the cycle, so the result still loops (`_lock_loop`).
"""

from __future__ import annotations

import numpy as np

from motion_loop.humanml import CONTACTS, facing_angle, gaussian_smooth, rotate_y
from motion_loop.skeleton import FPS, LEFT_FOOT, RIGHT_FOOT

CONTACT_HEIGHT = 0.05  # metres; the floor band of metrics.foot_skating_ratio
# (hip, knee, ankle, toe) of each leg
LEGS = ((1, 4) + LEFT_FOOT, (2, 5) + RIGHT_FOOT)
TOES = (LEFT_FOOT[1], RIGHT_FOOT[1])


def toe_contacts(features) -> np.ndarray:
    """Planted toes ``[..., T, 2]`` (left, right) from HumanML3D features ``[..., T, 263]`` (unnormalized):
    the toe channels of the foot contacts (left ankle, left toe, right ankle, right toe) above 0.5."""
    contacts = np.asarray(features)[..., CONTACTS]
    return contacts[..., [1, 3]] > 0.5


def contact_spans(planted: np.ndarray) -> list[tuple[int, int]]:
    """Half-open [start, end) runs of True in a boolean ``[T]`` array."""
    edges = np.diff(np.concatenate([[0], planted.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def settle_contacts(contacts: np.ndarray, low: np.ndarray) -> np.ndarray:
    """Planted frames ``[T, 2]``: the predicted ``contacts``, each grown over the run of frames in
    which the toe stays ``low`` (in the floor band) around it. A low run without a predicted
    contact (a swing that skims the floor) stays unplanted."""
    planted = contacts.copy()
    for side in range(planted.shape[1]):
        for start, end in contact_spans(low[:, side]):
            if contacts[start:end, side].any():
                planted[start:end, side] = True
    return planted


def _edge_derivatives(x: np.ndarray, first: int, last: int, at_end: bool) -> tuple[np.ndarray, np.ndarray]:
    """Velocity and acceleration (per frame) of ``x`` at the end (``at_end``) or start of its span
    ``[first, last)``, by one-sided differences inside the span; zero where it is too short."""
    zero = np.zeros_like(x[first])
    sign, edge = (-1, last - 1) if at_end else (1, first)
    n = last - first
    velocity = sign * (x[edge + sign] - x[edge]) if n >= 2 else zero
    acceleration = x[edge] - 2 * x[edge + sign] + x[edge + 2 * sign] if n >= 3 else zero
    return velocity, acceleration


def _quintic_bridge(p0, v0, a0, p1, v1, a1, steps: int) -> np.ndarray:
    """The values at steps 1 .. steps-1 of the quintic from ``p0`` (step 0) to ``p1`` (step ``steps``)
    with velocity ``v`` and acceleration ``a`` per step at both ends."""
    u = (np.arange(1, steps) / steps)[:, None]
    v0, v1, a0, a1 = v0 * steps, v1 * steps, a0 * steps**2, a1 * steps**2  # per unit of u
    return ((1 - 10 * u**3 + 15 * u**4 - 6 * u**5) * p0 + (u - 6 * u**3 + 8 * u**4 - 3 * u**5) * v0
            + 0.5 * (u**2 - 3 * u**3 + 3 * u**4 - u**5) * a0 + 0.5 * (u**3 - 2 * u**4 + u**5) * a1
            + (-4 * u**3 + 7 * u**4 - 3 * u**5) * v1 + (10 * u**3 - 15 * u**4 + 6 * u**5) * p1)


def foot_offsets(toe: np.ndarray, planted: np.ndarray) -> np.ndarray:
    """Horizontal offsets ``[T, 3]`` that pin the toe ``[T, 3]`` during each contact span (steps 3-4)."""
    offsets = np.zeros_like(toe)
    spans = contact_spans(planted)
    if not spans:
        return offsets
    for start, end in spans:
        target = toe[start:end].mean(axis=0)
        offsets[start:end] = target - toe[start:end]
    offsets[:, 1] = 0.0
    offsets[: spans[0][0]] = offsets[spans[0][0]]
    offsets[spans[-1][1]:] = offsets[spans[-1][1] - 1]
    for (first, end), (start, last) in zip(spans[:-1], spans[1:]):
        # frames end .. start-1 lie between the last planted frame end-1 and the next one, start
        leaving, landing = _edge_derivatives(offsets, first, end, True), _edge_derivatives(offsets, start, last, False)
        offsets[end:start] = _quintic_bridge(offsets[end - 1], *leaving, offsets[start], *landing, start - end + 1)
    return offsets


def _unit(v: np.ndarray, eps: float = 1e-9) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), eps)


def solve_knee(hip, knee, ankle_target, thigh, shin):
    """Two-bone IK (step 5): the ankle it can reach and the knee, ``[T, 3]`` each.

    The knee sits where the thigh (``thigh`` long, from the hip) and the shin (``shin`` long, to the
    ankle) meet, on the side of the hip-ankle line where the original knee was.
    """
    reach = ankle_target - hip
    dist = np.linalg.norm(reach, axis=-1)
    lo, hi = np.abs(thigh - shin) + 1e-6, (thigh + shin) * (1 - 1e-6)
    clamped = np.clip(dist, lo, hi)
    axis = _unit(reach)
    ankle = hip + axis * clamped[:, None]
    along = (thigh ** 2 - shin ** 2 + clamped ** 2) / (2 * clamped)
    across = np.sqrt(np.maximum(thigh ** 2 - along ** 2, 0.0))
    bend = knee - hip
    bend = bend - np.sum(bend * axis, axis=-1, keepdims=True) * axis
    # A straight leg has no bending plane of its own: bend forwards, the way knees go.
    fallback = np.broadcast_to(np.array([0.0, 0.0, 1.0]), bend.shape)
    straight = np.linalg.norm(bend, axis=-1, keepdims=True) < 1e-6
    bend = _unit(np.where(straight, fallback - np.sum(fallback * axis, -1, keepdims=True) * axis, bend))
    return ankle, hip + axis * along[:, None] + bend * across[:, None]


def root_drift(joints: np.ndarray, planted: np.ndarray, sigma: float) -> np.ndarray:
    """Per-frame horizontal shift ``[T, 3]`` that takes out the steady part of the planted feet's slide.

    A planted toe that moves by d between frames t and t+1 says the body travelled d too far (or
    too short). That slide, averaged over the planted feet and turned into the body's heading frame,
    is Gaussian-smoothed over about one gait cycle (``sigma`` frames, weighted by how many feet
    were planted), so the body's speed changes smoothly; the shift is its negated running sum.
    """
    heading = facing_angle(joints)
    toes = joints[:, TOES]
    step = rotate_y(toes[1:] - toes[:-1], -heading[:-1, None])  # [T-1, 2, 3], heading frame
    both = planted[1:] & planted[:-1]  # [T-1, 2]
    weight = both.sum(axis=1).astype(np.float64)
    slide = np.where(both[..., None], step, 0.0).sum(axis=1)
    weight_s = gaussian_smooth(weight, sigma)
    slide_s = gaussian_smooth(slide, sigma) / np.maximum(weight_s, 1e-9)[:, None]
    slide_s *= np.minimum(weight_s / 0.5, 1.0)[:, None]  # fade out where feet are rarely planted
    slide_s[:, 1] = 0.0
    correction = -rotate_y(slide_s, heading[:-1])
    return np.concatenate([np.zeros((1, 3)), np.cumsum(correction, axis=0)])


def _fit_leg(out: np.ndarray, bones: np.ndarray, leg: tuple[int, int, int, int], ankle_target: np.ndarray) -> None:
    """Step 5 for one leg, in place: the ankle moved to ``ankle_target`` (as far as the leg reaches),
    the knee by two-bone IK with the thigh and shin lengths of ``bones``, the toe with the ankle."""
    hip, knee, ankle, toe = leg
    thigh = np.linalg.norm(bones[:, knee] - bones[:, hip], axis=-1)
    shin = np.linalg.norm(bones[:, ankle] - bones[:, knee], axis=-1)
    foot = out[:, toe] - out[:, ankle]
    out[:, ankle], out[:, knee] = solve_knee(out[:, hip], out[:, knee], ankle_target, thigh, shin)
    out[:, toe] = out[:, ankle] + foot


def _lock_sequence(joints: np.ndarray, planted: np.ndarray, sigma: float) -> np.ndarray:
    joints = joints + root_drift(joints, planted, sigma)[:, None]
    out = joints.copy()
    for side, leg in enumerate(LEGS):
        offsets = foot_offsets(joints[:, leg[3]], planted[:, side])
        if np.any(offsets):
            _fit_leg(out, joints, leg, joints[:, leg[2]] + offsets)
    return out


def _lock_loop(work: np.ndarray, planted: np.ndarray, sigma: float) -> np.ndarray:
    """Lock one cycle ``[P, 22, 3]`` of a loop (``planted [P, 2]``); the result loops too.

    The loop is tiled three times and locked as one sequence, so that a contact across the seam is
    one span. The middle cycle's change of the body's pose, taken in each frame's heading (where
    every cycle is the same), differs from the next cycle's at the seam by what the lock does not
    repeat: the root's slide taken off over a cycle, a foot planted all through a cycle of a loop
    that turns or travels. That difference is spread linearly over the cycle (so the pose closes on
    itself), the legs are fitted to their ankles again, and the cycle is mapped back onto the loop.
    """
    from motion_loop.render import cycle_transform, tile_loop

    period = len(work)
    tiled = tile_loop(work, 3)
    locked = _lock_sequence(tiled, np.tile(planted, (3, 1)), sigma)
    heading = facing_angle(tiled)[:, None]

    def pose(joints):  # body-relative joints in each frame's heading frame
        return rotate_y(joints - joints[:, :1], -heading)

    change = pose(locked) - pose(tiled)
    cycle = slice(period, 2 * period)
    closing = (np.arange(period) / period)[:, None, None] * (change[2 * period] - change[period])
    out = rotate_y(pose(tiled)[cycle] + change[cycle] - closing, heading[cycle]) + locked[cycle, :1]
    for leg in LEGS:
        _fit_leg(out, tiled[cycle], leg, out[:, leg[2]].copy())
    rotation, _, _ = cycle_transform(work)
    # cycle 1 is cycle 0 turned by `rotation`: turn its change back; the loop starts where it started
    change = (out - tiled[cycle]) @ rotation
    change[..., [0, 2]] -= change[0, 0, [0, 2]]
    return work + change


def lock_feet(joints, contacts=None, *, loop: bool = False, height: float = CONTACT_HEIGHT,
              fps: float = FPS) -> np.ndarray:
    """Joint positions ``[T, 22, 3]`` with planted feet locked (module docstring).

    contacts: predicted toe contacts ``[T, 2]`` (left, right), e.g. `toe_contacts` of the model's
        features, settled onto the floor band (`settle_contacts`); None: a toe below ``height`` is planted.
    loop: the motion is one cycle of a loop (frame T-1 is followed by frame 0), and the result is too.
    fps: sets the smoothing of the body's speed correction (half a second).
    """
    joints = np.asarray(joints)
    if joints.ndim != 3 or joints.shape[1:] != (22, 3):
        raise ValueError(f"expected joint positions [T, 22, 3], got {joints.shape}")
    work = joints.astype(np.float64)
    if contacts is not None:
        contacts = np.asarray(contacts, dtype=bool)
        if contacts.shape != (len(work), 2):
            raise ValueError(f"expected contacts [T, 2] = {(len(work), 2)}, got {contacts.shape}")

    cycles = 3 if loop and len(work) >= 2 else 1  # a loop's contacts: a span across the seam is settled as one
    low = np.tile(work[:, TOES, 1] < height, (cycles, 1))
    planted = low if contacts is None else settle_contacts(np.tile(contacts, (cycles, 1)), low)
    if cycles == 1:
        return _lock_sequence(work, planted, fps / 2).astype(joints.dtype, copy=False)
    return _lock_loop(work, planted[len(work): 2 * len(work)], fps / 2).astype(joints.dtype, copy=False)
