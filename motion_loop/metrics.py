"""Motion quality on joint positions `[T, 22, 3]` in metres (y up) at the motion's frame rate.

All functions take numpy arrays or torch tensors and compute in float64 numpy.

- `jerk_profile`, `transition_jerk`: FlowMDM's peak jerk (PJ) and area under the jerk (AUJ)
  (Barquero et al., "Seamless Human Motion Composition with Blended Positional Encodings", CVPR 2024).
- `transition_distance`: TEACH / STMC's pose jump at a transition.
- `foot_skating_ratio`: GMD's foot skating ratio (Karunratanakul et al., "Guided Motion Diffusion for
  Controllable Human Motion Synthesis", ICCV 2023).
- `loop_seam_report`: how visible the seam of a loop is, relative to the loop's own interior.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .skeleton import FPS, KIT_NUM_JOINTS, LEFT_FOOT, NUM_JOINTS, RIGHT_FOOT

# FlowMDM (utils/metrics.py): mean per-frame jerk of HumanML3D's ground truth, m/frame^3, and the
# window around each transition (frames) used for HumanML3D (30 for BABEL).
HUMANML_GT_MEAN_JERK = 0.033031363
TRANSITION_WINDOW = 60

# GMD (data_loaders/humanml/utils/metrics.py): a foot touches the ground below 5 cm in two consecutive
# frames; it skates when its horizontal speed, and its speed averaged over 5 frames, exceed 0.5 m/s.
SKATING_HEIGHT = 0.05
SKATING_SPEED = 0.5
SKATING_WINDOW = 5
SKATING_JOINTS = (LEFT_FOOT[1], RIGHT_FOOT[1])  # joints 10 and 11 (toes)

# Added to both sides of a seam ratio (m/frame^n) so a perfectly still loop scores 1, not 0/0.
SEAM_RATIO_EPS = 1e-9


def _as_joints(joints, min_frames: int) -> np.ndarray:
    """float64 numpy `[..., T, J, 3]` from numpy or torch, with T >= min_frames."""
    if hasattr(joints, "detach"):
        joints = joints.detach().cpu().numpy()
    array = np.asarray(joints, dtype=np.float64)
    if array.ndim < 3 or array.shape[-1] != 3 or array.shape[-3] < min_frames:
        raise ValueError(f"expected joint positions [..., T >= {min_frames}, J, 3], got {array.shape}")
    return array


def _humanml_motion(joints, min_frames: int, fps: float, what: str,
                    joint_counts: tuple[int, ...] = (NUM_JOINTS,)) -> np.ndarray:
    """One HumanML3D motion `[T >= min_frames, 22, 3]` (or another of ``joint_counts`` joints, e.g.
    KIT's 21 where the metric does not look at particular joints), finite, at a positive finite fps."""
    if not (isinstance(fps, (int, float, np.number)) and np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number of frames per second, got {fps!r}")
    array = _as_joints(joints, min_frames)
    if array.ndim != 3 or array.shape[1] not in joint_counts:
        raise ValueError(f"expected {what} [T, {NUM_JOINTS}, 3] (HumanML3D joints), got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"the {what} holds NaN or infinite joint positions")
    return array


def jerk_profile(joints) -> np.ndarray:
    """Per-frame jerk `[..., T-3]` in m/frame^3: the third finite difference of every joint,
    its L1 norm over x, y, z, then the maximum over joints (FlowMDM's `calculate_jerk`).

    The unit is metres per frame cubed, as in FlowMDM; multiply by fps^3 for m/s^3. Entry k uses
    frames k .. k+3.
    """
    jerk = np.diff(_as_joints(joints, 4), n=3, axis=-3)
    return np.abs(jerk).sum(axis=-1).max(axis=-1)


def transition_jerk(joints, transitions, window: int = TRANSITION_WINDOW,
                    gt_mean_jerk: float = HUMANML_GT_MEAN_JERK) -> dict[str, float]:
    """FlowMDM's peak jerk (PJ) and area under the jerk (AUJ) around transitions of one motion.

    For each transition frame tau (first frame of the next segment), the window
    joints[tau - window//2 : tau + window - window//2] gives a jerk profile of window - 3 values
    (`jerk_profile`); profiles are averaged over the transitions. PJ is the maximum of the mean
    profile, AUJ the sum over its frames of |profile - gt_mean_jerk|. Units: PJ in m/frame^3, AUJ in
    m/frame^3 summed over frames (FlowMDM reports both this way; for HumanML3D, 20 fps, window 60 and
    the ground-truth mean jerk 0.033031). FlowMDM averages the profiles over a whole test set before
    taking max and sum; here the average runs over this motion's transitions.
    """
    joints = _as_joints(joints, window)
    left, right = window // 2, window - window // 2
    taus = [int(t) for t in np.atleast_1d(transitions)]
    if not taus or any(t - left < 0 or t + right > joints.shape[-3] for t in taus):
        raise ValueError(f"each transition needs {left} frames before and {right} from it inside the "
                         f"{joints.shape[-3]} frames; got {taus}")
    return peak_and_area(jerk_profile(joints), taus, window, gt_mean_jerk)


def peak_and_area(profile: np.ndarray, transitions, window: int = TRANSITION_WINDOW,
                  gt_mean_jerk: float = HUMANML_GT_MEAN_JERK) -> dict[str, float]:
    """PJ and AUJ (`transition_jerk`) from a motion's whole `jerk_profile` ``[..., T-3]`` (or one
    spliced from several motions): the profile over ``window`` frames centred on each transition
    (entries tau - window//2 .. tau + window - window//2 - 4), averaged over the transitions."""
    left, right = window // 2, window - window // 2
    mean = np.mean([profile[..., t - left:t + right - 3] for t in np.atleast_1d(transitions)], axis=0)
    return {"peak_jerk": float(mean.max()), "auj": float(np.abs(mean - gt_mean_jerk).sum())}


def transition_distance(joints, transitions) -> float:
    """TEACH / STMC transition distance, x100 (so centimetres for joints in metres).

    At each transition frame tau, the distance between the root-relative poses of frames tau - 1
    and tau, averaged over all joints (the pelvis itself contributes 0), then over transitions.
    """
    joints = _as_joints(joints, 2)
    taus = [int(t) for t in np.atleast_1d(transitions)]
    if not taus or any(t < 1 or t >= joints.shape[-3] for t in taus):
        raise ValueError(f"transitions must lie in 1 .. {joints.shape[-3] - 1}; got {taus}")
    local = joints - joints[..., :1, :]
    index = np.array(taus)
    jump = np.linalg.norm(local[..., index, :, :] - local[..., index - 1, :, :], axis=-1)
    return float(100.0 * jump.mean())


def foot_skating_ratio(joints, fps: float = FPS) -> float:
    """GMD's foot skating ratio of one motion `[T, 22, 3]`: fraction of the T-1 frame pairs in which
    a foot (joint 10 or 11) skates.

    A foot touches the ground when its height is below 5 cm in both frames of the pair; it skates
    when it also moves horizontally (x, z) faster than 0.5 m/s, both between the two frames and on
    average over 5 pairs centred there (zeros outside the motion, as scipy's uniform_filter1d with
    mode='constant'). Heights are taken as they are: the floor must be at y = 0, as in HumanML3D.
    """
    joints = _humanml_motion(joints, 2, fps, "motion")
    feet = joints[:, SKATING_JOINTS]  # [T, 2, 3]
    speed = np.linalg.norm(feet[1:, :, [0, 2]] - feet[:-1, :, [0, 2]], axis=-1) * fps  # [T-1, 2] m/s
    kernel = np.ones(SKATING_WINDOW) / SKATING_WINDOW
    # centred moving average; np.convolve(mode="same") would return the kernel's length for short motions
    offset = (SKATING_WINDOW - 1) // 2
    mean_speed = np.stack([np.convolve(speed[:, f], kernel)[offset: offset + len(speed)] for f in range(2)], axis=-1)
    height = feet[..., 1]
    contact = (height[:-1] < SKATING_HEIGHT) & (height[1:] < SKATING_HEIGHT)
    skating = contact & (speed > SKATING_SPEED) & (mean_speed > SKATING_SPEED)
    return float(np.mean(np.any(skating, axis=-1)))


@dataclass(frozen=True)
class SeamReport:
    """How the seam of a loop compares with the loop's interior (see `loop_seam_report`).

    Ratios are seam / interior median (1 = the seam looks like any other frame). seam_* and
    interior_* are the per-frame joint-averaged magnitudes in SI units: velocity m/s,
    acceleration m/s^2, jerk m/s^3. peak_jerk and auj are FlowMDM's PJ and AUJ (m/frame^3, see
    `transition_jerk`) over a 60-frame window centred on the seam; None for loops under 60 frames.
    """

    frames: int
    fps: float
    velocity_ratio: float
    acceleration_ratio: float
    jerk_ratio: float
    seam_velocity: float
    seam_acceleration: float
    seam_jerk: float
    interior_velocity: float
    interior_acceleration: float
    interior_jerk: float
    peak_jerk: float | None
    auj: float | None

    def to_dict(self) -> dict:
        """Plain JSON-serialisable dict (ints, floats, None)."""
        return asdict(self)


def _next_repetition(joints: np.ndarray) -> np.ndarray:
    """The loop's frames placed where they follow its last frame when the loop plays again.

    A loop repeats up to a rigid motion G (a turn about +y and a horizontal shift): a walking loop
    moves on, a turning one keeps turning. The joints alone do not say which G, so we take the one
    that makes the seam smoothest: least squares over the third differences, x and z, of all joints
    in the three stencils that straddle the seam (frames T-3, T-2, T-1 then G(0), G(1), G(2)). With
    G = (rotation [[c, s], [-s, c]] about the frame-0 root, shift u) this is linear in (c, s, u);
    (c, s) is then normalized to a rotation and u refitted.

    Why this is fair: an offset held after the seam changes those three third differences by
    (1, -2, 1) times the offset (exactly for a shift, to first order for a turn), a pattern
    orthogonal to any jerk that is constant or linear in time, so a smooth loop's natural jerk is
    left alone, while a jump in pose, root speed or turning rate is not a rigid motion and stays
    visible. (Continuing the root from hip/shoulder headings instead was off by ~1e-5 m, which
    already shows in the jerk of slow motions.)
    """
    root0 = joints[0, 0, [0, 2]]
    start = joints[:3][..., [0, 2]] - root0  # [3, J, 2], about the frame-0 root
    end = joints[-3:][..., [0, 2]]
    taps = np.array([-1.0, 3.0, -3.0, 1.0])  # np.diff(n=3) weights of frames k .. k+3
    rows, rhs = [], []
    for first in range(3):  # stencil over window frames first .. first+3 of [end, G(start)]
        frames = range(first, first + 4)
        known = sum(w * end[f] for w, f in zip(taps, frames) if f < 3)
        px = sum(w * start[f - 3, :, 0] for w, f in zip(taps, frames) if f >= 3)
        pz = sum(w * start[f - 3, :, 1] for w, f in zip(taps, frames) if f >= 3)
        weight = sum(w for w, f in zip(taps, frames) if f >= 3)
        ones, zeros = np.full_like(px, weight), np.zeros_like(px)
        rows += [np.stack([px, pz, ones, zeros], -1), np.stack([pz, -px, zeros, ones], -1)]
        rhs += [-known[:, 0], -known[:, 1]]
    a, b = np.concatenate(rows), np.concatenate(rhs)
    c, s, *_ = np.linalg.lstsq(a, b, rcond=None)[0]
    norm = np.hypot(c, s)
    c, s = (c / norm, s / norm) if norm > 1e-9 else (1.0, 0.0)
    shift = np.linalg.lstsq(a[:, 2:], b - a[:, :2] @ np.array([c, s]), rcond=None)[0]
    moved = joints.copy()
    x, z = joints[..., 0] - root0[0], joints[..., 2] - root0[1]
    moved[..., 0] = c * x + s * z + shift[0]
    moved[..., 2] = -s * x + c * z + shift[1]
    return moved


def loop_seam_report(joints, fps: float = FPS) -> SeamReport:
    """Seam quality of a loop `[T, 22, 3]` (T >= 10): frame T-1 is followed by frame 0.

    The loop is rolled so that the seam sits in the middle: its second half, then its first half
    placed by `_next_repetition` (the rigid motion that continues the loop most smoothly). So the
    trajectory offset between the end and the start of a walking loop, or the heading offset of a
    turning loop, is not a jump, while any mismatch of the pose (root-relative positions, root
    height) or of the root's speed or turning rate is.

    On this sequence, the n-th finite differences (n = 1 velocity, 2 acceleration, 3 jerk) of each
    joint are reduced per stencil to their L2 norm averaged over joints. The seam value is the largest
    over the n stencils that straddle the seam; the interior value is the median over all others.
    ratio = (seam + eps) / (interior + eps), eps = 1e-9 m/frame^n. A seamless loop scores about 1
    (a smooth loop's seam can land anywhere in its cycle, so 0.5 .. 2 is normal); a clip wrapped around
    with a pose jump scores far above (10 .. 1000).
    """
    joints = _humanml_motion(joints, 10, fps, "loop", (NUM_JOINTS, KIT_NUM_JOINTS))  # every joint counts alike
    frames = joints.shape[0]
    half = frames // 2
    sequence = np.concatenate([joints[half:], _next_repetition(joints)[:half]])
    seam = frames - half  # first frame of the next repetition

    values = {}
    for order, name in ((1, "velocity"), (2, "acceleration"), (3, "jerk")):
        per_stencil = np.linalg.norm(np.diff(sequence, n=order, axis=0), axis=-1).mean(axis=-1)
        across = np.arange(seam - order, seam)  # stencils k .. k+order that contain the seam
        seam_value = per_stencil[across].max()
        interior = np.median(np.delete(per_stencil, across))
        values[f"{name}_ratio"] = float((seam_value + SEAM_RATIO_EPS) / (interior + SEAM_RATIO_EPS))
        values[f"seam_{name}"] = float(seam_value * fps ** order)
        values[f"interior_{name}"] = float(interior * fps ** order)

    peak_jerk = auj = None
    if frames >= TRANSITION_WINDOW:
        jerks = transition_jerk(sequence, [seam])
        peak_jerk, auj = jerks["peak_jerk"], jerks["auj"]
    return SeamReport(frames=frames, fps=float(fps), peak_jerk=peak_jerk, auj=auj, **values)
