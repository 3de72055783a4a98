"""BVH export: parse the written file with an independent reader, run its forward kinematics and
compare with the input joints; format, loop / in-place variants, Euler continuity, bad input."""

import math
import os
import re

import numpy as np
import pytest
from conftest import shared_path

from motion_loop import procedural
from motion_loop.errors import UserError
from motion_loop.export import (
    EULER_ORDERS, bvh_channels, bvh_text, euler_from_matrices, fit_rotations,
    forward_kinematics, matrices_from_euler, rest_offsets, write_bvh,
)
from motion_loop.render import synthetic_walk, tile_loop
from motion_loop.skeleton import BONE_LENGTHS, JOINT_NAMES, NUM_JOINTS, PARENTS

# ----------------------------------------------------------------------------------------------
# An independent BVH reader and forward kinematics (written from the format, not from export.py)


def parse_bvh(text: str) -> dict:
    """HIERARCHY (names, parents, offsets, channel names, end sites) and MOTION of a BVH text."""
    tokens = text.split()
    assert tokens[0] == "HIERARCHY"
    names, parents, offsets, channels, end_sites = [], [], [], [], {}
    stack, pending, i = [], None, 1
    while tokens[i] != "MOTION":
        tok = tokens[i]
        if tok in ("ROOT", "JOINT"):
            assert (tok == "ROOT") == (not names), "exactly one ROOT, first"
            names.append(tokens[i + 1])
            parents.append(stack[-1] if stack else -1)
            offsets.append(None)
            channels.append([])
            pending, i = len(names) - 1, i + 2
        elif tok == "End":
            assert tokens[i + 1] == "Site"
            pending, i = ("end", stack[-1]), i + 2
        elif tok == "{":
            stack.append(pending)
            i += 1
        elif tok == "}":
            stack.pop()
            i += 1
        elif tok == "OFFSET":
            value = np.array([float(v) for v in tokens[i + 1:i + 4]])
            if isinstance(stack[-1], tuple):
                end_sites[stack[-1][1]] = value
            else:
                offsets[stack[-1]] = value
            i += 4
        elif tok == "CHANNELS":
            count = int(tokens[i + 1])
            channels[stack[-1]] = tokens[i + 2:i + 2 + count]
            i += 2 + count
        else:
            raise AssertionError(f"unexpected token {tok!r}")
    assert not stack, "unbalanced braces"
    assert tokens[i + 1] == "Frames:" and tokens[i + 3:i + 5] == ["Frame", "Time:"]
    frames, frame_time = int(tokens[i + 2]), float(tokens[i + 5])
    values = np.array([float(v) for v in tokens[i + 6:]])
    width = sum(len(c) for c in channels)
    assert values.size == frames * width
    return dict(names=names, parents=parents, offsets=np.array(offsets), channels=channels,
                end_sites=end_sites, frames=frames, frame_time=frame_time,
                motion=values.reshape(frames, width))


def _axis_matrix(axis: str, degrees: np.ndarray) -> np.ndarray:
    a = np.radians(degrees)
    c, s, one, zero = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    rows = {"X": [[one, zero, zero], [zero, c, -s], [zero, s, c]],
            "Y": [[c, zero, s], [zero, one, zero], [-s, zero, c]],
            "Z": [[c, -s, zero], [s, c, zero], [zero, zero, one]]}[axis]
    return np.stack([np.stack(r, -1) for r in rows], -2)


def bvh_forward_kinematics(bvh: dict):
    """World positions [F, J, 3] and local rotations [F, J, 3, 3] of a parsed BVH, in file order.

    BVH semantics: a joint's rotation channels, in the listed order, compose left to right
    (R = R_first R_second R_third); a joint sits at its parent's position plus the parent's world
    rotation applied to its OFFSET; position channels add to the OFFSET.
    """
    frames, count = bvh["frames"], len(bvh["names"])
    positions = np.zeros((frames, count, 3))
    local = np.tile(np.eye(3), (frames, count, 1, 1))
    world = np.zeros_like(local)
    column = 0
    for j in range(count):
        translation = np.zeros((frames, 3))
        for name in bvh["channels"][j]:
            value = bvh["motion"][:, column]
            column += 1
            if name.endswith("position"):
                translation[:, "XYZ".index(name[0])] = value
            else:
                local[:, j] = local[:, j] @ _axis_matrix(name[0], value)
        parent = bvh["parents"][j]
        if parent < 0:
            positions[:, j] = bvh["offsets"][j] + translation
            world[:, j] = local[:, j]
        else:
            positions[:, j] = (positions[:, parent] + world[:, parent] @ bvh["offsets"][j]
                               + translation)
            world[:, j] = world[:, parent] @ local[:, j]
    return positions, local


def reconstruct(text: str, scale: float = 1.0) -> tuple[np.ndarray, dict]:
    """Joint positions [F, 22, 3] in metres, in skeleton.JOINT_NAMES order, from a BVH text."""
    bvh = parse_bvh(text)
    positions, _ = bvh_forward_kinematics(bvh)
    order = [bvh["names"].index(name) for name in JOINT_NAMES]
    return positions[:, order] / scale, bvh


def rotation_angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Geodesic angle in degrees between rotations a and b [..., 3, 3]."""
    cos = (np.trace(a.swapaxes(-1, -2) @ b, axis1=-2, axis2=-1) - 1) / 2
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


def procedural_walk(frames: int = 80) -> np.ndarray:
    return procedural.generate("walk", frames, np.random.default_rng(0), n_captions=0).joints


def tennis_serve() -> np.ndarray:
    return np.load(shared_path("humanml3d", "new_joints_012314.npy"))


# ----------------------------------------------------------------------------------------------
# Round trip: forward kinematics of the written file reproduces the input


@pytest.mark.parametrize("source", ["procedural_walk", "synthetic_walk", "tennis_serve"])
def test_forward_kinematics_of_bvh_reproduces_input(source, tmp_path):
    joints = {"procedural_walk": procedural_walk, "synthetic_walk": lambda: synthetic_walk(80),
              "tennis_serve": tennis_serve}[source]()
    path = write_bvh(tmp_path / "clip.bvh", joints)
    text = path.read_text()
    positions, bvh = reconstruct(text)
    error = np.abs(positions - joints).max()
    print(f"{source}: {len(joints)} frames, max FK error {error:.2e} m")
    assert positions.shape == joints.shape
    assert error < 1e-4
    # The hierarchy is HumanML3D's skeleton with its bone lengths.
    assert bvh["names"][0] == "pelvis" and sorted(bvh["names"]) == sorted(JOINT_NAMES)
    for j, name in enumerate(JOINT_NAMES[1:], 1):
        k = bvh["names"].index(name)
        assert bvh["names"][bvh["parents"][k]] == JOINT_NAMES[PARENTS[j]]
        assert np.linalg.norm(bvh["offsets"][k]) == pytest.approx(BONE_LENGTHS[j], abs=1e-4)


def test_centimetres_scale_positions_not_rotations():
    joints = tennis_serve()
    metres, centimetres = bvh_text(joints), bvh_text(joints, unit="cm")
    positions, bvh_cm = reconstruct(centimetres, scale=100.0)
    error = np.abs(positions - joints).max()
    print(f"tennis serve in cm: max FK error {error:.2e} m")
    assert error < 1e-4
    bvh_m = parse_bvh(metres)
    np.testing.assert_allclose(bvh_cm["offsets"], 100 * bvh_m["offsets"], atol=1e-4)
    np.testing.assert_allclose(bvh_cm["motion"][:, :3], 100 * bvh_m["motion"][:, :3], atol=1e-4)
    np.testing.assert_allclose(bvh_cm["motion"][:, 3:], bvh_m["motion"][:, 3:], atol=1e-5)


def test_noisy_input_errors_stay_at_noise_level():
    """Generated motion is not exactly rigid: the fit spreads the noise, it does not pile up
    down the chains (each bone aims from its solved joint at the observed child)."""
    rng = np.random.default_rng(1)
    joints = procedural_walk() + rng.normal(0, 0.005, (80, NUM_JOINTS, 3))
    positions, _ = reconstruct(bvh_text(joints))
    error = np.linalg.norm(positions - joints, axis=-1)
    print(f"5 mm noise: FK error mean {error.mean():.4f} m, max {error.max():.4f} m")
    assert error.mean() < 0.01
    assert error.max() < 0.05
    # Wrists and toes (ends of chains) are no worse than the joints near the root.
    ends = error[:, [JOINT_NAMES.index(n) for n in ("left_wrist", "right_wrist", "left_foot")]]
    assert ends.mean() < 2 * error[:, 1:].mean()


# ----------------------------------------------------------------------------------------------
# Rotations: closed-form cases


def test_rigidly_rotated_rest_pose_gives_root_rotation_only():
    """The T-pose turned by a known rotation Q_t: the pelvis carries exactly Q_t (yaw from the hips,
    roll and pitch too, not only the spine's swing), every other joint stays at zero."""
    offsets = rest_offsets(procedural_walk())
    frames = 12
    angles = np.stack([np.linspace(-170, 170, frames),     # z (roll)
                       np.linspace(-40, 40, frames),       # x (pitch)
                       np.linspace(0, 330, frames)], -1)   # y (heading), ZXY order
    q = matrices_from_euler(np.radians(angles), "ZXY")
    root = np.stack([np.linspace(0, 2, frames), np.full(frames, 0.9), np.zeros(frames)], -1)
    local = np.tile(np.eye(3), (frames, NUM_JOINTS, 1, 1))
    local[:, 0] = q
    joints = forward_kinematics(offsets, root, local)
    np.testing.assert_allclose(rest_offsets(joints), offsets, atol=1e-7)
    _, _, euler = bvh_channels(joints)
    np.testing.assert_allclose(euler[:, 0], angles, atol=1e-6)
    np.testing.assert_allclose(euler[:, 1:], 0.0, atol=1e-5)


def test_chest_rotation_fits_collars_and_neck():
    """A chest twist (spine3 turned about y relative to spine2) shows up as spine3's rotation,
    not as swings of the collars."""
    offsets = rest_offsets(procedural_walk())
    frames = 5
    local = np.tile(np.eye(3), (frames, NUM_JOINTS, 1, 1))
    twist = np.linspace(0, 60, frames)
    local[:, JOINT_NAMES.index("spine3")] = matrices_from_euler(
        np.radians(np.stack([np.zeros(frames), twist, np.zeros(frames)], -1)), "ZYX")
    joints = forward_kinematics(offsets, np.zeros((frames, 3)), local)
    fitted = fit_rotations(joints, offsets)
    np.testing.assert_allclose(fitted, local, atol=1e-9)


@pytest.mark.parametrize("order", EULER_ORDERS)
def test_euler_round_trip_and_continuity(order):
    rng = np.random.default_rng(2)
    q = rng.normal(size=(200, 4))
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q.T
    rot = np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)                                                      # random unit quaternions
    angles = euler_from_matrices(rot, order)
    np.testing.assert_allclose(matrices_from_euler(angles, order), rot, atol=1e-9)
    # A smooth path straight through gimbal lock (middle angle sweeping past 90 degrees) and a
    # heading winding past 180: the angles stay continuous and reproduce the path.
    t = np.linspace(0, 1, 200)
    path = np.stack([np.radians(30) * np.sin(3 * t), np.radians(150) * t,
                     np.radians(400) * t], -1)
    rot = matrices_from_euler(path, order)
    angles = euler_from_matrices(rot, order)
    np.testing.assert_allclose(matrices_from_euler(angles, order), rot, atol=1e-9)
    assert np.degrees(np.abs(np.diff(angles, axis=0))).max() < 10


# ----------------------------------------------------------------------------------------------
# No Euler flips on real and procedural motion


def _kinds():
    return ["tennis_serve"] + list(procedural.KINDS)


@pytest.mark.parametrize("kind", _kinds())
def test_euler_channels_never_flip(kind):
    """A flip (or a gimbal-lock spin) shows as a channel stepping much further between frames than
    its joint actually turned: every step is at most 1.5 x the turn + 1 degree, and under 90
    degrees unless the joint itself turned that far in one frame (fast procedural motion does)."""
    if kind == "tennis_serve":
        joints = tennis_serve()
    else:
        joints = procedural.generate(kind, 120, np.random.default_rng(3), n_captions=0).joints
    bvh = parse_bvh(bvh_text(joints))
    _, local = bvh_forward_kinematics(bvh)
    angles = bvh["motion"][:, 3:].reshape(bvh["frames"], -1, 3)
    step = np.abs(np.diff(angles, axis=0)).max(-1)           # [F-1, J] largest channel step
    turned = rotation_angle(local[:-1], local[1:])           # [F-1, J] actual rotation step
    print(f"{kind}: largest channel step {step.max():.1f} deg, largest turn "
          f"{turned.max():.1f} deg, worst step/turn {(step / np.maximum(turned, 1.0)).max():.2f}")
    assert np.all(step <= 1.5 * turned + 1.0)
    assert np.all((step < 90) | (turned > 80))


# ----------------------------------------------------------------------------------------------
# Format


def test_bvh_layout_follows_the_format():
    joints = procedural_walk(30)
    text = bvh_text(joints, fps=30)
    lines = text.split("\n")
    assert text.endswith("\n") and "\r" not in text
    assert lines[0] == "HIERARCHY" and lines[1] == "ROOT pelvis" and lines[2] == "{"
    assert lines[3] == "\tOFFSET 0.000000 0.000000 0.000000"      # root position is absolute
    assert lines[4] == "\tCHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation"
    motion = lines.index("MOTION")
    depth = 0
    for line in lines[1:motion]:
        body = line.lstrip("\t")
        indent = len(line) - len(body)
        assert " " not in line[:indent] and body == body.strip() and body
        if body == "}":
            depth -= 1
        assert indent == depth, line
        if body == "{":
            depth += 1
        assert re.fullmatch(r"(ROOT|JOINT) \w+|End Site|[{}]|OFFSET( -?\d+\.\d{6}){3}|"
                            r"CHANNELS (6 Xposition Yposition Zposition|3)( [XYZ]rotation){3}",
                            body), body
    assert depth == 0
    assert lines[motion + 1] == "Frames: 30"
    assert lines[motion + 2] == "Frame Time: 0.03333333"
    rows = lines[motion + 3:-1]
    assert len(rows) == 30 and all(len(row.split(" ")) == 6 + 21 * 3 for row in rows)
    bvh = parse_bvh(text)
    ends = {bvh["names"][j] for j in bvh["end_sites"]}
    assert ends == {"head", "left_wrist", "right_wrist", "left_foot", "right_foot"}
    for channels in bvh["channels"]:
        assert sorted(c[0] for c in channels[-3:]) == ["X", "Y", "Z"]


def test_single_rotation_order_for_every_joint_still_reproduces():
    joints = tennis_serve()
    text = bvh_text(joints, rotation_order="ZXY")
    bvh = parse_bvh(text)
    assert {" ".join(c[-3:]) for c in bvh["channels"]} == {"Zrotation Xrotation Yrotation"}
    positions, _ = reconstruct(text)
    assert np.abs(positions - joints).max() < 1e-4


# ----------------------------------------------------------------------------------------------
# Frames, loops, in place


def test_frame_count_time_and_loop_has_no_closing_frame():
    joints = procedural_walk(40)
    for loop in (False, True):
        bvh = parse_bvh(bvh_text(joints, fps=20, loop=loop))
        assert bvh["frames"] == 40 and bvh["frame_time"] == pytest.approx(0.05)
        np.testing.assert_allclose(bvh["motion"][0, :3], joints[0, 0], atol=1e-6)
        np.testing.assert_allclose(bvh["motion"][-1, :3], joints[-1, 0], atol=1e-6)


def test_in_place_holds_root_xz_at_zero_and_keeps_heading():
    joints = synthetic_walk(60, turn_rate=0.05)
    text = bvh_text(joints, loop=True, in_place=True)
    bvh = parse_bvh(text)
    np.testing.assert_array_equal(bvh["motion"][:, [0, 2]], 0.0)
    np.testing.assert_allclose(bvh["motion"][:, 1], joints[:, 0, 1], atol=1e-6)
    positions, _ = reconstruct(text)
    expected = joints - joints[:, :1] * np.array([1.0, 0.0, 1.0])
    assert np.abs(positions - expected).max() < 1e-4
    # Rotations are those of the moving clip: the heading still turns.
    np.testing.assert_allclose(bvh["motion"][:, 3:], parse_bvh(bvh_text(joints))["motion"][:, 3:],
                               atol=1e-4)


@pytest.mark.parametrize("in_place", [False, True])
def test_closing_frame_repeats_frame_zero_moved_by_the_cycle(in_place):
    joints = synthetic_walk(40, turn_rate=0.03)                # an exact loop of 2 gait periods
    text = bvh_text(joints, loop=True, closing_frame=True, in_place=in_place)
    positions, bvh = reconstruct(text)
    assert bvh["frames"] == 41
    expected = tile_loop(joints, 2, in_place=in_place)[:41]
    assert np.abs(positions - expected).max() < 1e-4
    # The closing frame is frame 0's pose: same local rotations below the root.
    np.testing.assert_allclose(bvh["motion"][-1, 6:], bvh["motion"][0, 6:], atol=1e-3)


# ----------------------------------------------------------------------------------------------
# Files and bad input


def test_write_is_atomic_and_never_overwrites(tmp_path):
    joints = procedural_walk(20)
    path = tmp_path / "walk.bvh"
    assert write_bvh(path, joints) == path
    first = path.read_text()
    with pytest.raises(UserError, match="already exists"):
        write_bvh(path, joints[:10])
    assert path.read_text() == first
    write_bvh(path, joints[:10], overwrite=True)
    assert parse_bvh(path.read_text())["frames"] == 10
    assert os.listdir(tmp_path) == ["walk.bvh"]                 # no temporary files left behind
    with pytest.raises(UserError, match="does not exist"):
        write_bvh(tmp_path / "missing" / "walk.bvh", joints)


@pytest.mark.parametrize("bad, kwargs, message", [
    (np.zeros((10, 20, 3)), {}, r"\[T, 22, 3\]"),
    (np.zeros((0, 22, 3)), {}, r"\[T, 22, 3\]"),
    (np.zeros((22, 3)), {}, r"\[T, 22, 3\]"),
    ("nan", {}, "NaN"),
    (np.zeros((5, 22, 3)), {}, "zero length"),
    ("walk", {"closing_frame": True}, "needs loop=True"),
    ("walk", {"unit": "inch"}, "unit"),
    ("walk", {"rotation_order": "XXY"}, "rotation order"),
    ("walk", {"fps": 0}, "fps"),
    ("walk", {"fps": math.nan}, "fps"),
])
def test_bad_input_raises_one_line_user_error(bad, kwargs, message):
    joints = procedural_walk(10)
    if isinstance(bad, str):
        name, bad = bad, joints.copy()
        if name == "nan":
            bad[3, 5, 1] = np.nan
    with pytest.raises(UserError, match=message) as info:
        bvh_text(bad, **kwargs)
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------------------------
# KIT-ML (21 joints)


def kit_clip(frames: int = 40) -> np.ndarray:
    """A KIT motion with rigid bones: forward kinematics of KIT's rest offsets (measured on the
    official KIT features of ../shared, decoded and scaled to metres) with smooth random joint
    rotations and a root walking forward."""
    import torch

    from motion_loop.export import forward_kinematics, matrices_from_euler, rest_offsets
    from motion_loop.humanml import recover_from_ric
    from motion_loop.skeleton import KIT_METRES_PER_UNIT

    case = torch.load(shared_path("mdm_reference", "kit_recover_from_ric.pt"), weights_only=True)
    pose = recover_from_ric(case["features"], 21).numpy()[:1] * KIT_METRES_PER_UNIT
    offsets = rest_offsets(pose)
    t = np.linspace(0, 2 * np.pi, frames)[:, None, None]
    rng = np.random.default_rng(0)
    angles = 0.4 * np.sin(t + rng.uniform(0, 2 * np.pi, (1, 21, 3)))
    local = matrices_from_euler(angles, "ZXY")
    root = np.stack([np.zeros(frames), np.full(frames, 1.0), np.linspace(0, 2, frames)], axis=1)
    return forward_kinematics(offsets, root, local)


def test_kit_bvh_reproduces_the_21_joint_input(tmp_path):
    from motion_loop.skeleton import KIT_JOINT_NAMES, KIT_PARENTS

    joints = kit_clip()
    assert joints.shape == (40, 21, 3)
    text = write_bvh(tmp_path / "kit.bvh", joints, 12.5, loop=True).read_text()
    bvh = parse_bvh(text)
    positions, _ = bvh_forward_kinematics(bvh)
    order = [bvh["names"].index(name) for name in KIT_JOINT_NAMES]
    error = np.abs(positions[:, order] - joints).max()
    print(f"KIT: max FK error {error:.2e} m")
    assert error < 1e-4
    assert bvh["names"][0] == "pelvis" and sorted(bvh["names"]) == sorted(KIT_JOINT_NAMES)
    for j, name in enumerate(KIT_JOINT_NAMES[1:], 1):
        assert bvh["names"][bvh["parents"][bvh["names"].index(name)]] == KIT_JOINT_NAMES[KIT_PARENTS[j]]
    assert "Frame Time: 0.08000000" in text  # 12.5 fps
