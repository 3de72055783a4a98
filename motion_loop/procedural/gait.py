"""Stepping: periodic foot schedules whose stance feet stay fixed in the world, and root paths.

A foot alternates stance (planted: it rolls over heel, sole and toe but the pivot never slides) and
swing (it travels to the next foothold). Footholds come from an ``anchor`` function of the global
step index, so the same engine serves walking along any path, turning, marching in place, dance
steps and hops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from motion_loop.procedural.body import ANKLE_HEIGHT, FOOT_OFFSET, HEEL_BACK, Foot, apply, rot_x, rot_y
from motion_loop.procedural.curves import early_bump, min_jerk, smoothstep

TOE_TIP = 0.05  # toe tips lie this far ahead of the toe joint (the ball of the foot)
Anchor = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def wrap_angle(a):
    return (a + np.pi) % (2 * np.pi) - np.pi


@dataclass
class Twist:
    """Root path with constant body-frame velocity and turning rate, from the origin facing +z.

    Closed form: heading(t) = omega t; position(t) = t sinc(omega t / 2) R(omega t / 2) (side, forward).
    Constant twist makes any motion built on it exactly periodic in the body frame.
    """

    forward: float = 0.0   # m/s along the heading
    side: float = 0.0      # m/s to the body's left
    omega: float = 0.0     # rad/s, positive turns left (counter-clockwise seen from above)

    def heading(self, t):
        return self.omega * np.asarray(t, dtype=np.float64)

    def position(self, t):
        """Path point [..., 3] on the floor (y = 0)."""
        t = np.asarray(t, dtype=np.float64)
        half = self.omega * t / 2
        scale = t * np.sinc(half / np.pi)
        local = np.array([self.side, 0.0, self.forward])
        return scale[..., None] * apply(rot_y(half), local)


def path_anchor(path, lateral: float, toe_out: float = 0.0, forward: float = 0.0) -> Anchor:
    """Footholds beside a path: at mid-stance the ankle is ``lateral`` metres to the body's left
    (negative: right) of the path point, the foot turned out by ``toe_out`` radians."""

    def anchor(n, t_mid):
        heading = path.heading(t_mid)
        pos = path.position(t_mid) + apply(rot_y(heading), np.array([lateral, 0.0, forward]))
        return pos, heading + toe_out

    return anchor


def fixed_anchor(positions, yaws) -> Anchor:
    """Footholds cycling through fixed floor positions [K, 3] and yaws [K] (K steps per cycle)."""
    positions = np.asarray(positions, dtype=np.float64)
    yaws = np.asarray(yaws, dtype=np.float64)

    def anchor(n, t_mid):
        k = np.mod(n, len(yaws))
        return positions[k], yaws[k]

    return anchor


def _per_step(value, k):
    return np.asarray(value, dtype=np.float64)[k] if np.ndim(value) else np.full(np.shape(k), float(value))


@dataclass
class Steps:
    """Periodic stance/swing schedule of one foot.

    Within each cycle of ``period`` seconds, stance k lasts from land[k] to lift[k]; the foot then
    swings to stance k+1 (the next cycle's first after the last). Stance n = cycle * K + k stands
    on anchor(n, plant time), the plant time lying ``plant_at`` of the way through the stance.

    Foot pitch (radians, positive = heel up / toes down): ``pitch_land`` at landing (negative lands
    on the heel, positive on the ball), flat after the ``load`` fraction of stance, rising to
    ``pitch_off`` over the final ``roll`` fraction. The pivot (heel, ball or toe tips) never moves
    while the foot is on the floor. In swing the ankle travels between the lift-off and landing
    poses along ``travel_shape``, lifted by ``clearance * lift_shape`` (plus ``extra_lift``).
    """

    side: str
    period: float
    land: np.ndarray
    lift: np.ndarray
    anchor: Anchor
    pitch_land: float | np.ndarray = -0.3
    pitch_off: float | np.ndarray = 0.7
    load: float = 0.15
    roll: float = 0.45
    clearance: float | np.ndarray = 0.08      # peak extra ankle height during swing
    lift_shape: Callable = early_bump
    swing_pitch_end: float = 0.7              # fraction of swing by which the landing pitch is set
    extra_lift: Callable | None = None        # t -> extra ankle height during swing (hops)
    plant_at: float = 0.5                     # fraction of stance at which anchor() is sampled
    swing_delay: float = 0.12                 # fraction of swing spent lifting before moving on
    swing_settle: float = 0.08                # fraction of swing spent setting the foot down
    ball_roll: float = 0.6                    # pitch beyond which the foot rolls onto its toe tips
    swing_reach: float = 0.0                  # swing foot pushed this far forward at its highest
    travel_shape: Callable = min_jerk         # progress of the swing foot from foothold to foothold

    def __post_init__(self):
        self.land = np.atleast_1d(np.asarray(self.land, dtype=np.float64))
        self.lift = np.atleast_1d(np.asarray(self.lift, dtype=np.float64))

    def _index(self, t):
        """Global stance index n, its stance start/end and the next landing time, for times t."""
        K = len(self.land)
        cycle = np.floor((t - self.land[0]) / self.period)
        local = t - cycle * self.period
        k = np.clip(np.searchsorted(self.land, local, side="right") - 1, 0, K - 1)
        base = cycle * self.period
        land = base + self.land[k]
        lift = base + self.lift[k]
        next_land = base + np.where(k + 1 < K, self.land[(k + 1) % K], self.land[0] + self.period)
        n = cycle.astype(np.int64) * K + k
        return n, k, land, lift, next_land

    def mid_time(self, n):
        K = len(self.land)
        cycle, k = np.divmod(n, K)
        return cycle * self.period + self.land[k] + self.plant_at * (self.lift[k] - self.land[k])

    def stance_pose(self, n, pitch):
        """Ankle [..., 3] and foot rotation on stance n at the given pitch: the foot rolls over the
        heel (pitch < 0), over the ball of the foot (toe joint) up to ``ball_roll``, and beyond it
        over the tips of the toes (the toe joint then rises on a ``TOE_TIP`` radius)."""
        pos, yaw = self.anchor(n, self.mid_time(n))
        flat_ankle = pos + np.array([0.0, ANKLE_HEIGHT[self.side], 0.0])
        heel = np.array([0.0, -ANKLE_HEIGHT[self.side], -HEEL_BACK])
        pitch = np.asarray(pitch, dtype=np.float64)
        pivot_vec = np.where((pitch < 0)[..., None], heel, FOOT_OFFSET[self.side])
        yaw_rot = rot_y(yaw)
        rot = yaw_rot @ rot_x(pitch)
        tip = np.clip(pitch - self.ball_roll, 0.0, None)
        ball_rise = TOE_TIP * np.stack([np.zeros_like(tip), np.sin(tip), 1 - np.cos(tip)], -1)
        ankle = flat_ankle + apply(yaw_rot, pivot_vec + ball_rise) - apply(rot, pivot_vec)
        return ankle, rot, yaw

    def foot(self, t) -> tuple[Foot, np.ndarray]:
        """The foot's targets at times t [T] and whether it is in stance [T]."""
        t = np.asarray(t, dtype=np.float64)
        n, k, land, lift, next_land = self._index(t)
        k_next = (k + 1) % len(self.land)
        stance = t < lift
        p_land, p_off = _per_step(self.pitch_land, k), _per_step(self.pitch_off, k)
        p_land_next = _per_step(self.pitch_land, k_next)

        tau = np.clip((t - land) / (lift - land), 0.0, 1.0)
        pitch_st = p_land * (1 - smoothstep(tau / self.load)) \
            + p_off * smoothstep((tau - (1 - self.roll)) / self.roll)
        ankle_st, rot_st, _ = self.stance_pose(n, pitch_st)

        swing_len = np.maximum(next_land - lift, 1e-9)
        sigma = np.clip((t - lift) / swing_len, 0.0, 1.0)
        a0, _, yaw0 = self.stance_pose(n, p_off)
        a1, _, yaw1 = self.stance_pose(n + 1, p_land_next)
        # The foot leaves the floor before it travels and arrives above its foothold before it
        # touches down, so the toes do not drag.
        w = self.travel_shape((sigma - self.swing_delay) / (1 - self.swing_delay - self.swing_settle))
        yaw = yaw0 + wrap_angle(yaw1 - yaw0) * w
        pitch_sw = p_off + (p_land_next - p_off) * smoothstep(
            (sigma - self.swing_delay) / (self.swing_pitch_end - self.swing_delay))
        ankle_sw = a0 + (a1 - a0) * w[:, None]
        lift_y = _per_step(self.clearance, k) * self.lift_shape(sigma)
        if self.extra_lift is not None:
            lift_y = lift_y + self.extra_lift(t)
        ankle_sw[:, 1] += lift_y
        if self.swing_reach:
            ankle_sw += apply(rot_y(yaw), np.array([0.0, 0.0, self.swing_reach])) * self.lift_shape(sigma)[:, None]
        rot_sw = rot_y(yaw) @ rot_x(pitch_sw)

        ankle = np.where(stance[:, None], ankle_st, ankle_sw)
        rot = np.where(stance[:, None, None], rot_st, rot_sw)
        return Foot(ankle=ankle, rotation=rot), stance
