"""Procedural motion library: parametric human motions on the HumanML3D skeleton, with captions.

Thirteen kinds (``KINDS``), each with its own variation (speed, stride, arm swing, direction,
turning, tempo, hand or leg, amplitude). Every pose is built by forward kinematics from joint
rotations on a rest skeleton with HumanML3D's bone lengths, and legs by analytic two-bone IK onto
footholds that stay fixed while a foot is planted: bones keep their lengths exactly and planted
feet do not skate. Every kind is cyclic with period ``params["period"]`` seconds (the pose is an
exact periodic function of time; the root advances steadily), so any number of frames can be made.

Output: joint positions float32 [T, 22, 3], metres, 20 fps, y up, floor at y = 0, the body starting
at the origin facing +z (HumanML3D's canonical start). Example::

    rng = np.random.default_rng(0)
    motion = generate("walk", 120, rng)             # Motion(joints, kind, params, captions)
    data = make_dataset(50, rng)                     # [(joints, [caption, ...], kind), ...]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from motion_loop.errors import UserError
from motion_loop.humanml import facing_angle, rotate_y
from motion_loop.skeleton import FPS, MAX_FRAMES
from motion_loop.procedural.captions import SPLITS, caption_set, captions
from motion_loop.procedural.kinds import KIND_FUNCS

KINDS = tuple(KIND_FUNCS)

__all__ = ["KINDS", "SPLITS", "Motion", "canonicalize", "caption_set", "captions", "evaluate", "facing_angle",
           "generate", "make_dataset", "sample_params"]


@dataclass
class Motion:
    joints: np.ndarray            # float32 [T, 22, 3]
    kind: str
    params: dict                  # the variation drawn for this motion (JSON-able), incl. "period"
    captions: list[str] = field(default_factory=list)


def _check_kind(kind):
    if kind not in KIND_FUNCS:
        raise UserError(f"unknown motion kind {kind!r}; choose one of {', '.join(KINDS)}")


def _plain(value):
    if isinstance(value, (np.floating, float)):
        return float(value)
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return int(value)
    return value


def sample_params(kind: str, rng: np.random.Generator) -> dict:
    """Draw the variation parameters of one motion of this kind (plain floats, ints and strings)."""
    _check_kind(kind)
    params = {key: _plain(value) for key, value in KIND_FUNCS[kind][0](rng).items()}
    params["kind"] = kind
    return params


def evaluate(kind: str, params: dict, times) -> np.ndarray:
    """Joint positions [T, 22, 3] (float64, world frame before canonicalization) at times in seconds.
    Cyclic: evaluate(t + params["period"]) equals evaluate(t) up to a rigid motion of the root."""
    _check_kind(kind)
    return KIND_FUNCS[kind][1](params, np.atleast_1d(np.asarray(times, dtype=np.float64)))


def canonicalize(joints: np.ndarray) -> np.ndarray:
    """Turn about y and shift so that frame 0's pelvis is at x = z = 0 and the body faces +z."""
    joints = np.asarray(joints, dtype=np.float64)
    return rotate_y(joints - joints[0, 0] * np.array([1.0, 0.0, 1.0]), -facing_angle(joints[0]))


def generate(kind: str, n_frames: int, rng: np.random.Generator, params: dict | None = None,
             n_captions: int = 3, split: str = "train") -> Motion:
    """One motion of ``kind``: ``n_frames`` frames at 20 fps, variation and captions drawn from ``rng``
    (pass ``params`` to reuse a variation)."""
    _check_kind(kind)
    if int(n_frames) < 1:
        raise UserError(f"n_frames must be at least 1, got {n_frames}; ask for 40 .. {MAX_FRAMES} frames")
    params = sample_params(kind, rng) if params is None else params
    joints = canonicalize(evaluate(kind, params, np.arange(int(n_frames)) / FPS))
    texts = captions(kind, params, rng, split=split, n=n_captions) if n_captions else []
    return Motion(joints=joints.astype(np.float32), kind=kind, params=params, captions=texts)


def make_dataset(n_per_kind: int, rng: np.random.Generator, min_frames: int = 40, max_frames: int = MAX_FRAMES,
                 kinds=KINDS, n_captions: int = 3, split: str = "train") -> list[tuple[np.ndarray, list[str], str]]:
    """``n_per_kind`` motions of every kind, lengths uniform in [min_frames, max_frames]:
    a list of (joints float32 [T, 22, 3], captions, kind)."""
    if not 1 <= min_frames <= max_frames:
        raise UserError(f"need 1 <= min_frames <= max_frames, got {min_frames} and {max_frames}")
    data = []
    for kind in kinds:
        for _ in range(n_per_kind):
            n = int(rng.integers(min_frames, max_frames + 1))
            motion = generate(kind, n, rng, n_captions=n_captions, split=split)
            data.append((motion.joints, motion.captions, kind))
    return data
