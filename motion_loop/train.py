"""``python -m motion_loop.train``: train a small MDM on procedural motions.

    python -m motion_loop.train --save_dir save/demo_humanml_trans_enc_128_minilm --steps 3000 --seed 10

This is how the bundled demo model was made (its README.md has the exact command). The objective
is MDM's (Tevet et al. 2023, Sec. 3): ``t ~ U{0 .. N-1}``, ``x_t = sqrt(abar_t) x0 + sqrt(1 -
abar_t) eps``, the network predicts ``x0`` and the loss is the MSE to the clean normalized features
over valid frames (``L_simple``), plus optional weighted terms: ``--lambda_vel`` (MSE of the
frame-to-frame change of the features), ``--lambda_fc`` (MDM's foot contact loss, see
:func:`foot_contact_loss`) and ``--lambda_jerk`` (MSE of the jerk of the decoded joints, see
:func:`jerk_loss`). The text is dropped (``y["uncond"]``) with probability
``cond_mask_prob`` for classifier-free guidance.

The text encoder is the frozen MiniLM (``"minilm"``, :class:`MiniLMTextEncoder`), as MDM's CLIP is
frozen: every distinct training caption is embedded once before training, and only MDM (its
``embed_text`` projection included) learns.

Outputs in ``--save_dir``: ``model{step:09d}.pt`` (the EMA weights of MDM, what sampling loads;
``args.json``, ``Mean.npy``, ``Std.npy`` beside it) and ``train{step:09d}.pt`` (model, EMA,
optimizer, step, random states: what ``--resume`` reads). Nothing is ever overwritten.

``--init_from model*.pt`` fine-tunes: the model and its EMA start from that checkpoint's weights
instead of a random init (the flags must describe the same architecture and data statistics).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from motion_loop.dataset import STD_FLOOR, CropSampler, feature_stats, load_or_build
from motion_loop.diffusion import alphas_cumprod_for
from motion_loop.errors import UserError, run_cli
from motion_loop.humanml import CONTACTS, recover_from_ric
from motion_loop.mdm import MDM, MDMConfig, _read_checkpoint, _select_state, load_state, save_model
from motion_loop.skeleton import LEFT_FOOT, RIGHT_FOOT
from motion_loop.procedural.captions import PLAIN_SUBJECT
from motion_loop.text_encoders import CAPTION_BANK, CaptionBank, MiniLMTextEncoder, TextEncoder

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = ROOT / ".cache" / "procedural"
TRAIN_STATE = re.compile(r"^train(\d{9})\.pt$")
FOOT_JOINTS = (*LEFT_FOOT, *RIGHT_FOOT)  # (7, 10, 8, 11): the order of the contact features 259:263
CONTACT_THRESHOLD = 0.5


# ----------------------------------------------------------------------------------------------
# Losses


def foot_contact_loss(pred: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    """MDM's foot contact loss (Tevet et al. 2023, Sec. 3, ``L_foot``) on raw HumanML3D features.

    The predicted clean features ``pred [B, T, 263]`` (denormalized) are decoded to joint positions
    with :func:`recover_from_ric` (differentiable), and each foot joint's displacement from frame t
    to t+1 (m) is penalized where the clean target says that foot is planted (contact feature of
    frame t above 0.5; HumanML3D computes it from the same displacement):

        L_foot = sum_{t, f, xyz} [contact_f(t)] (p_f(t+1) - p_f(t))^2 / (12 * #valid pairs)

    ``valid [B, T]`` bool marks real frames; a pair counts when both of its frames are valid.
    """
    feet = recover_from_ric(pred)[..., FOOT_JOINTS, :]  # [B, T, 4, 3]
    step = feet[:, 1:] - feet[:, :-1]
    planted = (target[:, :-1, CONTACTS] > CONTACT_THRESHOLD).to(pred.dtype)  # [B, T-1, 4]
    pair = (valid[:, 1:] & valid[:, :-1]).to(pred.dtype)  # [B, T-1]
    error = (step.pow(2).sum(dim=-1) * planted * pair[..., None]).sum()
    return error / (pair.sum() * step.shape[-2] * step.shape[-1]).clamp(min=1)


def jerk_loss(pred: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    """MSE between the jerk (third frame difference, m/frame^3) of the joints decoded from ``pred``
    and from ``target`` (``[B, T, 263]`` raw HumanML3D features, decoded with the differentiable
    :func:`recover_from_ric`):

        L_jerk = sum_{t, j, xyz} [valid t..t+3] (d3 p_j(t) - d3 q_j(t))^2 / (66 * #valid stencils)

    ``valid [B, T]`` bool marks real frames; a stencil counts only when all of its 4 frames are
    valid. The per-feature MSE weighs a one-frame kink in the decoded body no more than any other
    error of the same size, and the velocity loss only sees its first difference: this term
    targets the jerky frames directly.
    """
    jerk_pred = recover_from_ric(pred).diff(n=3, dim=1)  # [B, T-3, J, 3]
    jerk_target = recover_from_ric(target).diff(n=3, dim=1)
    stencil = (valid[:, 3:] & valid[:, 2:-1] & valid[:, 1:-2] & valid[:, :-3]).to(pred.dtype)  # [B, T-3]
    error = ((jerk_pred - jerk_target).pow(2).sum(dim=(-2, -1)) * stencil).sum()
    return error / (stencil.sum() * jerk_pred.shape[-2] * jerk_pred.shape[-1]).clamp(min=1)


# ----------------------------------------------------------------------------------------------
# EMA and learning rate


def ema_decay_at(step: int, decay: float) -> float:
    """EMA decay after ``step`` updates: ``min(decay, (1 + step) / (10 + step))``, so early
    weights (far from the final ones) are forgotten quickly."""
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """``ema = decay * ema + (1 - decay) * model`` for float parameters; buffers are copied."""
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p, 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


def learning_rate(step: int, lr: float, warmup: int, total: int, min_ratio: float = 0.1) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``min_ratio * lr`` at ``total``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


# ----------------------------------------------------------------------------------------------
# The trainer


class Trainer:
    """MDM with AdamW, EMA and every random draw from one ``torch.Generator`` (dropout uses torch's
    global generator; both states are checkpointed). The frozen ``text_encoder`` caches its
    embeddings, so each distinct caption is encoded once."""

    def __init__(self, model: MDM, text_encoder: TextEncoder, sampler: CropSampler, *, lr: float = 4e-4,
                 weight_decay: float = 0.0, ema_decay: float = 0.999, warmup: int = 200, total_steps: int = 1000,
                 grad_clip: float = 1.0, lambda_vel: float = 0.0, lambda_fc: float = 0.0,
                 lambda_jerk: float = 0.0, jerk_max_t: int | None = None, seed: int = 10,
                 device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.text_encoder = text_encoder
        self.sampler = sampler
        self.lr, self.warmup, self.total_steps = lr, warmup, total_steps
        self.ema_decay, self.grad_clip = ema_decay, grad_clip
        self.lambda_vel, self.lambda_fc, self.lambda_jerk = lambda_vel, lambda_fc, lambda_jerk
        self.jerk_max_t = jerk_max_t  # the jerk term counts for diffusion steps t < jerk_max_t (None: all)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=lr, weight_decay=weight_decay)
        self.abar = alphas_cumprod_for(model.config).float().to(self.device)
        self.generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)  # dropout
        self.step = 0
        self.history: list[tuple[int, float]] = []  # (step, loss) of every step
        self.terms: dict[str, float] = {}  # the unweighted loss terms of the last loss() call

    def loss(self, x0: Tensor, texts: list[str]) -> Tensor:
        """MDM's simple loss (MSE of the predicted x0 over all valid frames and features) plus the
        weighted velocity, foot contact and jerk terms (unweighted values in ``self.terms``)."""
        g, batch = self.generator, x0.shape[0]
        text_embed = self.text_encoder.encode(texts).to(self.device)
        t = torch.randint(0, len(self.abar), (batch,), generator=g).to(self.device)
        noise = torch.randn(x0.shape, generator=g).to(self.device)
        uncond = (torch.rand(batch, generator=g) < self.model.config.cond_mask_prob).to(self.device)
        abar = self.abar[t].view(-1, 1, 1, 1)
        x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
        mask = torch.ones(batch, 1, 1, x0.shape[-1], dtype=torch.bool, device=self.device)
        pred = self.model(x_t, t, {"text_embed": text_embed, "uncond": uncond, "mask": mask})
        loss = ((pred - x0) ** 2 * mask).sum() / (mask.sum() * x0.shape[1])
        self.terms = {"mse": float(loss.detach())}
        if self.lambda_vel > 0:
            # MDM's lambda_vel, on the features: the frame-to-frame change of the prediction must
            # match the data's, which penalizes jitter that the plain MSE barely sees.
            pair = mask[..., 1:] & mask[..., :-1]
            vel_error = (pred.diff(dim=-1) - x0.diff(dim=-1)) ** 2
            vel = (vel_error * pair).sum() / (pair.sum() * x0.shape[1]).clamp(min=1)
            loss = loss + self.lambda_vel * vel
            self.terms["vel"] = float(vel.detach())
        if self.lambda_fc > 0 or self.lambda_jerk > 0:
            raw_pred, raw_x0 = (self.sampler.normalizer.denormalize(v[:, :, 0].transpose(1, 2)) for v in (pred, x0))
        if self.lambda_fc > 0:
            # Planted feet must not slide in the decoded prediction: couples the root velocity to
            # the legs, which the per-feature MSE treats as unrelated numbers.
            fc = foot_contact_loss(raw_pred, raw_x0, mask[:, 0, 0])
            loss = loss + self.lambda_fc * fc
            self.terms["fc"] = float(fc.detach())
        if self.lambda_jerk > 0:
            # The decoded body must not kink from frame to frame more than the data does.
            # Only where the noise leaves the motion readable (t < jerk_max_t) is the data's jerk a
            # target the model can hit; at high noise the term would pay for smoothing sharp moves.
            low_noise = mask[:, 0, 0] if self.jerk_max_t is None else mask[:, 0, 0] & (t < self.jerk_max_t)[:, None]
            jerk = jerk_loss(raw_pred, raw_x0, low_noise)
            loss = loss + self.lambda_jerk * jerk
            self.terms["jerk"] = float(jerk.detach())
        return loss

    def train_step(self, batch_size: int) -> float:
        self.model.train()
        x0, texts = self.sampler.sample(batch_size, self.generator)
        loss = self.loss(x0.to(self.device), texts)
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.step, self.lr, self.warmup, self.total_steps)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        update_ema(self.ema, self.model, ema_decay_at(self.step, self.ema_decay))
        self.step += 1
        value = float(loss.detach())
        self.history.append((self.step, value))
        return value

    def init_from(self, path: Path) -> None:
        """Start the model and its EMA from a checkpoint's weights: a ``model*.pt`` (EMA weights,
        copied into both) or a ``train*.pt`` (its model and its EMA). The optimizer, step and random
        states start fresh, as for a random init."""
        obj = _read_checkpoint(path)
        if isinstance(obj, dict) and isinstance(obj.get("model"), dict) and isinstance(obj.get("ema"), dict):
            model_state, ema_state = obj["model"], obj["ema"]  # a train*.pt
        else:
            model_state = ema_state = _select_state(obj, path, use_ema=True)
        hint = "pass the same model flags (--latent_dim, --layers, --ff_size, --num_heads) as that checkpoint's run"
        for module, state in ((self.model, model_state), (self.ema, ema_state)):
            load_state(module, state, source=f"--init_from {path}", hint=hint)  # the flags built the model

    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
            "history": torch.tensor(self.history, dtype=torch.float64).reshape(-1, 2),
        }

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if self.device.type == "cuda" and state["cuda_rng"]:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.history = [(int(s), float(v)) for s, v in state["history"].tolist()]

    def save(self, save_dir: Path) -> tuple[Path, Path]:
        """``model{step}.pt`` (EMA weights, loadable by :func:`motion_loop.mdm.load_model`) and
        ``train{step}.pt`` (everything ``--resume`` needs). Never overwrites."""
        state_path = save_dir / f"train{self.step:09d}.pt"
        if state_path.exists():
            raise UserError(f"{state_path} already exists: train into another --save_dir (nothing is overwritten)")
        model_path = save_model(save_dir / f"model{self.step:09d}.pt", self.ema)
        tmp = state_path.with_name(state_path.name + ".part")
        torch.save(self.state_dict(), tmp)
        tmp.replace(state_path)
        return model_path, state_path


def latest_train_state(save_dir: Path) -> Path | None:
    found = sorted(p for p in save_dir.glob("train*.pt") if TRAIN_STATE.match(p.name))
    return found[-1] if found else None


# ----------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m motion_loop.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("run")
    g.add_argument("--save_dir", type=Path, default=None,
                   help="checkpoint folder (default: save/demo_humanml_trans_enc_<latent_dim>_minilm)")
    g.add_argument("--resume", action=argparse.BooleanOptionalAction, default=False,
                   help="continue from the latest train*.pt in --save_dir (its model settings must match)")
    g.add_argument("--steps", type=int, default=3000, help="total optimizer steps (default 3000)")
    g.add_argument("--save_every", type=int, default=500, help="checkpoint every this many steps (default 500)")
    g.add_argument("--log_every", type=int, default=50, help="log the mean loss every this many steps (default 50)")
    g.add_argument("--seed", type=int, default=10, help="seed of every random draw in training (default 10)")
    g.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    g.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="show a progress bar")
    g.add_argument("--init_from", type=Path, default=None,
                   help="fine-tune: start the model and its EMA from this checkpoint's weights (a model*.pt or "
                        "train*.pt) instead of a random init; the model flags must describe its architecture and "
                        "the data must give the Mean/Std beside it (default: random init)")

    g = p.add_argument_group("data (procedural motions)")
    g.add_argument("--motions_per_kind", type=int, default=96, help="procedural motions per kind (default 96)")
    g.add_argument("--motion_frames", type=int, default=160, help="feature frames per procedural motion (default 160)")
    g.add_argument("--min_frames", type=int, default=20, help="shortest training crop in frames (default 20)")
    g.add_argument("--max_frames", type=int, default=120,
                   help="longest training crop in frames, the model's max_motion_length (default 120)")
    g.add_argument("--captions_per_motion", type=int, default=None,
                   help="train on at most this many captions of each motion, drawn at random (default: all of "
                        "its training captions, for the most wording variety)")
    g.add_argument("--data_seed", type=int, default=0, help="seed of the procedural dataset (default 0)")
    g.add_argument("--cache_dir", type=Path, default=DEFAULT_CACHE,
                   help=f"where the built dataset is cached (default {DEFAULT_CACHE.relative_to(ROOT)})")

    g = p.add_argument_group("model (MDM trans_enc)")
    g.add_argument("--latent_dim", type=int, default=128, help="transformer width (default 128)")
    g.add_argument("--layers", type=int, default=4, help="transformer layers (default 4)")
    g.add_argument("--num_heads", type=int, default=4, help="attention heads (default 4)")
    g.add_argument("--ff_size", type=int, default=512, help="feed-forward width (default 512)")
    g.add_argument("--dropout", type=float, default=0.1, help="dropout in the transformer (default 0.1)")
    g.add_argument("--diffusion_steps", type=int, default=1000, help="discrete diffusion steps, cosine schedule (default 1000)")
    g.add_argument("--cond_mask_prob", type=float, default=0.1, help="probability of dropping the text (default 0.1)")

    g = p.add_argument_group("optimizer")
    g.add_argument("--batch_size", type=int, default=64, help="batch size (default 64)")
    g.add_argument("--lr", type=float, default=4e-4, help="peak learning rate of AdamW (default 4e-4)")
    g.add_argument("--warmup", type=int, default=200, help="linear warm-up steps (default 200)")
    g.add_argument("--weight_decay", type=float, default=0.0, help="AdamW weight decay (default 0)")
    g.add_argument("--ema_decay", type=float, default=0.999, help="EMA decay of the saved weights (default 0.999)")
    g.add_argument("--grad_clip", type=float, default=1.0, help="clip the gradient norm; 0 disables (default 1)")
    g.add_argument("--lambda_vel", type=float, default=0.0,
                   help="weight of the velocity loss: MSE of the frame-to-frame change of the predicted "
                        "features (MDM's lambda_vel, on features) (default 0)")
    g.add_argument("--lambda_fc", type=float, default=0.0,
                   help="weight of MDM's foot contact loss: squared displacement (m) of the decoded feet where "
                        "the data's contact features say they are planted (default 0)")
    g.add_argument("--lambda_jerk", type=float, default=0.0,
                   help="weight of the jerk loss: MSE between the third frame differences (m/frame^3) of the "
                        "decoded joint positions of the prediction and of the data (default 0)")
    g.add_argument("--jerk_max_t", type=int, default=None,
                   help="count the jerk loss only at diffusion steps t below this (low noise, where the data's "
                        "jerk can be read from the input) (default: every step)")
    return p


def check_args(args) -> None:
    positive = ("steps", "save_every", "log_every", "motions_per_kind", "motion_frames", "min_frames", "max_frames",
                "latent_dim", "layers", "num_heads", "ff_size", "diffusion_steps", "batch_size", "warmup")
    for name in positive:
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.captions_per_motion is not None and args.captions_per_motion < 1:
        raise UserError(f"--captions_per_motion must be at least 1, got {args.captions_per_motion}")
    if not args.min_frames <= args.max_frames <= args.motion_frames:
        raise UserError(f"need --min_frames <= --max_frames <= --motion_frames, got {args.min_frames}, "
                        f"{args.max_frames}, {args.motion_frames}")
    for name in ("cond_mask_prob", "dropout"):
        if not 0 <= getattr(args, name) < 1:
            raise UserError(f"--{name} must be in [0, 1), got {getattr(args, name)}")
    if not 0 <= args.ema_decay < 1:
        raise UserError(f"--ema_decay must be in [0, 1), got {args.ema_decay}")
    if args.latent_dim % args.num_heads:
        raise UserError("--latent_dim must be divisible by --num_heads")
    for name in ("lambda_vel", "lambda_fc", "lambda_jerk"):
        if getattr(args, name) < 0:
            raise UserError(f"--{name} must be at least 0, got {getattr(args, name)}")
    if args.jerk_max_t is not None and not 1 <= args.jerk_max_t <= args.diffusion_steps:
        raise UserError(f"--jerk_max_t must be in 1..--diffusion_steps ({args.diffusion_steps}), got {args.jerk_max_t}")


def model_config(args, text_dim: int) -> MDMConfig:
    data = {"source": "procedural", "motions_per_kind": args.motions_per_kind, "motion_frames": args.motion_frames,
            "min_frames": args.min_frames, "captions_per_motion": args.captions_per_motion,
            "data_seed": args.data_seed, "std_floor": STD_FLOOR}
    return MDMConfig(latent_dim=args.latent_dim, layers=args.layers, ff_size=args.ff_size, num_heads=args.num_heads,
                     dropout=args.dropout, text_dim=text_dim, text_encoder_type="minilm",
                     cond_mask_prob=args.cond_mask_prob, mask_frames=True, use_ema=True,
                     pos_embed_max_len=max(args.diffusion_steps, args.max_frames + 1),
                     diffusion_steps=args.diffusion_steps, max_motion_length=args.max_frames,
                     extra={"data": data})


def resolve_device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}: use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name} asked for, but CUDA is not available here: use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"device {name!r} is not supported: use cpu, cuda or cuda:N")
    return device


def prepare_stats(save_dir: Path, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean/Std of the data, written beside the checkpoints (or read back when resuming)."""
    mean, std = feature_stats(features)
    mean_path, std_path = save_dir / "Mean.npy", save_dir / "Std.npy"
    if mean_path.exists() or std_path.exists():
        saved_mean, saved_std = np.load(mean_path), np.load(std_path)
        if not (np.allclose(saved_mean, mean, atol=1e-5) and np.allclose(saved_std, std, atol=1e-5)):
            raise UserError(f"{save_dir} holds Mean.npy/Std.npy of other data: train into another --save_dir")
        return saved_mean, saved_std
    np.save(mean_path, mean)
    np.save(std_path, std)
    return mean, std


# What must agree between an --init_from checkpoint and the current flags besides the weights'
# shapes: the diffusion the network was taught to invert.
INIT_MATCH = ("arch", "text_encoder_type", "text_dim", "mask_frames", "diffusion_steps", "noise_schedule")


def check_init_from(path: Path, config: MDMConfig, mean: np.ndarray, std: np.ndarray) -> None:
    """Refuse an ``--init_from`` checkpoint whose diffusion settings (its ``args.json``) or data
    statistics (its ``Mean.npy``/``Std.npy``) differ from this run's: its weights would expect other
    inputs. Either file may be absent; the weights' shapes are checked when they are loaded."""
    if not path.is_file():
        raise UserError(f"--init_from {path} does not exist: pass the model*.pt (or train*.pt) file to start from")
    args_path = path.parent / "args.json"
    if args_path.is_file():
        saved = MDMConfig.from_args(json.loads(args_path.read_text()))
        for name in INIT_MATCH:
            if getattr(saved, name) != getattr(config, name):
                raise UserError(f"--init_from {path}: its {name} is {getattr(saved, name)!r}, this run's "
                                f"{getattr(config, name)!r}: fine-tune with the same model flags")
    if (path.parent / "Mean.npy").is_file() and (path.parent / "Std.npy").is_file():
        saved_mean, saved_std = np.load(path.parent / "Mean.npy"), np.load(path.parent / "Std.npy")
        if not (saved_mean.shape == mean.shape and np.allclose(saved_mean, mean, atol=1e-5)
                and np.allclose(saved_std, std, atol=1e-5)):
            raise UserError(f"--init_from {path}: the Mean.npy/Std.npy beside it are not this data's: fine-tune "
                            "on the same data flags (--motions_per_kind, --motion_frames, --data_seed)")


def run(args) -> Trainer:
    check_args(args)
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    text_encoder = MiniLMTextEncoder(device=device)
    config = model_config(args, text_encoder.dim)
    save_dir = args.save_dir or ROOT / "save" / f"demo_humanml_trans_enc_{args.latent_dim}_minilm"
    latest = latest_train_state(save_dir) if save_dir.is_dir() else None
    if args.resume and latest is None:
        raise UserError(f"--resume: no train*.pt in {save_dir}: start without --resume")
    if not args.resume and save_dir.is_dir() and any(save_dir.glob("*.pt")):
        raise UserError(f"{save_dir} already holds checkpoints: pass --resume to continue, or another --save_dir")
    if (save_dir / "args.json").is_file():
        saved = MDMConfig.from_args(json.loads((save_dir / "args.json").read_text()))
        if saved != config:
            raise UserError(f"{save_dir}/args.json describes another model: use the same model and data flags, "
                            "or another --save_dir")
    save_dir.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    data, cache = load_or_build(args.cache_dir, args.motions_per_kind, args.motion_frames, args.data_seed,
                                captions_per_motion=args.captions_per_motion)
    if args.init_from is not None:
        # before prepare_stats writes this run's Mean/Std, so a refused run leaves no stats behind
        check_init_from(args.init_from, config, *feature_stats(data.features))
    mean, std = prepare_stats(save_dir, data.features)
    sampler = CropSampler(data, mean, std, args.min_frames, args.max_frames)
    print(f"data: {len(data)} procedural motions x {args.motion_frames} frames ({data.features.nbytes / 2**20:.0f} MiB), "
          f"{len(set(data.all_captions()))} distinct captions, {time.perf_counter() - started:.1f} s"
          + (f" (cache {cache})" if cache else ""))

    tick = time.perf_counter()
    distinct = sorted(set(data.all_captions()))
    text_encoder.encode(distinct)  # the frozen encoder caches every training caption's embedding
    print(f"text: {len(distinct)} distinct captions embedded by MiniLM ({text_encoder.dim}-d, frozen) in "
          f"{time.perf_counter() - tick:.0f} s")
    bank_path = save_dir / CAPTION_BANK
    if not bank_path.exists():
        plain = [c for c in distinct if re.search(rf"\b{PLAIN_SUBJECT}\b", c)] or distinct
        CaptionBank.save(bank_path, plain, text_encoder.encode(plain))
        print(f"caption bank: {len(plain)} training captions with the subject {PLAIN_SUBJECT!r} -> {bank_path}")

    torch.manual_seed(args.seed)  # initial weights
    trainer = Trainer(MDM(config), text_encoder, sampler, lr=args.lr, weight_decay=args.weight_decay,
                      ema_decay=args.ema_decay, warmup=args.warmup, total_steps=args.steps,
                      grad_clip=args.grad_clip, lambda_vel=args.lambda_vel, lambda_fc=args.lambda_fc,
                      lambda_jerk=args.lambda_jerk, jerk_max_t=args.jerk_max_t, seed=args.seed, device=device)
    if args.init_from is not None:
        trainer.init_from(args.init_from)
        print(f"initialized from {args.init_from}" + (" (then replaced by the resumed state)" if args.resume else ""))
    if args.resume:
        trainer.load_state_dict(torch.load(latest, map_location=device, weights_only=True))
        print(f"resumed from {latest} at step {trainer.step}")
    n_params = sum(p.numel() for p in trainer.model.parameters())
    print(f"model: MDM {config.latent_dim}x{config.layers} (ff {config.ff_size}): {n_params / 1e6:.2f} M "
          f"trainable parameters on {device}")

    log_path = save_dir / "train_log.jsonl"
    steps = range(trainer.step, args.steps)
    bar = None
    if args.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=args.steps, initial=trainer.step, desc="training", dynamic_ncols=True)
    window: list[float] = []
    term_window: list[dict[str, float]] = []
    tick = time.perf_counter()
    for _ in steps:
        window.append(trainer.train_step(args.batch_size))
        term_window.append(trainer.terms)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{window[-1]:.4f}")
        if trainer.step % args.log_every == 0 or trainer.step == args.steps:
            now = time.perf_counter()
            record = {"step": trainer.step, "loss": float(np.mean(window)),
                      "lr": learning_rate(trainer.step - 1, args.lr, args.warmup, args.steps),
                      "sec_per_step": (now - tick) / len(window)}
            # unweighted terms, so that each lambda can be sized against the plain MSE
            terms = {k: float(np.mean([t[k] for t in term_window])) for k in term_window[-1]}
            if len(terms) > 1:
                record["terms"] = terms
            with log_path.open("a") as f:
                f.write(json.dumps(record) + "\n")
            message = f"step {record['step']}: loss {record['loss']:.4f}, {record['sec_per_step']:.2f} s/step"
            if len(terms) > 1:
                message += " (" + ", ".join(f"{k} {v:.4g}" for k, v in terms.items()) + ")"
            (bar.write if bar is not None else print)(message)
            sys.stdout.flush()
            window, term_window, tick = [], [], now
        if trainer.step % args.save_every == 0 or trainer.step == args.steps:
            model_path, _ = trainer.save(save_dir)
            (bar.write if bar is not None else print)(f"saved {model_path}")
    if bar is not None:
        bar.close()
    return trainer


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: run(args), interrupted="resume from the last checkpoint with --resume")


if __name__ == "__main__":
    raise SystemExit(main())
