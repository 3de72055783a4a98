"""Root handling of loops (motion_loop/loop_root.py): a loop tiles in heading and position."""

import numpy as np
import pytest

from motion_loop.errors import UserError
from motion_loop.export import bvh_text
from motion_loop.humanml import facing_angle
from motion_loop.loop_root import TURN_KEEP_DEGREES, cycle_motion, cycle_turn, handle_loop_root, remove_turn
from motion_loop.metrics import loop_seam_report
from motion_loop.render import synthetic_walk, tile_loop
from test_export import parse_bvh, reconstruct

PERIOD = 120


def drifting_walk():
    return synthetic_walk(PERIOD, turn_rate=np.radians(12.0) / PERIOD)   # 12 degrees per cycle


def circle_walk():
    return synthetic_walk(PERIOD, turn_rate=np.radians(200.0) / PERIOD)  # a deliberate circle


def wrap_steps(tiled):
    """Per-frame heading steps (radians) and root x,z steps (m) of a tiled loop; index PERIOD-1 is the wrap."""
    heading = np.unwrap(facing_angle(tiled))
    return np.diff(heading), np.linalg.norm(np.diff(tiled[:, 0, [0, 2]], axis=0), axis=-1)


def test_cycle_motion_measures_turn_and_travel():
    motion = cycle_motion(drifting_walk())
    assert motion["turn_degrees"] == pytest.approx(12.0, abs=0.01)
    assert motion["distance_m"] == pytest.approx(0.06 * PERIOD, rel=0.01)   # synthetic_walk: 6 cm a frame
    assert cycle_turn(circle_walk()) == pytest.approx(np.radians(200.0), abs=1e-4)  # unwrapped past 180


def test_auto_removes_drift_and_the_loop_tiles_facing_one_way():
    joints = drifting_walk()
    out, record = handle_loop_root(joints)
    assert record["heading"] == "removed" and record["before"]["turn_degrees"] == pytest.approx(12.0, abs=0.01)
    assert abs(record["after"]["turn_degrees"]) < 1e-6
    # same speed, now straight ahead
    assert record["after"]["distance_m"] == pytest.approx(0.06 * PERIOD, rel=1e-3)
    assert abs(record["after"]["displacement_m"][1]) < 1e-6
    # root motion: across the wrap the heading and the root continue like any other frame
    d_heading, d_root = wrap_steps(tile_loop(out, 3))
    assert abs(d_heading[PERIOD - 1]) < 1e-5 and np.abs(d_heading).max() < 1e-5   # radians
    assert d_root[PERIOD - 1] == pytest.approx(np.median(d_root), rel=0.02)
    # the same wrap before: the heading jumps by the whole turn when channels repeat as they are
    before = np.concatenate([joints, joints])
    assert abs(np.diff(np.unwrap(facing_angle(before)))[PERIOD - 1]) == pytest.approx(np.radians(12.0) * (PERIOD - 1) / PERIOD, abs=1e-4)


def test_removal_keeps_yaw_velocity_periodic_and_the_seam_as_good():
    joints = drifting_walk()
    out = remove_turn(joints)
    before, after = np.diff(np.unwrap(facing_angle(joints))), np.diff(np.unwrap(facing_angle(out)))
    # every frame's yaw velocity drops by the same turn / period: still periodic, nothing concentrated
    np.testing.assert_allclose(after, before - cycle_turn(joints) / PERIOD, atol=1e-7)  # float32 input
    # the body-relative pose of every frame is unchanged (a rotation about the root only)
    local = lambda j: j - j[:, :1] * np.array([1, 0, 1])
    turned = cycle_turn(joints) * np.arange(PERIOD) / PERIOD
    np.testing.assert_allclose(np.linalg.norm(local(out), axis=-1), np.linalg.norm(local(joints), axis=-1), atol=1e-6)
    np.testing.assert_allclose(facing_angle(out), facing_angle(joints) - turned, atol=1e-6)
    for name in ("velocity_ratio", "acceleration_ratio", "jerk_ratio"):
        assert getattr(loop_seam_report(out), name) <= 1.01 * getattr(loop_seam_report(joints), name)


def test_auto_keeps_a_deliberate_turn_and_it_continues_across_the_wrap():
    joints = circle_walk()
    out, record = handle_loop_root(joints)
    assert record["heading"] == "kept" and abs(record["before"]["turn_degrees"]) >= TURN_KEEP_DEGREES
    np.testing.assert_array_equal(out, joints)
    d_heading, d_root = wrap_steps(tile_loop(out, 3))
    assert d_heading[PERIOD - 1] == pytest.approx(np.median(d_heading), rel=0.01)
    assert d_root[PERIOD - 1] == pytest.approx(np.median(d_root), rel=0.02)


@pytest.mark.parametrize("make", [drifting_walk, circle_walk])
def test_in_place_removes_turn_and_travel(make):
    out, record = handle_loop_root(make(), in_place=True)
    assert record["heading"] == "removed" and record["after"]["distance_m"] == 0.0
    tiled = tile_loop(out, 3, in_place=True)
    d_heading, d_root = wrap_steps(tiled)
    assert np.abs(d_root).max() == 0.0                                  # the root never moves in x, z
    assert abs(d_heading[PERIOD - 1] - np.median(d_heading)) < 1e-6      # heading continues exactly


def test_explicit_choices_and_refusals():
    joints = circle_walk()
    assert handle_loop_root(joints, "remove")[1]["heading"] == "removed"
    assert handle_loop_root(drifting_walk(), "keep")[1]["heading"] == "kept"
    with pytest.raises(UserError, match="in_place"):
        handle_loop_root(joints, "keep", in_place=True)
    with pytest.raises(UserError, match="auto, keep, remove"):
        handle_loop_root(joints, "sideways")


@pytest.mark.parametrize("in_place", [False, True])
def test_closing_frame_repeats_the_first_pose_in_the_bvh(in_place):
    out, _ = handle_loop_root(drifting_walk(), in_place=in_place)
    plain, closed = bvh_text(out, loop=True, in_place=in_place), bvh_text(out, loop=True, in_place=in_place,
                                                                        closing_frame=True)
    assert parse_bvh(plain)["frames"] == PERIOD and parse_bvh(closed)["frames"] == PERIOD + 1
    positions, bvh = reconstruct(closed)
    motion = bvh["motion"]
    # last frame = first frame: every rotation channel; the root position too when in place, else one
    # cycle's displacement further along a straight line (heading removed)
    np.testing.assert_allclose(motion[-1, 3:], motion[0, 3:], atol=2e-5)
    shift = positions[-1] - positions[0]
    np.testing.assert_allclose(shift - shift[0], 0, atol=1e-5)
    if in_place:
        np.testing.assert_allclose(shift[0], 0, atol=1e-6)
    else:
        assert np.linalg.norm(shift[0]) == pytest.approx(0.06 * PERIOD, rel=0.02)
