"""A rigid skeleton for a motion: one length per bone, and the joints that skeleton reaches.

Generated joints (MDM's and ours) are positions predicted frame by frame, so a bone's length varies
over a motion (by 4 cm in a walk, 9 cm in jumping jacks). An animation rig has fixed bones. The
rigid skeleton takes each bone's median length over the motion and the rest pose of the BVH export
(``export.rest_offsets``); its joints are the forward kinematics of the rotations the BVH export fits
(``export.fit_rotations``: every bone aimed from its already placed joint at the observed child), so
the BVH file's own forward kinematics reproduces them to its printed precision (1e-6 m, 1e-6 deg).
``results.npy`` keeps the model's joints in MDM's format; ``joints_rigid.npy`` beside it holds these,
in the same layout ``[N*R, 22, 3, T]``.
"""

from __future__ import annotations

import numpy as np

JOINTS_RIGID_NPY = "joints_rigid.npy"


def rigid_joints(joints) -> np.ndarray:
    """Joints [T, 22, 3] of the rigid skeleton fitted to ``joints`` [T, 22, 3] (module docs)."""
    from motion_loop.export import check_joints, fit_rotations, forward_kinematics, rest_offsets

    joints = check_joints(joints)
    offsets = rest_offsets(joints)
    return forward_kinematics(offsets, joints[:, 0], fit_rotations(joints, offsets))


def bone_lengths(joints) -> np.ndarray:
    """Bone lengths [T, 21] (joint 1..21 to its parent) of ``joints`` [T, 22, 3]."""
    from motion_loop.skeleton import PARENTS

    joints = np.asarray(joints, dtype=np.float64)
    return np.linalg.norm(joints[:, 1:] - joints[:, list(PARENTS[1:])], axis=-1)


def save_rigid(path, motions, overwrite: bool = False):
    """Write the rigid joints of motions [T_i, 22, 3] (MDM order) as float32 [N*R, 22, 3, T] (shorter
    motions padded by their last frame, as results.npy)."""
    from motion_loop.results import write_atomic

    rigid = [rigid_joints(m).astype(np.float32) for m in motions]
    frames = max(len(r) for r in rigid)
    stacked = np.stack([np.concatenate([r, np.repeat(r[-1:], frames - len(r), 0)]) for r in rigid])
    return write_atomic(path, lambda tmp: np.save(tmp, np.ascontiguousarray(stacked.transpose(0, 2, 3, 1))),
                        overwrite=overwrite)
