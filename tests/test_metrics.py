import json

import numpy as np
import pytest
import torch
from conftest import shared_path

from motion_loop.humanml import rotate_y
from motion_loop.metrics import (
    HUMANML_GT_MEAN_JERK, _next_repetition, foot_skating_ratio, jerk_profile, loop_seam_report,
    transition_distance, transition_jerk,
)
from motion_loop.skeleton import NUM_JOINTS, PARENTS, REST_OFFSETS

FRAMES = 80


def rest_pose(height=0.83):
    joints = np.zeros((NUM_JOINTS, 3))
    for j in range(1, NUM_JOINTS):
        joints[j] = joints[PARENTS[j]] + REST_OFFSETS[j]
    joints[:, 1] += height
    return joints


def sinusoidal_loop(frames=FRAMES, seed=0):
    """Every joint swings on its own sinusoid with period `frames`: an exactly periodic loop."""
    rng = np.random.default_rng(seed)
    amplitude = rng.uniform(0.02, 0.1, (NUM_JOINTS, 3))
    phase = rng.uniform(0, 2 * np.pi, (NUM_JOINTS, 3))
    t = np.arange(frames)[:, None, None]
    return rest_pose()[None] + amplitude * np.sin(2 * np.pi * t / frames + phase)


def walking_turning(t, frames=FRAMES, turn_rate=0.02, radius=2.0):
    """The sinusoidal loop carried around a circle: repetitions differ by a turn and a shift."""
    poses = sinusoidal_loop(frames)[np.asarray(t) % frames]
    local = poses - poses[:, :1] * np.array([1.0, 0.0, 1.0])
    angle = turn_rate * np.asarray(t, dtype=np.float64)
    root = np.stack([radius * np.sin(angle), np.zeros_like(angle), radius * np.cos(angle)], axis=-1)
    return rotate_y(local, angle[:, None]) + root[:, None]


# --- jerk ----------------------------------------------------------------------------------------


def test_jerk_profile_of_a_cubic_is_its_constant_third_difference():
    t = np.arange(12, dtype=np.float64)
    joints = np.zeros((12, NUM_JOINTS, 3))
    joints[:, 5, 0] = 0.001 * t ** 3  # third difference 0.006 m/frame^3
    joints[:, 5, 1] = -0.002 * t ** 3  # 0.012, L1 adds up: 0.018
    joints[:, 7, 2] = 0.0005 * t ** 3  # smaller, loses the max over joints
    profile = jerk_profile(joints)
    assert profile.shape == (9,)
    np.testing.assert_allclose(profile, 0.018, rtol=1e-9)
    batch = torch.from_numpy(np.stack([joints, 2 * joints]))
    np.testing.assert_allclose(jerk_profile(batch), [profile, 2 * profile], rtol=1e-9)


def test_transition_jerk_peak_and_area_on_a_constant_jerk():
    t = np.arange(100, dtype=np.float64)
    joints = np.zeros((100, NUM_JOINTS, 3))
    joints[:, 3, 0] = 0.01 * t ** 3 / 6  # jerk 0.01 m/frame^3 everywhere
    result = transition_jerk(joints, [50, 70])
    assert result["peak_jerk"] == pytest.approx(0.01)
    assert result["auj"] == pytest.approx(57 * abs(0.01 - HUMANML_GT_MEAN_JERK))  # 60 - 3 profile values
    with pytest.raises(ValueError, match="30 frames before"):
        transition_jerk(joints, [20])


def test_transition_jerk_sees_a_spike_only_inside_the_window():
    joints = np.zeros((200, NUM_JOINTS, 3))
    joints[100:, 4, 1] = 0.05  # a 5 cm jump of one joint at frame 100
    near = transition_jerk(joints, [100])
    far = transition_jerk(joints, [160])
    assert near["peak_jerk"] == pytest.approx(2 * 0.05)  # a step's third differences: (1, -2, 1) x jump
    assert far["peak_jerk"] == 0.0
    assert far["auj"] == pytest.approx(57 * HUMANML_GT_MEAN_JERK)


# --- transition distance -------------------------------------------------------------------------


def test_transition_distance_counts_pose_jumps_not_root_motion():
    motion = np.repeat(rest_pose()[None], 10, axis=0)
    motion[:, :, 2] += 0.3 * np.arange(10)[:, None]  # the whole body moves 30 cm per frame
    assert transition_distance(motion, [5]) == pytest.approx(0.0, abs=1e-9)
    motion[5:, 1:, 0] += 0.1  # every joint but the pelvis jumps 10 cm at frame 5
    assert transition_distance(motion, [5]) == pytest.approx(100 * 0.1 * 21 / 22)
    assert transition_distance(motion, [3, 5]) == pytest.approx(100 * 0.1 * 21 / 22 / 2)
    with pytest.raises(ValueError, match="1 .. 9"):
        transition_distance(motion, [0])


# --- foot skating --------------------------------------------------------------------------------


def feet_motion(frames, speed_mps, height, fps=20.0):
    motion = np.repeat(rest_pose()[None], frames, axis=0)
    motion[:, [10, 11], 1] = 0.3  # both feet lifted unless set below
    motion[:, 10, 1] = height
    motion[:, 10, 0] += speed_mps / fps * np.arange(frames)
    return motion


def test_planted_still_foot_does_not_skate():
    assert foot_skating_ratio(feet_motion(30, 0.0, 0.01)) == 0.0


def test_sliding_planted_foot_skates_except_where_the_window_average_is_too_low():
    # At 0.8 m/s the 5-frame average (zeros outside the motion) is 0.48 m/s on the first and last
    # frame pairs, below 0.5 m/s, and at least 0.64 m/s everywhere else.
    assert foot_skating_ratio(feet_motion(30, 0.8, 0.02)) == pytest.approx(27 / 29)
    assert foot_skating_ratio(feet_motion(30, 2.0, 0.02)) == pytest.approx(1.0)


def test_skating_of_motions_shorter_than_the_averaging_window():
    # 3 frame pairs at 1 m/s: the 5-frame averages (zeros outside) are 0.6, 0.6, 0.6 m/s -> all skate;
    # at 0.8 m/s they are 0.48, 0.48, 0.48 -> none does.
    assert foot_skating_ratio(feet_motion(4, 1.0, 0.02)) == pytest.approx(1.0)
    assert foot_skating_ratio(feet_motion(4, 0.8, 0.02)) == 0.0
    assert foot_skating_ratio(feet_motion(2, 3.0, 0.02)) == pytest.approx(1.0)  # 3 / 5 = 0.6 m/s


def test_slow_or_airborne_feet_do_not_skate():
    assert foot_skating_ratio(feet_motion(30, 0.4, 0.02)) == 0.0  # too slow
    assert foot_skating_ratio(feet_motion(30, 2.0, 0.2)) == 0.0  # in the air
    lifting = feet_motion(30, 2.0, 0.02)
    lifting[15:, 10, 1] = 0.06  # above 5 cm from frame 15: pairs 15.. are not in contact
    assert foot_skating_ratio(lifting) == pytest.approx(14 / 29)


# --- loop seam -----------------------------------------------------------------------------------


def test_next_repetition_recovers_the_rigid_motion_of_a_turning_walk():
    loop = walking_turning(np.arange(FRAMES))
    continued = walking_turning(np.arange(FRAMES, 2 * FRAMES))
    np.testing.assert_allclose(_next_repetition(loop), continued, atol=1e-6)


@pytest.mark.parametrize("shift", [0, 13, 27, 51])
def test_seamless_loops_score_about_one(shift):
    for loop in (np.roll(sinusoidal_loop(), shift, axis=0), walking_turning(np.arange(FRAMES) + shift)):
        report = loop_seam_report(loop)
        for ratio in (report.velocity_ratio, report.acceleration_ratio, report.jerk_ratio):
            assert 0.5 < ratio < 2.0, report


def test_a_clip_wrapped_around_scores_far_above():
    clip = sinusoidal_loop()[: int(0.7 * FRAMES)]  # stops mid-cycle: the wrap is a jump
    report = loop_seam_report(clip)
    assert report.velocity_ratio > 10 and report.acceleration_ratio > 100 and report.jerk_ratio > 1000, report


def test_a_jump_in_root_speed_is_not_hidden_by_the_rigid_continuation():
    t = np.arange(FRAMES)[:, None]
    accelerating = np.repeat(rest_pose()[None], FRAMES, axis=0)
    accelerating[..., 2] += 0.0005 * t ** 2  # speeds up all along: fast at the end, still at the start
    report = loop_seam_report(accelerating)
    assert report.acceleration_ratio > 10, report


def test_still_loop_scores_one_and_report_is_json():
    report = loop_seam_report(torch.from_numpy(np.repeat(rest_pose()[None], 12, axis=0)))
    for ratio in (report.velocity_ratio, report.acceleration_ratio, report.jerk_ratio):
        assert ratio == pytest.approx(1.0, abs=1e-6)
    assert report.peak_jerk is None  # under the 60-frame window
    data = json.loads(json.dumps(report.to_dict()))
    assert data["frames"] == 12 and data["fps"] == 20.0
    with pytest.raises(ValueError, match="T >= 10"):
        loop_seam_report(np.zeros((9, NUM_JOINTS, 3)))


# --- the reference motion ------------------------------------------------------------------------


def test_reference_motion_numbers_are_finite_and_plausible():
    joints = np.load(shared_path("humanml3d", "new_joints_012314.npy"))
    profile = jerk_profile(joints)
    skating = foot_skating_ratio(joints)
    jerks = transition_jerk(joints, [85])
    distance = transition_distance(joints, [85])
    report = loop_seam_report(joints)
    print(f"reference 012314: mean jerk {profile.mean():.4f} m/frame^3 (HumanML3D mean {HUMANML_GT_MEAN_JERK}), "
          f"max {profile.max():.4f}; foot skating {skating:.3f}; window at frame 85: {jerks}; "
          f"transition distance at 85: {distance:.3f}; wrapped seam: {report.to_dict()}")
    assert np.all(np.isfinite(profile))
    assert 0.01 < profile.mean() < 0.2  # same order as the data set's 0.033 (a vigorous tennis serve)
    assert 0.0 <= skating < 0.3
    assert np.isfinite(jerks["peak_jerk"]) and np.isfinite(jerks["auj"])
    assert 0.0 < distance < 10.0  # cm between consecutive real frames
    # The serve does not end where it starts: wrapped around, its seam is a visible jump.
    assert report.velocity_ratio > 3 and report.jerk_ratio > 10


@pytest.mark.parametrize("metric, frames", [(foot_skating_ratio, 20), (loop_seam_report, 20)])
def test_metrics_reject_nan_bad_fps_and_wrong_joint_count(metric, frames):
    joints = np.random.default_rng(0).normal(size=(frames, NUM_JOINTS, 3))
    metric(joints, 20.0)  # fine
    bad = joints.copy()
    bad[3, 4, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        metric(bad, 20.0)
    for fps in (0, -20, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="fps must be a positive"):
            metric(joints, fps)
    with pytest.raises(ValueError, match="22, 3"):
        metric(joints[:, :20], 20.0)
    if metric is foot_skating_ratio:  # it reads HumanML3D's toe joints
        with pytest.raises(ValueError, match="22, 3"):
            metric(joints[:, :21], 20.0)
    else:  # the seam report treats every joint alike: KIT's 21 joints are fine
        metric(joints[:, :21], 20.0)
