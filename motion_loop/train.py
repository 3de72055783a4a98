"""``python -m motion_loop.train``: train a small MDM and its text encoder on procedural motions.

    python -m motion_loop.train --save_dir save/demo_humanml_trans_enc_128 --steps 3000 --seed 10

This is how the bundled demo model was made (its README.md has the exact command). The objective
is MDM's (Tevet et al. 2023, Sec. 3): ``t ~ U{0 .. N-1}``, ``x_t = sqrt(abar_t) x0 + sqrt(1 -
abar_t) eps``, the network predicts ``x0`` and the loss is the MSE to the clean normalized features
over valid frames; the text is dropped (``y["uncond"]``) with probability ``cond_mask_prob`` for
classifier-free guidance. The text encoder (``"bpe"``, :class:`BPETextEncoder`) trains jointly.

Outputs in ``--save_dir``: ``model{step:09d}.pt`` (the EMA weights of MDM and the text encoder,
what sampling loads; ``args.json``, ``Mean.npy``, ``Std.npy`` beside it) and
``train{step:09d}.pt`` (model, EMA, optimizer, step, random states: what ``--resume`` reads).
Nothing is ever overwritten.
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
from motion_loop.errors import UserError
from motion_loop.mdm import MDM, MDMConfig, save_model
from motion_loop.text_encoders import BPETextEncoder, drop_words

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = ROOT / ".cache" / "procedural"
TRAIN_STATE = re.compile(r"^train(\d{9})\.pt$")


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
    """MDM + text encoder with AdamW, EMA and every random draw from one ``torch.Generator``
    (dropout uses torch's global generator; both states are checkpointed)."""

    def __init__(self, model: MDM, text_encoder: BPETextEncoder, sampler: CropSampler, *, lr: float = 4e-4,
                 weight_decay: float = 0.0, ema_decay: float = 0.999, warmup: int = 200, total_steps: int = 1000,
                 word_dropout: float = 0.15, grad_clip: float = 1.0, lambda_vel: float = 0.0, seed: int = 10,
                 device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.nets = nn.ModuleDict({"mdm": model, "text": text_encoder}).to(self.device)
        self.ema = copy.deepcopy(self.nets).eval().requires_grad_(False)
        self.sampler = sampler
        self.lr, self.warmup, self.total_steps = lr, warmup, total_steps
        self.ema_decay, self.word_dropout, self.grad_clip = ema_decay, word_dropout, grad_clip
        self.lambda_vel = lambda_vel
        self.optimizer = torch.optim.AdamW(self.nets.parameters(), lr=lr, weight_decay=weight_decay)
        self.abar = alphas_cumprod_for(model.config).float().to(self.device)
        self.generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)  # dropout
        self.step = 0
        self.history: list[tuple[int, float]] = []  # (step, loss) of every step

    @property
    def model(self) -> MDM:
        return self.nets["mdm"]

    @property
    def text_encoder(self) -> BPETextEncoder:
        return self.nets["text"]

    def loss(self, x0: Tensor, texts: list[str]) -> Tensor:
        """MDM's simple loss: MSE of the predicted x0 over all (valid) frames and features."""
        g, batch = self.generator, x0.shape[0]
        ids = drop_words(self.text_encoder.tokenize(texts).cpu(), self.word_dropout, g).to(self.device)
        text_embed = self.text_encoder(ids)
        t = torch.randint(0, len(self.abar), (batch,), generator=g).to(self.device)
        noise = torch.randn(x0.shape, generator=g).to(self.device)
        uncond = (torch.rand(batch, generator=g) < self.model.config.cond_mask_prob).to(self.device)
        abar = self.abar[t].view(-1, 1, 1, 1)
        x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
        mask = torch.ones(batch, 1, 1, x0.shape[-1], dtype=torch.bool, device=self.device)
        pred = self.model(x_t, t, {"text_embed": text_embed, "uncond": uncond, "mask": mask})
        loss = ((pred - x0) ** 2 * mask).sum() / (mask.sum() * x0.shape[1])
        if self.lambda_vel > 0:
            # MDM's lambda_vel, on the features: the frame-to-frame change of the prediction must
            # match the data's, which penalizes jitter that the plain MSE barely sees.
            pair = mask[..., 1:] & mask[..., :-1]
            vel_error = (pred.diff(dim=-1) - x0.diff(dim=-1)) ** 2
            loss = loss + self.lambda_vel * (vel_error * pair).sum() / (pair.sum() * x0.shape[1]).clamp(min=1)
        return loss

    def train_step(self, batch_size: int) -> float:
        self.nets.train()
        x0, texts = self.sampler.sample(batch_size, self.generator)
        loss = self.loss(x0.to(self.device), texts)
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.step, self.lr, self.warmup, self.total_steps)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.nets.parameters(), self.grad_clip)
        self.optimizer.step()
        update_ema(self.ema, self.nets, ema_decay_at(self.step, self.ema_decay))
        self.step += 1
        self.text_encoder.clear_cache()
        self.ema["text"].clear_cache()
        value = float(loss.detach())
        self.history.append((self.step, value))
        return value

    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "nets": self.nets.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
            "history": torch.tensor(self.history, dtype=torch.float64).reshape(-1, 2),
        }

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        self.nets.load_state_dict(state["nets"])
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
        model_path = save_model(save_dir / f"model{self.step:09d}.pt", self.ema["mdm"],
                                text_encoder_state=self.ema["text"].state_dict())
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
                   help="checkpoint folder (default: save/demo_humanml_trans_enc_<latent_dim>)")
    g.add_argument("--resume", action=argparse.BooleanOptionalAction, default=False,
                   help="continue from the latest train*.pt in --save_dir (its model settings must match)")
    g.add_argument("--steps", type=int, default=3000, help="total optimizer steps (default 3000)")
    g.add_argument("--save_every", type=int, default=500, help="checkpoint every this many steps (default 500)")
    g.add_argument("--log_every", type=int, default=50, help="log the mean loss every this many steps (default 50)")
    g.add_argument("--seed", type=int, default=10, help="seed of every random draw in training (default 10)")
    g.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    g.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="show a progress bar")

    g = p.add_argument_group("data (procedural motions)")
    g.add_argument("--motions_per_kind", type=int, default=96, help="procedural motions per kind (default 96)")
    g.add_argument("--motion_frames", type=int, default=160, help="feature frames per procedural motion (default 160)")
    g.add_argument("--min_frames", type=int, default=20, help="shortest training crop in frames (default 20)")
    g.add_argument("--max_frames", type=int, default=120,
                   help="longest training crop in frames, the model's max_motion_length (default 120)")
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

    g = p.add_argument_group("text encoder (bpe)")
    g.add_argument("--text_width", type=int, default=128, help="text transformer width (default 128)")
    g.add_argument("--text_layers", type=int, default=2, help="text transformer layers (default 2)")
    g.add_argument("--text_heads", type=int, default=4, help="text attention heads (default 4)")
    g.add_argument("--text_ff_size", type=int, default=256, help="text feed-forward width (default 256)")
    g.add_argument("--text_dim", type=int, default=None, help="text embedding width (default: --latent_dim)")
    g.add_argument("--word_dropout", type=float, default=0.15,
                   help="probability of replacing a caption word by UNK in training (default 0.15)")

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
    return p


def check_args(args) -> None:
    positive = ("steps", "save_every", "log_every", "motions_per_kind", "motion_frames", "min_frames", "max_frames",
                "latent_dim", "layers", "num_heads", "ff_size", "diffusion_steps", "text_width", "text_layers",
                "text_heads", "text_ff_size", "batch_size", "warmup")
    for name in positive:
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if not args.min_frames <= args.max_frames <= args.motion_frames:
        raise UserError(f"need --min_frames <= --max_frames <= --motion_frames, got {args.min_frames}, "
                        f"{args.max_frames}, {args.motion_frames}")
    for name in ("cond_mask_prob", "word_dropout", "dropout"):
        if not 0 <= getattr(args, name) < 1:
            raise UserError(f"--{name} must be in [0, 1), got {getattr(args, name)}")
    if not 0 <= args.ema_decay < 1:
        raise UserError(f"--ema_decay must be in [0, 1), got {args.ema_decay}")
    if args.latent_dim % args.num_heads or args.text_width % args.text_heads:
        raise UserError("--latent_dim must be divisible by --num_heads and --text_width by --text_heads")


def model_config(args) -> MDMConfig:
    text_args = {"width": args.text_width, "layers": args.text_layers, "heads": args.text_heads,
                 "ff_size": args.text_ff_size, "max_tokens": 20}
    data = {"source": "procedural", "motions_per_kind": args.motions_per_kind, "motion_frames": args.motion_frames,
            "min_frames": args.min_frames, "data_seed": args.data_seed, "std_floor": STD_FLOOR}
    return MDMConfig(latent_dim=args.latent_dim, layers=args.layers, ff_size=args.ff_size, num_heads=args.num_heads,
                     dropout=args.dropout, text_dim=args.text_dim or args.latent_dim, text_encoder_type="bpe",
                     cond_mask_prob=args.cond_mask_prob, mask_frames=True, use_ema=True,
                     pos_embed_max_len=max(args.diffusion_steps, args.max_frames + 1),
                     diffusion_steps=args.diffusion_steps, max_motion_length=args.max_frames,
                     extra={"text_encoder_args": text_args, "data": data})


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


def run(args) -> Trainer:
    check_args(args)
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = model_config(args)
    save_dir = args.save_dir or ROOT / "save" / f"demo_humanml_trans_enc_{args.latent_dim}"
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
    data, cache = load_or_build(args.cache_dir, args.motions_per_kind, args.motion_frames, args.data_seed)
    mean, std = prepare_stats(save_dir, data.features)
    sampler = CropSampler(data, mean, std, args.min_frames, args.max_frames)
    print(f"data: {len(data)} procedural motions x {args.motion_frames} frames ({data.features.nbytes / 2**20:.0f} MiB), "
          f"{len(set(data.all_captions()))} distinct captions, {time.perf_counter() - started:.1f} s"
          + (f" (cache {cache})" if cache else ""))

    torch.manual_seed(args.seed)  # initial weights
    vocab = BPETextEncoder.build_vocab(data.all_captions())
    text_args = config.extra["text_encoder_args"]
    text_encoder = BPETextEncoder(vocab, dim=config.text_dim, width=text_args["width"], layers=text_args["layers"],
                                  heads=text_args["heads"], ff_size=text_args["ff_size"],
                                  max_tokens=text_args["max_tokens"], dropout=args.dropout)
    trainer = Trainer(MDM(config), text_encoder, sampler, lr=args.lr, weight_decay=args.weight_decay,
                      ema_decay=args.ema_decay, warmup=args.warmup, total_steps=args.steps,
                      word_dropout=args.word_dropout, grad_clip=args.grad_clip, lambda_vel=args.lambda_vel,
                      seed=args.seed, device=device)
    if args.resume:
        state = torch.load(latest, map_location=device, weights_only=True)
        if state["nets"]["text.vocab"].tolist() != vocab:
            raise UserError(f"{latest} was trained with another vocabulary: use the same data flags")
        trainer.load_state_dict(state)
        print(f"resumed from {latest} at step {trainer.step}")
    n_params = sum(p.numel() for p in trainer.nets.parameters())
    print(f"model: MDM {config.latent_dim}x{config.layers} (ff {config.ff_size}), text encoder {text_args['width']}x"
          f"{text_args['layers']} over {len(vocab)} BPE ids: {n_params / 1e6:.2f} M parameters on {device}")

    log_path = save_dir / "train_log.jsonl"
    steps = range(trainer.step, args.steps)
    bar = None
    if args.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=args.steps, initial=trainer.step, desc="training", dynamic_ncols=True)
    window: list[float] = []
    tick = time.perf_counter()
    for _ in steps:
        window.append(trainer.train_step(args.batch_size))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{window[-1]:.4f}")
        if trainer.step % args.log_every == 0 or trainer.step == args.steps:
            now = time.perf_counter()
            record = {"step": trainer.step, "loss": float(np.mean(window)),
                      "lr": learning_rate(trainer.step - 1, args.lr, args.warmup, args.steps),
                      "sec_per_step": (now - tick) / len(window)}
            with log_path.open("a") as f:
                f.write(json.dumps(record) + "\n")
            message = f"step {record['step']}: loss {record['loss']:.4f}, {record['sec_per_step']:.2f} s/step"
            (bar.write if bar is not None else print)(message)
            sys.stdout.flush()
            window, tick = [], now
        if trainer.step % args.save_every == 0 or trainer.step == args.steps:
            model_path, _ = trainer.save(save_dir)
            (bar.write if bar is not None else print)(f"saved {model_path}")
    if bar is not None:
        bar.close()
    return trainer


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: resume from the last checkpoint with --resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
