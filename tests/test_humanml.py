import numpy as np
import pytest
import torch
from conftest import shared_path

from motion_loop.errors import UserError
from motion_loop.humanml import (
    FEATURE_DIM, FEATURE_GROUPS, Normalizer, _quaternion_between, canonical_start, gaussian_smooth,
    joints_to_features, recover_from_ric,
)
from motion_loop.skeleton import BONE_LENGTHS, NUM_JOINTS, PARENTS, REST_OFFSETS

SMOOTHING_RADIUS = 80  # int(4 * sigma + 0.5) frames of the facing-direction filter


def load_reference():
    features = np.load(shared_path("humanml3d", "new_joint_vecs_012314.npy"))
    joints = np.load(shared_path("humanml3d", "new_joints_012314.npy"))
    return features, joints


def rotate_y(points, angle):
    c, s = np.cos(angle), np.sin(angle)
    return points @ np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]).T


def rest_pose():
    joints = np.zeros((NUM_JOINTS, 3))
    for j in range(1, NUM_JOINTS):
        joints[j] = joints[PARENTS[j]] + REST_OFFSETS[j]
    return joints


def group_errors(a, b):
    return {name: float(np.abs(a[:, s] - b[:, s]).max()) for name, s in FEATURE_GROUPS.items()}


def with_next_frame(features, joints):
    """The reference joints plus the frame after the last one, rebuilt from the last frame's local
    velocities: the full input HumanML3D's processing saw (T features need T + 1 frames)."""
    half_angle = np.sum(features[:-1, 0])
    velocity = features[-1, 193:259].reshape(NUM_JOINTS, 3).astype(np.float64)
    step = rotate_y(velocity, -2 * half_angle)  # back from the last frame's facing frame
    return np.concatenate([joints, (joints[-1] + step)[None]])


# --- decoding ------------------------------------------------------------------------------------


def test_recover_from_ric_reproduces_reference_joints_numpy_and_torch():
    features, joints = load_reference()
    decoded = recover_from_ric(features)
    assert isinstance(decoded, np.ndarray) and decoded.dtype == np.float32
    np.testing.assert_allclose(decoded, joints, atol=1e-5, rtol=0)
    batch = torch.from_numpy(np.stack([features, features]))
    decoded_torch = recover_from_ric(batch)
    assert isinstance(decoded_torch, torch.Tensor) and decoded_torch.shape == (2, 170, 22, 3)
    torch.testing.assert_close(decoded_torch[1], torch.from_numpy(joints), atol=1e-5, rtol=0)


def test_recover_from_ric_integrates_a_constant_turn_and_walk():
    # Half heading change w per frame, one step of length v forward: a circle of radius v / (2 w).
    frames, w, v = 40, 0.05, 0.03
    features = np.zeros((frames, FEATURE_DIM))
    features[:, 0], features[:, 2], features[:, 3] = w, v, 0.9
    root = recover_from_ric(features)[:, 0]
    heading = 2 * w * np.arange(frames)
    step = root[1:] - root[:-1]
    np.testing.assert_allclose(np.linalg.norm(step[:, [0, 2]], axis=-1), v, atol=1e-12)
    # The step into frame t points along frame t's heading, turned back: (-sin, cos) of -heading.
    np.testing.assert_allclose(step[:, 0], -v * np.sin(heading[1:]), atol=1e-12)
    np.testing.assert_allclose(step[:, 2], v * np.cos(heading[1:]), atol=1e-12)
    np.testing.assert_allclose(root[:, 1], 0.9)


def test_recover_from_ric_rejects_mdm_layout():
    with pytest.raises(ValueError, match="263"):
        recover_from_ric(torch.zeros(2, 263, 1, 60))


# --- encoding ------------------------------------------------------------------------------------


def test_encoding_reproduces_reference_features_per_group():
    features, joints = load_reference()
    full = with_next_frame(features, joints)  # 171 frames: exactly what HumanML3D encoded
    errors = group_errors(joints_to_features(full), features)
    print("per-group max |error| (171-frame input):", errors)
    for name in ("root", "positions", "velocities", "contacts"):
        assert errors[name] < 1e-5, errors
    assert errors["rotations"] < 5e-5, errors  # HumanML3D's IK ran in float32


def test_encoding_the_decoded_frames_matches_where_the_facing_filter_cannot_see_the_end():
    # Encoding the 170 decoded frames gives 169 feature frames. The facing direction is smoothed over
    # +-80 frames, so only the last ~80 frames notice the missing 171st input frame.
    features, joints = load_reference()
    encoded = joints_to_features(joints)
    assert encoded.shape == (169, FEATURE_DIM) and encoded.dtype == np.float32
    untouched = len(joints) - 1 - SMOOTHING_RADIUS
    errors = group_errors(encoded[:untouched], features[:untouched])
    tail = group_errors(encoded, features[:169])
    print("per-group max |error| (170-frame input, first", untouched, "frames):", errors)
    print("per-group max |error| (170-frame input, all 169 frames):", tail)
    assert max(errors.values()) < 1e-4, errors
    assert tail["contacts"] == 0.0 and tail["positions"] < 1e-2 and tail["rotations"] < 2e-2, tail


def test_round_trip_gives_back_the_canonical_motion():
    _, joints = load_reference()
    moved = rotate_y(joints.astype(np.float64), 2.4) + np.array([3.0, 0.7, -1.5])
    canonical = canonical_start(moved)
    np.testing.assert_allclose(canonical, joints, atol=1e-5)  # the reference already is canonical
    decoded = recover_from_ric(joints_to_features(moved))
    np.testing.assert_allclose(decoded, canonical[:-1], atol=1e-5)


def test_features_are_invariant_to_placement():
    _, joints = load_reference()
    joints = joints[:60].astype(np.float64)
    moved = rotate_y(joints, -1.1) + np.array([-2.0, 0.3, 4.0])
    np.testing.assert_allclose(joints_to_features(moved), joints_to_features(joints), atol=1e-5)


def test_rest_pose_has_identity_rotations_zero_velocity_and_contacts():
    motion = np.repeat(rest_pose()[None], 6, axis=0)
    features = joints_to_features(motion)
    np.testing.assert_allclose(features[:, 67:193].reshape(5, 21, 6), np.broadcast_to([1, 0, 0, 0, 1, 0], (5, 21, 6)),
                               atol=1e-12)
    np.testing.assert_allclose(features[:, :3], 0, atol=1e-12)
    legs = BONE_LENGTHS[4] + BONE_LENGTHS[7]  # left knee + shin: the pelvis height above the feet
    np.testing.assert_allclose(features[:, 3], legs, atol=1e-6)
    np.testing.assert_allclose(features[:, 193:259], 0, atol=1e-12)
    np.testing.assert_array_equal(features[:, 259:], 1)


def test_forearm_pointing_forward_is_a_quarter_turn_about_x():
    pose = rest_pose()
    pose[20] = pose[18] + [0, 0, BONE_LENGTHS[20]]  # left wrist in front of the elbow
    features = joints_to_features(np.repeat(pose[None], 3, axis=0))
    wrist = features[0, 67 + 6 * 19: 67 + 6 * 20]
    # R_x(-90 deg) turns (0, -1, 0) onto (0, 0, 1); its first two columns are (1, 0, 0), (0, 0, -1).
    np.testing.assert_allclose(wrist, [1, 0, 0, 0, 0, -1], atol=1e-6)


def test_foot_contacts_follow_the_squared_displacement_threshold():
    motion = np.repeat(rest_pose()[None], 3, axis=0)
    motion[1:, [7, 10], 0] += [[0.04, 0.04], [0.09, 0.09]]  # left foot: 4 cm, then 5 cm per frame
    contacts = joints_to_features(motion)[:, 259:]
    np.testing.assert_array_equal(contacts, [[1, 1, 1, 1], [0, 0, 1, 1]])  # 0.0016 < 0.002 < 0.0025


def test_degenerate_motions_give_finite_features():
    collapsed = np.zeros((2, NUM_JOINTS, 3))
    assert np.all(np.isfinite(joints_to_features(collapsed)))
    arm_up = rest_pose()
    arm_up[20] = arm_up[18] + [0, BONE_LENGTHS[20], 0]  # exactly opposite its rest direction
    features = joints_to_features(np.repeat(arm_up[None], 2, axis=0))
    assert np.all(np.isfinite(features))
    # The wrist's rotation still turns its rest direction (0, -1, 0) onto (0, 1, 0): column 1 is -y.
    np.testing.assert_allclose(features[0, 67 + 6 * 19 + 3: 67 + 6 * 20], [0, -1, 0], atol=1e-12)


@pytest.mark.parametrize("scale", [0.0, 1e-12, 1.0, 100.0])
def test_arbitrary_joint_clouds_encode_finitely_and_round_trip(scale):
    rng = np.random.default_rng(1)
    for frames in (2, 3, 40):
        joints = scale * rng.normal(size=(frames, NUM_JOINTS, 3))
        joints[: frames // 2, [1, 2, 16, 17]] = joints[: frames // 2, :1]  # hips and shoulders collapse
        features = joints_to_features(joints)
        assert np.all(np.isfinite(features))
        np.testing.assert_allclose(recover_from_ric(features.astype(np.float64)), canonical_start(joints)[:-1],
                                   atol=1e-5 * max(scale, 1.0))


def test_opposite_vectors_get_a_half_turn():
    u = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]])
    q = _quaternion_between(u, -u)
    np.testing.assert_allclose(np.linalg.norm(q, axis=-1), 1)
    np.testing.assert_allclose(q[:, 0], 0, atol=1e-12)
    np.testing.assert_allclose(np.sum(q[:, 1:] * u, axis=-1), 0, atol=1e-12)  # axis perpendicular to u


def test_torch_in_torch_out_and_bad_input():
    motion = torch.from_numpy(np.repeat(rest_pose()[None], 4, axis=0)).to(torch.float64)
    features = joints_to_features(motion)
    assert isinstance(features, torch.Tensor) and features.dtype == torch.float64 and features.shape == (3, 263)
    with pytest.raises(ValueError, match="T >= 2"):
        joints_to_features(np.zeros((1, NUM_JOINTS, 3)))
    with pytest.raises(ValueError, match="NaN"):
        joints_to_features(np.full((3, NUM_JOINTS, 3), np.nan))


def test_gaussian_smooth_matches_edge_padded_convolution():
    rng = np.random.default_rng(0)
    signal = rng.normal(size=(50, 2))
    sigma, radius = 20.0, 80
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(signal, ((radius, radius), (0, 0)), mode="edge")
    expected = np.stack([np.convolve(padded[:, c], kernel, mode="valid") for c in range(2)], axis=-1)
    np.testing.assert_allclose(gaussian_smooth(signal, sigma), expected, atol=1e-12)
    np.testing.assert_allclose(gaussian_smooth(np.full((7, 2), 3.0)), 3.0)


# --- normalization -------------------------------------------------------------------------------


def test_normalizer_round_trip_numpy_and_torch():
    folder = shared_path("humanml3d")
    normalizer = Normalizer.from_dir(folder)
    features, _ = load_reference()
    normalized = normalizer.normalize(features)
    np.testing.assert_allclose(normalized, (features - np.load(folder / "Mean.npy")) / np.load(folder / "Std.npy"),
                               rtol=1e-6)
    np.testing.assert_allclose(normalizer.denormalize(normalized), features, atol=1e-5)
    x = torch.from_numpy(features).to(torch.float64)
    back = normalizer.denormalize(normalizer.normalize(x))
    assert back.dtype == torch.float64
    torch.testing.assert_close(back, x)


def write_stats(folder, mean, std):
    np.save(folder / "Mean.npy", mean)
    np.save(folder / "Std.npy", std)


def test_normalizer_errors_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(UserError, match="does not exist.*prepare/download_humanml_stats.py"):
        Normalizer.from_dir(tmp_path / "nowhere")
    np.save(tmp_path / "Mean.npy", np.zeros(263, np.float32))
    with pytest.raises(UserError, match=r"Std\.npy is missing.*prepare/download_humanml_stats.py"):
        Normalizer.from_dir(tmp_path)
    write_stats(tmp_path, np.zeros(263, np.float32), np.ones(10, np.float32))
    with pytest.raises(UserError, match=r"Std\.npy holds .*\(10,\).*expected"):
        Normalizer.from_dir(tmp_path)
    write_stats(tmp_path, np.zeros(263, np.float32), np.zeros(263, np.float32))
    with pytest.raises(UserError, match="zero or negative"):
        Normalizer.from_dir(tmp_path)
    (tmp_path / "Mean.npy").write_text("not numpy")
    with pytest.raises(UserError, match=r"Mean\.npy is not a readable"):
        Normalizer.from_dir(tmp_path)
    write_stats(tmp_path, np.zeros(263, np.float32), np.full(263, 2.0, np.float32))
    normalizer = Normalizer.from_dir(tmp_path)
    np.testing.assert_allclose(normalizer.normalize(np.full((2, 263), 4.0)), 2.0)
    with pytest.raises(ValueError, match="263"):
        normalizer.normalize(np.zeros((2, 251)))


def test_kit_recover_from_ric_matches_the_official_21_joint_decoding():
    """KIT-ML: 251 features, 21 joints; `joints` is the official recover_from_ric(features, 21)."""
    from conftest import shared_path

    case = torch.load(shared_path("mdm_reference", "kit_recover_from_ric.pt"), weights_only=True)
    assert case["joints_num"] == 21 and case["features"].shape[-1] == 251
    joints = recover_from_ric(case["features"], 21)
    assert joints.shape == (40, 21, 3)
    torch.testing.assert_close(joints, case["joints"], atol=1e-3, rtol=0)
