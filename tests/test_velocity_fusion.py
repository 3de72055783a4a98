import numpy as np
import pytest
from conftest import shared_path

from motion_loop.humanml import recover_from_ric
from motion_loop.velocity_fusion import DEFAULT_WEIGHT, fit_channels, fuse_velocities


def dense_fit(positions, steps, turn, weight, cyclic):
    """The fit's definition as an explicit least-squares problem (rows of the identity for the
    positions, sqrt(weight) * (U_{t+1} - a_t U_t) for the steps)."""
    n = len(positions)
    rows, rhs = [np.eye(n)], [positions]
    for t in range(n if cyclic else n - 1):
        row = np.zeros(n, complex)
        row[(t + 1) % n] += 1
        row[t] -= np.exp(-1j * turn[t])
        rows.append(np.sqrt(weight) * row[None])
        rhs.append(np.sqrt(weight) * steps[t:t + 1])
    return np.linalg.lstsq(np.concatenate(rows), np.concatenate(rhs), rcond=None)[0]


@pytest.mark.parametrize("cyclic", [False, True])
@pytest.mark.parametrize("frames", [1, 2, 3, 4, 17])
def test_fit_is_the_least_squares_solution(cyclic, frames):
    rng = np.random.default_rng(frames)
    positions = rng.normal(size=(frames, 3)) + 1j * rng.normal(size=(frames, 3))
    steps = rng.normal(size=(frames, 3)) + 1j * rng.normal(size=(frames, 3))
    turn = rng.normal(size=frames)
    fitted = fit_channels(positions, steps, turn, 3.7, cyclic)
    np.testing.assert_allclose(fitted, dense_fit(positions, steps, turn, 3.7, cyclic), atol=1e-10)


@pytest.mark.parametrize("cyclic", [False, True])
def test_consistent_channels_give_back_the_positions(cyclic):
    """Where the steps are exactly what the positions say (turn included), the fit is the positions,
    whatever the weight: the fusion is not a smoothing filter."""
    rng = np.random.default_rng(0)
    frames = 40
    path = np.cumsum(rng.normal(size=(frames, 5)) + 1j * rng.normal(size=(frames, 5)), axis=0)
    turn = rng.normal(scale=0.3, size=frames)
    following = np.roll(path, -1, axis=0)  # cyclic: the last frame leads into the first
    steps = following - np.exp(-1j * turn)[:, None] * path
    for weight in (0.5, DEFAULT_WEIGHT, 1e4):
        np.testing.assert_allclose(fit_channels(path, steps, turn, weight, cyclic), path, atol=1e-8)


def test_a_one_frame_spike_shrinks_by_the_closed_form():
    """A spike of height h in the positions only, in a long cycle without turns: the fit keeps
    h / sqrt(1 + 4w) of it at that frame (the Green's function of 1 + w (2 - S - S^-1)) and spreads
    the rest over the neighbours, geometrically, keeping the sum h (the mean pose is kept)."""
    frames, weight, height = 200, DEFAULT_WEIGHT, 0.77
    positions = np.zeros((frames, 1))
    positions[50] = height
    fitted = fit_channels(positions, np.zeros((frames, 1)), np.zeros(frames), weight, cyclic=True).real[:, 0]
    assert fitted[50] == pytest.approx(height / np.sqrt(1 + 4 * weight), rel=1e-9)
    assert fitted.sum() == pytest.approx(height, rel=1e-9)
    ratio = ((1 + 2 * weight) - np.sqrt(1 + 4 * weight)) / (2 * weight)  # r + 1/r = (1 + 2w) / w
    np.testing.assert_allclose(fitted[51:60] / fitted[50:59], ratio, rtol=1e-9)


def test_real_humanml3d_motion_is_unchanged():
    """The released features' channels agree, so the fused decoding is the plain one (to 1e-5 m)."""
    features = np.load(shared_path("humanml3d", "new_joint_vecs_012314.npy"))
    joints = np.load(shared_path("humanml3d", "new_joints_012314.npy"))
    fused = recover_from_ric(fuse_velocities(features))
    assert np.abs(fused - joints).max() < 1e-5
    assert np.abs(fuse_velocities(features)[:, 67:] - features[:, 67:]).max() == 0  # rotations, velocities, contacts kept


def test_a_glitch_in_the_positions_is_spread_out():
    """A wrist that jumps 0.7 m up for 8 frames in the position channel only (the model's glitch):
    the fused decoding keeps the frames far from the jump and turns the one-frame jump into a fast but
    finite motion."""
    features = np.load(shared_path("humanml3d", "new_joint_vecs_012314.npy")).astype(np.float64)
    wrist_y = 4 + 3 * (20 - 1) + 1  # left wrist height in the root-relative positions
    glitched = features.copy()
    glitched[80:88, wrist_y] += 0.7
    plain = recover_from_ric(glitched.astype(np.float32))
    fused = recover_from_ric(fuse_velocities(glitched))
    jump = lambda j: np.abs(np.diff(j[:, 20, 1])).max()  # noqa: E731
    assert jump(plain) > 0.69 and jump(fused) < 0.25
    truth = recover_from_ric(features.astype(np.float32))
    assert np.abs(fused[:60] - truth[:60]).max() < 2e-3 and np.abs(fused[110:] - truth[110:]).max() < 2e-3


def test_fuse_velocities_keeps_shapes_and_rejects_bad_input():
    rng = np.random.default_rng(1)
    batch = rng.normal(size=(2, 3, 10, 263)).astype(np.float32)
    fused = fuse_velocities(batch, cyclic=True)
    assert fused.shape == batch.shape and fused.dtype == np.float32
    np.testing.assert_allclose(fused[1, 2], fuse_velocities(batch[1, 2], cyclic=True), atol=1e-6)
    kit = rng.normal(size=(12, 251))
    assert fuse_velocities(kit, joints_num=21).shape == (12, 251)
    with pytest.raises(ValueError, match="263"):
        fuse_velocities(np.zeros((10, 250)))
