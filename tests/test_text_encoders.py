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
# "bpe": the small text transformer trained with the demo model

from motion_loop.mdm import MDMConfig  # noqa: E402
from motion_loop.text_encoders import PAD_ID, UNK_ID, BPETextEncoder, drop_words, text_encoder_for  # noqa: E402

TRAIN_CAPTIONS = ["a person walks forward", "someone jumps in place", "a man runs forward quickly"]


def bpe_encoder(dim=24, seed=0, **kwargs):
    torch.manual_seed(seed)
    vocab = BPETextEncoder.build_vocab(TRAIN_CAPTIONS)
    return BPETextEncoder(vocab, dim=dim, width=16, layers=2, heads=2, ff_size=32, **kwargs).eval()


def test_bpe_vocabulary_is_the_training_captions_ids():
    bpe = clip_modules()[1].SimpleTokenizer()
    vocab = BPETextEncoder.build_vocab(TRAIN_CAPTIONS)
    expected = {SOT_TOKEN, EOT_TOKEN} | {i for c in TRAIN_CAPTIONS for i in bpe.encode(c)}
    assert vocab == sorted(expected)


def test_bpe_tokenize_maps_to_compact_ids_with_unk():
    encoder = bpe_encoder()
    bpe = clip_modules()[1].SimpleTokenizer()
    ids = encoder.tokenize(["a person walks forward", "a zebra walks", LONG_PROMPT])
    assert ids.shape == (3, 22) and ids.dtype == torch.long
    vocab = encoder.vocab.tolist()
    known = [vocab.index(i) + 2 for i in [SOT_TOKEN, *bpe.encode("a person walks forward"), EOT_TOKEN]]
    assert ids[0, : len(known)].tolist() == known
    assert (ids[0, len(known):] == PAD_ID).all()
    zebra = bpe.encode("zebra")
    assert ids[1, 2: 2 + len(zebra)].tolist() == [UNK_ID] * len(zebra)  # unseen word: UNK
    assert (ids[2] != PAD_ID).all()  # a long prompt fills all 22 places, ending with EOT
    assert ids[2, -1] == vocab.index(EOT_TOKEN) + 2


def test_bpe_encode_shapes_cache_and_padding_independence():
    encoder = bpe_encoder()
    assert isinstance(encoder, TextEncoder) and encoder.dim == 24
    out = encoder.encode(["a person walks forward", "someone jumps in place", "a person walks forward"])
    assert out.shape == (3, 24) and out.dtype == torch.float32 and torch.isfinite(out).all()
    torch.testing.assert_close(out[0], out[2], atol=0, rtol=0)
    # a prompt's embedding does not depend on the other prompts in the batch (padding is masked)
    alone = bpe_encoder().encode(["someone jumps in place"])
    torch.testing.assert_close(alone[0], out[1], atol=1e-5, rtol=1e-5)
    calls = []
    encoder.transformer.register_forward_hook(lambda module, args, result: calls.append(args[0].shape[0]))
    encoder.encode(["someone jumps in place", "a man runs forward quickly"])
    assert calls == [1]  # only the new prompt
    assert encoder.encode([]).shape == (0, 24)
    with pytest.raises(TypeError):
        encoder.encode("a person walks")


def test_bpe_training_path_has_gradients():
    encoder = bpe_encoder().train()
    loss = encoder(encoder.tokenize(TRAIN_CAPTIONS)).pow(2).sum()
    loss.backward()
    assert encoder.token_embedding.weight.grad is not None and encoder.proj.weight.grad.abs().sum() > 0


def test_bpe_from_state_round_trip_and_registry():
    assert "bpe" in text_encoder_kinds() and "clip" in text_encoder_kinds()
    encoder = bpe_encoder(dim=24, seed=3)
    config = MDMConfig(text_dim=24, text_encoder_type="bpe", extra={"text_encoder_args": encoder.architecture()})
    assert encoder.architecture() == {"width": 16, "layers": 2, "heads": 2, "ff_size": 32, "max_tokens": 20}
    rebuilt = BPETextEncoder.from_state(encoder.state_dict(), config, "cpu")
    prompts = ["a person walks forward", "a gentleman strolls"]
    torch.testing.assert_close(rebuilt.encode(prompts), encoder.encode(prompts), atol=0, rtol=0)
    assert rebuilt.to("cpu") is rebuilt and rebuilt.device == torch.device("cpu")

    class Loaded:  # what load_model returns, as far as text_encoder_for reads it
        path = "model.pt"
        text_encoder_state = encoder.state_dict()

    Loaded.config = config
    torch.testing.assert_close(text_encoder_for(Loaded).encode(prompts), encoder.encode(prompts), atol=0, rtol=0)
    Loaded.text_encoder_state = None
    with pytest.raises(UserError, match="no 'text_encoder' entry"):
        text_encoder_for(Loaded)
    with pytest.raises(UserError, match="text_dim=32"):
        BPETextEncoder.from_state(encoder.state_dict(), MDMConfig(text_dim=32, text_encoder_type="bpe"), "cpu")
    with pytest.raises(UserError, match="cannot rebuild"):
        BPETextEncoder.from_state({"vocab": encoder.vocab}, config, "cpu")
    built = build_text_encoder("bpe", vocab=encoder.vocab, dim=8, width=16, heads=2)
    assert built.encode(["walk"]).shape == (1, 8)


def test_drop_words_keeps_start_end_and_padding():
    encoder = bpe_encoder()
    ids = encoder.tokenize(["a person walks forward"] * 400 + ["someone jumps in place"])
    dropped = drop_words(ids, 0.3, torch.Generator().manual_seed(0))
    changed = dropped != ids
    assert (dropped[changed] == UNK_ID).all()
    lengths = (ids != PAD_ID).sum(1)
    assert not changed[:, 0].any() and not changed[torch.arange(len(ids)), lengths - 1].any()
    assert not changed[ids == PAD_ID].any()
    inner = (ids != PAD_ID).sum() - 2 * len(ids)
    assert 0.25 < changed.sum() / inner < 0.35
    assert torch.equal(drop_words(ids, 0.0), ids)
