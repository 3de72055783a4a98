"""Foot locking: planted feet stop sliding, legs keep their bone lengths, clean motion and loops survive."""

import numpy as np
import pytest

from motion_loop.foot_lock import (
    LEGS, contact_spans, foot_offsets, lock_feet, settle_contacts, solve_knee, toe_contacts,
)
from motion_loop.metrics import foot_skating_ratio, loop_seam_report
from motion_loop.procedural import canonicalize, evaluate, sample_params
from motion_loop.skeleton import FPS

UPPER_BODY = [0, 3, 6, 9, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21]


def _walk(seconds=6.0, seed=0):
    params = sample_params("walk", np.random.default_rng(seed))
    return canonicalize(evaluate("walk", params, np.arange(int(seconds * FPS)) / FPS)), params


def _drifting(joints, speed, fps=FPS):
    """The whole body carried ``speed`` m/s faster along its way than its legs walk: planted feet slide."""
    way = joints[-1, 0] - joints[0, 0]
    way[1] = 0.0
    out = joints.copy()
    out += speed * (np.arange(len(joints)) / fps)[:, None, None] * way / np.linalg.norm(way)
    return out


def _leg_bones(joints):
    return np.stack([np.linalg.norm(joints[:, a] - joints[:, b], axis=-1)
                     for leg in LEGS for a, b in zip(leg[:-1], leg[1:])], axis=1)


def test_contact_spans():
    assert contact_spans(np.array([1, 1, 0, 0, 1, 0, 1], bool)) == [(0, 2), (4, 5), (6, 7)]
    assert contact_spans(np.zeros(4, bool)) == []


def test_offsets_pin_the_toe_in_each_span_and_ease_between():
    toe = np.zeros((12, 3))
    toe[:, 2] = np.arange(12) * 0.05  # slides forward 5 cm per frame all the time
    planted = np.array([1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 1], bool)
    pinned = toe + foot_offsets(toe, planted)
    np.testing.assert_allclose(pinned[:3, 2], 0.05)        # mean of the first span
    np.testing.assert_allclose(pinned[8:, 2], 0.475)       # mean of the second
    assert np.all(np.diff(pinned[2:9, 2]) > 0)             # the swing carries the foot from one to the other
    np.testing.assert_allclose(pinned[:, [0, 1]], toe[:, [0, 1]])  # heights and sideways untouched


def test_the_toe_lifts_off_and_lands_at_rest():
    # A toe sliding 5 cm a frame, planted twice with a 9-frame swing between: the pinned toe starts
    # and ends its swing at rest (velocity and acceleration continuous), on a minimum-jerk path.
    toe = np.zeros((24, 3))
    toe[:, 2] = np.arange(24) * 0.05
    planted = np.array([1] * 8 + [0] * 8 + [1] * 8, bool)
    pinned = (toe + foot_offsets(toe, planted))[:, 2]
    steps = np.diff(pinned)
    np.testing.assert_allclose(steps[:7], 0.0, atol=1e-12)
    np.testing.assert_allclose(steps[16:], 0.0, atol=1e-12)
    swing = steps[7:16]
    assert np.all(swing > 0) and max(swing[0], swing[-1]) < 0.1 * swing.max()
    # the minimum-jerk quintic's largest jerk: 60 x distance / steps^3, at lift-off and landing
    distance, n = pinned[16] - pinned[7], 9
    assert np.abs(np.diff(pinned, n=3)).max() < 1.2 * 60 * distance / n**3


def test_two_bone_ik_keeps_lengths_and_reaches():
    rng = np.random.default_rng(0)
    hip = rng.normal(size=(50, 3))
    knee = hip + np.array([0.0, -0.4, 0.1])
    target = hip + np.array([0.1, -0.7, 0.05]) + 0.02 * rng.normal(size=(50, 3))
    thigh, shin = np.full(50, 0.42), np.full(50, 0.41)
    ankle, new_knee = solve_knee(hip, knee, target, thigh, shin)
    np.testing.assert_allclose(ankle, target, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(new_knee - hip, axis=-1), thigh, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(ankle - new_knee, axis=-1), shin, atol=1e-9)
    assert np.all(new_knee[:, 2] - hip[:, 2] > 0)  # bent forwards, like the original knee
    far, _ = solve_knee(hip, knee, hip + np.array([0.0, -2.0, 0.0]), thigh, shin)  # out of reach
    np.testing.assert_allclose(np.linalg.norm(far - hip, axis=-1), thigh + shin, rtol=1e-5)


def test_clean_walk_is_left_alone():
    joints, _ = _walk()
    assert foot_skating_ratio(joints) == 0.0
    locked = lock_feet(joints)
    assert foot_skating_ratio(locked) == 0.0
    # The toe rolls over heel and ball while low, which reads as a little slide: the pose changes by
    # at most 2 cm and the body travels at most 2% less far.
    pose = lambda j: j - j[:, :1]
    assert np.abs(pose(locked) - pose(joints)).max() < 0.02
    travel = lambda j: np.linalg.norm(j[-1, 0, [0, 2]] - j[0, 0, [0, 2]])
    assert 0.98 < travel(locked) / travel(joints) <= 1.0


def test_sliding_feet_are_planted_and_bones_keep_their_lengths():
    joints, _ = _walk()
    sliding = _drifting(joints, 0.6)
    assert foot_skating_ratio(sliding) > 0.3
    locked = lock_feet(sliding)
    assert foot_skating_ratio(locked) < 0.02
    np.testing.assert_allclose(_leg_bones(locked), _leg_bones(sliding), atol=1e-6)
    # Only the legs move relative to the pelvis; the upper body's pose is untouched.
    rel = lambda j: j[:, UPPER_BODY] - j[:, :1]
    np.testing.assert_allclose(rel(locked), rel(sliding), atol=1e-9)
    # The body now travels as fast as its legs carry it.
    travel = lambda j: np.linalg.norm(j[-1, 0, [0, 2]] - j[0, 0, [0, 2]])
    assert abs(travel(locked) / travel(joints) - 1) < 0.1 < travel(sliding) / travel(joints) - 1


def test_motion_off_the_floor_is_unchanged():
    joints, _ = _walk(2.0)
    joints = joints.copy()
    joints[..., 1] += 0.5
    np.testing.assert_array_equal(lock_feet(joints), joints)


def test_a_locked_loop_still_loops():
    joints, params = _walk()
    period = params["period"]
    n = 48  # two gait cycles in 48 frames: an exact loop at this frame rate
    fps = n / (2 * period)
    loop = canonicalize(evaluate("walk", params, np.arange(n) / fps))
    sliding = _drifting(loop, 0.5, fps)
    assert foot_skating_ratio(sliding, fps) > 0.2
    locked = lock_feet(sliding, loop=True, fps=fps)
    assert foot_skating_ratio(locked, fps) < 0.05
    before, after = loop_seam_report(sliding, fps), loop_seam_report(locked, fps)
    assert after.jerk_ratio < max(2.0, 1.5 * before.jerk_ratio)
    assert after.velocity_ratio < 1.5


def test_a_loop_standing_on_both_feet_that_turns_and_slides_still_closes():
    # Arm circles: both toes planted all through the loop, which turns 10 degrees a cycle and whose body
    # slides. Pinning the toes to one spot cannot repeat every cycle; the lock must still close the
    # loop (the seam no rougher than the rest) and keep the legs' bones.
    params = sample_params("arm_circles", np.random.default_rng(3))
    n = 60
    fps = n / params["period"]
    loop = canonicalize(evaluate("arm_circles", params, np.arange(n) / fps))
    # the whole body carried round a circle of 10 m radius, 10 degrees a cycle: a loop whose cycles
    # follow each other rigidly, with the feet sliding at about 0.6 m/s
    turn = np.radians(10.0) * np.arange(n) / n
    c, s = np.cos(turn)[:, None], np.sin(turn)[:, None]
    x, z = loop[..., 0] - 10.0, loop[..., 2]
    sliding = loop.copy()
    sliding[..., 0], sliding[..., 2] = c * x + s * z + 10.0, -s * x + c * z
    before = loop_seam_report(sliding, fps).jerk_ratio
    assert foot_skating_ratio(sliding, fps) > 0.2 and before < 1.5
    locked = lock_feet(sliding, loop=True, fps=fps)
    assert foot_skating_ratio(locked, fps) < 0.05
    np.testing.assert_allclose(_leg_bones(locked), _leg_bones(sliding), atol=1e-6)
    # the seam is as smooth as the rest of the loop (the old lock: 210x the interior jerk)
    assert loop_seam_report(locked, fps).jerk_ratio < max(2.0, 1.5 * before)


def test_bad_shape():
    with pytest.raises(ValueError, match=r"\[T, 22, 3\]"):
        lock_feet(np.zeros((10, 21, 3)))


def test_locking_keeps_the_start():
    joints, _ = _walk(3.0)
    sliding = _drifting(joints, 0.6)
    for loop in (False, True):
        locked = lock_feet(sliding, loop=loop)
        np.testing.assert_allclose(locked[0, 0], sliding[0, 0], atol=1e-9)


def test_settled_contacts_last_while_the_toe_is_on_the_floor():
    contacts = np.array([0, 0, 1, 1, 0, 0, 0, 0, 0, 0], bool)[:, None].repeat(2, axis=1)
    low = np.array([0, 1, 1, 1, 1, 0, 1, 1, 0, 1], bool)[:, None].repeat(2, axis=1)
    contacts[:, 1] = False
    planted = settle_contacts(contacts, low)
    assert planted[:, 0].tolist() == [0, 1, 1, 1, 1, 0, 0, 0, 0, 0]  # grown over its low run only
    assert not planted[:, 1].any()  # low without a predicted contact: a skimming swing


def test_contacts_from_features_plant_the_stance_not_a_low_swing():
    """HumanML3D's contact features (a foot moving under 0.89 m/s) mark the stance of a sliding walk;
    locking with them plants it, and a swing that passes low over the floor is not pinned."""
    from motion_loop.humanml import joints_to_features

    joints, _ = _walk()
    sliding = _drifting(joints, 0.6)
    features = joints_to_features(sliding)  # T-1 frames
    contacts = toe_contacts(features)
    assert contacts.shape == (len(sliding) - 1, 2) and 0.2 < contacts.mean() < 0.9
    sliding = sliding[:-1]
    locked = lock_feet(sliding, contacts)
    assert foot_skating_ratio(sliding) > 0.3 and foot_skating_ratio(locked) < 0.05
    # A toe that skims the floor (3 cm) in the middle third of every swing: height would call it
    # planted, the contacts do not.
    low = sliding.copy()
    skims = []
    for start, end in contact_spans(~contacts[:, 0]):
        third = (end - start) // 3
        if third > 1 and start > 0 and end < len(low):
            assert low[start + third - 1, 10, 1] > 0.05 and low[end - third, 10, 1] > 0.05  # lifted around it
            low[start + third: end - third, 10, 1] = 0.03
            skims.append((start + third, end - third))
    assert len(skims) >= 4
    by_height, by_contacts = lock_feet(low), lock_feet(low, contacts)
    travel = lambda j: np.mean([np.linalg.norm(j[e - 1, 10, [0, 2]] - j[s, 10, [0, 2]]) for s, e in skims])
    assert travel(by_height) < 1e-9  # pinned in mid-swing
    assert travel(by_contacts) > 0.5 * travel(low) > 0.05  # still swinging forward
    with pytest.raises(ValueError, match=r"contacts \[T, 2\]"):
        lock_feet(sliding, contacts[:-1])
