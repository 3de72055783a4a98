"""Root handling for loops: keep or remove the net heading change of one cycle.

A loop closes in root-relative pose, but its root may end each cycle turned and moved: one cycle
maps onto the next by a rigid motion T(X) = R_y(turn) (X - r_0) + r_P (``render.cycle_transform``).
A walk that drifts turns by a few degrees per cycle, so a tool that plays the file's channels
cyclically snaps the body round at the wrap; a loop that walks in a circle turns on purpose.

``handle_loop_root`` decides per motion (``heading="auto"``) or as told ("keep", "remove"):

- removed: the turn is spread evenly over the cycle, frame t turned back by turn * t / P about its
  own root and every root step turned back by turn * (t + 1/2) / P. That subtracts the constant
  turn / P from the yaw velocity of every frame, the closing step included, so yaw velocity stays
  periodic (the seam is as smooth as before) and the heading at frame P equals frame 0's. Steps in
  the body's own heading frame (how fast and which way it walks relative to itself) are kept, so a
  drifting walk becomes a straight one of the same speed.
- auto keeps a turn of at least ``TURN_KEEP_DEGREES`` per cycle (a circle, a spin: drift of a
  generated walk is 4-18 degrees, a deliberate circle 90+), removes a smaller one. ``in_place``
  always removes it: an in-place cycle tiles by repetition, which a turning cycle cannot.

``cycle_motion`` is the per-cycle displacement and turn recorded in run.json.
"""

from __future__ import annotations

import numpy as np

from motion_loop.errors import UserError

HEADINGS = ("auto", "keep", "remove")
TURN_KEEP_DEGREES = 30.0


def cycle_turn(joints: np.ndarray) -> float:
    """Heading change over one cycle of a loop [P, 22, 3] in radians, unwrapped (a loop may turn more
    than half a turn per cycle): the per-frame changes plus the closing step, as ``cycle_transform``."""
    from motion_loop.humanml import facing_angle
    from motion_loop.render import _wrap

    d_theta = _wrap(np.diff(facing_angle(np.asarray(joints, dtype=np.float64))))
    return float(d_theta.sum() + 0.5 * (d_theta[-1] + d_theta[0]))


def cycle_motion(joints: np.ndarray) -> dict:
    """How one cycle of a loop [P, 22, 3] moves its root: turn (degrees, positive = to the body's
    left), displacement from frame 0's root to the next cycle's (metres, [forward, left] in frame 0's
    heading), its length and its height change (0 for a loop)."""
    from motion_loop.humanml import facing_angle
    from motion_loop.render import cycle_transform

    joints = np.asarray(joints, dtype=np.float64)
    _, origin, end = cycle_transform(joints)
    turn = cycle_turn(joints)
    psi = float(facing_angle(joints[0]))
    step = (end - origin)[[0, 2]]
    forward = np.array([np.sin(psi), np.cos(psi)])
    left = np.array([np.cos(psi), -np.sin(psi)])
    return {"turn_degrees": round(float(np.degrees(turn)), 3),
            "displacement_m": [round(float(step @ forward), 4), round(float(step @ left), 4)],
            "distance_m": round(float(np.hypot(*step)), 4)}


def remove_turn(joints: np.ndarray) -> np.ndarray:
    """The loop [P, 22, 3] with its net heading change per cycle spread out and removed (module docs)."""
    from motion_loop.render import cycle_transform
    from motion_loop.procedural.body import rot_y

    joints = np.asarray(joints, dtype=np.float64)
    period = len(joints)
    _, _, end = cycle_transform(joints)
    turn = cycle_turn(joints)
    root = joints[:, 0].copy()
    root[:, 1] = 0.0
    end = end.copy()
    end[1] = 0.0
    steps = np.diff(np.concatenate([root, end[None]]), axis=0)        # [P, 3], the closing step last
    t = np.arange(period)
    new_steps = np.einsum("tij,tj->ti", rot_y(-turn * (t + 0.5) / period), steps)
    new_root = root[0] + np.concatenate([np.zeros((1, 3)), np.cumsum(new_steps[:-1], axis=0)])
    local = joints - root[:, None]
    return new_root[:, None] + np.einsum("tij,tkj->tki", rot_y(-turn * t / period), local)


def handle_loop_root(joints: np.ndarray, heading: str = "auto", *, in_place: bool = False
                     ) -> tuple[np.ndarray, dict]:
    """(the loop with its root handled, a run.json record: the decision, why, and the per-cycle motion
    before and after)."""
    if heading not in HEADINGS:
        raise UserError(f"unknown --loop_heading {heading!r}: choose one of {', '.join(HEADINGS)}")
    if heading == "keep" and in_place:
        raise UserError("--loop_heading keep with --in_place cannot tile: an in-place cycle that turns "
                        "snaps round at the wrap; drop --in_place or use --loop_heading auto")
    joints = np.asarray(joints, dtype=np.float64)
    before = cycle_motion(joints)
    turn = abs(before["turn_degrees"])
    if heading != "auto":
        keep, why = heading == "keep", "asked for"
    elif in_place:
        keep, why = False, "in place: a cycle that turns cannot tile by repetition"
    elif turn >= TURN_KEEP_DEGREES:
        keep, why = True, f"turns {turn:.0f} deg per cycle (>= {TURN_KEEP_DEGREES:.0f}): a deliberate turn"
    else:
        keep, why = False, f"turns {turn:.1f} deg per cycle (< {TURN_KEEP_DEGREES:.0f}): drift"
    out = joints if keep else remove_turn(joints)
    after = cycle_motion(out)
    if in_place:
        after["displacement_m"], after["distance_m"] = [0.0, 0.0], 0.0
    return out, {"heading": "kept" if keep else "removed", "why": why, "in_place": in_place,
                 "before": before, "after": after}
