"""Text encoders: prompts -> one embedding per prompt, ``[B, dim]`` float32, for MDM's text token.

Every encoder follows :class:`TextEncoder` and is built by name with :func:`build_text_encoder`;
a new kind registers its class with ``@register_text_encoder("name")`` in this module.

``"clip"``: the frozen CLIP ViT-B/32 text tower MDM was trained with, run the way MDM runs it
(HumanML3D tokenization with at most 20 BPE tokens, fp16 weights via ``clip.model.convert_weights``).
The ``openai-clip`` package's ``__init__`` imports pkg_resources and torchvision (unusable here), so
its ``model`` and ``simple_tokenizer`` modules are imported through a private package that points
at the installed ``clip`` folder, without running that ``__init__``. The BPE vocabulary ships in the
same folder (offline). Torch 2.13 runs the fp16 text transformer on CPU (slower than float32 there,
but embeddings are computed once per distinct prompt and cached).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
import warnings
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from motion_loop.errors import UserError

CLIP_WEIGHTS = Path("~/.cache/clip/ViT-B-32.pt")  # where clip.load caches ViT-B/32
CLIP_DOWNLOAD_HINT = "run `python prepare/download_clip.py` (or pass the path of ViT-B-32.pt)"
SOT_TOKEN, EOT_TOKEN = 49406, 49407  # <|startoftext|>, <|endoftext|>
HUMANML_MAX_TOKENS = 20  # MDM's max_text_len for HumanML3D and KIT
CLIP_CONTEXT = 77


@runtime_checkable
class TextEncoder(Protocol):
    """What samplers need from a text encoder."""

    dim: int  # width of the embedding

    @property
    def device(self) -> torch.device: ...

    def encode(self, prompts: list[str]) -> Tensor:
        """``[len(prompts), dim]`` float32 embeddings on :attr:`device`."""
        ...

    def to(self, device: torch.device | str) -> "TextEncoder": ...


_REGISTRY: dict[str, Callable[..., TextEncoder]] = {}


def register_text_encoder(kind: str) -> Callable[[type], type]:
    """Class decorator: make ``build_text_encoder(kind, **kwargs)`` construct the class."""

    def register(cls: type) -> type:
        _REGISTRY[kind] = cls
        return cls

    return register


def text_encoder_kinds() -> list[str]:
    return sorted(_REGISTRY)


def build_text_encoder(kind: str, **kwargs) -> TextEncoder:
    """A text encoder by name (e.g. ``"clip"``, MDM's ``text_encoder_type``); kwargs go to its class."""
    if kind not in _REGISTRY:
        raise UserError(f"unknown text encoder {kind!r}: use one of {', '.join(text_encoder_kinds())}")
    return _REGISTRY[kind](**kwargs)


def text_encoder_for(loaded, *, clip_weights: str | Path | None = None, device: torch.device | str = "cpu") -> TextEncoder:
    """The text encoder a loaded checkpoint (:class:`motion_loop.mdm.LoadedModel`) was trained with.

    ``clip`` (the official models): the frozen CLIP at ``clip_weights`` or in CLIP's cache. Any
    other kind is trained with the model and carried in the checkpoint (``text_encoder`` entry):
    its class builds itself with ``from_state(state, config, device)``.
    """
    kind = loaded.config.text_encoder_type
    if kind == "clip":
        return build_text_encoder("clip", weights=clip_weights, device=device)
    if kind not in _REGISTRY:
        raise UserError(f"{loaded.path} uses text encoder {kind!r}, which this version does not know: update motion_loop")
    if loaded.text_encoder_state is None:
        raise UserError(f"{loaded.path} has no 'text_encoder' entry for its {kind!r} text encoder: the checkpoint is incomplete")
    return _REGISTRY[kind].from_state(loaded.text_encoder_state, loaded.config, device)


# ----------------------------------------------------------------------------------------------
# CLIP

_CLIP_PACKAGE = "_motion_loop_clip"


def clip_modules() -> tuple[types.ModuleType, types.ModuleType]:
    """``(clip.model, clip.simple_tokenizer)`` of the installed openai-clip, imported without
    running ``clip/__init__.py``."""
    if _CLIP_PACKAGE not in sys.modules:
        spec = importlib.util.find_spec("clip")
        locations = list(spec.submodule_search_locations or []) if spec else []
        if not locations or not (Path(locations[0]) / "simple_tokenizer.py").is_file():
            raise UserError("the openai-clip package is not installed: run `pip install openai-clip==1.0.1`")
        package = types.ModuleType(_CLIP_PACKAGE)
        package.__path__ = locations
        sys.modules[_CLIP_PACKAGE] = package
    model = importlib.import_module(f"{_CLIP_PACKAGE}.model")
    tokenizer = importlib.import_module(f"{_CLIP_PACKAGE}.simple_tokenizer")
    return model, tokenizer


class HumanMLTokenizer:
    """CLIP BPE tokenization as MDM does it for HumanML3D: ``[SOT] + at most 20 BPE tokens + [EOT]``
    (a longer prompt is cut to 22 tokens and its last kept token replaced by EOT), zero-padded to 77."""

    def __init__(self, max_tokens: int = HUMANML_MAX_TOKENS, context_length: int = CLIP_CONTEXT):
        if max_tokens + 2 > context_length:
            raise ValueError(f"max_tokens + 2 = {max_tokens + 2} exceeds the context length {context_length}")
        self.bpe = clip_modules()[1].SimpleTokenizer()
        self.max_tokens, self.context_length = max_tokens, context_length

    def __call__(self, prompts: list[str]) -> Tensor:
        """``[len(prompts), context_length]`` LongTensor."""
        keep = self.max_tokens + 2
        tokens = torch.zeros(len(prompts), self.context_length, dtype=torch.long)
        for row, prompt in enumerate(prompts):
            ids = [SOT_TOKEN, *self.bpe.encode(prompt), EOT_TOKEN]
            if len(ids) > keep:
                ids = ids[:keep]
                ids[-1] = EOT_TOKEN
            tokens[row, : len(ids)] = torch.tensor(ids)
        return tokens


def read_clip_state(path: Path) -> dict[str, Tensor]:
    """The state dict of a CLIP weights file: the official TorchScript archive, or a plain state dict."""
    if not path.is_file():
        raise UserError(f"CLIP weights {path} not found: {CLIP_DOWNLOAD_HINT}")
    try:
        with warnings.catch_warnings():
            # The official file is TorchScript; torch 2.13 flags torch.jit.load as deprecated.
            warnings.simplefilter("ignore", DeprecationWarning)
            return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
    except (RuntimeError, ValueError):
        pass  # not a TorchScript archive: try a plain state dict
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any unpickling failure means the same thing to the user
        raise UserError(
            f"cannot read CLIP weights {path} ({type(err).__name__}): the file is truncated or not "
            f"CLIP; {CLIP_DOWNLOAD_HINT}"
        ) from None
    if not isinstance(state, dict) or "text_projection" not in state:
        raise UserError(f"{path} does not hold CLIP weights (no text_projection): {CLIP_DOWNLOAD_HINT}")
    return state


@register_text_encoder("clip")
class ClipTextEncoder(nn.Module):
    """Frozen CLIP text tower; ``encode(prompts) -> [B, 512]`` float32, cached per distinct prompt.

    ``weights``: a ``ViT-B-32.pt`` file (default ``~/.cache/clip/ViT-B-32.pt``, where the official
    package caches it). Linear/attention weights and the projection are fp16 as in MDM
    (``convert_weights``); token/positional embeddings and LayerNorms stay float32 and activations
    run in fp16, exactly as ``CLIP.encode_text``.
    """

    def __init__(
        self,
        weights: str | Path | None = None,
        device: torch.device | str = "cpu",
        max_tokens: int = HUMANML_MAX_TOKENS,
    ):
        super().__init__()
        self.weights = Path(weights if weights is not None else CLIP_WEIGHTS).expanduser()
        clip_model = clip_modules()[0].build_model(read_clip_state(self.weights))  # fp16, eval, strict load
        # Keep the text tower only (the vision tower is ~88M parameters MDM never uses).
        self.token_embedding = clip_model.token_embedding
        self.positional_embedding = clip_model.positional_embedding
        self.transformer = clip_model.transformer
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.compute_dtype = clip_model.dtype  # fp16: the dtype of the converted weights
        self.dim = int(self.text_projection.shape[1])
        self.tokenize = HumanMLTokenizer(max_tokens, context_length=int(self.positional_embedding.shape[0]))
        self.requires_grad_(False)
        self.eval()
        self._cache: dict[str, Tensor] = {}
        self.to(device)

    @property
    def device(self) -> torch.device:
        return self.text_projection.device

    def to(self, *args, **kwargs) -> "ClipTextEncoder":
        super().to(*args, **kwargs)
        self._cache = {prompt: emb.to(self.device) for prompt, emb in self._cache.items()}
        return self

    def train(self, mode: bool = True) -> "ClipTextEncoder":
        return super().train(False)  # frozen: always eval

    @torch.no_grad()
    def encode_tokens(self, tokens: Tensor) -> Tensor:
        """``CLIP.encode_text``: the EOT position's final feature times the text projection, float32."""
        x = self.token_embedding(tokens).to(self.compute_dtype)
        x = x + self.positional_embedding.to(self.compute_dtype)
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)  # CLIP's transformer is sequence-first
        x = self.ln_final(x).to(self.compute_dtype)
        x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)] @ self.text_projection
        return x.float()

    def encode(self, prompts: list[str]) -> Tensor:
        if isinstance(prompts, str):
            raise TypeError("encode takes a list of prompts, not one string")
        new = list(dict.fromkeys(p for p in prompts if p not in self._cache))
        if new:
            embeddings = self.encode_tokens(self.tokenize(new).to(self.device))
            self._cache.update(zip(new, embeddings))
        if not prompts:
            return torch.zeros(0, self.dim, device=self.device)
        return torch.stack([self._cache[p] for p in prompts])


# ----------------------------------------------------------------------------------------------
# BPE: a small text transformer trained with the model (the bundled demo's encoder, offline)

PAD_ID, UNK_ID = 0, 1  # compact ids; the vocabulary's CLIP ids follow from 2


@register_text_encoder("bpe")
class BPETextEncoder(nn.Module):
    """A small pre-norm transformer over CLIP's BPE tokens, trained jointly with MDM.

    Tokenization is MDM's HumanML3D one (``[SOT] + at most 20 BPE tokens + [EOT]``), then each CLIP
    id is mapped to a compact vocabulary (the ids seen in the training captions, buffer ``vocab``);
    ids outside it become ``UNK_ID``. Keeping only the seen ids keeps the checkpoint small (a few
    hundred rows instead of CLIP's 49,408); unseen words of new paraphrases all read as UNK, which
    training teaches to ignore by word dropout (``drop_words``).

        h = TransformerEncoder(token_embedding(ids) + positional_embedding)     pre-norm, GELU
        e = proj(ln_final(mean of h over the prompt's tokens))                  [B, dim]

    ``encode(prompts)`` (no grad, cached per prompt) is the sampling path; ``forward(ids)`` the
    training path. ``from_state(state, config, device)`` rebuilds it from a checkpoint's
    ``text_encoder`` entry: sizes come from the state; the head count from
    ``config.extra["text_encoder_args"]["heads"]``.
    """

    def __init__(
        self,
        vocab: list[int] | Tensor,
        dim: int = 512,
        width: int = 128,
        layers: int = 2,
        heads: int = 4,
        ff_size: int = 256,
        max_tokens: int = HUMANML_MAX_TOKENS,
        dropout: float = 0.1,
        device: torch.device | str = "cpu",
    ):
        super().__init__()
        vocab = torch.as_tensor(vocab, dtype=torch.long).flatten()
        if len(torch.unique(vocab)) != len(vocab):
            raise ValueError("vocab must list distinct CLIP token ids")
        self.register_buffer("vocab", vocab)
        self.dim, self.max_tokens = int(dim), int(max_tokens)
        self.token_embedding = nn.Embedding(len(vocab) + 2, width)
        self.positional_embedding = nn.Parameter(torch.zeros(max_tokens + 2, width))
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        layer = nn.TransformerEncoderLayer(width, heads, ff_size, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        # norm_first layers never take the nested-tensor fast path; say so to skip its warning.
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.ln_final = nn.LayerNorm(width)
        self.proj = nn.Linear(width, dim)
        self.tokenize_clip = HumanMLTokenizer(max_tokens, context_length=max_tokens + 2)
        self._compact = {int(c): i + 2 for i, c in enumerate(vocab.tolist())}
        self._cache: dict[str, Tensor] = {}
        self.to(device)

    @staticmethod
    def build_vocab(prompts: list[str], max_tokens: int = HUMANML_MAX_TOKENS) -> list[int]:
        """The sorted CLIP ids (SOT and EOT included) of these prompts' tokenizations."""
        ids = HumanMLTokenizer(max_tokens, context_length=max_tokens + 2)(list(prompts))
        return sorted({SOT_TOKEN, EOT_TOKEN} | {int(i) for i in ids[ids != 0].tolist()})

    @property
    def device(self) -> torch.device:
        return self.proj.weight.device

    def to(self, *args, **kwargs) -> "BPETextEncoder":
        super().to(*args, **kwargs)
        self._cache = {prompt: emb.to(self.device) for prompt, emb in self._cache.items()}
        return self

    def tokenize(self, prompts: list[str]) -> Tensor:
        """Compact ids ``[B, max_tokens + 2]`` (``PAD_ID`` after the end token) on :attr:`device`."""
        clip_ids = self.tokenize_clip(list(prompts))
        valid = torch.arange(clip_ids.shape[1]) <= (clip_ids == EOT_TOKEN).int().argmax(dim=1, keepdim=True)
        compact = torch.tensor([[self._compact.get(int(c), UNK_ID) for c in row] for row in clip_ids.tolist()],
                               dtype=torch.long).reshape(clip_ids.shape)
        return torch.where(valid, compact, PAD_ID).to(self.device)

    def forward(self, ids: Tensor) -> Tensor:
        """``[B, dim]`` embeddings of compact ids ``[B, L]`` (with grad; the training path)."""
        pad = ids == PAD_ID
        h = self.token_embedding(ids) + self.positional_embedding[: ids.shape[1]]
        h = self.ln_final(self.transformer(h, src_key_padding_mask=pad))
        keep = (~pad).to(h.dtype)[..., None]
        return self.proj((h * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0))

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> Tensor:
        if isinstance(prompts, str):
            raise TypeError("encode takes a list of prompts, not one string")
        new = list(dict.fromkeys(p for p in prompts if p not in self._cache))
        if new:
            was_training = self.training
            self.eval()
            self._cache.update(zip(new, self(self.tokenize(new)).float()))
            self.train(was_training)
        if not prompts:
            return torch.zeros(0, self.dim, device=self.device)
        return torch.stack([self._cache[p] for p in prompts])

    def clear_cache(self) -> None:
        """Forget cached embeddings (call after changing the weights)."""
        self._cache = {}

    def load_state_dict(self, *args, **kwargs):
        result = super().load_state_dict(*args, **kwargs)
        self._compact = {int(c): i + 2 for i, c in enumerate(self.vocab.tolist())}  # the loaded vocabulary
        self.clear_cache()
        return result

    def architecture(self) -> dict:
        """The sizes ``from_state`` needs besides the state (goes into args.json as ``text_encoder_args``)."""
        layer = self.transformer.layers[0]
        return {"width": self.token_embedding.embedding_dim, "layers": len(self.transformer.layers),
                "heads": layer.self_attn.num_heads, "ff_size": layer.linear1.out_features,
                "max_tokens": self.max_tokens}

    @classmethod
    def from_state(cls, state: dict[str, Tensor], config, device: torch.device | str = "cpu") -> "BPETextEncoder":
        """The encoder saved in a checkpoint (``state``) for the model ``config`` (an MDMConfig)."""
        hint = "the checkpoint's text_encoder entry is incomplete or from another version"
        try:
            width = int(state["token_embedding.weight"].shape[1])
            layers = len({k.split(".")[2] for k in state if k.startswith("transformer.layers.")})
            ff_size = int(state["transformer.layers.0.linear1.weight"].shape[0])
            max_tokens = int(state["positional_embedding"].shape[0]) - 2
            dim = int(state["proj.weight"].shape[0])
            vocab = state["vocab"]
        except (KeyError, IndexError):
            raise UserError(f"cannot rebuild the 'bpe' text encoder: {hint}") from None
        if dim != config.text_dim:
            raise UserError(f"the 'bpe' text encoder gives {dim}-d embeddings but the model expects "
                            f"text_dim={config.text_dim}: {hint}")
        heads = int(config.extra.get("text_encoder_args", {}).get("heads", 4))
        encoder = cls(vocab, dim=dim, width=width, layers=layers, heads=heads, ff_size=ff_size,
                      max_tokens=max_tokens, dropout=0.0)
        try:
            encoder.load_state_dict(state)
        except RuntimeError as err:
            raise UserError(f"cannot load the 'bpe' text encoder ({str(err).splitlines()[0][:120]}): {hint}") from None
        return encoder.to(device).eval()


def drop_words(ids: Tensor, p: float, generator: torch.Generator | None = None) -> Tensor:
    """Word dropout for training: each BPE token (not SOT/EOT/padding) becomes ``UNK_ID`` with
    probability ``p``, so the encoder learns to read a prompt from whichever words it knows."""
    if p <= 0:
        return ids
    inner = ids != PAD_ID
    inner[:, 0] = False  # SOT
    last = inner.int().cumsum(dim=1).argmax(dim=1)  # last non-pad column: EOT
    inner[torch.arange(len(ids)), last] = False
    draw = torch.rand(ids.shape, generator=generator, device=generator.device if generator is not None else ids.device)
    return torch.where(inner & (draw.to(ids.device) < p), UNK_ID, ids)
