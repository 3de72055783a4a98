"""The body: a natural rest pose on HumanML3D's bone lengths, rotations, forward kinematics, leg IK.

Every pose is built from joint rotations applied to the rest skeleton (forward kinematics) except
the legs, which are placed by analytic two-bone IK so that a planted foot stays exactly where it is.
Both keep every bone at its ``skeleton.BONE_LENGTHS`` length. Conventions (HumanML3D): y up, the
body faces +z at rest, its left side is +x, metres. All functions are vectorised over frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from motion_loop.skeleton import BONE_LENGTHS, NUM_JOINTS, PARENTS

X, Y, Z = np.eye(3)

# Toe joint ("foot", the ball of the foot) relative to the ankle of a flat foot: 5 cm lower, forward.
_FOOT_DIRECTION = np.array([0.0, -0.05, 0.134])
# HumanML3D's left leg is 1 cm longer than its right: the left hip sits that much higher, so both
# legs reach the floor from a level pelvis (mean drop 7.5 cm below the pelvis joint).
_LEG_DIFFERENCE = (BONE_LENGTHS[4] + BONE_LENGTHS[7]) - (BONE_LENGTHS[5] + BONE_LENGTHS[8])
HIP_DROP = {"left": 0.075 - _LEG_DIFFERENCE / 2, "right": 0.075 + _LEG_DIFFERENCE / 2}


def _unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def _hip_offset(length: float, side: str) -> np.ndarray:
    sign = 1.0 if side == "left" else -1.0
    return np.array([sign * np.sqrt(length**2 - HIP_DROP[side] ** 2), -HIP_DROP[side], 0.0])


_REST_DIRECTIONS = {
    3: (0.0, 1.0, -0.10),    # spine1: lumbar curve leans slightly back
    6: (0.0, 1.0, 0.08),     # spine2
    9: (0.0, 1.0, 0.10),     # spine3 (chest)
    12: (0.0, 1.0, -0.08),   # neck
    15: (0.0, 0.87, 0.50),   # head joint sits forward of the neck
    13: (0.45, 0.88, -0.08),  # collars rise to the shoulders
    14: (-0.45, 0.88, -0.08),
    16: (0.96, 0.22, -0.08),  # shoulders
    17: (-0.96, 0.22, -0.08),
    4: (0.0, -1.0, 0.0), 5: (0.0, -1.0, 0.0),      # legs straight down (placed by IK anyway)
    7: (0.0, -1.0, 0.0), 8: (0.0, -1.0, 0.0),
    10: _FOOT_DIRECTION, 11: _FOOT_DIRECTION,
    18: (0.0, -1.0, 0.0), 19: (0.0, -1.0, 0.0),    # arms hang straight down at rest
    20: (0.0, -1.0, 0.0), 21: (0.0, -1.0, 0.0),
}


def _rest_offsets() -> np.ndarray:
    offsets = np.zeros((NUM_JOINTS, 3))
    offsets[1] = _hip_offset(BONE_LENGTHS[1], "left")
    offsets[2] = _hip_offset(BONE_LENGTHS[2], "right")
    for joint, direction in _REST_DIRECTIONS.items():
        offsets[joint] = BONE_LENGTHS[joint] * _unit(direction)
    return offsets


REST_OFFSETS = _rest_offsets()  # [22, 3]: joint minus parent at rest
THIGH = {"left": BONE_LENGTHS[4], "right": BONE_LENGTHS[5]}
SHIN = {"left": BONE_LENGTHS[7], "right": BONE_LENGTHS[8]}
LEG = {side: THIGH[side] + SHIN[side] for side in THIGH}
FOOT_OFFSET = {"left": REST_OFFSETS[10], "right": REST_OFFSETS[11]}  # ankle -> toe, flat foot facing +z
ANKLE_HEIGHT = {side: -FOOT_OFFSET[side][1] for side in FOOT_OFFSET}  # ankle above floor, flat foot
HEEL_BACK = 0.05  # the heel's floor contact lies this far behind the ankle
SIDE_SIGN = {"left": 1.0, "right": -1.0}  # the body's left is +x
LEG_JOINTS = {"left": (1, 4, 7, 10), "right": (2, 5, 8, 11)}  # hip, knee, ankle, toe
ARM_JOINTS = {"left": (13, 16, 18, 20), "right": (14, 17, 19, 21)}  # collar, shoulder, elbow, wrist
SIDES = ("left", "right")


# --- rotations ---------------------------------------------------------------------------------

def rot_x(angle):
    """Rotation about +x (the body's left): positive turns up-pointing bones forward (+z)."""
    a = np.asarray(angle, dtype=np.float64)
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], -2)


def rot_y(angle):
    """Rotation about +y (up): positive turns the body to its left (+z towards +x)."""
    a = np.asarray(angle, dtype=np.float64)
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def rot_z(angle):
    """Rotation about +z (forward): positive raises the left side (+x towards +y)."""
    a = np.asarray(angle, dtype=np.float64)
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


def normalize(v, axis=-1):
    return v / np.linalg.norm(v, axis=axis, keepdims=True)


def yaw_vector(heading):
    """Horizontal unit vector the body faces at this heading (0 is +z, positive turns left)."""
    h = np.asarray(heading, dtype=np.float64)
    return np.stack([np.sin(h), np.zeros_like(h), np.cos(h)], -1)


def apply(rot, v):
    """rot [..., 3, 3] applied to v [..., 3]."""
    return np.einsum("...ij,...j->...i", rot, v)


def arm_rotation(direction, bend):
    """Rotation taking the rest arm (hanging down, elbow bending forward) to an upper arm along
    ``direction`` whose elbow bends towards ``bend`` (its part orthogonal to the arm is used)."""
    d = normalize(np.asarray(direction, dtype=np.float64))
    b = np.asarray(bend, dtype=np.float64)
    b = normalize(b - np.sum(b * d, -1, keepdims=True) * d)
    x = np.cross(b, d)
    target = np.stack([d, x, b], -1)                     # columns: arm, flexion axis, bend
    rest = np.stack([-Y, X, Z], -1)
    return target @ rest.T


# --- pose and assembly -------------------------------------------------------------------------

@dataclass
class Foot:
    """Where one foot goes: the ankle target, the foot's orientation, and the knee's pole."""

    ankle: np.ndarray          # [T, 3] world
    rotation: np.ndarray       # [T, 3, 3] world rotation of the flat rest foot (yaw @ pitch)
    pole: np.ndarray | None = None  # [T, 3] direction the knee points to (default: forward, a bit up)


@dataclass
class Pose:
    """A motion before assembly: root path, local joint rotations, arm aims and foot targets."""

    root: np.ndarray                       # [T, 3] pelvis position
    local: np.ndarray                      # [T, 22, 3, 3] local rotations (pelvis: global)
    feet: dict[str, Foot] = field(default_factory=dict)

    @classmethod
    def standing(cls, n: int) -> "Pose":
        return cls(root=np.zeros((n, 3)), local=np.broadcast_to(np.eye(3), (n, NUM_JOINTS, 3, 3)).copy())

    def set_arm(self, side: str, direction, bend, flex, collar=None):
        """Aim one arm in the chest frame: upper arm along ``direction``, elbow bent by ``flex``
        radians towards ``bend``; ``collar`` is an optional local collar rotation (shrug)."""
        c, s, e, _ = ARM_JOINTS[side]
        if collar is not None:
            self.local[:, c] = collar
        self.local[:, s] = np.swapaxes(self.local[:, c], -1, -2) @ arm_rotation(direction, bend)
        self.local[:, e] = rot_x(-np.asarray(flex, dtype=np.float64))


def forward_kinematics(root, local):
    """Joint positions [T, 22, 3] and global rotations [T, 22, 3, 3]; a joint's rotation turns the
    bones to its children, so joint j sits at parent + G_parent @ REST_OFFSETS[j]."""
    n = root.shape[0]
    glob = np.empty((n, NUM_JOINTS, 3, 3))
    pos = np.empty((n, NUM_JOINTS, 3))
    glob[:, 0], pos[:, 0] = local[:, 0], root
    for j in range(1, NUM_JOINTS):
        p = PARENTS[j]
        pos[:, j] = pos[:, p] + glob[:, p] @ REST_OFFSETS[j]
        glob[:, j] = glob[:, p] @ local[:, j]
    return pos, glob


def two_bone_ik(hip, target, upper, lower, pole, max_reach=0.9995):
    """Knee and ankle for a leg from ``hip`` towards ``target`` with the knee bending towards
    ``pole`` (so it never hyperextends). Unreachable targets are pulled in along the hip-target
    line; reachable ones are met exactly. Both bones keep their lengths."""
    d = target - hip
    dist = np.linalg.norm(d, axis=-1, keepdims=True)
    n = d / dist
    dist = np.clip(dist, abs(upper - lower) + 1e-4, (upper + lower) * max_reach)
    cos_a = (upper**2 + dist**2 - lower**2) / (2 * upper * dist)
    sin_a = np.sqrt(np.clip(1 - cos_a**2, 0, None))
    m = pole - np.sum(pole * n, -1, keepdims=True) * n
    m = normalize(m)
    knee = hip + upper * (cos_a * n + sin_a * m)
    ankle = knee + lower * normalize(hip + dist * n - knee)
    return knee, ankle


def default_pole(pelvis_rot, foot_rot):
    """Knees point between the pelvis' and the foot's forward directions, tipped up slightly so a
    leg held forward still has a well-defined knee direction."""
    fwd = normalize(apply(pelvis_rot, Z) * np.array([1, 0, 1]) + apply(foot_rot, Z) * np.array([1, 0, 1]))
    return fwd + 0.3 * Y


def assemble(pose: Pose) -> np.ndarray:
    """Joint positions [T, 22, 3] (float64): FK for the body, two-bone IK for legs with foot targets."""
    pos, glob = forward_kinematics(pose.root, pose.local)
    for side, foot in pose.feet.items():
        hip, knee, ankle, toe = LEG_JOINTS[side]
        pole = foot.pole if foot.pole is not None else default_pole(glob[:, 0], foot.rotation)
        pos[:, knee], pos[:, ankle] = two_bone_ik(pos[:, hip], foot.ankle, THIGH[side], SHIN[side], pole)
        pos[:, toe] = pos[:, ankle] + apply(foot.rotation, FOOT_OFFSET[side])
    return pos


def hip_positions(pose: Pose) -> dict[str, np.ndarray]:
    """World hip joints of a pose (cheap: pelvis rotation and root only)."""
    return {side: pose.root + apply(pose.local[:, 0], REST_OFFSETS[LEG_JOINTS[side][0]]) for side in SIDES}


def height_headroom(pose: Pose, mask=None, reach=0.998) -> float:
    """Largest upward shift of the whole root path that keeps every foot target (where ``mask``
    [T] is true) within ``reach`` of the full leg length. Negative means the root must go down."""
    hips = hip_positions(pose)
    room = np.inf
    for side, foot in pose.feet.items():
        d = foot.ankle - hips[side]
        horiz2 = d[:, 0] ** 2 + d[:, 2] ** 2
        r = reach * LEG[side]
        allowed = foot.ankle[:, 1] + np.sqrt(np.clip(r**2 - horiz2, 0, None)) - hips[side][:, 1]
        if mask is not None:
            allowed = allowed[mask[side] if isinstance(mask, dict) else mask]
        if allowed.size:
            room = min(room, float(allowed.min()))
    return room


def shoulder_in_chest(side: str, collar=None) -> np.ndarray:
    """Shoulder joint relative to the chest joint (spine3), in the chest frame."""
    c, s, _, _ = ARM_JOINTS[side]
    off = REST_OFFSETS[s] if collar is None else apply(collar, REST_OFFSETS[s])
    return REST_OFFSETS[c] + off


def arm_ik(side: str, hand, elbow_pole, collar=None, max_reach=0.995):
    """Upper-arm direction, bend direction and elbow flexion that put the wrist at ``hand``
    (chest frame, [T, 3]) with the elbow towards ``elbow_pole``; feed them to Pose.set_arm."""
    _, s, e, w = ARM_JOINTS[side]
    upper, lower = BONE_LENGTHS[e], BONE_LENGTHS[w]
    shoulder = shoulder_in_chest(side, collar)
    elbow, wrist = two_bone_ik(shoulder, np.asarray(hand, dtype=np.float64), upper, lower,
                               np.asarray(elbow_pole, dtype=np.float64), max_reach)
    d = normalize(elbow - shoulder)
    f = normalize(wrist - elbow)
    flex = np.arccos(np.clip(np.sum(d * f, -1), -1.0, 1.0))
    # The forearm bends away from the elbow's pole; that also fixes the frame of a straight arm.
    bend = (f - d) - 1e-3 * normalize(np.asarray(elbow_pole, dtype=np.float64))
    return d, bend, flex
