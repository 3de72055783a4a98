"""The rigid skeleton (motion_loop/rigid.py): fixed bones, and the BVH reproduces its joints."""

import numpy as np

from motion_loop import procedural
from motion_loop.export import bvh_text
from motion_loop.rigid import JOINTS_RIGID_NPY, bone_lengths, rigid_joints, save_rigid
from test_export import reconstruct


def wobbly_walk(frames=80, wobble=0.02):
    """A procedural walk whose joints are moved by up to ~wobble m per frame (bone lengths vary as
    in generated motion)."""
    joints = procedural.generate("walk", frames, np.random.default_rng(0), n_captions=0).joints
    noise = np.random.default_rng(1).normal(0, wobble / 2, joints.shape)
    return joints + noise


def test_rigid_bones_are_the_medians_and_fixed():
    joints = wobbly_walk()
    assert np.ptp(bone_lengths(joints), axis=0).max() > 0.04       # wobbly input: > 4 cm variation
    rigid = rigid_joints(joints)
    lengths = bone_lengths(rigid)
    np.testing.assert_allclose(np.ptp(lengths, axis=0), 0, atol=1e-9)
    np.testing.assert_allclose(lengths[0], np.median(bone_lengths(joints), axis=0), atol=1e-9)
    # still the same motion: joints move by about the noise, not more
    assert np.linalg.norm(rigid - joints, axis=-1).mean() < 0.03


def test_bvh_forward_kinematics_reproduces_rigid_joints_under_a_millimetre():
    joints = wobbly_walk()
    rigid = rigid_joints(joints)
    for kwargs in ({}, {"loop": True, "closing_frame": True}):
        positions, _ = reconstruct(bvh_text(joints, **kwargs))
        error = np.linalg.norm(positions[:len(rigid)] - rigid, axis=-1)
        assert error.max() < 1e-3 and error.mean() < 1e-4, error.max()


def test_save_rigid_uses_results_layout(tmp_path):
    motions = [wobbly_walk(40), wobbly_walk(30)]
    path = save_rigid(tmp_path / JOINTS_RIGID_NPY, motions)
    saved = np.load(path)
    assert saved.shape == (2, 22, 3, 40) and saved.dtype == np.float32
    np.testing.assert_allclose(saved[1].transpose(2, 0, 1)[:30], rigid_joints(motions[1]), atol=1e-5)
    np.testing.assert_array_equal(saved[1, ..., 35], saved[1, ..., 29])   # padded by the last frame
