"""MDM, the Human Motion Diffusion Model (Tevet et al., ICLR 2023): architectures ``trans_enc``
and ``trans_dec``, CLIP or DistilBERT text.

A faithful port: every official text-to-motion checkpoint (``humanml_trans_enc_512``, the 50-step
``mask_frames`` models, ``humanml_trans_dec_512``, ``humanml_trans_dec_emb_512``,
``humanml_trans_dec_512_bert``, ``kit_trans_enc_512``) loads key-for-key and gives the official
outputs. The network predicts the clean motion x0 (normalized features, ``[B, F, 1, T]``, F = 263
for HumanML3D, 251 for KIT) from the noisy motion ``x_t`` (VP / DDPM coordinates), the integer
diffusion step ``t`` and the text: one CLIP ViT-B/32 embedding (512-d), or DistilBERT's token
states (``[L, B, 768]``) with their padding mask.

    cond   = embed_text(text or 0) + time_embed(pe[t])                  [1 or L, B, d]
    trans_enc:  x0 = poseFinal(TransformerEncoder([cond, frames] + pe)[1:])
    trans_dec:  x0 = poseFinal(TransformerDecoder(tgt=frames + pe, memory=cond))
                emb_trans_dec: tgt = [token, frames] + pe, output[1:]; the token is time_embed
                alone (2025 code) or the whole cond (2022 code, ``emb_trans_dec_legacy``)

The file reads top to bottom: config, building blocks, the model, then checkpoint loading/saving.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from motion_loop.errors import UserError

# Features per frame of each dataset's motion representation (HumanML3D: 22 joints, KIT: 21).
N_FEATS = {"humanml": 263, "kit": 251}
ACTION_DATASETS = ("humanact12", "uestc")  # MDM's action-to-motion checkpoints
ARCHS = ("trans_enc", "trans_dec")  # MDM's third, "gru", has no text-to-motion release
TEXT_DIMS = {"clip": 512, "bert": 768}  # CLIP ViT-B/32 embedding, DistilBERT hidden size
MAX_FRAMES = {"humanml": 196, "kit": 196}  # longest training motion (MDM's max_motion_length)
ARGS_FILE = "args.json"


# ----------------------------------------------------------------------------------------------
# Config


@dataclass
class MDMConfig:
    """Architecture and diffusion settings, as in a checkpoint's ``args.json``.

    Defaults follow the official ``humanml_trans_enc_512`` release. ``ff_size`` and ``num_heads``
    are not in official args files (MDM hard-codes 1024 and 4); a config may carry them so that a
    smaller model can be built. Unknown args are kept in ``extra`` and written back by
    :meth:`to_args`.
    """

    dataset: str = "humanml"
    arch: str = "trans_enc"
    latent_dim: int = 512
    layers: int = 8
    ff_size: int = 1024
    num_heads: int = 4
    dropout: float = 0.1
    activation: str = "gelu"
    text_dim: int | None = None  # width of the text embedding: CLIP ViT-B/32 512, DistilBERT 768
    text_encoder_type: str = "clip"
    emb_trans_dec: bool = False  # trans_dec only: prepend a token to the decoder's input
    # Which token emb_trans_dec prepends: True = time + text (2022 code), else time alone (2025 code);
    # from_args decides it (emb_trans_dec_legacy_from_args).
    emb_trans_dec_legacy: bool | None = None
    cond_mask_prob: float = 0.1
    mask_frames: bool = False
    use_ema: bool = False
    pos_embed_max_len: int = 5000
    diffusion_steps: int = 1000
    noise_schedule: str = "cosine"
    sigma_small: bool = True
    max_motion_length: int | None = None  # longest training motion, when not the dataset's 196
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.dataset in ACTION_DATASETS or self.extra.get("unconstrained"):
            kind = "unconstrained" if self.extra.get("unconstrained") else "action-to-motion"
            raise UserError(
                f"this is an {kind} MDM checkpoint (dataset {self.dataset!r}): only text-to-motion "
                f"checkpoints ({' or '.join(N_FEATS)}) can be used"
            )
        if self.arch not in ARCHS:
            raise UserError(
                f"MDM arch {self.arch!r} is not supported: use a text-to-motion checkpoint with arch "
                f"{' or '.join(ARCHS)} (every official text-to-motion release is one)"
            )
        if self.dataset not in N_FEATS:
            raise UserError(
                f"MDM dataset {self.dataset!r} is not supported: use a checkpoint trained on "
                f"{' or '.join(N_FEATS)}"
            )
        if self.text_dim is None:  # official args never give it: it follows the encoder (CLIP's 512 otherwise)
            self.text_dim = TEXT_DIMS.get(self.text_encoder_type, TEXT_DIMS["clip"])
        if self.text_encoder_type == "bert" and self.arch != "trans_dec":
            raise UserError("a DistilBERT (text_encoder_type 'bert') MDM must have arch 'trans_dec' (as the "
                            "official humanml_trans_dec_512_bert): trans_enc takes one text token, DistilBERT gives "
                            "one per word")
        if self.latent_dim % self.num_heads or self.latent_dim % 2:
            raise ValueError(
                f"latent_dim ({self.latent_dim}) must be even and divisible by num_heads ({self.num_heads})"
            )

        if self.pos_embed_max_len < self.diffusion_steps:
            raise ValueError(
                f"pos_embed_max_len ({self.pos_embed_max_len}) must cover the diffusion steps "
                f"({self.diffusion_steps}): the step indexes the same sinusoidal table"
            )

    @property
    def legacy_token(self) -> bool:
        """trans_dec with emb_trans_dec: True when the prepended token is time + text (2022 code);
        a config built without args.json follows the current (2025) code."""
        return self.arch == "trans_dec" and self.emb_trans_dec and bool(self.emb_trans_dec_legacy)

    def describe(self) -> str:
        """One line: architecture, text encoder, dataset and steps (the loader prints it)."""
        arch = self.arch
        if self.arch == "trans_dec" and self.emb_trans_dec:
            arch += " + emb_trans_dec (" + ("2022: time+text token" if self.legacy_token else "2025: time token") + ")"
        text = {"clip": "CLIP ViT-B/32", "bert": "DistilBERT (token states)"}.get(self.text_encoder_type,
                                                                                  self.text_encoder_type)
        return (f"MDM {arch}, {self.layers} layers x {self.latent_dim}, text encoder {text}, "
                f"{self.dataset} ({self.n_feats} features), {self.diffusion_steps} diffusion steps"
                + (", mask_frames" if self.mask_frames else "") + (", EMA weights" if self.use_ema else ""))

    @property
    def n_feats(self) -> int:
        """Features per frame: 263 (HumanML3D) or 251 (KIT)."""
        return N_FEATS[self.dataset]

    @property
    def max_frames(self) -> int:
        """Longest motion the model was trained on (HumanML3D and KIT: 196 frames)."""
        return self.max_motion_length or MAX_FRAMES[self.dataset]

    @classmethod
    def from_args(cls, args: dict[str, Any]) -> "MDMConfig":
        """The config of an ``args.json`` dict; keys that are not fields go to ``extra``."""
        names = {f.name for f in fields(cls)} - {"extra"}
        known = {k: v for k, v in args.items() if k in names}
        for key, value in known.items():
            _check_arg(key, value, {f.name: f.type for f in fields(cls)}[key])
        extra = {k: v for k, v in args.items() if k not in names}
        if known.get("arch") == "trans_dec" and known.get("emb_trans_dec"):
            known["emb_trans_dec_legacy"] = emb_trans_dec_legacy_from_args(args)
        return cls(**known, extra=extra)

    def to_args(self) -> dict[str, Any]:
        """An ``args.json`` dict (with ``ff_size`` and ``num_heads`` spelled out) that
        :meth:`from_args` turns back into this config."""
        args = asdict(self)
        extra = args.pop("extra")
        return {**extra, **args}


_POSITIVE = {"latent_dim", "layers", "ff_size", "num_heads", "text_dim", "pos_embed_max_len",
             "diffusion_steps", "max_motion_length"}


def _check_arg(key: str, value: Any, kind: str) -> None:
    """One args.json value against its field's type: a wrong type is a UserError naming the key
    (never a silent fallback to a default)."""
    kind = kind.replace(" | None", "")
    if value is None and key in ("max_motion_length", "emb_trans_dec_legacy", "text_dim"):
        return  # "not given": decided from the other args
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
    }.get(kind, True)
    if ok and key in _POSITIVE and value < 1:
        ok, kind = False, "positive int"
    if ok and key in ("dropout", "cond_mask_prob") and not 0 <= value <= 1:
        ok, kind = False, "float between 0 and 1"
    if not ok:
        kind = {"int": "an integer", "float": "a finite number", "bool": "true or false",
                "str": "a string", "positive int": "a positive integer"}.get(kind, f"a {kind}")
        raise UserError(f"{ARGS_FILE} key {key!r} must be {kind}, got {json.dumps(value)[:60]}: "
                        "restore the args.json of the checkpoint's release")


def emb_trans_dec_legacy_from_args(args: dict[str, Any]) -> bool:
    """Which token an ``emb_trans_dec`` decoder trained with these args prepends to its input.

    The official code changed this on 2025-02-12 (commit d178946, the DistilBERT release): before,
    the token was the whole condition ``time_emb + embed_text(text)`` (the 2022
    ``humanml_trans_dec_emb_512`` release was trained so); after, the time embedding alone. The rule:
    an explicit ``emb_trans_dec_legacy`` (true/false) in args.json wins; otherwise a checkpoint is
    legacy when its args.json has no ``text_encoder_type``: the official training parser gained that
    option in the very commit that changed the token (d178946), so the 2022 releases lack it and
    every args.json the new trainer writes has it.
    """
    if args.get("emb_trans_dec_legacy") is not None:
        return bool(args["emb_trans_dec_legacy"])
    return "text_encoder_type" not in args


# ----------------------------------------------------------------------------------------------
# Building blocks (the module names are the official state-dict prefixes)


def sinusoidal_table(length: int, dim: int) -> Tensor:
    """``pe[p, 2i] = sin(p * w_i)``, ``pe[p, 2i+1] = cos(p * w_i)``, ``w_i = exp(-2i ln(10000) / dim)``
    (Vaswani et al. 2017), float32, shaped ``[length, 1, dim]`` as MDM stores it."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    # The frequencies in float32, computed as MDM does (float exponent times a float64 constant).
    div_term = torch.exp(torch.arange(0, dim, 2).float() * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)
    return pe[:, None, :]


class PositionalEncoding(nn.Module):
    """Adds ``pe[:L]`` to a sequence-first ``[L, B, d]`` tensor, then dropout."""

    def __init__(self, dim: int, dropout: float, max_len: int):
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        self.register_buffer("pe", sinusoidal_table(max_len, dim))

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[0] > self.pe.shape[0]:
            raise ValueError(f"sequence of {x.shape[0]} tokens exceeds pos_embed_max_len={self.pe.shape[0]}")
        return self.dropout(x + self.pe[: x.shape[0]])


class TimestepEmbedder(nn.Module):
    """``time_embed(pe[t])``: the integer step indexes the (shared) sinusoidal table; -> ``[1, B, d]``."""

    def __init__(self, dim: int, sequence_pos_encoder: PositionalEncoding):
        super().__init__()
        self.sequence_pos_encoder = sequence_pos_encoder  # shared module: its pe appears twice in the state dict
        self.time_embed = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, timesteps: Tensor) -> Tensor:
        return self.time_embed(self.sequence_pos_encoder.pe[timesteps]).permute(1, 0, 2)


class InputProcess(nn.Module):
    """``[B, F, 1, T]`` motion -> ``[T, B, d]`` frame tokens."""

    def __init__(self, n_feats: int, dim: int):
        super().__init__()
        self.poseEmbedding = nn.Linear(n_feats, dim)

    def forward(self, x: Tensor) -> Tensor:
        batch, n_joints, n_feats, n_frames = x.shape
        return self.poseEmbedding(x.permute(3, 0, 1, 2).reshape(n_frames, batch, n_joints * n_feats))


class OutputProcess(nn.Module):
    """``[T, B, d]`` tokens -> ``[B, F, 1, T]`` motion."""

    def __init__(self, n_feats: int, dim: int):
        super().__init__()
        self.n_feats = n_feats
        self.poseFinal = nn.Linear(dim, n_feats)

    def forward(self, h: Tensor) -> Tensor:
        n_frames, batch, _ = h.shape
        return self.poseFinal(h).reshape(n_frames, batch, self.n_feats, 1).permute(1, 2, 3, 0)


# ----------------------------------------------------------------------------------------------
# Text as token states (DistilBERT)


@dataclass(frozen=True)
class TextTokens:
    """The text of a sequence encoder (DistilBERT), batch-first: ``states [B, L, D]`` float and
    ``pad [B, L]`` bool (True on padding tokens). Per-window conditions add a window axis after B.
    Behaves like a batch of embeddings where samplers need one: ``len``, ``device``, ``to``, row
    indexing, and :meth:`cat` (which pads to the longest text; padding is masked, so its
    length never changes the model's output)."""

    states: Tensor
    pad: Tensor

    def __len__(self) -> int:
        return self.states.shape[0]

    @property
    def device(self) -> torch.device:
        return self.states.device

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "TextTokens":
        return TextTokens(self.states.to(device=device, dtype=dtype), self.pad.to(device=device))

    def __getitem__(self, index) -> "TextTokens":
        return TextTokens(self.states[index], self.pad[index])

    @staticmethod
    def cat(parts: list["TextTokens"]) -> "TextTokens":
        length = max(p.states.shape[-2] for p in parts)
        states = [nn.functional.pad(p.states, (0, 0, 0, length - p.states.shape[-2])) for p in parts]
        pads = [nn.functional.pad(p.pad, (0, length - p.pad.shape[-1]), value=True) for p in parts]
        return TextTokens(torch.cat(states), torch.cat(pads))

    def official(self) -> tuple[Tensor, Tensor]:
        """MDM's ``y['text_embed']`` tuple: ``(enc_text [L, B, D], text_mask [B, L])``."""
        return self.states.permute(1, 0, 2), self.pad


# ----------------------------------------------------------------------------------------------
# The model


class MDM(nn.Module):
    """MDM: ``forward(x [B, F, 1, T], timesteps [B] int, y) -> x0 [B, F, 1, T]``.

    ``y`` holds ``text_embed``: for CLIP ``[1, B, text_dim]`` as MDM carries it (or ``[B, text_dim]``);
    for DistilBERT MDM's tuple ``(enc_text [L, B, 768], text_mask [B, L] bool, True on padding
    tokens)``, or a :class:`TextTokens`. Optionally ``mask`` (``[B, 1, 1, T]`` bool, True on valid frames; a key padding mask
    only when ``config.mask_frames``, as the official model) and ``uncond`` (True, or a ``[B]``
    bool tensor: replace the text by zeros, the classifier-free "null" condition; a DistilBERT
    text keeps its padding mask).
    """

    def __init__(self, config: MDMConfig):
        super().__init__()
        self.config = config
        d = config.latent_dim
        self.input_process = InputProcess(config.n_feats, d)
        self.sequence_pos_encoder = PositionalEncoding(d, config.dropout, config.pos_embed_max_len)
        # Post-norm layers, as nn.Transformer{Encoder,Decoder}Layer default (the official model).
        sizes = dict(d_model=d, nhead=config.num_heads, dim_feedforward=config.ff_size, dropout=config.dropout,
                     activation=config.activation)
        if config.arch == "trans_enc":
            # Sequence-first layers never take PyTorch's nested-tensor fast path; say so to skip its warning.
            self.seqTransEncoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(**sizes),
                                                         num_layers=config.layers, enable_nested_tensor=False)
        else:
            self.seqTransDecoder = nn.TransformerDecoder(nn.TransformerDecoderLayer(**sizes), num_layers=config.layers)
        self.embed_timestep = TimestepEmbedder(d, self.sequence_pos_encoder)
        self.embed_text = nn.Linear(config.text_dim, d)
        self.output_process = OutputProcess(config.n_feats, d)

    def mask_cond(self, text: Tensor, uncond: bool | Tensor) -> Tensor:
        """Zero the text ``[L, B, D]`` where unconditional. In training, with no explicit
        per-sample ``uncond`` tensor, drop each sample's text with probability ``cond_mask_prob``
        (MDM's classifier-free training; it draws from torch's default generator as MDM does)."""
        if isinstance(uncond, Tensor):
            return text * (~uncond.to(device=text.device, dtype=torch.bool)).to(text.dtype)[None, :, None]
        if uncond:
            return torch.zeros_like(text)
        if self.training and self.config.cond_mask_prob > 0:
            drop = torch.bernoulli(torch.full((text.shape[1],), self.config.cond_mask_prob, device=text.device))
            return text * (1.0 - drop)[None, :, None]
        return text

    def forward(self, x: Tensor, timesteps: Tensor, y: dict[str, Any]) -> Tensor:
        batch, _, _, n_frames = x.shape
        text, text_is_pad = y["text_embed"], None
        text = text.official() if isinstance(text, TextTokens) else text
        if isinstance(text, (tuple, list)):  # DistilBERT: token states [L, B, D] and their padding mask
            text, text_is_pad = text
            text_is_pad = text_is_pad.to(device=x.device, dtype=torch.bool)
            if text_is_pad.shape[0] == 1 and batch > 1:  # one prompt for the whole batch
                text_is_pad = text_is_pad.expand(batch, -1)
        else:
            text = text[None] if text.ndim == 2 else text  # [1, B, D]
        time_emb = self.embed_timestep(timesteps)  # [1, B, d]
        cond = time_emb + self.embed_text(self.mask_cond(text, y.get("uncond", False)))  # [1 or L, B, d]
        frames = self.input_process(x)  # [T, B, d]

        frame_is_pad = None
        mask = y.get("mask")
        if self.config.mask_frames and mask is not None and mask.shape[-1] > 1:
            frame_is_pad = ~mask.reshape(batch, n_frames).to(torch.bool)
        no_pad = torch.zeros(batch, 1, dtype=torch.bool, device=x.device)  # for a prepended token

        if self.config.arch == "trans_enc":
            seq = self.sequence_pos_encoder(torch.cat([cond, frames], dim=0))  # [T+1, B, d]: condition token first
            pad = None if frame_is_pad is None else torch.cat([no_pad, frame_is_pad], dim=1)
            h = self.seqTransEncoder(seq, src_key_padding_mask=pad)[1:]  # drop the token
        else:
            if self.config.emb_trans_dec:
                token = cond if self.config.legacy_token else time_emb
                tgt = self.sequence_pos_encoder(torch.cat([token, frames], dim=0))
                pad = None if frame_is_pad is None else torch.cat([no_pad, frame_is_pad], dim=1)
            else:
                tgt, pad = self.sequence_pos_encoder(frames), frame_is_pad
            h = self.seqTransDecoder(tgt=tgt, memory=cond, tgt_key_padding_mask=pad,
                                     memory_key_padding_mask=text_is_pad)
            h = h[1:] if self.config.emb_trans_dec else h
        return self.output_process(h)


# ----------------------------------------------------------------------------------------------
# Checkpoints


@dataclass
class LoadedModel:
    """A model from :func:`load_model`, with its config and file."""

    model: MDM
    config: MDMConfig
    path: Path


_IGNORED_PREFIX = "clip_model."  # old releases kept the frozen CLIP inside the checkpoint
_RECOMPUTED = ("sequence_pos_encoder.pe", "embed_timestep.sequence_pos_encoder.pe")
_WRAPPER_KEYS = ("model", "model_avg")
_FF_KEYS = ("seqTransEncoder.layers.0.linear1.weight", "seqTransDecoder.layers.0.linear1.weight")


def read_args(checkpoint: str | Path) -> dict[str, Any]:
    """The ``args.json`` beside a checkpoint file."""
    args_path = Path(checkpoint).parent / ARGS_FILE
    if not args_path.is_file():
        raise UserError(
            f"no {ARGS_FILE} beside checkpoint {checkpoint}: keep the {ARGS_FILE} of the checkpoint's "
            f"release folder next to the .pt file (it gives the architecture and diffusion settings)"
        )
    try:
        args = json.loads(args_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{args_path} is not valid JSON ({err}): restore it from the checkpoint's release") from None
    if not isinstance(args, dict):
        raise UserError(f"{args_path} must hold a JSON object of arguments: restore it from the checkpoint's release")
    return args


def _first_sentences(text: str, limit: int = 240) -> str:
    """The whole sentences of ``text`` that fit in ``limit`` characters, on one line (at least the
    first sentence, never cut in the middle of one)."""
    words = " ".join(text.split())
    sentences = re.split(r"(?<=[.!?])\s+", words)
    out = sentences[0]
    for sentence in sentences[1:]:
        if len(out) + 1 + len(sentence) > limit:
            break
        out += " " + sentence
    return out.rstrip(".")


def _read_checkpoint(path: Path) -> Any:
    try:
        # weights_only: a checkpoint is tensors in dicts, so never unpickle arbitrary objects.
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch's unpickler raises many kinds on bad bytes; all mean "not readable"
        reason = _first_sentences(str(err)) or type(err).__name__
        raise UserError(
            f"cannot read checkpoint {path} ({reason}): the file is truncated or not a torch "
            f"checkpoint; download the MDM checkpoint again"
        ) from None


def _select_state(obj: Any, path: Path, use_ema: bool) -> dict[str, Tensor]:
    """The model's state dict (``model_avg`` when ``use_ema``, as MDM)."""
    if not isinstance(obj, dict) or not obj:
        raise UserError(
            f"{path} is not an MDM checkpoint (expected a state dict or {{'model', 'model_avg'}}): "
            "pass the model*.pt file of an MDM checkpoint folder"
        )
    if isinstance(obj.get("model"), dict):
        unexpected = [k for k in obj if k not in _WRAPPER_KEYS]
        if unexpected:
            raise UserError(
                f"checkpoint {path} has an unexpected top-level entry {unexpected[0]!r} (allowed: "
                f"{', '.join(_WRAPPER_KEYS)}): pass an MDM checkpoint"
            )
        state = obj["model_avg"] if use_ema and isinstance(obj.get("model_avg"), dict) else obj["model"]
    else:
        state = obj
    bad = next((k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, Tensor)), None)
    if bad is not None:
        raise UserError(f"{path} is not an MDM checkpoint: entry {bad!r} is not a tensor; pass an MDM model*.pt file")
    return state


def load_state(model: MDM, state: dict[str, Tensor], source: str = "checkpoint",
               hint: str = "check that args.json belongs to this checkpoint") -> None:
    """Load an official-format state dict strictly: ``clip_model.*`` keys are ignored and the
    positional tables are recomputed (any stored length); anything else missing, unexpected or
    mis-shaped raises a :class:`UserError` naming the key and ending in ``hint`` (what built the model
    to check)."""
    state = {k: v for k, v in state.items() if not k.startswith(_IGNORED_PREFIX) and k not in _RECOMPUTED}
    expected = {k: v for k, v in model.state_dict().items() if k not in _RECOMPUTED}
    missing = [k for k in expected if k not in state]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise UserError(f"{source} lacks key {missing[0]!r}{more}: {hint}")
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise UserError(f"{source} has unexpected key {unexpected[0]!r}{more}: {hint}")
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise UserError(
                f"{source} key {key!r} has shape {tuple(value.shape)} but the model expects "
                f"{tuple(expected[key].shape)}: {hint}"
            )
    model.load_state_dict(state, strict=False)  # strictness checked above; pe buffers stay recomputed


def load_model(path: str | Path, device: torch.device | str = "cpu", *, verbose: bool = False,
               emb_trans_dec_legacy: bool | None = None) -> LoadedModel:
    """Load an MDM checkpoint (``model*.pt`` with ``args.json`` beside it), in eval mode on ``device``.

    Accepts a plain state dict or ``{'model', 'model_avg'}`` (``model_avg`` is used
    when args ``use_ema``). Official args files do not give ``ff_size``; it is then read off the
    checkpoint (1024 in every official release; MDM hard-codes it). ``verbose`` prints the
    architecture and text encoder (:meth:`MDMConfig.describe`). ``emb_trans_dec_legacy`` overrides
    the rule of :func:`emb_trans_dec_legacy_from_args` (None: follow it).
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"{path} is a folder: pass the model*.pt file inside it (e.g. {path}/model000200000.pt)")
    if not path.is_file():
        raise UserError(
            f"checkpoint {path} does not exist: pass the path of an MDM model*.pt file "
            "(e.g. save/humanml_trans_enc_512/model000200000.pt)"
        )
    args = read_args(path)
    if emb_trans_dec_legacy is not None:
        args = {**args, "emb_trans_dec_legacy": emb_trans_dec_legacy}
    MDMConfig.from_args(args)  # refuse unsupported kinds (action-to-motion, gru) before reading weights
    state = _select_state(_read_checkpoint(path), path, bool(args.get("use_ema", False)))
    ff_key = next((k for k in _FF_KEYS if k in state), None)
    if "ff_size" not in args and ff_key is not None:
        args = {**args, "ff_size": int(state[ff_key].shape[0])}
    config = MDMConfig.from_args(args)
    model = MDM(config)
    load_state(model, state, source=f"checkpoint {path}")
    if verbose:
        print(f"checkpoint: {config.describe()}")
    return LoadedModel(model.to(device).eval(), config, path)


def save_model(
    path: str | Path,
    model: MDM,
    *,
    model_avg: MDM | None = None,
) -> Path:
    """Save a checkpoint :func:`load_model` reads: the state dict (wrapped as
    ``{'model', 'model_avg'}`` when ``model_avg`` is given) and ``args.json`` beside it.

    Never overwrites: an existing ``.pt`` is an error, and an existing ``args.json`` must describe
    the same config (several checkpoints of one run share it).
    """
    path = Path(path)
    if path.exists():
        raise UserError(f"{path} already exists: choose another file name (checkpoints are never overwritten)")
    path.parent.mkdir(parents=True, exist_ok=True)
    args_path = path.parent / ARGS_FILE
    args_text = json.dumps(model.config.to_args(), indent=1)
    if args_path.exists():
        if MDMConfig.from_args(json.loads(args_path.read_text())) != model.config:
            raise UserError(f"{args_path} describes another model: save this checkpoint in its own folder")
    else:
        args_path.write_text(args_text + "\n")
    state = model.state_dict()
    if model_avg is not None:
        state = {"model": state, "model_avg": model_avg.state_dict()}
    torch.save(state, path)
    return path
