"""Procedural motion library: shapes, exact bone lengths, grounded and non-skating feet, periodicity,
facing, physics of flights, captions, and the HumanML3D feature round trip."""

import numpy as np
import pytest

from motion_loop.errors import UserError
from motion_loop.metrics import foot_skating_ratio
from motion_loop.procedural import KINDS, caption_set, evaluate, facing_angle, generate, make_dataset, sample_params
from motion_loop.skeleton import BONE_LENGTHS, FPS, PARENTS

REQUIRED = {"walk", "run", "march", "jump", "jumping_jacks", "wave", "squat", "kick", "punch", "side_step",
            "arm_circles", "walk_circle", "turn"}
FEET = [7, 8, 10, 11]
SEEDS = range(4)


def _motions(kind, n_frames=120, seeds=SEEDS):
    return [generate(kind, n_frames, np.random.default_rng(1000 * s + 7)) for s in seeds]


def _body_frame(joints):
    """Each frame's joints relative to its pelvis (x, z) and turned to face +z."""
    a = -facing_angle(joints)
    c, s = np.cos(a)[:, None], np.sin(a)[:, None]
    x = joints[..., 0] - joints[:, :1, 0]
    z = joints[..., 2] - joints[:, :1, 2]
    return np.stack([c * x + s * z, joints[..., 1], -s * x + c * z], -1)


def test_kinds_cover_the_required_motions():
    assert REQUIRED <= set(KINDS)
    assert len(KINDS) >= 12


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n_frames", [1, 40, 121, 196])
def test_shape_dtype_and_finite(kind, n_frames):
    motion = generate(kind, n_frames, np.random.default_rng(n_frames))
    assert motion.joints.shape == (n_frames, 22, 3)
    assert motion.joints.dtype == np.float32
    assert np.isfinite(motion.joints).all()
    assert motion.kind == kind and motion.params["kind"] == kind
    assert len(motion.captions) == 3


@pytest.mark.parametrize("kind", KINDS)
def test_bones_keep_humanml_lengths(kind):
    for motion in _motions(kind, 196):
        bones = np.linalg.norm(motion.joints[:, 1:] - motion.joints[:, list(PARENTS[1:])], axis=-1)
        np.testing.assert_allclose(bones, np.broadcast_to(BONE_LENGTHS[1:], bones.shape), atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_feet_on_the_floor_nothing_below(kind):
    for motion in _motions(kind):
        y = motion.joints[..., 1]
        assert y.min() > -1e-4, "a joint goes through the floor"
        assert abs(y[:, FEET].min()) < 2e-3, "the feet never touch the floor"
        # A standing person's pelvis sits 0.6 (deep squat) .. 1.35 (mid-jump) m high.
        assert 0.45 < motion.joints[:, 0, 1].min() and motion.joints[:, 0, 1].max() < 1.45


@pytest.mark.parametrize("kind", KINDS)
def test_foot_skating_is_low(kind):
    """GMD's foot skating ratio (metrics.foot_skating_ratio), averaged over seeds. HumanML3D's own
    motions score around 0.05-0.1; planted feet here never slide."""
    ratios = [foot_skating_ratio(m.joints) for m in _motions(kind, 120, range(8))]
    assert np.mean(ratios) < 0.01, ratios
    assert max(ratios) < 0.05, ratios


@pytest.mark.parametrize("kind", KINDS)
def test_cyclic_pose_repeats_every_period(kind):
    """The pose at t and t + period agree in body coordinates (root advances, pose repeats)."""
    for seed in SEEDS:
        params = sample_params(kind, np.random.default_rng(seed))
        period = params["period"]
        assert 0.2 < period < 6.0
        t = np.linspace(0.0, 2.0, 37)
        a = _body_frame(evaluate(kind, params, t))
        b = _body_frame(evaluate(kind, params, t + period))
        c = _body_frame(evaluate(kind, params, t + 3 * period))
        np.testing.assert_allclose(b, a, atol=1e-6)
        np.testing.assert_allclose(c, a, atol=1e-6)


@pytest.mark.parametrize("kind", ["walk", "run", "walk_circle", "turn"])
def test_root_advances_steadily(kind):
    """Root displacement per period is the same every period (seen from the body), and walks and runs
    move at their drawn speed."""
    for seed in range(8):
        params = sample_params(kind, np.random.default_rng(seed))
        period = params["period"]
        t = np.arange(5) * period
        joints = evaluate(kind, params, t)
        heading = facing_angle(joints)
        step = np.diff(joints[:, 0, [0, 2]], axis=0)
        turn = np.diff(np.unwrap(heading))
        local = np.stack([np.cos(-heading[:-1]) * step[:, 0] + np.sin(-heading[:-1]) * step[:, 1],
                          -np.sin(-heading[:-1]) * step[:, 0] + np.cos(-heading[:-1]) * step[:, 1]], -1)
        np.testing.assert_allclose(local, np.broadcast_to(local[0], local.shape), atol=1e-6)
        np.testing.assert_allclose(turn, turn[0], atol=1e-6)
        if kind in ("walk", "run") and params["omega"] == 0.0:
            assert np.linalg.norm(step[0]) == pytest.approx(params["speed"] * period, rel=1e-9)


def test_walks_and_runs_at_human_speed_and_cadence():
    for kind, (v_lo, v_hi), (c_lo, c_hi) in (("walk", (0.7, 1.85), (1.45, 2.3)), ("run", (2.0, 4.6), (2.4, 3.2))):
        for seed in range(10):
            p = sample_params(kind, np.random.default_rng(seed))
            assert v_lo <= p["speed"] <= v_hi and c_lo <= p["cadence"] <= c_hi
    speeds = [sample_params("walk", np.random.default_rng(s))["speed"] for s in range(30)]
    assert np.std(speeds) > 0.15, "walking speed should vary"


@pytest.mark.parametrize("kind", ["walk", "run", "walk_circle"])
def test_body_faces_where_it_walks(kind):
    for motion in _motions(kind, 160):
        joints = motion.joints.astype(np.float64)
        velocity = np.gradient(joints[:, 0, [0, 2]], axis=0)
        travel = np.arctan2(velocity[:, 0], velocity[:, 1])
        # average over whole cycles so the pelvis' own swing cancels
        cycle = int(round(motion.params["period"] * FPS))
        diff = np.angle(np.exp(1j * (facing_angle(joints) - travel)))
        smooth = np.convolve(diff, np.ones(cycle) / cycle, mode="valid")
        assert np.abs(smooth).max() < np.radians(8)


def test_arms_swing_opposite_to_legs():
    for motion in _motions("walk", 120):
        body = _body_frame(motion.joints.astype(np.float64))
        for wrist, ankle in ((20, 7), (21, 8)):   # left wrist vs left ankle, right vs right
            corr = np.corrcoef(body[:, wrist, 2], body[:, ankle, 2])[0, 1]
            assert corr < -0.5


def test_knees_bend_forward_only():
    for kind in KINDS:
        for motion in _motions(kind, 100, range(2)):
            j = motion.joints.astype(np.float64)
            face = facing_angle(j)
            forward = np.stack([np.sin(face), np.zeros_like(face), np.cos(face)], -1)
            for hip, knee, ankle in ((1, 4, 7), (2, 5, 8)):
                line = j[:, ankle] - j[:, hip]
                line /= np.linalg.norm(line, axis=-1, keepdims=True)
                off = j[:, knee] - j[:, hip]
                off -= np.sum(off * line, -1, keepdims=True) * line
                bent = np.linalg.norm(off, axis=-1) > 0.01
                pole = forward + 0.5 * np.array([0.0, 1.0, 0.0])
                assert (np.sum(off * pole, -1)[bent] > 0).all(), kind


@pytest.mark.parametrize("kind", ["jump", "jumping_jacks", "run"])
def test_flights_obey_gravity_with_feet_off_the_floor(kind):
    for seed in SEEDS:
        params = sample_params(kind, np.random.default_rng(seed))
        dt = 1.0 / 400
        t = np.arange(0.0, params["period"], dt)
        joints = evaluate(kind, params, t)
        # (on the toes before take-off the toe joints rise up to ~2.5 cm as the foot rolls on its tips)
        airborne = joints[:, FEET, 1].min(axis=1) > 0.03
        assert airborne.sum() > 10
        inner = airborne[:-2] & airborne[1:-1] & airborne[2:]
        accel = np.diff(joints[:, 0, 1], 2)[inner] / dt**2
        np.testing.assert_allclose(accel, -9.81, atol=1e-3)


def test_jump_height_and_flight_time():
    """The pelvis rises the drawn height above take-off, and the feet are off the floor for the
    whole ballistic flight 2 sqrt(2 g h) / g around the apex."""
    for seed in SEEDS:
        params = sample_params("jump", np.random.default_rng(seed))
        t = np.arange(0.0, params["period"], 1.0 / 400)
        pelvis = evaluate("jump", params, t)[:, 0, 1]
        t_apex = t[np.argmax(pelvis)]
        flight = 2 * np.sqrt(2 * 9.81 * params["height"]) / 9.81
        ends = evaluate("jump", params, t_apex + np.array([-0.5, 0.5]) * flight)
        np.testing.assert_allclose(pelvis.max() - ends[:, 0, 1], params["height"], atol=5e-3)
        inside = evaluate("jump", params, t_apex + np.linspace(-0.45, 0.45, 9) * flight)
        assert inside[:, FEET, 1].min() > 0.0
        before = evaluate("jump", params, t_apex - 0.5 * flight - np.array([0.05, 0.1]))
        assert before[:, FEET, 1].min(axis=1).max() < 0.03   # still on the toes before take-off


def test_running_has_a_flight_phase():
    for seed in SEEDS:
        params = sample_params("run", np.random.default_rng(seed))
        t = np.arange(0.0, params["period"], 1.0 / 400)
        joints = evaluate("run", params, t)
        airborne = joints[:, FEET, 1].min(axis=1) > 0.03
        assert 0.05 < airborne.mean() < 0.45


def test_squat_keeps_heels_down():
    for motion in _motions("squat", 140):
        ankles = motion.joints[:, [7, 8], 1]
        np.testing.assert_allclose(ankles, np.broadcast_to(ankles[0], ankles.shape), atol=1e-5)
        depth = motion.joints[:, 0, 1].max() - motion.joints[:, 0, 1].min()
        assert depth > 0.15


def test_wave_uses_the_named_hand():
    for seed in range(12):
        motion = generate("wave", 60, np.random.default_rng(seed))
        head = motion.joints[:, 15, 1]
        raised = {side: (motion.joints[:, w, 1] > head - 0.25).all() for side, w in (("left", 20), ("right", 21))}
        hand = motion.params["hand"]
        assert raised["left"] == (hand in ("left", "both")) and raised["right"] == (hand in ("right", "both"))


def test_same_seed_same_motion():
    a = generate("kick", 80, np.random.default_rng(3))
    b = generate("kick", 80, np.random.default_rng(3))
    np.testing.assert_array_equal(a.joints, b.joints)
    assert a.captions == b.captions and a.params == b.params


def test_unknown_kind_and_bad_length_are_user_errors():
    with pytest.raises(UserError, match="unknown motion kind"):
        generate("moonwalk", 10, np.random.default_rng(0))
    with pytest.raises(UserError, match="n_frames"):
        generate("walk", 0, np.random.default_rng(0))


@pytest.mark.parametrize("kind", KINDS)
def test_captions_vary_and_held_out_wording_is_disjoint(kind):
    train, heldout = set(), set()
    for seed in range(25):
        params = sample_params(kind, np.random.default_rng(seed))
        one_train = caption_set(kind, params, "train")
        assert len(one_train) >= 10
        assert len(caption_set(kind, params, "heldout")) >= 3
        train |= set(one_train)
        heldout |= set(caption_set(kind, params, "heldout"))
        assert all(c == c.strip() and "  " not in c and "{" not in c for c in one_train)
    assert len(train) >= 50 and len(heldout) >= 3
    assert not train & heldout
    # held-out paraphrases use other wording, not just other subjects
    verbs = lambda captions: {c.split()[2] if c.split()[0] in ("a", "the", "an") else c.split()[1] for c in captions}
    assert verbs(heldout) - verbs(train)


def test_captions_follow_the_parameters():
    rng = np.random.default_rng(0)
    for _ in range(20):
        p = sample_params("wave", rng)
        texts = caption_set("wave", p)
        if p["hand"] != "both":
            other = "left" if p["hand"] == "right" else "right"
            assert all(other not in c for c in texts) and any(p["hand"] in c for c in texts)
        p = sample_params("walk_circle", rng)
        assert any(("clockwise" if p["direction"] == "right" else "counterclockwise") in c.split()
                   for c in caption_set("walk_circle", p))
        p = sample_params("walk", rng)
        if p["pace"] == "fast":
            assert not any("slow" in c for c in caption_set("walk", p))


def test_make_dataset():
    data = make_dataset(2, np.random.default_rng(0), min_frames=40, max_frames=60)
    assert len(data) == 2 * len(KINDS)
    assert [kind for _, _, kind in data] == [k for k in KINDS for _ in range(2)]
    for joints, texts, kind in data:
        assert joints.dtype == np.float32 and 40 <= len(joints) <= 60 and joints.shape[1:] == (22, 3)
        assert len(texts) == 3 and len(set(texts)) == 3


@pytest.mark.parametrize("kind", KINDS)
def test_converts_to_humanml_features_and_back(kind):
    humanml = pytest.importorskip("motion_loop.humanml")
    motion = generate(kind, 90, np.random.default_rng(5))
    features = humanml.joints_to_features(motion.joints)
    assert features.shape == (89, 263) and np.isfinite(features).all()
    recovered = np.asarray(humanml.recover_from_ric(features))
    expected = humanml.canonical_start(motion.joints)[:-1]
    np.testing.assert_allclose(recovered, expected, atol=1e-4)


def test_generation_starts_canonical():
    for kind in KINDS:
        j = generate(kind, 30, np.random.default_rng(1)).joints
        np.testing.assert_allclose(j[0, 0, [0, 2]], 0.0, atol=1e-6)
        assert abs(facing_angle(j[0].astype(np.float64))) < 1e-5
