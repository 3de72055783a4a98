"""BVH export of joint positions ``[T, 22, 3]`` (HumanML3D skeleton) or ``[T, 21, 3]`` (KIT-ML,
in metres) for Blender and game engines. The skeleton is told by the joint count (:data:`SKELETONS`);
what follows is said for HumanML3D, and KIT's skeleton follows the same rules with its own joints
(pelvis group: left hip, right hip, spine; neck group: left shoulder, right shoulder, head).

A BVH file is a skeleton (HIERARCHY: each joint's OFFSET from its parent in a rest pose) plus, per
frame, the root's position and every joint's local rotation as Euler angles (MOTION). We have only
joint positions, so the rotations come from inverse kinematics against the rest pose; forward
kinematics of the file reproduces the input positions (to float precision when the clip's bones
are rigid, as in HumanML3D data and the procedural motions).

Conventions, chosen so the file imports into Blender with the importer's defaults:

- Axes: HumanML3D's own, y up, the rest pose faces +z with its left at +x. Blender's BVH importer
  defaults to Up Y / Forward -Z, so the character stands on Blender's ground facing the front view.
- Unit: metres (``unit="m"``, the default): Blender imports them at true size with its default
  Scale 1.0. ``unit="cm"`` writes centimetres (x100) for MotionBuilder / Unreal style pipelines;
  rotations do not depend on the unit.
- Rest pose (OFFSETs), a T-pose: legs straight down, feet forward, spine, neck and head straight up,
  arms straight out to the sides. Bone lengths are the clip's own (median over frames, which for
  HumanML3D-skeleton motions are ``skeleton.BONE_LENGTHS``). The pelvis's children (hips, spine1)
  and the chest's (spine3: neck, collars) form rigid but subject-specific triangles in HumanML3D
  (their angles differ between motions), so those offsets are measured from the clip: in a frame
  with the hip (collar) line along +x and the spine (neck) in the xy plane, y up. Fixed offsets
  could not reproduce such a clip. The root's OFFSET is 0 (Blender reads the root's position
  channels as absolute, other readers add the OFFSET: with 0 both agree).
- Channels: the root has ``Xposition Yposition Zposition`` then its rotation, every other joint
  three rotations, in degrees; a channel order "ZXY" means R = Rz(z) Rx(x) Ry(y) acting on column
  vectors (rotate about y first), the BVH reading. Each joint's order puts the axis of its own
  bone (the twist axis) in the middle: ZXY for the pelvis and the arms (collar, shoulder, elbow,
  wrist: bones along x in the T-pose), ZYX for the legs, spine, neck and head (bones along y; the
  feet follow their legs). Euler angles lock when the middle angle reaches +-90 degrees; for a
  swing by theta about an axis across the bone the middle angle is at most
  asin((1 - cos theta) / 2) (30 degrees at a 90 degree bend), so no bend short of 180 degrees
  locks, and the pelvis's ZXY locks only when the pelvis pitches 90 degrees (lying down), never by
  heading. One order for all joints cannot do this: with ZXY everywhere every knee or hip bent 90
  degrees forward is locked, with ZYX every quarter turn of the heading and every arm pointing
  forward.
  ``rotation_order="ZXY"`` (or any other) still writes one order for every joint, for readers that
  assume one (e.g. those that read the root's order only).
- End Sites after the head (10 cm up), the wrists (8 cm along the arm) and the toes (5 cm forward)
  give the last bones a length in Blender; their joints' rotations do not move any joint, so they
  are written as 0.

Rotations (``fit_rotations``): the pelvis's and the chest's rotations fit all their children at
once (least-squares rotation from the rest offsets to the observed child bones, Kabsch), so they
carry the hips' and collars' yaw and roll, not only the spine's swing. Every other joint gets the
minimal rotation (swing) that turns its rest bone onto the observed bone in its parent's frame, so
its twist is a continuous function of the pose (singular only when a bone points exactly opposite
its rest direction in its parent's frame). Each bone aims from the already-solved position of its
joint at the observed child, so errors in noisy (generated) input do not accumulate down a chain.
Euler angles are unwrapped over time (the equivalent triple, and +-360 degrees, closest to the
previous frame), so consecutive frames differ smoothly for engines that interpolate channels.

Loops: BVH has no loop flag. With ``loop=True`` the T frames are one period: frame 0 comes first
and no closing frame repeats it, so a player that wraps from frame T-1 to frame 0 plays it
seamlessly (frame T-1 followed by frame 0). Tools that loop over the closed key range, where the
last key coincides in time with the first (Blender's Cycles F-modifier, Unity's Loop Time, Unreal
looping sequences), want the closing frame: ``closing_frame=True`` appends frame 0 again, moved by
the cycle's root motion (``render.tile_loop``), T + 1 frames for a period of T frames.
``in_place=True`` holds the root's x,z at 0 on every frame (height and heading kept): what game
engines want for a locomotion cycle whose root motion the engine drives.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from motion_loop.errors import UserError
from motion_loop.results import write_atomic
from motion_loop.skeleton import FPS, JOINT_NAMES, KIT_JOINT_NAMES, KIT_PARENTS, NUM_JOINTS, PARENTS

UNITS = {"m": 1.0, "cm": 100.0}

CHILDREN = tuple(tuple(c for c in range(NUM_JOINTS) if PARENTS[c] == j) for j in range(NUM_JOINTS))

# Joints whose rotation fits several children, with (left child, right child, upper child): the
# rest frame puts left minus right along +x and the upper child in the xy plane (y > 0).
RIGID_GROUPS = {0: (1, 2, 3), 9: (13, 14, 12)}

_UP, _DOWN, _FORWARD, _LEFT, _RIGHT = (0, 1, 0), (0, -1, 0), (0, 0, 1), (1, 0, 0), (-1, 0, 0)
# T-pose direction of each single-child bone (joint index -> direction of joint minus parent).
TPOSE_DIRECTIONS = {
    4: _DOWN, 5: _DOWN, 7: _DOWN, 8: _DOWN,            # knees, ankles
    10: _FORWARD, 11: _FORWARD,                        # toes (HumanML3D's "foot" joints)
    6: _UP, 9: _UP, 15: _UP,                           # spine2, spine3, head
    16: _LEFT, 18: _LEFT, 20: _LEFT,                   # left shoulder, elbow, wrist
    17: _RIGHT, 19: _RIGHT, 21: _RIGHT,
}
# Euler order of each joint: its bone's axis in the middle (see module docs).
_ARMS = ("left_collar", "right_collar", "left_shoulder", "right_shoulder", "left_elbow",
         "right_elbow", "left_wrist", "right_wrist")
ROTATION_ORDERS = tuple("ZXY" if name == "pelvis" or name in _ARMS else "ZYX"
                        for name in JOINT_NAMES)
EULER_ORDERS = ("XYZ", "XZY", "YXZ", "YZX", "ZXY", "ZYX")
# End Site offsets in metres (joint -> offset): give the head, hand and toe bones a length.
END_SITES = {15: (0.0, 0.10, 0.0), 20: (0.08, 0.0, 0.0), 21: (-0.08, 0.0, 0.0),
             10: (0.0, 0.0, 0.05), 11: (0.0, 0.0, 0.05)}


def _depth_first(joint: int = 0, children=CHILDREN) -> tuple[int, ...]:
    return (joint,) + tuple(j for child in children[joint] for j in _depth_first(child, children))


# The order joints appear in the HIERARCHY, hence the order of their channels on a MOTION line.
HIERARCHY_ORDER = _depth_first()


@dataclass(frozen=True)
class BvhSkeleton:
    """What the exporter needs to know of a skeleton (see the module docs for the HumanML3D one)."""

    names: tuple[str, ...]
    parents: tuple[int, ...]
    rigid_groups: dict[int, tuple[int, int, int]]
    tpose_directions: dict[int, tuple[int, int, int]]
    rotation_orders: tuple[str, ...]
    end_sites: dict[int, tuple[float, float, float]]
    children: tuple[tuple[int, ...], ...] = field(init=False)
    hierarchy_order: tuple[int, ...] = field(init=False)

    def __post_init__(self):
        n = len(self.parents)
        children = tuple(tuple(c for c in range(n) if self.parents[c] == j) for j in range(n))
        object.__setattr__(self, "children", children)
        object.__setattr__(self, "hierarchy_order", _depth_first(0, children))

    @property
    def num_joints(self) -> int:
        return len(self.parents)


HUMANML_BVH = BvhSkeleton(JOINT_NAMES, PARENTS, RIGID_GROUPS, TPOSE_DIRECTIONS, ROTATION_ORDERS, END_SITES)
# KIT-ML, 21 joints (data frame as HumanML3D's: y up, facing +z, the body's left at +x).
_KIT_ARMS = ("right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow", "left_wrist")
KIT_BVH = BvhSkeleton(
    KIT_JOINT_NAMES, KIT_PARENTS,
    rigid_groups={0: (16, 11, 1), 3: (8, 5, 4)},
    tpose_directions={2: _UP, 3: _UP, 6: _RIGHT, 7: _RIGHT, 9: _LEFT, 10: _LEFT, 12: _DOWN, 13: _DOWN,
                      14: _FORWARD, 15: _FORWARD, 17: _DOWN, 18: _DOWN, 19: _FORWARD, 20: _FORWARD},
    rotation_orders=tuple("ZXY" if name == "pelvis" or name in _KIT_ARMS else "ZYX" for name in KIT_JOINT_NAMES),
    end_sites={4: (0.0, 0.10, 0.0), 7: (-0.08, 0.0, 0.0), 10: (0.08, 0.0, 0.0), 15: (0.0, 0.0, 0.05),
               20: (0.0, 0.0, 0.05)},
)
SKELETONS = {s.num_joints: s for s in (HUMANML_BVH, KIT_BVH)}


def skeleton_of(joints: np.ndarray) -> BvhSkeleton:
    """The skeleton of ``[T, J, 3]`` positions (or ``[J, 3]`` offsets), by its joint count."""
    return SKELETONS[np.shape(joints)[-2]]


# ----------------------------------------------------------------------------------------------
# Input


def check_joints(joints) -> np.ndarray:
    """``joints`` as float64 [T, 22, 3] (or KIT's [T, 21, 3]), or UserError naming what is wrong."""
    joints = np.asarray(joints)
    if joints.ndim != 3 or joints.shape[2] != 3 or joints.shape[1] not in SKELETONS or joints.shape[0] < 1:
        raise UserError(f"joints must be positions [T, {NUM_JOINTS}, 3] with T >= 1, got shape "
                        f"{tuple(joints.shape)}; pass HumanML3D joints (frames, joints, xyz), or KIT's 21")
    if not np.issubdtype(joints.dtype, np.number) or np.iscomplexobj(joints):
        raise UserError(f"joints must be real numbers, got dtype {joints.dtype}")
    joints = joints.astype(np.float64)
    if not np.all(np.isfinite(joints)):
        raise UserError("joints contain NaN or inf values; check the decoded motion before export")
    return joints


# ----------------------------------------------------------------------------------------------
# Rotation helpers (batched over leading axes, column vectors: v' = R @ v)


def _normalized(v: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), eps)


def _frame(across: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Orthonormal frames [..., 3, 3], columns x = across, y = up made orthogonal, z = x cross y."""
    x = _normalized(across)
    y = _normalized(up - (up * x).sum(-1, keepdims=True) * x)
    return np.stack([x, y, np.cross(x, y)], axis=-1)


def swing(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The minimal rotation taking unit vectors u to v (about u x v): [..., 3, 3].

    Rodrigues with k = u x v, c = u . v: R = I + [k]x + [k]x^2 / (1 + c). For v = -u any half turn
    about an axis perpendicular to u does; we take the one about u x e where e is the basis axis
    least aligned with u, so the choice is deterministic.
    """
    u, v = np.broadcast_arrays(_normalized(u), _normalized(v))
    k = np.cross(u, v)
    c = (u * v).sum(-1)
    kx = np.zeros(k.shape + (3,))
    kx[..., 0, 1], kx[..., 0, 2], kx[..., 1, 2] = -k[..., 2], k[..., 1], -k[..., 0]
    kx[..., 1, 0], kx[..., 2, 0], kx[..., 2, 1] = k[..., 2], -k[..., 1], k[..., 0]
    opposite = c < -1 + 1e-9
    scale = 1.0 / np.where(opposite, 1.0, 1.0 + c)
    rot = np.eye(3) + kx + kx @ kx * scale[..., None, None]
    if np.any(opposite):
        uo = u[opposite]
        least = np.eye(3)[np.argmin(np.abs(uo), axis=-1)]
        axis = _normalized(np.cross(uo, least))
        rot[opposite] = 2 * axis[..., :, None] * axis[..., None, :] - np.eye(3)
    return rot


def kabsch(rest: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The rotation R [..., 3, 3] minimising sum_i |R rest_i - target_i|^2 (rest [k, 3], target
    [..., k, 3]): SVD of H = sum_i rest_i target_i^T = U S V^T, R = V diag(1, 1, det(V U^T)) U^T."""
    h = np.einsum("ki,...kj->...ij", rest, target)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.swapaxes(-1, -2) @ u.swapaxes(-1, -2)))
    d = np.where(d == 0, 1.0, d)
    fix = np.ones(h.shape[:-2] + (3,))
    fix[..., 2] = d
    return vt.swapaxes(-1, -2) @ (fix[..., :, None] * u.swapaxes(-1, -2))


_AXES = {"X": 0, "Y": 1, "Z": 2}


def _axis_rotation(axis: int, angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    rot = np.zeros(np.shape(angle) + (3, 3))
    p, q = (axis + 1) % 3, (axis + 2) % 3
    rot[..., axis, axis] = 1.0
    rot[..., p, p], rot[..., q, q] = c, c
    rot[..., q, p], rot[..., p, q] = s, -s
    return rot


def matrices_from_euler(angles: np.ndarray, order: str) -> np.ndarray:
    """Rotations [..., 3, 3] from Euler angles [..., 3] in radians, listed in ``order`` (e.g.
    "ZXY": angles (z, x, y), R = Rz(z) Rx(x) Ry(y))."""
    axes = [_AXES[a] for a in order]
    return (_axis_rotation(axes[0], angles[..., 0]) @ _axis_rotation(axes[1], angles[..., 1])
            @ _axis_rotation(axes[2], angles[..., 2]))


def euler_from_matrices(rot: np.ndarray, order: str) -> np.ndarray:
    """Euler angles [T, ..., 3] (radians, listed in ``order``) of rotations [T, ..., 3, 3],
    continuous over the first axis (time).

    For R = R_i(a) R_j(b) R_k(c) with parity s = +1 when (i, j, k) is cyclic: b = asin(s R_ik),
    c = atan2(-s R_ij, R_ii), and a is read from the remainder R R_k(-c) R_j(-b) = R_i(a), so the
    angles reproduce R exactly even near gimbal lock (|b| = 90 degrees, where c is kept from the
    previous frame). (a + pi, pi - b, c + pi) is the same rotation; per frame we take whichever
    triple, shifted by multiples of 2 pi, lies closest to the previous frame's angles.
    """
    i, j, k = (_AXES[a] for a in order)
    s = 1.0 if (i, j, k) in ((0, 1, 2), (1, 2, 0), (2, 0, 1)) else -1.0
    p, q = (i + 1) % 3, (i + 2) % 3
    rot = np.asarray(rot, dtype=np.float64)
    out = np.empty(rot.shape[:-2] + (3,))
    prev = None
    for t in range(rot.shape[0]):
        r = rot[t]
        b = np.arcsin(np.clip(s * r[..., i, k], -1.0, 1.0))
        c = np.arctan2(-s * r[..., i, j], r[..., i, i])
        locked = np.cos(b) < 1e-7
        if np.any(locked):
            c = np.where(locked, 0.0 if prev is None else prev[..., 2], c)
        rest = r @ _axis_rotation(k, -c) @ _axis_rotation(j, -b)
        a = np.arctan2(rest[..., q, p], rest[..., p, p])
        first = np.stack([a, b, c], -1)
        if prev is None:
            out[t] = prev = first
            continue
        second = np.stack([a + np.pi, np.pi - b, c + np.pi], -1)
        first, second = (x + 2 * np.pi * np.round((prev - x) / (2 * np.pi))
                         for x in (first, second))
        closer = ((second - prev) ** 2).sum(-1) < ((first - prev) ** 2).sum(-1)
        out[t] = prev = np.where(closer[..., None], second, first)
    return out


# ----------------------------------------------------------------------------------------------
# Skeleton and inverse kinematics


def rest_offsets(joints: np.ndarray) -> np.ndarray:
    """T-pose OFFSETs [22, 3] in metres for the clip ``joints`` [T, 22, 3] (see module docs).

    Bone lengths are the clip's medians; the hips and spine1 (neck and collars) are placed where
    the clip has them relative to the pelvis (spine3), averaged over frames in the rest frame of
    each group (left minus right child along +x, upper child in the xy plane).
    """
    joints = check_joints(joints)
    sk = skeleton_of(joints)
    parents = np.array(sk.parents)
    lengths = np.median(np.linalg.norm(joints[:, 1:] - joints[:, parents[1:]], axis=-1), axis=0)
    lengths = np.concatenate([[0.0], lengths])
    short = [sk.names[b] for b in range(1, sk.num_joints) if lengths[b] < 1e-6]
    if short:
        raise UserError(f"bones ending at {', '.join(short)} have zero length in this clip; pass "
                        f"joint positions of a real skeleton (HumanML3D's 22 joints in metres)")
    offsets = np.zeros((sk.num_joints, 3))
    for joint, direction in sk.tpose_directions.items():
        offsets[joint] = np.asarray(direction, dtype=np.float64) * lengths[joint]
    for parent, (left, right, upper) in sk.rigid_groups.items():
        frames = _frame(joints[:, left] - joints[:, right], joints[:, upper] - joints[:, parent])
        for child in (left, right, upper):
            local = np.einsum("tji,tj->ti", frames, joints[:, child] - joints[:, parent])
            offsets[child] = _normalized(local.mean(0)) * lengths[child]
    return offsets


def fit_rotations(joints: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Local rotations [T, 22, 3, 3] whose forward kinematics from ``offsets`` (metres) and the
    root positions ``joints[:, 0]`` best reproduce ``joints`` [T, 22, 3] (see module docs)."""
    joints = check_joints(joints)
    sk = skeleton_of(joints)
    frames = len(joints)
    local = np.tile(np.eye(3), (frames, sk.num_joints, 1, 1))
    world = np.empty_like(local)
    solved = np.empty_like(joints)       # positions as forward kinematics will place them
    solved[:, 0] = joints[:, 0]
    for joint in sk.hierarchy_order:
        parent_world = world[:, sk.parents[joint]] if joint else np.broadcast_to(np.eye(3),
                                                                                (frames, 3, 3))
        children = sk.children[joint]
        # Observed child bones in the parent's frame: W_parent^T (child - joint).
        target = np.einsum("tji,tkj->tki", parent_world,
                           joints[:, list(children)] - solved[:, joint, None])
        if joint in sk.rigid_groups:
            local[:, joint] = kabsch(offsets[list(children)], target)
        elif len(children) == 1:
            local[:, joint] = swing(offsets[children[0]], target[:, 0])
        world[:, joint] = parent_world @ local[:, joint]
        for child in children:
            solved[:, child] = solved[:, joint] + world[:, joint] @ offsets[child]
    return local


def forward_kinematics(offsets: np.ndarray, root: np.ndarray, local: np.ndarray) -> np.ndarray:
    """Joint positions [T, 22, 3] from OFFSETs [22, 3], root positions [T, 3] and local rotations
    [T, 22, 3, 3]: p_j = p_parent + W_parent offset_j, W_j = W_parent L_j."""
    sk = skeleton_of(offsets)
    world = np.empty_like(local)
    positions = np.empty(local.shape[:2] + (3,))
    for joint in sk.hierarchy_order:
        if joint == 0:
            world[:, 0], positions[:, 0] = local[:, 0], root + offsets[0]
            continue
        parent = sk.parents[joint]
        world[:, joint] = world[:, parent] @ local[:, joint]
        positions[:, joint] = positions[:, parent] + world[:, parent] @ offsets[joint]
    return positions


# ----------------------------------------------------------------------------------------------
# BVH


def bvh_frames(joints, *, loop: bool = False, in_place: bool = False,
               closing_frame: bool = False) -> np.ndarray:
    """The frames [F, 22, 3] (metres) a BVH holds for ``joints``: in place and/or closed loop."""
    joints = check_joints(joints)
    if closing_frame and not loop:
        raise UserError("closing_frame=True needs loop=True: only a loop has a frame to repeat")
    if closing_frame:
        from motion_loop.render import tile_loop

        return tile_loop(joints, 2, in_place=in_place)[: len(joints) + 1]
    if in_place:
        joints = joints.copy()
        joints[..., [0, 2]] -= joints[:, :1, [0, 2]]
    return joints


def joint_orders(rotation_order: str | None = None, skeleton: BvhSkeleton = HUMANML_BVH) -> tuple[str, ...]:
    """Each joint's Euler channel order: the skeleton's own (ROTATION_ORDERS for HumanML3D), or
    ``rotation_order`` for all joints."""
    if rotation_order is None:
        return skeleton.rotation_orders
    order = str(rotation_order).upper()
    if order not in EULER_ORDERS:
        raise UserError(f"unknown rotation order {rotation_order!r}; choose one of "
                        f"{', '.join(EULER_ORDERS)} or None (per-joint orders)")
    return (order,) * skeleton.num_joints


def bvh_channels(joints, *, loop: bool = False, in_place: bool = False,
                 closing_frame: bool = False, unit: str = "m",
                 rotation_order: str | None = None):
    """What a BVH file holds for ``joints`` [T, 22, 3] (metres, y up), joints indexed as
    skeleton.JOINT_NAMES: (offsets [22, 3] in ``unit``, root positions [F, 3] in ``unit``, Euler
    angles [F, 22, 3] in degrees, each joint's listed in its order from ``joint_orders``)."""
    if unit not in UNITS:
        raise UserError(f"unknown BVH unit {unit!r}; choose one of {', '.join(UNITS)}")
    frames = bvh_frames(joints, loop=loop, in_place=in_place, closing_frame=closing_frame)
    sk = skeleton_of(frames)
    orders = joint_orders(rotation_order, sk)
    offsets = rest_offsets(joints)  # the cycle's own bones: a closing frame does not change them (rigid.py)
    local = fit_rotations(frames, offsets)
    euler = np.zeros(local.shape[:2] + (3,))
    for order in set(orders):
        chosen = [j for j in range(sk.num_joints) if orders[j] == order and sk.children[j]]
        euler[:, chosen] = np.degrees(euler_from_matrices(local[:, chosen], order))
    scale = UNITS[unit]
    return offsets * scale, frames[:, 0] * scale, euler   # end joints move nothing: left at 0


def _number(value: float) -> str:
    text = f"{value:.6f}"
    return "0.000000" if text == "-0.000000" else text


def bvh_text(joints, fps: float = FPS, *, loop: bool = False, in_place: bool = False,
             closing_frame: bool = False, unit: str = "m",
             rotation_order: str | None = None) -> str:
    """The BVH file for ``joints`` [T, 22, 3] (metres, y up, ``fps`` frames per second); see
    ``write_bvh`` for the options."""
    if isinstance(fps, bool) or not isinstance(fps, (int, float, np.number)) \
            or not np.isfinite(fps) or fps <= 0:
        raise UserError(f"fps must be a positive number, got {fps!r}")
    offsets, root, euler = bvh_channels(joints, loop=loop, in_place=in_place,
                                        closing_frame=closing_frame, unit=unit,
                                        rotation_order=rotation_order)
    sk = skeleton_of(offsets)
    orders = joint_orders(rotation_order, sk)
    lines = ["HIERARCHY"]

    def write_joint(joint: int, depth: int) -> None:
        pad = "\t" * depth
        rotations = " ".join(f"{axis}rotation" for axis in orders[joint])
        lines.append(f"{pad}{'ROOT' if joint == 0 else 'JOINT'} {sk.names[joint]}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}\tOFFSET " + " ".join(_number(v) for v in offsets[joint]))
        if joint == 0:
            lines.append(f"{pad}\tCHANNELS 6 Xposition Yposition Zposition {rotations}")
        else:
            lines.append(f"{pad}\tCHANNELS 3 {rotations}")
        for child in sk.children[joint]:
            write_joint(child, depth + 1)
        if joint in sk.end_sites:
            end = np.asarray(sk.end_sites[joint]) * UNITS[unit]
            lines.extend([f"{pad}\tEnd Site", f"{pad}\t{{",
                          f"{pad}\t\tOFFSET " + " ".join(_number(v) for v in end), f"{pad}\t}}"])
        lines.append(f"{pad}}}")

    write_joint(0, 0)
    lines.extend(["MOTION", f"Frames: {len(root)}", f"Frame Time: {1.0 / fps:.8f}"])
    values = np.concatenate([root, euler[:, list(sk.hierarchy_order)].reshape(len(root), -1)], 1)
    lines.extend(" ".join(_number(v) for v in row) for row in values)
    return "\n".join(lines) + "\n"


def write_bvh(path: str | os.PathLike, joints, fps: float = FPS, *, loop: bool = False,
              in_place: bool = False, closing_frame: bool = False, unit: str = "m",
              rotation_order: str | None = None, overwrite: bool = False) -> Path:
    """Write ``joints`` [T, 22, 3] (metres, y up) as a BVH file at ``path``; returns the path.

    loop: the clip is one period of a loop (frame T-1 is followed by frame 0); frames are written
        as they are, frame 0 first, no closing frame (see module docs).
    closing_frame: with ``loop``, also append frame 0 carried on by the cycle's root motion, for
        tools that loop over the closed key range (Blender Cycles modifier, Unity, Unreal).
    in_place: root x,z held at 0 on every frame (height and heading kept).
    unit: "m" (Blender's default import scale) or "cm".
    rotation_order: None for per-joint Euler orders clear of gimbal lock (ZXY pelvis and arms,
        ZYX legs, spine and head), or one order such as "ZXY" for every joint.
    The file is written to a temporary name in the same folder and moved into place; an existing
    file is only replaced with ``overwrite=True``.
    """
    text = bvh_text(joints, fps, loop=loop, in_place=in_place, closing_frame=closing_frame,
                    unit=unit, rotation_order=rotation_order)
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="ascii"),
                        overwrite=overwrite)
