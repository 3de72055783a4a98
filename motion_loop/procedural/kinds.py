"""The motion kinds: for each, a parameter sampler and a builder of joint positions at any times.

``<kind>_params(rng)`` draws a JSON-able dict (floats and short strings) that also names the choices
captions talk about (pace, hand, direction, ...). ``<kind>_build(params, t)`` returns joint positions
[T, 22, 3] (float64, metres) at times ``t`` seconds. Every kind is cyclic: ``params["period"]`` is
its cycle, and the pose is an exact periodic function of time up to the root's steady advance (a
translation and, when turning, a rotation about y per period).

Timing and sizes follow human motion: walking 0.7-1.8 m/s at 1.5-2.2 steps/s, running with a
ballistic flight, jumps whose flight is an exact parabola under g = 9.81 m/s^2, knees that bend
only forwards (two-bone IK towards a pole), arms that swing opposite to the legs.
"""

from __future__ import annotations

import numpy as np

from motion_loop.procedural.body import (
    ANKLE_HEIGHT, BONE_LENGTHS, FOOT_OFFSET, LEG_JOINTS, SIDE_SIGN, SIDES, X, Y, Z, Foot, Pose, apply, arm_ik, assemble,
    height_headroom, hip_positions, normalize, rot_x, rot_y, rot_z, shoulder_in_chest,
)
from motion_loop.procedural.curves import beta_bump, bump, hermite, launch, smoothstep
from motion_loop.procedural.gait import Steps, Twist, fixed_anchor, path_anchor

G = 9.81
TAU = 2 * np.pi
DEG = np.pi / 180
ARM_LENGTH = {side: BONE_LENGTHS[18 + i] + BONE_LENGTHS[20 + i] for i, side in enumerate(SIDES)}


def _u(rng, lo, hi):
    return float(rng.uniform(lo, hi))


def _pick(rng, options):
    return str(options[int(rng.integers(len(options)))])


def _arm_dir(swing, abduct, side):
    """Upper-arm direction in the chest frame: ``swing`` radians forward (negative: back) from
    hanging, ``abduct`` radians out to the side (pi/2: horizontal, pi: straight up)."""
    swing, abduct = np.broadcast_arrays(np.asarray(swing, dtype=np.float64), np.asarray(abduct, dtype=np.float64))
    down = np.broadcast_to(-Y, swing.shape + (3,))
    return apply(rot_x(-swing) @ rot_z(SIDE_SIGN[side] * abduct), down)


def _arm_elev(elevation, azimuth, side):
    """Upper-arm direction in the chest frame raised by ``elevation`` from hanging (pi/2:
    horizontal, pi: straight up) towards a direction ``azimuth`` from the side towards the front."""
    el, az = np.broadcast_arrays(np.asarray(elevation, dtype=np.float64), np.asarray(azimuth, dtype=np.float64))
    return np.stack([SIDE_SIGN[side] * np.cos(az) * np.sin(el), -np.cos(el), np.sin(az) * np.sin(el)], -1)


def _bend_forward(side, n, inward=0.3):
    return np.broadcast_to(Z - SIDE_SIGN[side] * inward * X, (n, 3))


def _hanging_arms(pose, n, out=8 * DEG, elbow=12 * DEG, sides=SIDES):
    for side in sides:
        pose.set_arm(side, _arm_dir(np.full(n, 2 * DEG), np.full(n, out), side), _bend_forward(side, n),
                     np.full(n, elbow))


def _set_arm_hand(pose, side, hand, pole):
    d, bend, flex = arm_ik(side, hand, pole)
    pose.set_arm(side, d, bend, flex)


def _planted(side, x, z, yaw, n):
    """A flat foot standing with its ankle above (x, z) and turned by yaw."""
    ankle = np.broadcast_to(np.array([x, ANKLE_HEIGHT[side], z]), (n, 3)).copy()
    return Foot(ankle=ankle, rotation=np.broadcast_to(rot_y(yaw), (n, 3, 3)).copy())


def _stand_feet(pose, n, half_width, toe_out, stagger=0.0, turn=0.0):
    """Both feet planted: ankles half_width to each side; left foot ``stagger`` ahead, right behind."""
    for side in SIDES:
        s = SIDE_SIGN[side]
        pos = apply(rot_y(turn), np.array([s * half_width, 0.0, s * stagger]))
        pose.feet[side] = _planted(side, pos[0], pos[2], turn + s * toe_out, n)


def _fit_height(build, grid, reach, mask=None):
    """Pelvis base height: the most the root of ``build(grid, 0)`` can rise with feet in reach."""
    probe = build(grid, 0.0)
    if isinstance(probe, tuple):
        probe, mask = probe
    return height_headroom(probe, mask=mask, reach=reach)


def _fitted(build, period, t, reach, samples=48):
    grid = np.linspace(0.0, period, samples, endpoint=False)
    h0 = _fit_height(build, grid, reach)
    pose = build(t, h0)
    return assemble(pose[0] if isinstance(pose, tuple) else pose)


def _spine(pose, yaw=0.0, lean=0.0, roll=0.0, head_pitch=None, head_yaw=None):
    """Spread a chest rotation (relative to the pelvis) over the three spine joints, and a head
    rotation (relative to the chest) over neck and head. By default the head turns back half the
    chest's twist and levels the gaze against the lean."""
    yaw, lean, roll = (np.asarray(a, dtype=np.float64) for a in (yaw, lean, roll))
    for j in (3, 6, 9):
        pose.local[:, j] = rot_y(yaw / 3) @ rot_x(lean / 3) @ rot_z(roll / 3)
    head_pitch = -lean if head_pitch is None else np.asarray(head_pitch, dtype=np.float64)
    head_yaw = -yaw / 2 if head_yaw is None else np.asarray(head_yaw, dtype=np.float64)
    pose.local[:, 12] = rot_y(head_yaw / 2) @ rot_x(head_pitch / 2)
    pose.local[:, 15] = rot_y(head_yaw / 2) @ rot_x(head_pitch / 2)


# --- locomotion: walk, run, walk in a circle, turn in place, march in place -------------------

def _gait_pose(p, t, path, feet_kw, h0):
    """Pose for a two-foot alternating gait along ``path`` with pelvis base height h0."""
    n = len(t)
    period = 2.0 / p["cadence"]
    t_left = p["phase"] * period
    starts = {"left": t_left, "right": t_left + period / 2}
    pose = Pose.standing(n)
    stance = {}
    for side in SIDES:
        sgn = SIDE_SIGN[side]
        steps = Steps(side=side, period=period, land=[starts[side]],
                      lift=[starts[side] + p["duty"] * period],
                      anchor=path_anchor(path, sgn * p["half_width"], sgn * p["toe_out"]), **feet_kw)
        pose.feet[side], stance[side] = steps.foot(t)

    u_l = (t - t_left) / period                         # left foot phase, 0 at its heel strike
    mid = p["duty"] * feet_kw.get("plant_at", 0.5)      # left foot under the pelvis
    heading = path.heading(t)
    height = h0 + _gait_height(p, t - t_left, period, mid * period)
    sway = p["sway"] * np.cos(TAU * (u_l - mid))        # weight over the stance foot
    pose.root = path.position(t) + apply(rot_y(heading), np.stack([sway, height, np.zeros(n)], -1))

    yaw = -p["pelvis_yaw"] * np.cos(TAU * u_l)          # left hip forward at left heel strike
    roll = p["pelvis_roll"] * np.cos(TAU * (u_l - mid)) + p.get("bank", 0.0)  # swing side drops
    thorax = p["thorax_yaw"] * np.cos(TAU * u_l)        # shoulders counter-rotate
    pose.local[:, 0] = rot_y(heading + yaw) @ rot_x(p["lean"]) @ rot_z(roll)
    # The chest counter-rotates against the pelvis; the head keeps looking where the body goes.
    _spine(pose, yaw=thorax - yaw, roll=-roll, head_pitch=-p["lean"], head_yaw=-thorax)

    lag = p.get("arm_lag", 0.05)
    for side, other in (("left", "right"), ("right", "left")):
        # An arm is furthest forward when the opposite leg is (at that leg's heel strike).
        u = (t - starts[other]) / period - lag
        swing = p["arm_bias"] + p["arm_swing"] * np.cos(TAU * u)
        flex = p["elbow"] + p["elbow_swing"] * (0.5 + 0.5 * np.cos(TAU * u))
        pose.set_arm(side, _arm_dir(swing, np.full(n, p["arm_out"]), side), _bend_forward(side, n), flex)
    return pose, stance


def _gait_height(p, t, period, t_mid):
    """Pelvis height relative to its base over time since the left heel strike. Walking bobs,
    highest with a foot under the pelvis; running flies between steps on exact parabolas."""
    if not p.get("flight"):
        return p["bob"] * np.cos(2 * TAU * (t - t_mid) / period)
    half = period / 2
    contact = p["duty"] * period
    v = G * (half - contact) / 2                         # take-off speed for that flight time
    keys_t = np.array([0.0, t_mid, contact])
    keys_y = np.array([0.0, -p["bob"], 0.0])
    keys_v = np.array([-v, 0.0, v])
    return hermite(np.mod(t, half), keys_t, keys_y, keys_v, period=half)


def _gait(p, t, path, feet_kw):
    """A gait built twice: over one cycle to fit the pelvis height to the legs, then at t."""
    period = 2.0 / p["cadence"]
    grid = p["phase"] * period + np.linspace(0, period, 48, endpoint=False)
    probe, stance = _gait_pose(p, grid, path, feet_kw, 0.0)
    h0 = height_headroom(probe, mask=stance, reach=p["reach"])
    pose, _ = _gait_pose(p, t, path, feet_kw, h0)
    return assemble(pose)


def _quick_lift(x):
    return beta_bump(x, 1.6, 4.5)


def _run_lift(x):
    return beta_bump(x, 2.0, 2.5)


def _walk_common(rng, speed):
    cadence = (1.5 + 0.65 * (speed - 0.8)) * _u(rng, 0.95, 1.05)
    return dict(
        speed=speed, cadence=cadence, duty=0.64 - 0.05 * (speed - 0.8), phase=_u(rng, 0, 1),
        half_width=_u(rng, 0.045, 0.075), toe_out=_u(rng, 3, 10) * DEG,
        pitch_land=-_u(rng, 17, 24) * DEG, pitch_off=_u(rng, 55, 65) * DEG,
        clearance=_u(rng, 0.045, 0.06) + 0.035 * speed, reach=_u(rng, 0.997, 0.999),
        plant_at=_u(rng, 0.36, 0.42) - 0.05 * max(0.0, speed - 1.2),
        bob=_u(rng, 0.012, 0.022), sway=_u(rng, 0.015, 0.03),
        pelvis_yaw=_u(rng, 3, 7) * DEG, pelvis_roll=_u(rng, 2, 5) * DEG, thorax_yaw=_u(rng, 2, 5) * DEG,
        lean=_u(rng, 1, 5) * DEG, arm_swing=_u(rng, 12, 28) * DEG * min(1.3, speed / 1.2),
        arm_bias=_u(rng, 0, 6) * DEG, arm_out=_u(rng, 6, 12) * DEG,
        elbow=_u(rng, 8, 20) * DEG, elbow_swing=_u(rng, 5, 20) * DEG,
    )


def _walk_feet(p):
    return dict(pitch_land=p["pitch_land"], pitch_off=p["pitch_off"], clearance=p["clearance"],
                load=0.15, roll=0.5, plant_at=p["plant_at"], lift_shape=_quick_lift, ball_roll=28 * DEG,
                swing_delay=0.04, swing_settle=0.1, travel_shape=launch)


def walk_params(rng):
    pace = _pick(rng, ["slow", "normal", "normal", "fast"])
    speed = {"slow": _u(rng, 0.7, 1.0), "normal": _u(rng, 1.05, 1.45), "fast": _u(rng, 1.5, 1.8)}[pace]
    p = _walk_common(rng, speed)
    curve = _pick(rng, ["straight", "straight", "left", "right"])
    omega = 0.0 if curve == "straight" else _u(rng, 0.15, 0.4) * (1 if curve == "left" else -1)
    p.update(pace=pace, curve=curve, omega=omega, period=2.0 / p["cadence"])
    return p


def walk_build(p, t):
    return _gait(p, t, Twist(forward=p["speed"], omega=p["omega"]), _walk_feet(p))


def circle_params(rng):
    pace = _pick(rng, ["slow", "normal"])
    speed = _u(rng, 0.7, 0.95) if pace == "slow" else _u(rng, 1.0, 1.35)
    p = _walk_common(rng, speed)
    direction = _pick(rng, ["left", "right"])       # left: counter-clockwise seen from above
    radius = _u(rng, 1.0, 2.5)
    omega = speed / radius * (1 if direction == "left" else -1)
    p.update(pace=pace, direction=direction, radius=radius, omega=omega, period=2.0 / p["cadence"],
             bank=-0.7 * np.arctan(speed * omega / G))
    return p


def circle_build(p, t):
    return _gait(p, t, Twist(forward=p["speed"], omega=p["omega"]), _walk_feet(p))


def turn_params(rng):
    direction = _pick(rng, ["left", "right"])
    pace = _pick(rng, ["slow", "normal", "quick"])
    rate = {"slow": _u(rng, 25, 40), "normal": _u(rng, 40, 60), "quick": _u(rng, 60, 80)}[pace] * DEG
    p = _walk_common(rng, 0.8)
    p.update(speed=0.0, cadence=_u(rng, 1.5, 2.0), duty=_u(rng, 0.6, 0.68), half_width=_u(rng, 0.08, 0.11),
             pitch_land=-_u(rng, 0, 6) * DEG, pitch_off=_u(rng, 10, 20) * DEG, clearance=_u(rng, 0.07, 0.1),
             plant_at=0.5, bob=_u(rng, 0.004, 0.01), sway=_u(rng, 0.01, 0.025), arm_swing=_u(rng, 3, 10) * DEG,
             pelvis_yaw=_u(rng, 2, 5) * DEG, thorax_yaw=_u(rng, 2, 6) * DEG)
    p.update(direction=direction, pace=pace, omega=rate * (1 if direction == "left" else -1),
             period=2.0 / p["cadence"])
    return p


def turn_build(p, t):
    # Turning steps lift, pivot in the air and set down: slow lift-off and landing.
    feet = dict(_walk_feet(p), swing_delay=0.2, swing_settle=0.2, lift_shape=bump)
    return _gait(p, t, Twist(omega=p["omega"]), feet)


def run_params(rng):
    pace = _pick(rng, ["jog", "run", "run", "fast"])
    speed = {"jog": _u(rng, 2.0, 2.6), "run": _u(rng, 2.7, 3.5), "fast": _u(rng, 3.6, 4.5)}[pace]
    cadence = (2.55 + 0.15 * (speed - 2.0)) * _u(rng, 0.96, 1.04)
    contact = 0.30 - 0.035 * (speed - 2.0)
    curve = _pick(rng, ["straight", "straight", "straight", "left", "right"])
    omega = 0.0 if curve == "straight" else _u(rng, 0.2, 0.5) * (1 if curve == "left" else -1)
    return dict(
        pace=pace, curve=curve, speed=speed, omega=omega, cadence=cadence, duty=contact * cadence / 2,
        flight=1.0, phase=_u(rng, 0, 1), half_width=_u(rng, 0.03, 0.06), toe_out=_u(rng, 2, 8) * DEG,
        pitch_land=_u(rng, -12, 8) * DEG, pitch_off=_u(rng, 55, 70) * DEG,
        clearance=(0.08 + 0.07 * speed) * _u(rng, 0.85, 1.15), reach=_u(rng, 0.99, 0.996),
        plant_at=_u(rng, 0.3, 0.4), bob=_u(rng, 0.025, 0.045), sway=_u(rng, 0.005, 0.015),
        pelvis_yaw=_u(rng, 4, 8) * DEG, pelvis_roll=_u(rng, 3, 6) * DEG, thorax_yaw=_u(rng, 5, 10) * DEG,
        lean=_u(rng, 5, 10) * DEG + 2 * DEG * (speed - 2.0), arm_swing=_u(rng, 28, 40) * DEG,
        arm_bias=_u(rng, 0, 10) * DEG, arm_out=_u(rng, 8, 16) * DEG, elbow=_u(rng, 70, 95) * DEG,
        elbow_swing=_u(rng, 0, 20) * DEG, period=2.0 / cadence,
    )


def run_build(p, t):
    feet = dict(pitch_land=p["pitch_land"], pitch_off=p["pitch_off"], clearance=p["clearance"],
                load=0.3, roll=0.55, plant_at=p["plant_at"], lift_shape=_run_lift,
                ball_roll=40 * DEG, swing_delay=0.06, swing_settle=0.1)
    return _gait(p, t, Twist(forward=p["speed"], omega=p["omega"]), feet)


def march_params(rng):
    style = _pick(rng, ["bent", "straight"])          # arms: bent elbows or straight (military)
    cadence = _u(rng, 1.6, 2.2)
    p = _walk_common(rng, 0.8)
    duty = _u(rng, 0.52, 0.6)
    p.update(speed=0.0, omega=0.0, cadence=cadence, duty=duty, half_width=_u(rng, 0.08, 0.11),
             pitch_land=_u(rng, 0, 10) * DEG, pitch_off=_u(rng, 15, 30) * DEG,
             clearance=_u(rng, 0.2, 0.36), plant_at=0.5, reach=_u(rng, 0.994, 0.998),
             bob=_u(rng, 0.005, 0.015), sway=_u(rng, 0.01, 0.03), lean=_u(rng, -2, 3) * DEG,
             arm_swing=_u(rng, 30, 50) * DEG, arm_bias=_u(rng, 5, 15) * DEG,
             elbow=(_u(rng, 60, 90) if style == "bent" else _u(rng, 3, 10)) * DEG,
             elbow_swing=(_u(rng, 0, 20) if style == "bent" else _u(rng, 0, 5)) * DEG,
             style=style, pace="quick" if cadence > 2.0 else ("slow" if cadence < 1.75 else "normal"),
             arm_lag=(1 + duty) / 2,  # an arm is furthest forward when the opposite knee is highest
             period=2.0 / cadence)
    return p


def march_build(p, t):
    feet = dict(pitch_land=p["pitch_land"], pitch_off=p["pitch_off"], clearance=p["clearance"],
                load=0.2, roll=0.3, plant_at=0.5, lift_shape=bump, swing_delay=0.0, swing_settle=0.0,
                swing_reach=0.35 * p["clearance"])
    return _gait(p, t, Twist(), feet)


# --- hops: jump in place, jumping jacks --------------------------------------------------------

def _flight_speed(y_from, y_to, duration):
    """Vertical take-off speed of a ballistic flight between two heights (and the landing speed)."""
    v0 = (y_to - y_from) / duration + G * duration / 2
    return v0, v0 - G * duration


def jump_params(rng):
    height = _u(rng, 0.12, 0.35)
    style = _pick(rng, ["swing", "swing", "still"])    # arms swing up, or stay low
    p = dict(
        height=height, crouch=_u(rng, 0.12, 0.25), absorb=_u(rng, 0.08, 0.18),
        t_rise=_u(rng, 0.3, 0.45), t_hold=_u(rng, 0.05, 0.6), t_crouch=_u(rng, 0.3, 0.45),
        half_width=_u(rng, 0.08, 0.13), toe_out=_u(rng, 5, 15) * DEG,
        pitch_off=_u(rng, 50, 62) * DEG, pitch_land=_u(rng, 25, 40) * DEG, tuck=_u(rng, 0.03, 0.15),
        arm_up=(_u(rng, 70, 165) if style == "swing" else _u(rng, 10, 25)) * DEG,
        arm_back=(_u(rng, 25, 50) if style == "swing" else _u(rng, 5, 15)) * DEG,
        lean=_u(rng, 15, 30) * DEG, style=style, size="high" if height > 0.25 else "small",
    )
    p["period"] = _jump_timeline(p)["period"]
    return p


def _jump_timeline(p):
    """Key times of one jump cycle from landing: absorb, rise, hold, crouch, push (take-off), land."""
    v0 = np.sqrt(2 * G * p["height"])
    flight = 2 * v0 / G
    drop_land = p["absorb"] + 0.1                  # roughly from take-off level to the absorb low
    drop_push = p["crouch"] + 0.1
    # Durations keep the cubic Hermite monotone (h v < 3 delta) so the pelvis never dips back.
    t_absorb = float(np.clip(2.2 * drop_land / v0, 0.15, 0.4))
    t_push = float(np.clip(2.2 * drop_push / v0, 0.15, 0.35))
    a = t_absorb
    r = a + p["t_rise"]
    h = r + p["t_hold"]
    c = h + p["t_crouch"]
    o = c + t_push
    return dict(v0=v0, flight=flight, absorb=a, rise=r, hold=h, crouch=c, takeoff=o, period=o + flight)


def _jump_steps(p, k, side):
    s = SIDE_SIGN[side]
    return Steps(side=side, period=k["period"], land=[0.0], lift=[k["takeoff"]],
                 anchor=fixed_anchor([[s * p["half_width"], 0.0, 0.0]], [s * p["toe_out"]]),
                 pitch_land=p["pitch_land"], pitch_off=p["pitch_off"], load=min(0.9, 0.15 / k["takeoff"]),
                 roll=min(0.9, 1.2 * (k["takeoff"] - k["crouch"]) / k["takeoff"]), clearance=p["tuck"],
                 lift_shape=bump, swing_delay=0.0, swing_settle=0.0, ball_roll=45 * DEG)


def _stand_levels(steps_by_side, t_flat, t_toes, reach_flat=0.997, reach_toes=0.999):
    """Pelvis heights standing flat-footed at t_flat and on the toes at t_toes (pelvis upright)."""
    levels = []
    for t_probe, reach in ((t_flat, reach_flat), (t_toes, reach_toes)):
        pose = Pose.standing(1)
        for side, steps in steps_by_side.items():
            pose.feet[side], _ = steps.foot(np.array([t_probe]))
        levels.append(height_headroom(pose, reach=reach))
    return levels


def jump_build(p, t):
    n = len(t)
    k = _jump_timeline(p)
    steps = {side: _jump_steps(p, k, side) for side in SIDES}
    y_stand, y_off = _stand_levels(steps, k["hold"], k["takeoff"] - 1e-6)
    v0 = k["v0"]
    keys_t = [0.0, k["absorb"], k["rise"], k["hold"], k["crouch"], k["takeoff"]]
    keys_y = [y_off, y_stand - p["absorb"], y_stand, y_stand, y_stand - p["crouch"], y_off]
    keys_v = [-v0, 0.0, 0.0, 0.0, 0.0, v0]
    y = hermite(t, keys_t, keys_y, keys_v, period=k["period"])

    def extra(tt):
        return hermite(tt, keys_t, keys_y, keys_v, period=k["period"]) - y_off

    pose = Pose.standing(n)
    for side in SIDES:
        steps[side].extra_lift = extra
        pose.feet[side], _ = steps[side].foot(t)
    drop = np.clip(y_stand - y, 0.0, None)
    depth = drop / max(p["crouch"], p["absorb"])
    lean = p["lean"] * depth + 3 * DEG
    pose.root = np.stack([np.zeros(n), y, -0.35 * drop], -1)
    pose.local[:, 0] = rot_x(lean * 0.7)
    _spine(pose, lean=lean * 0.3, head_pitch=-lean * 0.8)
    mid = k["takeoff"] + k["flight"] / 2
    swing = hermite(t, [0.0, k["absorb"], k["rise"], k["hold"], k["crouch"], k["takeoff"], mid],
                    [0.5 * p["arm_up"], -5 * DEG, 0.0, 0.0, -p["arm_back"], 0.9 * p["arm_up"], p["arm_up"]],
                    period=k["period"])
    for side in SIDES:
        pose.set_arm(side, _arm_dir(swing, np.full(n, 10 * DEG), side), _bend_forward(side, n),
                     np.full(n, 15 * DEG) + 0.15 * np.abs(swing))
    return assemble(pose)


def jacks_params(rng):
    period = _u(rng, 0.75, 1.15)
    contact = _u(rng, 0.4, 0.5) * period / 2
    arms = _pick(rng, ["overhead", "overhead", "shoulder"])
    return dict(
        period=period, contact=contact, wide=_u(rng, 0.24, 0.36), narrow=_u(rng, 0.06, 0.1),
        toe_out_wide=_u(rng, 12, 25) * DEG, toe_out=_u(rng, 3, 10) * DEG, dip=_u(rng, 0.01, 0.025),
        tuck=_u(rng, 0.02, 0.04), arms=arms,
        arm_up=(_u(rng, 155, 172) if arms == "overhead" else _u(rng, 80, 95)) * DEG,
        arm_down=_u(rng, 8, 18) * DEG, elbow=_u(rng, 5, 25) * DEG, phase=_u(rng, 0, 1),
        pace="quick" if period < 0.9 else "steady",
    )


def jacks_build(p, t):
    n, period, contact = len(t), p["period"], p["contact"]
    half = period / 2
    flight = half - contact
    t = t + p["phase"] * period
    steps = {}
    for side in SIDES:
        s = SIDE_SIGN[side]
        anchor = fixed_anchor([[s * p["wide"], 0.0, 0.0], [s * p["narrow"], 0.0, 0.0]],
                              [s * p["toe_out_wide"], s * p["toe_out"]])
        steps[side] = Steps(side=side, period=period, land=[0.0, half], lift=[contact, half + contact],
                            anchor=anchor, pitch_land=25 * DEG, pitch_off=35 * DEG, load=0.35, roll=0.4,
                            clearance=p["tuck"], lift_shape=bump, swing_delay=0.0, swing_settle=0.0,
                            ball_roll=40 * DEG)
    # Legs (nearly) straight on the toes at landing and take-off, knees giving at mid-stance.
    levels = {}
    for name, start in (("wide", 0.0), ("narrow", half)):
        y_flat, y_land = _stand_levels(steps, start + contact / 2, start + 1e-6, reach_toes=0.995)
        _, y_off = _stand_levels(steps, start + contact / 2, start + contact - 1e-6, reach_toes=0.995)
        levels[name] = (min(y_land, y_off), y_flat)
    (y_wide, flat_wide), (y_narrow, flat_narrow) = levels["wide"], levels["narrow"]
    v_wn, v_wn_land = _flight_speed(y_wide, y_narrow, flight)   # wide take-off, narrow landing
    v_nw, v_nw_land = _flight_speed(y_narrow, y_wide, flight)
    keys_t = [0.0, contact / 2, contact, half, half + contact / 2, half + contact]
    keys_y = [y_wide, flat_wide - p["dip"], y_wide, y_narrow, flat_narrow - p["dip"], y_narrow]
    keys_v = [v_nw_land, 0.0, v_wn, v_wn_land, 0.0, v_nw]

    def extra(tt):
        # Flight height above the straight line between take-off and landing levels.
        y = hermite(tt, keys_t, keys_y, keys_v, period=period)
        local = np.mod(tt, half)
        frac = np.clip((local - contact) / flight, 0.0, 1.0)
        wide_first = np.mod(tt, period) < half
        y_a = np.where(wide_first, y_wide, y_narrow)
        y_b = np.where(wide_first, y_narrow, y_wide)
        return np.clip(y - (y_a + (y_b - y_a) * frac), 0.0, None)

    pose = Pose.standing(n)
    for side in SIDES:
        steps[side].extra_lift = extra
        pose.feet[side], _ = steps[side].foot(t)
    pose.root = np.stack([np.zeros(n), hermite(t, keys_t, keys_y, keys_v, period=period), np.zeros(n)], -1)
    pose.local[:, 0] = rot_x(np.full(n, 3 * DEG))
    _spine(pose, lean=np.full(n, 0.0), head_pitch=np.full(n, -3 * DEG))
    # Arms peak overhead while the feet are wide, down while they are together.
    open_ = hermite(t, [contact / 2, half + contact / 2], [1.0, 0.0], period=period)
    abduct = p["arm_down"] + (p["arm_up"] - p["arm_down"]) * smoothstep(open_)
    for side in SIDES:
        pose.set_arm(side, _arm_elev(abduct, np.full(n, 8 * DEG), side), np.broadcast_to(Z, (n, 3)),
                     np.full(n, p["elbow"]))
    return assemble(pose)


# --- standing actions: squat, kick, punch, wave, arm circles ------------------------------------

def _cycle_grid(period, samples=48):
    return np.linspace(0.0, period, samples, endpoint=False)


def squat_params(rng):
    arms = _pick(rng, ["forward", "forward", "clasped", "hips", "head"])
    depth = _u(rng, 0.22, 0.45)
    t_down, t_bottom, t_up, t_top = _u(rng, 0.8, 1.5), _u(rng, 0.05, 0.4), _u(rng, 0.7, 1.3), _u(rng, 0.1, 0.8)
    return dict(
        depth=depth, t_down=t_down, t_bottom=t_bottom, t_up=t_up, t_top=t_top, arms=arms,
        half_width=_u(rng, 0.13, 0.2), toe_out=_u(rng, 10, 25) * DEG, phase=_u(rng, 0, 1),
        period=t_down + t_bottom + t_up + t_top, size="deep" if depth > 0.36 else "half",
        pace="slow" if t_down + t_up > 2.2 else "normal",
    )


def squat_build(p, t):
    period = p["period"]
    a, b = p["t_top"], p["t_top"] + p["t_down"]
    c = b + p["t_bottom"]

    def build(tt, h0):
        n = len(tt)
        s = hermite(tt, [0.0, a, b, c], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], period=period)
        pose = Pose.standing(n)
        _stand_feet(pose, n, p["half_width"], p["toe_out"])
        depth = p["depth"] * s
        lean = 1.6 * depth                                 # trunk forward, hips back: balance
        pose.root = np.stack([np.zeros(n), h0 - depth, -0.45 * depth], -1)
        pose.local[:, 0] = rot_x(0.8 * lean)
        _spine(pose, lean=0.2 * lean, head_pitch=-0.7 * lean)
        if p["arms"] == "forward":
            for side in SIDES:
                swing = 10 * DEG + 75 * DEG * smoothstep(1.3 * s)
                pose.set_arm(side, _arm_dir(swing, np.full(n, 3 * DEG), side), _bend_forward(side, n),
                             np.full(n, 5 * DEG))
        else:
            hands = {"clasped": (0.04, 0.02, 0.3), "hips": (0.2, -0.33, 0.02), "head": (0.07, 0.36, -0.06)}
            poles = {"clasped": (0.6, -1.0, -0.2), "hips": (1.0, 0.0, -0.6), "head": (1.0, 0.2, 0.3)}
            hx, hy, hz = hands[p["arms"]]
            px, py, pz = poles[p["arms"]]
            for side in SIDES:
                sg = SIDE_SIGN[side]
                _set_arm_hand(pose, side, np.broadcast_to(np.array([sg * hx, hy, hz]), (n, 3)),
                              np.broadcast_to(np.array([sg * px, py, pz]), (n, 3)))
        return pose

    return _fitted(build, period, t + p["phase"] * period, 0.997)


def kick_params(rng):
    leg = _pick(rng, ["left", "right"])
    height = _pick(rng, ["low", "middle", "high"])
    t_kick = _u(rng, 0.6, 1.0)
    t_rest = _u(rng, 0.4, 1.0)
    phi = {"low": _u(rng, 45, 60), "middle": _u(rng, 60, 78), "high": _u(rng, 78, 95)}[height] * DEG
    return dict(
        leg=leg, height=height, hip_flex=phi,
        t_kick=t_kick, t_rest=t_rest, arms=_pick(rng, ["guard", "out"]), half_width=_u(rng, 0.09, 0.13),
        toe_out=_u(rng, 5, 15) * DEG, plantar=_u(rng, 20, 45) * DEG, shift=_u(rng, 0.05, 0.09),
        lean_back=_u(rng, 8, 14) * DEG + 0.3 * (phi - 45 * DEG), period=t_rest + t_kick + 0.3, phase=_u(rng, 0, 1),
        pace="fast" if t_kick < 0.75 else "normal",
    )


def kick_build(p, t):
    period = p["period"]
    kick, support = p["leg"], "left" if p["leg"] == "right" else "right"
    ks = np.concatenate([[0.0], p["t_rest"] + p["t_kick"] * np.array([0.0, 0.28, 0.45, 0.58, 0.78, 1.0])])
    phi = p["hip_flex"]
    chamber = 0.8 * phi
    t0, d = p["t_rest"], p["t_kick"]

    def build(tt, h0):
        n = len(tt)
        # The foot first lifts straight up (lift), then blends into the kick by FK (w).
        lift = hermite(tt, ks, [0, 0, 1, 1, 1, 1, 0], np.zeros(7), period=period)
        w = hermite(tt, np.concatenate([ks[:2], ks[1:2] + 0.3 * (ks[2] - ks[1]), ks[2:6], ks[6:] - 0.3 * (ks[6] - ks[5])]),
                    [0, 0, 0, 1, 1, 1, 1, 0], np.zeros(8), period=period)
        flex = hermite(tt, ks, [0, 0, chamber, phi, phi, chamber, 0], period=period)
        knee = hermite(tt, ks, [0, 0, chamber + 15 * DEG, 5 * DEG, 8 * DEG, chamber + 15 * DEG, 0], period=period)
        shift = hermite(tt, [0.0, t0 - 0.25, t0 + 0.05, t0 + d - 0.05, t0 + d + 0.25],
                        [0, 0, 1, 1, 0], np.zeros(5), period=period)
        extend = smoothstep((flex - 0.5 * phi) / (0.5 * phi)) * smoothstep((phi - knee) / phi)
        pose = Pose.standing(n)
        _stand_feet(pose, n, p["half_width"], p["toe_out"])
        # Weight over the support foot; the pelvis leans back as the leg extends.
        pose.root = np.stack([-SIDE_SIGN[kick] * p["shift"] * shift, np.full(n, h0), np.zeros(n)], -1)
        lean = -p["lean_back"] * extend + 2 * DEG
        pose.local[:, 0] = rot_y(SIDE_SIGN[kick] * 8 * DEG * w) @ rot_x(lean)
        _spine(pose, yaw=-SIDE_SIGN[kick] * 8 * DEG * w, lean=0.3 * lean, head_pitch=-lean)
        # The kicking leg by forward kinematics (hip flexion, knee flexion), blended from the floor.
        hip = hip_positions(pose)[kick]
        thigh = apply(rot_x(-flex), -Y)
        shin = apply(rot_x(-(flex - knee)), -Y)
        leg = LEG_JOINTS[kick]
        ankle_fk = hip + BONE_LENGTHS[leg[1]] * thigh + BONE_LENGTHS[leg[2]] * shin
        lifted = pose.feet[kick].ankle + 0.18 * lift[:, None] * Y
        ww = w[:, None]
        yaw = SIDE_SIGN[kick] * p["toe_out"] * (1 - w)
        pitch = w * (p["plantar"] * extend - (flex - knee))     # foot rides the shin, toes point out
        rotation = rot_y(yaw) @ rot_x(pitch)
        ankle = (1 - ww) * lifted + ww * ankle_fk
        toe_y = ankle[:, 1] + apply(rotation, FOOT_OFFSET[kick])[:, 1]
        ankle[:, 1] += lift * np.clip(0.03 - toe_y, 0.0, None)    # never through the floor
        pose.feet[kick] = Foot(ankle=ankle, rotation=rotation, pole=(1 - ww) * (Z + 0.3 * Y) + ww * thigh)
        if p["arms"] == "guard":
            for side in SIDES:
                sg = SIDE_SIGN[side]
                _set_arm_hand(pose, side, np.broadcast_to(np.array([sg * 0.13, 0.16, 0.25]), (n, 3)),
                              np.broadcast_to(np.array([sg * 0.6, -1.0, -0.1]), (n, 3)))
        else:
            for side in SIDES:
                out = (15 + 35 * (1.0 if side == kick else 0.7)) * DEG * w + 10 * DEG
                back = 10 * DEG - 25 * DEG * w * (side == kick)
                pose.set_arm(side, _arm_dir(back, out, side), _bend_forward(side, n), np.full(n, 20 * DEG))
        return pose, {support: np.ones(n, bool), kick: lift < 1e-3}

    return _fitted(build, period, t + p["phase"] * period, 0.99)


def punch_params(rng):
    hand = _pick(rng, ["left", "right", "both", "both"])
    t_punch = _u(rng, 0.25, 0.4)
    t_gap = _u(rng, 0.1, 0.5)
    return dict(
        hand=hand, t_punch=t_punch, t_gap=t_gap, reach=_u(rng, 0.93, 0.99), aim=_u(rng, -0.05, 0.12),
        twist=_u(rng, 15, 30) * DEG, half_width=_u(rng, 0.12, 0.17), stagger=_u(rng, 0.08, 0.16),
        stance_turn=-_u(rng, 5, 20) * DEG, knee_bend=_u(rng, 0.965, 0.985), bounce=_u(rng, 0.0, 0.02),
        period=(2 if hand == "both" else 1) * (t_punch + t_gap), phase=_u(rng, 0, 1),
        pace="fast" if t_punch + t_gap < 0.5 else "normal",
    )


def punch_build(p, t):
    period = p["period"]
    one = p["t_punch"] + p["t_gap"]
    hands = {"left": ["left"], "right": ["right"], "both": ["left", "right"]}[p["hand"]]

    def extension(tt, side):
        if side not in hands:
            return np.zeros(len(tt))
        kt = hands.index(side) * one + p["t_punch"] * np.array([0.0, 0.38, 1.0])
        # Out fast, back a little slower, then hold the guard.
        keys_t = np.concatenate([kt, [kt[-1] + 0.5 * (period - p["t_punch"])]])
        return np.clip(hermite(tt, keys_t, [0.0, 1.0, 0.0, 0.0], np.zeros(4), period=period), 0.0, 1.0)

    def build(tt, h0):
        n = len(tt)
        extend = {side: extension(tt, side) for side in SIDES}
        twist = p["twist"] * (extend["right"] - extend["left"])   # the punching shoulder goes forward
        pose = Pose.standing(n)
        _stand_feet(pose, n, p["half_width"], 12 * DEG, stagger=p["stagger"], turn=p["stance_turn"])
        pose.root = np.stack([np.zeros(n), h0 - p["bounce"] * (extend["left"] + extend["right"]), np.zeros(n)], -1)
        pose.local[:, 0] = rot_y(p["stance_turn"] + 0.35 * twist) @ rot_x(np.full(n, 6 * DEG))
        _spine(pose, yaw=0.65 * twist - 0.6 * p["stance_turn"], lean=np.full(n, 4 * DEG), head_pitch=-10 * DEG)
        chest_yaw = 0.4 * p["stance_turn"] + twist
        for side in SIDES:
            sg = SIDE_SIGN[side]
            guard = np.array([sg * 0.11, 0.2, 0.2])
            # Aim straight ahead in the world, slightly towards the midline, whatever the chest's turn.
            aim = apply(rot_y(-chest_yaw), np.broadcast_to(normalize(np.array([-sg * 0.12, p["aim"], 1.0])), (n, 3)))
            target = shoulder_in_chest(side) + p["reach"] * ARM_LENGTH[side] * aim
            e = smoothstep(extend[side])[:, None]
            _set_arm_hand(pose, side, (1 - e) * guard + e * target,
                          np.broadcast_to(np.array([sg * 0.7, -1.0, -0.2]), (n, 3)))
        return pose

    return _fitted(build, period, t + p["phase"] * period, p["knee_bend"])


def wave_params(rng):
    hand = _pick(rng, ["right", "right", "left", "both"])
    height = _pick(rng, ["shoulder", "high"])
    freq = _u(rng, 1.4, 3.0)
    cycles = int(rng.integers(2, 5))
    return dict(
        hand=hand, height=height, freq=freq, cycles=cycles,
        raise_angle=(_u(rng, 75, 100) if height == "shoulder" else _u(rng, 130, 160)) * DEG,
        forward=_u(rng, 5, 35) * DEG, amplitude=_u(rng, 18, 35) * DEG, half_width=_u(rng, 0.09, 0.14),
        toe_out=_u(rng, 5, 15) * DEG, sway=_u(rng, 0.0, 0.02), phase=_u(rng, 0, 1),
        pace="quick" if freq > 2.3 else "gentle", period=cycles / freq,
    )


def wave_build(p, t):
    period = p["period"]
    hands = {"left": ["left"], "right": ["right"], "both": ["left", "right"]}[p["hand"]]
    lean_side = 0.0 if p["hand"] == "both" else SIDE_SIGN[p["hand"]]

    def build(tt, h0):
        n = len(tt)
        pose = Pose.standing(n)
        _stand_feet(pose, n, p["half_width"], p["toe_out"])
        sway = p["sway"] * np.sin(TAU * tt / period)
        pose.root = np.stack([-lean_side * 0.02 + sway, np.full(n, h0), np.zeros(n)], -1)
        pose.local[:, 0] = rot_z(np.full(n, -lean_side * 2 * DEG))
        _spine(pose, roll=np.full(n, lean_side * 3 * DEG), lean=np.zeros(n))
        _hanging_arms(pose, n, sides=[s for s in SIDES if s not in hands])
        osc = np.sin(TAU * p["freq"] * tt)
        for side in hands:
            d = _arm_elev(np.full(n, p["raise_angle"]), np.full(n, p["forward"]), side)
            # Forearm roughly upright, swinging side to side at the elbow.
            flex = max(10 * DEG, np.pi - p["raise_angle"] - 10 * DEG) + p["amplitude"] * osc * SIDE_SIGN[side]
            pose.set_arm(side, d, np.broadcast_to(Y + 0.2 * Z, (n, 3)), np.clip(flex, 0.0, 150 * DEG))
        return pose

    return _fitted(build, period, t + p["phase"] * period, 0.997)


def circles_params(rng):
    size = _pick(rng, ["small", "big"])
    direction = _pick(rng, ["forward", "backward"])
    freq = _u(rng, 1.2, 2.2) if size == "small" else _u(rng, 0.6, 1.1)
    cycles = int(rng.integers(1, 4))
    return dict(
        size=size, direction=direction, freq=freq, cycles=cycles,
        radius=(_u(rng, 12, 22) if size == "small" else _u(rng, 35, 60)) * DEG,
        elevation=_u(rng, 80, 95) * DEG, half_width=_u(rng, 0.12, 0.18), toe_out=_u(rng, 5, 15) * DEG,
        phase=_u(rng, 0, 1), pace="fast" if freq > 1.6 or (size == "big" and freq > 0.9) else "slow",
        period=cycles / freq,
    )


def circles_build(p, t):
    sign = 1.0 if p["direction"] == "forward" else -1.0

    def build(tt, h0):
        n = len(tt)
        pose = Pose.standing(n)
        _stand_feet(pose, n, p["half_width"], p["toe_out"])
        angle = sign * TAU * p["freq"] * tt
        pose.root = np.stack([np.zeros(n), h0 + 0.004 * np.cos(2 * angle), np.zeros(n)], -1)
        for side in SIDES:
            axis = _arm_dir(np.zeros(n), np.full(n, p["elevation"]), side)   # arm out sideways
            circle = np.cos(angle)[:, None] * Y + np.sin(angle)[:, None] * Z  # over the top, then in front
            pose.set_arm(side, np.cos(p["radius"]) * axis + np.sin(p["radius"]) * circle,
                         np.broadcast_to(Z, (n, 3)), np.full(n, 5 * DEG))
        return pose

    return _fitted(build, p["period"], t + p["phase"] * p["period"], 0.997)


def sidestep_params(rng):
    bpm = _u(rng, 95, 130)
    return dict(
        beat=60.0 / bpm, bpm=bpm, width=_u(rng, 0.3, 0.55), together=_u(rng, 0.08, 0.11),
        bounce=_u(rng, 0.02, 0.05), clearance=_u(rng, 0.07, 0.11), arms=_pick(rng, ["swing", "clap"]),
        start=_pick(rng, ["right", "left"]), phase=_u(rng, 0, 1), sway=_u(rng, 3, 8) * DEG,
        toe_out=_u(rng, 5, 15) * DEG, period=4 * 60.0 / bpm, pace="fast" if bpm > 115 else "relaxed",
    )


def sidestep_build(p, t):
    """Step-touch: the lead foot steps out, the other closes beside it, and back the other way."""
    n, b = len(t), p["beat"]
    period = 4 * b
    t = t + p["phase"] * period
    sw = 0.6 * b                               # each step's swing
    lead = p["start"]
    other = "left" if lead == "right" else "right"
    out = SIDE_SIGN[lead]                      # first travel direction (+x is the body's left)
    w0, wd = p["together"], p["width"]
    # Four beats: the lead foot steps out (beat 0), the other closes beside it (1), the other
    # steps back home (2), the lead follows (3). Footholds (body x) and stance times per foot:
    lead_home, other_home = out * w0, -out * w0
    anchors = {
        lead: ([[lead_home + out * wd, 0, 0], [lead_home, 0, 0]], [sw, 3 * b + sw], [3 * b, 4 * b]),
        other: ([[other_home + out * wd, 0, 0], [other_home, 0, 0]], [b + sw, 2 * b + sw], [2 * b, 5 * b]),
    }
    steps = {}
    for side, (pos, land, lift) in anchors.items():
        s = SIDE_SIGN[side]
        steps[side] = Steps(side=side, period=period, land=land, lift=lift,
                            anchor=fixed_anchor(pos, [s * p["toe_out"]] * 2), pitch_land=3 * DEG,
                            pitch_off=10 * DEG, load=0.15, roll=0.2, clearance=p["clearance"],
                            lift_shape=bump, swing_delay=0.18, swing_settle=0.18, ball_roll=30 * DEG)
    dip = 0.5 + 0.5 * np.cos(TAU * (t - sw) / b)             # knees bend on every landing

    def build(tt, h0):
        pose = Pose.standing(len(tt))
        mask = {}
        for side in SIDES:
            pose.feet[side], mask[side] = steps[side].foot(tt)
        # The pelvis travels with the weight: 0 at home, wd away while the feet are together there.
        travel = 0.5 * wd * (1 - np.cos(TAU * (tt + 0.25 * b) / period))
        bounce = p["bounce"] * (0.5 + 0.5 * np.cos(TAU * (tt - sw) / b))
        pose.root = np.stack([out * travel, h0 - bounce, np.zeros(len(tt))], -1)
        return pose, mask

    grid = np.linspace(0, period, 64, endpoint=False)
    probe, mask = build(grid, 0.0)
    h0 = height_headroom(probe, mask=mask, reach=0.985)
    pose, _ = build(t, h0)
    # Hips sway towards the travel, shoulders counter a little.
    velocity = np.sin(TAU * (t + 0.25 * b) / period)
    roll = -out * p["sway"] * velocity
    pose.local[:, 0] = rot_z(roll) @ rot_x(np.full(n, 4 * DEG))
    _spine(pose, yaw=out * 6 * DEG * velocity, roll=-0.8 * roll, lean=np.zeros(n), head_pitch=-4 * DEG)
    if p["arms"] == "swing":
        for side in SIDES:
            sg = SIDE_SIGN[side]
            hand = np.stack([sg * 0.2 + out * 0.12 * velocity, -0.05 + 0.05 * dip, 0.28 + 0.0 * dip], -1)
            _set_arm_hand(pose, side, hand, np.broadcast_to(np.array([sg * 0.5, -1.0, -0.3]), (n, 3)))
    else:
        # Clap on each closing step (beats 1 and 3), hands apart in between.
        apart = 0.5 - 0.5 * np.cos(TAU * (t - (b + sw)) / (2 * b))
        for side in SIDES:
            sg = SIDE_SIGN[side]
            hand = np.stack([sg * (0.03 + 0.2 * apart), 0.0 + 0.03 * apart, 0.32 - 0.04 * apart], -1)
            _set_arm_hand(pose, side, hand, np.broadcast_to(np.array([sg * 0.7, -1.0, -0.2]), (n, 3)))
    return assemble(pose)


KIND_FUNCS = {
    "walk": (walk_params, walk_build),
    "run": (run_params, run_build),
    "march": (march_params, march_build),
    "jump": (jump_params, jump_build),
    "jumping_jacks": (jacks_params, jacks_build),
    "wave": (wave_params, wave_build),
    "squat": (squat_params, squat_build),
    "kick": (kick_params, kick_build),
    "punch": (punch_params, punch_build),
    "side_step": (sidestep_params, sidestep_build),
    "arm_circles": (circles_params, circles_build),
    "walk_circle": (circle_params, circle_build),
    "turn": (turn_params, turn_build),
}
