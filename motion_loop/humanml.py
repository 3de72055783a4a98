"""HumanML3D's 263-d motion representation: decode, encode and normalize.

Layout of one frame (22 joints, pelvis first; Guo et al., "Generating Diverse and Natural 3D Human
Motions from Text", CVPR 2022):

    0        root angular velocity about +y, in *half* radians per frame (see below)
    1:3      root linear velocity x, z in the root's facing frame (m/frame)
    3        root height y (m)
    4:67     joints 1..21 relative to the root in x, z, rotated to face +z; y absolute (m)
    67:193   joints 1..21 local rotations, 6D (first two columns of the rotation matrix)
    193:259  joints 0..21 velocities from this frame to the next, in this frame's facing frame
    259:263  foot contacts: left ankle, left toe, right ankle, right toe (0 or 1)

The heading is a rotation about +y by angle theta; HumanML3D stores it as the quaternion
(cos(theta/2), 0, sin(theta/2), 0) and its per-frame change as theta/2 (the arcsine of the relative
quaternion's y part), so feature 0 is half the heading change. `recover_from_ric` integrates exactly
that convention.

Rotation about +y by angle a maps (x, y, z) to (x cos a + z sin a, y, -x sin a + z cos a).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import UserError
from .skeleton import FACE_JOINTS, KINEMATIC_CHAIN, LEFT_FOOT, NUM_JOINTS, PARENTS, RAW_OFFSETS, RIGHT_FOOT

FEATURE_DIM = 263
ROOT = slice(0, 4)
POSITIONS = slice(4, 67)
ROTATIONS = slice(67, 193)
VELOCITIES = slice(193, 259)
CONTACTS = slice(259, 263)
FEATURE_GROUPS = {"root": ROOT, "positions": POSITIONS, "rotations": ROTATIONS,
                  "velocities": VELOCITIES, "contacts": CONTACTS}

# HumanML3D's foot contact test: squared per-frame displacement (m^2) of the ankle or toe below this
# (a 4.5 cm step per frame, 0.89 m/s at 20 fps). The height test in their code is commented out.
CONTACT_SQUARED_DISPLACEMENT = 0.002
# Temporal Gaussian smoothing of the facing direction before it defines the root rotation
# (scipy.ndimage.gaussian_filter1d, sigma 20 frames, truncate 4, edge values repeated).
FACING_SMOOTHING_SIGMA = 20.0

STATS_HINT = "run `python prepare/download_humanml_stats.py` to fetch the HumanML3D Mean.npy and Std.npy"
STD_RANGE = (1e-8, 1e3)  # HumanML3D's Std lies within 0.01 .. 0.7; outside this range a file is broken
MEAN_LIMIT = 1e3


def feature_dim(joints_num: int = NUM_JOINTS) -> int:
    """Length of one frame's feature vector: 4 + 3(J-1) + 6(J-1) + 3J + 4 (263 for 22 joints)."""
    return 12 * joints_num - 1


# ---------------------------------------------------------------------------------------------
# Decoding


def recover_from_ric(features, joints_num: int = NUM_JOINTS):
    """Joint positions from HumanML3D features, using the root motion and the position features.

    features: `[..., T, 12J-1]` torch tensor or numpy array (263 for J = 22), raw (denormalized).
    Returns `[..., T, J, 3]` positions in metres, of the same kind, dtype and device.

    Heading: a_t = sum_{k<t} features[k, 0] (a_0 = 0) is half the heading angle, so frame t is
    turned back by the angle -2 a_t. Root x, z: cumulative sum of the root velocities of the
    previous frames turned back by the heading of the frame they lead to; root y: feature 3.
    Joints: position features turned back by the heading, plus the root x, z.
    """
    is_numpy = isinstance(features, np.ndarray)
    x = torch.from_numpy(features) if is_numpy else features
    if x.ndim < 2 or x.shape[-1] != feature_dim(joints_num):
        raise ValueError(
            f"expected features [..., T, {feature_dim(joints_num)}], got {tuple(x.shape)} "
            "(MDM's [B, 263, 1, T] must be permuted to [B, T, 263] first)")

    half_angle = torch.cumsum(torch.cat([torch.zeros_like(x[..., :1, 0]), x[..., :-1, 0]], dim=-1), dim=-1)
    cos, sin = torch.cos(2 * half_angle), torch.sin(2 * half_angle)

    # Root step that leads into frame t, stored at frame t-1, in frame t's facing frame.
    step = torch.cat([torch.zeros_like(x[..., :1, 1:3]), x[..., :-1, 1:3]], dim=-2)
    step_x = cos * step[..., 0] - sin * step[..., 1]
    step_z = sin * step[..., 0] + cos * step[..., 1]
    root_x, root_z = torch.cumsum(step_x, dim=-1), torch.cumsum(step_z, dim=-1)

    ric = x[..., 4:4 + 3 * (joints_num - 1)].reshape(*x.shape[:-1], joints_num - 1, 3)
    c, s = cos[..., None], sin[..., None]
    joints_x = c * ric[..., 0] - s * ric[..., 2] + root_x[..., None]
    joints_z = s * ric[..., 0] + c * ric[..., 2] + root_z[..., None]
    joints = torch.stack([joints_x, ric[..., 1], joints_z], dim=-1)
    root = torch.stack([root_x, x[..., 3], root_z], dim=-1)
    positions = torch.cat([root[..., None, :], joints], dim=-2)
    return positions.numpy() if is_numpy else positions


# ---------------------------------------------------------------------------------------------
# Encoding


def rotate_y(v: np.ndarray, angle) -> np.ndarray:
    """Rotate vectors `[..., 3]` about +y by `angle` radians (broadcast against v[..., 0])."""
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([c * v[..., 0] + s * v[..., 2], v[..., 1], -s * v[..., 0] + c * v[..., 2]], axis=-1)


def _normalized(v: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """v / |v|, and zero (not NaN) where |v| is 0."""
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(norm, eps)


def _facing_angle(across: np.ndarray) -> np.ndarray:
    """Heading angle psi of `forward = y x across`: the body faces (sin psi, 0, cos psi).

    A vertical or zero `across` has no heading and gives psi = 0 instead of NaN.
    """
    forward_x, forward_z = across[..., 2], -across[..., 0]
    return np.arctan2(forward_x, forward_z)


def facing_angle(joints: np.ndarray) -> np.ndarray:
    """Heading angle psi (radians) of poses `[..., 22, 3]`: the body faces (sin psi, 0, cos psi),
    forward = y x (r_hip - l_hip + r_shoulder - l_shoulder) (HumanML3D's initial facing, unsmoothed)."""
    r_hip, l_hip, r_shoulder, l_shoulder = FACE_JOINTS
    across = joints[..., r_hip, :] - joints[..., l_hip, :] + joints[..., r_shoulder, :] - joints[..., l_shoulder, :]
    return _facing_angle(across)


def gaussian_smooth(signal: np.ndarray, sigma: float = FACING_SMOOTHING_SIGMA) -> np.ndarray:
    """Gaussian filter along axis 0 with edge values repeated (scipy's `gaussian_filter1d(x, sigma,
    axis=0, mode='nearest')`, truncate 4): weights exp(-k^2 / (2 sigma^2)), |k| <= int(4 sigma + 0.5),
    normalized to sum 1."""
    radius = int(4.0 * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    weights /= weights.sum()
    index = np.clip(np.arange(len(signal))[:, None] + offsets[None, :], 0, len(signal) - 1)
    return np.einsum("tk...,k->t...", signal[index], weights)


def _quaternion_between(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Shortest-arc unit quaternions (w, x, y, z) turning unit vectors u onto unit vectors v.

    q = normalize(1 + u.v, u x v) (HumanML3D's `qbetween`). For opposite vectors, where that is 0/0,
    any half turn about an axis perpendicular to u is right; we pick one instead of returning NaN.
    """
    u, v = np.broadcast_arrays(u, v)
    q = np.concatenate([1.0 + np.sum(u * v, axis=-1, keepdims=True), np.cross(u, v)], axis=-1)
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    opposite = norm[..., 0] < 1e-9
    if np.any(opposite):
        uo = u[opposite]
        helper = np.where(np.abs(uo[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
        q[opposite] = np.concatenate([np.zeros_like(uo[:, :1]), _normalized(np.cross(uo, helper))], axis=-1)
        norm[opposite] = 1.0
    return q / norm


def _quaternion_multiply(q: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Hamilton product q r of quaternions (w, x, y, z)."""
    w1, x1, y1, z1 = np.moveaxis(q, -1, 0)
    w2, x2, y2, z2 = np.moveaxis(r, -1, 0)
    return np.stack([
        w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
        w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
        w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
        w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
    ], axis=-1)


def _quaternion_to_cont6d(q: np.ndarray) -> np.ndarray:
    """The first two columns of the rotation matrix of unit quaternions q: (m00, m10, m20, m01, m11, m21)
    (Zhou et al. 2019's continuous 6D representation, HumanML3D's column order)."""
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y + w * z), 2 * (x * z - w * y),
        2 * (x * y - w * z), 1 - 2 * (x * x + z * z), 2 * (y * z + w * x),
    ], axis=-1)


def _chain_heads() -> tuple[int, ...]:
    """Joints whose bone starts a kinematic chain (1, 2, 3 from the pelvis, 13, 14 from the spine):
    HumanML3D's IK measures their local rotation against the root rotation, not the parent bone."""
    return tuple(chain[1] for chain in KINEMATIC_CHAIN)


def canonical_start(joints: np.ndarray) -> np.ndarray:
    """HumanML3D's canonical placement of a motion `[T, 22, 3]` (float64 copy): lowest joint of the
    whole motion on the floor y = 0, the root of frame 0 above the origin, frame 0 facing +z
    (facing from the hips and shoulders: forward = y x (r_hip - l_hip + r_shoulder - l_shoulder))."""
    joints = np.array(joints, dtype=np.float64)
    joints[..., 1] -= joints[..., 1].min()
    joints[..., [0, 2]] -= joints[0, 0, [0, 2]]
    return rotate_y(joints, -facing_angle(joints[0]))


def _root_heading(joints: np.ndarray) -> np.ndarray:
    """Per-frame root heading psi (radians) exactly as HumanML3D's IK computes it.

    HumanML3D unpacks its face-joint list in a different order inside the IK, so there the hip vector
    is l_hip - r_hip while the shoulder vector is r_shoulder - l_shoulder: `across` is the shoulder
    line minus the hip line. Every released feature file uses this, so we keep it. The normalized
    `across` gives a forward vector that is smoothed over time, then its angle is the heading.
    """
    r_hip, l_hip, r_shoulder, l_shoulder = FACE_JOINTS
    across = joints[:, l_hip] - joints[:, r_hip] + joints[:, r_shoulder] - joints[:, l_shoulder]
    across = _normalized(across)
    forward = np.stack([across[:, 2], -across[:, 0]], axis=-1)
    forward = gaussian_smooth(forward)
    return np.arctan2(forward[:, 0], forward[:, 1])


def joints_to_features(joints):
    """HumanML3D features `[T-1, 263]` of joint positions `[T, 22, 3]` (metres, y up, T >= 2).

    Follows HumanML3D's `process_file` (motion_representation.ipynb) step by step, except the
    skeleton retargeting (`uniform_skeleton`): the joints should already have the target bone
    lengths (`skeleton.BONE_LENGTHS`), as every decoded HumanML3D motion does.

    1. `canonical_start`: lowest joint of the whole motion at y = 0, root of frame 0 at the origin,
       frame 0 facing +z.
    2. Root rotation r_t: about +y by theta_t = -psi_t, turning the (smoothed, see `_root_heading`)
       facing direction onto +z; theta_0 = 0 as in the released data.
    3. Root: half heading change 0.5 wrap(theta_{t+1} - theta_t); root step root_{t+1} - root_t
       turned by r_{t+1} (x, z); root height.
    4. Positions: joints minus the root's x, z, turned by r_t.
    5. Rotations: IK on the 22-joint tree. Each bone's global rotation is the shortest arc from its
       rest direction (`skeleton.RAW_OFFSETS`) to its current direction; a joint's local rotation is
       that of its parent bone's inverse (the root rotation for chain heads) times its own; stored
       as 6D.
    6. Velocities: joints_{t+1} - joints_t turned by r_t.
    7. Contacts: ankle and toe squared displacement to the next frame below 0.002 m^2.

    Frame t uses frames t and t+1, so the last frame has no features; the facing filter reaches 80
    frames either way, so the last ~80 feature frames also depend on how many frames follow (encoding
    a decoded clip, which lost its last input frame, differs there by up to ~1e-2; with that frame
    restored it matches the release to 1e-5). One deliberate difference:
    HumanML3D takes the arcsine of the relative quaternion, which flips the sign of the turn on the
    rare frames where the heading crosses +-pi; we wrap the angle difference instead (identical
    everywhere else). Degenerate frames (zero-length bones, coincident hips) give finite features.

    Accepts numpy or torch; returns the same kind (torch: input dtype and device; numpy: float32).
    Computes in float64.
    """
    is_torch = isinstance(joints, torch.Tensor)
    array = joints.detach().cpu().numpy() if is_torch else np.asarray(joints)
    if array.ndim != 3 or array.shape[1:] != (NUM_JOINTS, 3) or array.shape[0] < 2:
        raise ValueError(f"expected joint positions [T >= 2, {NUM_JOINTS}, 3], got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("joint positions contain NaN or infinite values")

    positions = canonical_start(array)
    theta = -_root_heading(positions)  # root rotation angle: turns the facing direction onto +z
    # The released HumanML3D features use the identity root rotation at frame 0 (frame 0 already faces
    # +z after the canonical start; the line doing this is commented out in today's common/skeleton.py,
    # but the released files match it to 1e-7 and differ by 0.1 rad without it).
    theta[0] = 0.0
    frames = len(positions)

    # Root: half heading change, root step in the next frame's facing frame, height.
    turn = np.angle(np.exp(1j * (theta[1:] - theta[:-1])))
    root_step = rotate_y(positions[1:, 0] - positions[:-1, 0], theta[1:])
    root = np.concatenate([0.5 * turn[:, None], root_step[:, [0, 2]], positions[:-1, 0, 1:2]], axis=-1)

    # Positions relative to the root in x, z, facing +z.
    local = positions.copy()
    local[..., [0, 2]] -= positions[:, :1, [0, 2]]
    ric = rotate_y(local[:-1, 1:], theta[:-1, None]).reshape(frames - 1, -1)

    # Rotations: IK with shortest arcs from the rest directions.
    parents = np.array(PARENTS[1:])
    rest = np.array(RAW_OFFSETS[1:], dtype=np.float64)
    bone = positions[:-1, 1:] - positions[:-1, parents]
    bone_length = np.linalg.norm(bone, axis=-1, keepdims=True)
    direction = np.where(bone_length > 1e-9, bone / np.maximum(bone_length, 1e-9), rest)
    bone_rotation = _quaternion_between(rest, direction)  # [T-1, 21, 4], joint j at index j-1
    root_rotation = np.stack([np.cos(theta[:-1] / 2), np.zeros(frames - 1),
                              np.sin(theta[:-1] / 2), np.zeros(frames - 1)], axis=-1)
    heads = np.isin(np.arange(1, NUM_JOINTS), _chain_heads())
    parent_rotation = np.where(heads[None, :, None], root_rotation[:, None],
                               bone_rotation[:, np.maximum(parents - 1, 0)])
    parent_inverse = parent_rotation * np.array([1.0, -1.0, -1.0, -1.0])
    local_rotation = _quaternion_multiply(parent_inverse, bone_rotation)
    rotations = _quaternion_to_cont6d(local_rotation).reshape(frames - 1, -1)

    # Velocities of all joints in the current facing frame.
    velocities = rotate_y(positions[1:] - positions[:-1], theta[:-1, None]).reshape(frames - 1, -1)

    # Contacts from the squared displacement of ankle and toe.
    feet = list(LEFT_FOOT) + list(RIGHT_FOOT)
    displacement = np.sum((positions[1:, feet] - positions[:-1, feet]) ** 2, axis=-1)
    contacts = (displacement < CONTACT_SQUARED_DISPLACEMENT).astype(np.float64)

    features = np.concatenate([root, ric, rotations, velocities, contacts], axis=-1)
    if is_torch:
        dtype = joints.dtype if joints.is_floating_point() else torch.float32
        return torch.from_numpy(features).to(device=joints.device, dtype=dtype)
    return features.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Normalization


@dataclass(frozen=True)
class Normalizer:
    """Per-feature statistics: normalize(x) = (x - mean) / std over the last axis `[..., 263]`.

    MDM's network reads and writes normalized features; decode `denormalize(x)`.
    """

    mean: np.ndarray  # [263] float32
    std: np.ndarray  # [263] float32

    @classmethod
    def from_dir(cls, path, dim: int = FEATURE_DIM, hint: str = STATS_HINT, unit: float = 1.0) -> "Normalizer":
        """Load `Mean.npy` and `Std.npy` from the folder `path` (HumanML3D's release files; KIT-ML's
        with ``dim`` 251, ``unit`` = dataset units per metre for the sanity limits, and their ``hint``).

        Raises UserError, naming the file and the fix, when a file is missing, unreadable,
        mis-shaped or has a non-positive or non-finite std.
        """
        folder = Path(path)
        if folder.is_file():
            raise UserError(f"HumanML3D statistics folder {folder} is a file: pass the folder that holds "
                            f"Mean.npy and Std.npy (e.g. {folder.parent})")
        if not folder.is_dir():
            raise UserError(f"statistics folder {folder} does not exist; {hint}")
        arrays = {}
        for name in ("Mean.npy", "Std.npy"):
            file = folder / name
            if not file.is_file():
                raise UserError(f"{file} is missing; {hint}")
            try:
                array = np.load(file, allow_pickle=False)
            except (OSError, ValueError) as error:
                raise UserError(f"{file} is not a readable .npy file ({error}); {hint}") from None
            if array.shape != (dim,) or not np.issubdtype(array.dtype, np.floating):
                raise UserError(f"{file} holds {array.dtype} {array.shape}, expected float ({dim},); "
                                f"{hint}")
            if not np.all(np.isfinite(array)):
                raise UserError(f"{file} contains NaN or infinite values; {hint}")
            arrays[name] = array.astype(np.float32)
        if np.any(arrays["Std.npy"] <= 0):
            raise UserError(f"{folder / 'Std.npy'} has zero or negative entries; {hint}")
        std = arrays["Std.npy"]
        if std.min() < STD_RANGE[0] or std.max() > STD_RANGE[1] * unit:
            raise UserError(f"{folder / 'Std.npy'} is absurd (entries from {std.min():.3g} to {std.max():.3g}; "
                            f"HumanML3D's lie within {STD_RANGE[0]:g} .. {STD_RANGE[1] * unit:g}): it would scale the "
                            f"motion to nothing or to infinity; {hint}")
        mean = arrays["Mean.npy"]
        if np.abs(mean).max() > MEAN_LIMIT * unit:
            raise UserError(f"{folder / 'Mean.npy'} is absurd (an entry of {np.abs(mean).max():.3g}; HumanML3D's "
                            f"are below {MEAN_LIMIT * unit:g}); {hint}")
        return cls(mean=arrays["Mean.npy"], std=arrays["Std.npy"])

    def _stats(self, x):
        if x.shape[-1] != self.mean.shape[-1]:
            raise ValueError(f"expected features [..., {self.mean.shape[-1]}], got {tuple(x.shape)}")
        if isinstance(x, torch.Tensor):
            return (torch.as_tensor(self.mean, dtype=x.dtype, device=x.device),
                    torch.as_tensor(self.std, dtype=x.dtype, device=x.device))
        return self.mean, self.std

    def normalize(self, x):
        """(x - mean) / std, for torch tensors or numpy arrays `[..., 263]`."""
        mean, std = self._stats(x)
        return (x - mean) / std

    def denormalize(self, x):
        """x * std + mean, for torch tensors or numpy arrays `[..., 263]`."""
        mean, std = self._stats(x)
        return x * std + mean
