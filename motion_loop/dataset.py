"""Training data for the bundled demo model: procedural motions as HumanML3D features, with captions.

Every procedural kind (:mod:`motion_loop.procedural`) is periodic, so one long motion holds every
window length: :class:`CropSampler` draws random crops of ``min_frames .. max_frames`` frames from
long motions, which teaches the model the short overlap pieces DiffCollage evaluates as well as
whole windows. Motions are made ``margin`` frames longer on both sides and those frames dropped
after :func:`motion_loop.humanml.joints_to_features`, whose facing filter (sigma 20 frames) bends
the heading of turning motions near the ends.

The built dataset is cached as an ``.npz`` keyed by its settings, so restarts are fast.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from motion_loop.humanml import Normalizer, joints_to_features
from motion_loop.procedural import KINDS, caption_set, generate

CACHE_VERSION = 1  # bump when the way data is built changes
STD_FLOOR = 0.01  # HumanML3D-style guard: a near-constant feature must not blow up when normalized


@dataclass
class ProceduralData:
    """Raw (unnormalized) HumanML3D features of procedural motions and their captions."""

    features: np.ndarray  # float32 [N, T, 263]
    kinds: list[str]  # [N]
    captions: list[list[str]]  # [N][C] training captions of each motion
    params: list[dict]  # [N] the variation of each motion

    def __len__(self) -> int:
        return len(self.kinds)

    def all_captions(self) -> list[str]:
        return [c for cs in self.captions for c in cs]


def build_procedural(n_per_kind: int, frames: int, seed: int, *, captions_per_motion: int | None = None,
                     margin: int = 50, kinds=KINDS, split: str = "train") -> ProceduralData:
    """``n_per_kind`` motions of every kind, ``frames`` feature frames each (after dropping ``margin``
    at both ends), with every caption of ``split`` that fits the motion (``captions_per_motion``:
    at most that many, drawn at random)."""
    rng = np.random.default_rng(seed)
    features, labels, texts, params = [], [], [], []
    for kind in kinds:
        for _ in range(n_per_kind):
            motion = generate(kind, frames + 2 * margin + 1, rng, n_captions=0)
            features.append(joints_to_features(motion.joints)[margin: margin + frames])
            pool = caption_set(kind, motion.params, split)
            if captions_per_motion is not None and captions_per_motion < len(pool):
                pool = [pool[i] for i in rng.choice(len(pool), size=captions_per_motion, replace=False)]
            texts.append(pool)
            labels.append(kind)
            params.append(motion.params)
    return ProceduralData(np.stack(features).astype(np.float32), labels, texts, params)


def load_or_build(cache_dir: str | Path | None, n_per_kind: int, frames: int, seed: int, *,
                  captions_per_motion: int | None = None, margin: int = 50) -> tuple[ProceduralData, Path | None]:
    """:func:`build_procedural`, read from / written to ``cache_dir`` (None: no cache)."""
    settings = dict(version=CACHE_VERSION, n_per_kind=n_per_kind, frames=frames, seed=seed,
                    captions_per_motion=captions_per_motion, margin=margin, kinds=list(KINDS))
    if cache_dir is None:
        return build_procedural(n_per_kind, frames, seed, captions_per_motion=captions_per_motion, margin=margin), None
    key = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    path = Path(cache_dir) / f"procedural_{key}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta["settings"] == settings:
                return ProceduralData(z["features"], meta["kinds"], meta["captions"], meta["params"]), path
    data = build_procedural(n_per_kind, frames, seed, captions_per_motion=captions_per_motion, margin=margin)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = json.dumps({"settings": settings, "kinds": data.kinds, "captions": data.captions, "params": data.params})
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, features=data.features, meta=np.array(meta))
    tmp.replace(path)  # atomic: an interrupted build leaves no half-written cache
    return data, path


def feature_stats(features: np.ndarray, std_floor: float = STD_FLOOR) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std (float32 [263]) over all frames, the std clamped to ``std_floor``."""
    flat = features.reshape(-1, features.shape[-1]).astype(np.float64)
    return flat.mean(0).astype(np.float32), np.maximum(flat.std(0), std_floor).astype(np.float32)


class CropSampler:
    """Random training batches: per batch one crop length ``L`` uniform in ``[min_frames,
    max_frames]``, motions and crop starts uniform, one caption per crop uniform among the
    motion's. One length per batch wastes no compute on padding; with ``mask_frames`` the model
    treats padded rows exactly like shorter ones, so nothing is lost."""

    def __init__(self, data: ProceduralData, mean: np.ndarray, std: np.ndarray, min_frames: int, max_frames: int):
        frames = data.features.shape[1]
        if not 1 <= min_frames <= max_frames <= frames:
            raise ValueError(f"need 1 <= min_frames <= max_frames <= {frames} (motion length), "
                             f"got {min_frames} and {max_frames}")
        self.features = torch.from_numpy((data.features - mean) / std).float()  # [N, T, F] normalized
        self.normalizer = Normalizer(mean=np.asarray(mean, np.float32), std=np.asarray(std, np.float32))  # to decode crops
        self.captions = data.captions
        self.min_frames, self.max_frames = min_frames, max_frames

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, list[str]]:
        """Normalized motion ``[B, F, 1, L]`` and ``B`` captions."""
        n, frames = self.features.shape[:2]
        length = int(torch.randint(self.min_frames, self.max_frames + 1, (1,), generator=generator))
        index = torch.randint(0, n, (batch_size,), generator=generator)
        start = torch.randint(0, frames - length + 1, (batch_size,), generator=generator)
        which = torch.rand(batch_size, generator=generator)
        rows = index[:, None]
        cols = start[:, None] + torch.arange(length)[None]
        x = self.features[rows, cols]  # [B, L, F]
        texts = [self.captions[i][int(w * len(self.captions[i]))] for i, w in zip(index.tolist(), which.tolist())]
        return x.permute(0, 2, 1)[:, :, None, :].contiguous(), texts
