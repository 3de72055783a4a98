"""Does a generated motion show the prompted kind? A held-out classifier of procedural motion kinds.

:class:`KindClassifier` is a nearest-centroid classifier with a shared, shrunk covariance (linear
discriminant analysis: distance ``(d - mu_k)^T S^-1 (d - mu_k)``) over :func:`motion_descriptor`,
statistics of a motion that do not depend on its length, position or heading, nor on which side
(left or right hand, leg or turn) does it:

- from the HumanML3D features of the motion (root-relative joints in the body's facing frame, root
  height and speed, turning rate, joint velocities), the mean and the standard deviation over time
  of each feature, and the RMS of its part above 1 Hz (fast periodic motion: punching, waving,
  running vs slow squats), then
- made mirror invariant: with ``m`` the same statistics of the mirrored motion (x negated, left and
  right joints swapped), the descriptor is ``[d + m, |d - m|]``, so a left-hand wave and a right-hand
  wave share their statistics.

It is fitted on a fresh procedural sample (drawn with its own seed, never the training data) and
is meant to be reused by evaluation reports: ``KindClassifier.fit_procedural(n_per_kind, seed)``,
then ``predict(list of joints [T, 22, 3])``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from motion_loop.diffusion import DEFAULT_GUIDANCE_INTERVAL
from motion_loop.errors import UserError, run_cli
from motion_loop.humanml import joints_to_features
from motion_loop.procedural import KINDS, make_dataset
from motion_loop.sampling import DEFAULT_SAMPLER, DEFAULT_STEPS, ODE_SAMPLERS
from motion_loop.skeleton import FPS, PARENTS

# Left/right joint pairs of the 22-joint skeleton (hips, knees, ankles, feet, collars, shoulders,
# elbows, wrists): a mirror swaps them.
MIRROR_PAIRS = ((1, 2), (4, 5), (7, 8), (10, 11), (13, 14), (16, 17), (18, 19), (20, 21))
FAST_HZ = 1.0  # split between slow and fast variance in the spectral statistic
DESCRIPTOR_FEATURES = slice(0, 67)  # root (0:4) and root-relative positions (4:67); see motion_descriptor
MIN_FRAMES = 10


def mirror(joints: np.ndarray) -> np.ndarray:
    """The motion mirrored left-right: x negated, left and right joints swapped."""
    joints = np.asarray(joints, dtype=np.float64).copy()
    joints[..., 0] *= -1
    order = np.arange(joints.shape[-2])
    for a, b in MIRROR_PAIRS:
        order[a], order[b] = b, a
    return joints[..., order, :]


def _statistics(joints: np.ndarray, fps: float) -> np.ndarray:
    features = joints_to_features(np.asarray(joints, dtype=np.float32)).astype(np.float64)
    pose = features[:, DESCRIPTOR_FEATURES]
    # Joint speeds (m/s) from the local velocities (193:259), one per joint.
    speed = np.linalg.norm(features[:, 193:259].reshape(len(features), -1, 3), axis=-1) * fps
    series = np.concatenate([pose, speed], axis=1)  # [T, D]
    mean, std = series.mean(0), series.std(0)
    centred = series - mean
    power = np.abs(np.fft.rfft(centred, axis=0)) ** 2
    freqs = np.fft.rfftfreq(len(series), d=1.0 / fps)
    fast = np.sqrt(2 * power[freqs > FAST_HZ].sum(0)) / len(series)  # RMS of the part above FAST_HZ
    return np.concatenate([mean, std, fast])


def motion_descriptor(joints, fps: float = FPS) -> np.ndarray:
    """Length-, position-, heading- and mirror-invariant statistics of one motion ``[T, 22, 3]``."""
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (len(PARENTS), 3) or len(joints) < MIN_FRAMES:
        raise ValueError(f"expected one motion [T >= {MIN_FRAMES}, 22, 3], got {joints.shape}")
    d, m = _statistics(joints, fps), _statistics(mirror(joints), fps)
    return np.concatenate([d + m, np.abs(d - m)])


@dataclass
class KindClassifier:
    """LDA nearest centroid over :func:`motion_descriptor` (see the module docstring)."""

    kinds: tuple[str, ...]
    centroids: np.ndarray  # [K, D] in standardized descriptor space
    offset: np.ndarray  # [D]
    scale: np.ndarray  # [D]
    precision: np.ndarray  # [D, D], inverse of the shrunk pooled within-class covariance
    fps: float = FPS

    @classmethod
    def fit(cls, motions: list[np.ndarray], labels: list[str], shrinkage: float = 0.1, fps: float = FPS) -> "KindClassifier":
        """Fit on motions ``[T, 22, 3]`` with their kinds. ``shrinkage`` blends the pooled covariance
        of the standardized descriptors with the identity (Ledoit-Wolf style), which keeps the
        precision well conditioned with few samples per kind."""
        x = np.stack([motion_descriptor(j, fps) for j in motions])
        offset, scale = x.mean(0), np.maximum(x.std(0), 1e-6)
        z = (x - offset) / scale
        kinds = tuple(dict.fromkeys(labels))
        labels = np.asarray(labels)
        centroids = np.stack([z[labels == k].mean(0) for k in kinds])
        within = z - centroids[[kinds.index(k) for k in labels]]
        covariance = within.T @ within / max(1, len(z) - len(kinds))
        covariance = (1 - shrinkage) * covariance + shrinkage * np.eye(len(covariance))
        return cls(kinds, centroids, offset, scale, np.linalg.inv(covariance), fps)

    @classmethod
    def fit_procedural(cls, n_per_kind: int = 40, seed: int = 12345, min_frames: int = 40,
                       max_frames: int = 196, **kwargs) -> "KindClassifier":
        """Fit on a fresh procedural sample: ``n_per_kind`` motions of every kind, lengths uniform in
        ``[min_frames, max_frames]``, drawn with ``seed`` (keep it apart from any training seed)."""
        data = make_dataset(n_per_kind, np.random.default_rng(seed), min_frames, max_frames, n_captions=0)
        return cls.fit([j for j, _, _ in data], [k for _, _, k in data], **kwargs)

    def distances(self, motions: list[np.ndarray]) -> np.ndarray:
        """Squared Mahalanobis distances ``[N, K]`` to each kind's centroid."""
        z = (np.stack([motion_descriptor(j, self.fps) for j in motions]) - self.offset) / self.scale
        diff = z[:, None, :] - self.centroids[None]
        return np.einsum("nkd,de,nke->nk", diff, self.precision, diff)

    def predict(self, motions: list[np.ndarray]) -> list[str]:
        """The nearest kind of each motion ``[T, 22, 3]``."""
        return [self.kinds[i] for i in self.distances(motions).argmin(1)]


def accuracy_by_kind(predicted: list[str], expected: list[str]) -> dict:
    """``{"overall": accuracy, "per_kind": {kind: accuracy}, "confusions": {"kind->predicted": n}}``."""
    right = Counter(e for p, e in zip(predicted, expected) if p == e)
    total = Counter(expected)
    wrong = Counter(f"{e}->{p}" for p, e in zip(predicted, expected) if p != e)
    return {
        "overall": sum(right.values()) / max(1, len(expected)),
        "per_kind": {k: right[k] / total[k] for k in KINDS if total[k]},
        "confusions": dict(wrong.most_common()),
    }


# ----------------------------------------------------------------------------------------------
# Generated motions


def evaluation_prompts(split: str, n_per_kind: int, seed: int, kinds=KINDS) -> list[tuple[str, str]]:
    """``(caption, kind)`` pairs: ``n_per_kind`` captions of ``split`` ("train": captions the model
    saw; "heldout": new paraphrases) for each kind, each of a freshly drawn variation."""
    from motion_loop.procedural import captions, sample_params

    rng = np.random.default_rng(seed)
    out = []
    for kind in kinds:
        for _ in range(n_per_kind):
            out.append((captions(kind, sample_params(kind, rng), rng, split=split, n=1)[0], kind))
    return out


def generate_joints(model_path, prompts: list[str], *, seconds: float = 6.0, loop: bool = False,
                    guidance: float = 2.5, steps: int = DEFAULT_STEPS, seed: int = 0, batch_size: int = 64,
                    device: str = "cpu", collage: str = "seamless", caption_bank: bool = True,
                    with_features: bool = False, velocity_fusion: bool = True, sampler: str = DEFAULT_SAMPLER,
                    guidance_interval: Sequence[float] | None = None):
    """Joint positions ``[T, 22, 3]`` of one sample per prompt, made as ``python -m sample`` makes
    them (its sampler by default, batched guidance; ``loop``: a DiffCollage cycle of ``seconds`` period, composed
    by ``collage``, the CLI's default for one action; positions decoded with ``velocity_fusion``, as
    the CLI does), before foot locking. ``with_features``: also their HumanML3D features ``[T, 263]``
    (the model's): (joints, features)."""
    import torch

    from motion_loop.diffusion import MDMDenoiser
    from motion_loop.generate import Plan, choose_layout, decode, load_stats, sample_features
    from motion_loop.mdm import load_model
    from motion_loop.text_encoders import text_encoder_for

    loaded = load_model(model_path, device)
    encoder = text_encoder_for(loaded, device=device, caption_bank=caption_bank)
    normalizer, _ = load_stats(None, loaded.path)
    frames = round(seconds * FPS)
    layout = choose_layout(frames, loaded.config.max_frames, loop)
    plan = Plan(list(prompts), 1, layout.length if loop else frames, layout, loop, FPS)
    denoiser = MDMDenoiser(loaded.model, guidance_scale=guidance, padding_seed=seed, guidance_interval=guidance_interval)
    generator = torch.Generator(device).manual_seed(seed)
    joints, features = [], []
    with torch.inference_mode():
        for first in range(0, len(prompts), batch_size):
            chunk = list(prompts[first: first + batch_size])
            x0, _ = sample_features(plan, denoiser, encoder.encode(chunk).to(device), generator, sampler=sampler,
                                    steps=steps, s_churn=0.0, collage=collage, progress=False)
            raw, positions = decode(x0, normalizer, velocity_fusion=velocity_fusion, cyclic=loop)
            features.extend(raw)
            joints.extend(positions)
    return (joints, features) if with_features else joints


def evaluate_model(model_path, *, n_per_kind: int = 8, seconds: float = 6.0, loop: bool = False,
                   classifier: KindClassifier | None = None, prompt_seed: int = 2024, seed: int = 0,
                   guidance: float = 2.5, steps: int = DEFAULT_STEPS, device: str = "cpu", caption_bank: bool = True,
                   collage: str = "seamless", velocity_fusion: bool = True, sampler: str = DEFAULT_SAMPLER,
                   guidance_interval: Sequence[float] | None = None) -> dict:
    """Kind accuracy of generated motions for training captions and held-out paraphrases, and the
    foot skating ratio (GMD) of each kind's samples, as the model made them and with feet locked
    (`foot_lock.lock_feet`, as ``python -m sample`` writes them)."""
    from motion_loop.foot_lock import lock_feet, toe_contacts
    from motion_loop.metrics import foot_skating_ratio

    classifier = classifier or KindClassifier.fit_procedural()
    report = {"seconds": seconds, "loop": loop, "n_per_kind": n_per_kind, "guidance": guidance,
              "sampler": sampler, "steps": steps, "guidance_interval": guidance_interval,
              "caption_bank": caption_bank, "collage": collage, "velocity_fusion": velocity_fusion}
    for split in ("train", "heldout"):
        pairs = evaluation_prompts(split, n_per_kind, prompt_seed)
        joints, features = generate_joints(model_path, [p for p, _ in pairs], seconds=seconds, loop=loop,
                                           guidance=guidance, steps=steps, seed=seed, device=device,
                                           caption_bank=caption_bank, with_features=True, collage=collage,
                                           velocity_fusion=velocity_fusion, sampler=sampler,
                                           guidance_interval=guidance_interval)
        kinds = [k for _, k in pairs]
        result = accuracy_by_kind(classifier.predict(joints), kinds)
        locked = [lock_feet(j, toe_contacts(f), loop=loop) for j, f in zip(joints, features)]
        for name, motions in (("foot_skating", joints), ("foot_skating_locked", locked)):
            skating = {}
            for kind in KINDS:
                values = [foot_skating_ratio(j) for j, k in zip(motions, kinds) if k == kind]
                skating[kind] = float(np.mean(values)) if values else None
            result[name] = skating
        if loop:
            from motion_loop.metrics import loop_seam_report

            seams = [loop_seam_report(j).to_dict() for j in joints]
            result["seam_median"] = {k: float(np.median([s[k] for s in seams]))
                                     for k in ("velocity_ratio", "acceleration_ratio", "jerk_ratio")}
        report[split] = result
    return report


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    from motion_loop.collage import METHODS as COLLAGE_METHODS

    p = argparse.ArgumentParser(prog="python -m motion_loop.evaluation",
                                description="Kind accuracy and foot skating of a model's samples (procedural kinds).")
    p.add_argument("--model_path", required=True, help="model*.pt of a model trained on procedural motions")
    p.add_argument("--n_per_kind", type=int, default=8, help="prompts per kind and split (default 8)")
    p.add_argument("--seconds", type=float, default=6.0, help="motion length, or loop period, in seconds (default 6)")
    p.add_argument("--loop", action=argparse.BooleanOptionalAction, default=False,
                   help="sample DiffCollage loops instead of single windows")
    p.add_argument("--guidance", type=float, default=2.5, help="classifier-free guidance scale (default 2.5)")
    p.add_argument("--sampler", choices=ODE_SAMPLERS, default=DEFAULT_SAMPLER,
                   help=f"sampler, as python -m sample's --sampler (default {DEFAULT_SAMPLER}, its default)")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"sampler steps (default {DEFAULT_STEPS})")
    p.add_argument("--guidance_interval", type=float, nargs=2, default=list(DEFAULT_GUIDANCE_INTERVAL), metavar=("LO", "HI"),
                   help="guide only at noise levels in [LO, HI] (default: python -m sample's, "
                        f"{DEFAULT_GUIDANCE_INTERVAL[0]:g} inf; 0 inf: every level)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--prompt_seed", type=int, default=2024, help="seed of the evaluation prompts (default 2024)")
    p.add_argument("--classifier_seed", type=int, default=12345, help="seed of the classifier's procedural sample")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--caption_bank", action=argparse.BooleanOptionalAction, default=True,
                   help="read prompts as the closest training caption when the model ships a caption bank, "
                        "as python -m sample does (default on)")
    p.add_argument("--collage", choices=COLLAGE_METHODS, default="seamless",
                   help="how a loop's windows are combined (default seamless, as python -m sample for one action)")
    p.add_argument("--velocity_fusion", action=argparse.BooleanOptionalAction, default=True,
                   help="decode positions from the position and velocity features together, as python -m sample "
                        "does (default on)")
    p.add_argument("--output", default=None, help="also write the report as JSON to this file")
    args = p.parse_args(argv)

    def job() -> None:
        if args.output and Path(args.output).exists():
            raise UserError(f"--output {args.output} already exists: choose another file (nothing is overwritten)")
        if args.n_per_kind < 1 or args.steps < 1 or args.seconds <= 0:
            raise UserError("--n_per_kind and --steps must be at least 1 and --seconds positive")
        classifier = KindClassifier.fit_procedural(seed=args.classifier_seed)
        report = evaluate_model(args.model_path, n_per_kind=args.n_per_kind, seconds=args.seconds, loop=args.loop,
                                classifier=classifier, prompt_seed=args.prompt_seed, seed=args.seed,
                                guidance=args.guidance, steps=args.steps, device=args.device,
                                caption_bank=args.caption_bank, collage=args.collage,
                                velocity_fusion=args.velocity_fusion, sampler=args.sampler,
                                guidance_interval=args.guidance_interval)
        text = json.dumps(report, indent=1)
        print(text)
        if args.output:
            with open(args.output, "x") as f:  # never overwrite
                f.write(text + "\n")

    return run_cli(job, interrupted="nothing was written")


if __name__ == "__main__":
    raise SystemExit(main())
