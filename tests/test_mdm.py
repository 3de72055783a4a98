import json
import math
import shutil

import pytest
import torch
from conftest import shared_path

from motion_loop.errors import UserError
from motion_loop.mdm import MDM, LoadedModel, MDMConfig, load_model, save_model, sinusoidal_table

CHECKPOINT = "model000000100.pt"
FIXTURES = ["tiny_trans_enc", "tiny_trans_enc_maskframes_ema"]
# Every official-format folder with a forward_io.pt (made by the official MDM code, see its README).
ALL_FIXTURES = [*FIXTURES, "tiny_trans_dec", "tiny_trans_dec_emb", "tiny_trans_dec_bert", "tiny_kit_trans_enc"]

# args.json of the official humanml_trans_enc_512 release (the keys the architecture depends on,
# plus a few it does not, which must be kept and ignored).
OFFICIAL_ARGS = {
    "arch": "trans_enc",
    "dataset": "humanml",
    "layers": 8,
    "latent_dim": 512,
    "cond_mask_prob": 0.1,
    "emb_trans_dec": False,
    "noise_schedule": "cosine",
    "diffusion_steps": 1000,
    "sigma_small": True,
    "lambda_rcxyz": 0.0,
    "lambda_vel": 0.0,
    "lambda_fc": 0.0,
    "batch_size": 64,
    "seed": 10,
    "save_dir": "save/humanml_trans_enc_512",
}


def tiny_config(**overrides) -> MDMConfig:
    fields = dict(latent_dim=32, layers=2, ff_size=48, num_heads=4, pos_embed_max_len=1000)
    return MDMConfig(**{**fields, **overrides})


def fixture_copy(tmp_path, name="tiny_trans_enc"):
    """A writable copy of a fixture checkpoint folder (never touch ../shared)."""
    src = shared_path("mdm_reference", name)
    dst = tmp_path / name
    shutil.copytree(src, dst)
    for path in dst.iterdir():
        path.chmod(0o644)
    return dst / CHECKPOINT


# --- architecture ---------------------------------------------------------------------------------


def test_full_size_state_dict_matches_official_keys_and_shapes():
    shapes = json.loads(shared_path("mdm_reference", "humanml_trans_enc_512.state_dict_shapes.json").read_text())
    config = MDMConfig.from_args(OFFICIAL_ARGS)
    with torch.device("meta"):  # shapes only: nothing is allocated or run
        model = MDM(config)
    state = model.state_dict()
    assert list(state) == list(shapes)  # same keys, same order
    for key, shape in shapes.items():
        assert tuple(state[key].shape) == tuple(shape), key
    assert sum(p.numel() for p in model.parameters()) == 17_880_327
    assert config.ff_size == 1024 and config.num_heads == 4 and config.n_feats == 263


def test_config_from_args_keeps_unknown_args_and_round_trips():
    config = MDMConfig.from_args(OFFICIAL_ARGS)
    assert config.extra == {k: OFFICIAL_ARGS[k] for k in ("lambda_rcxyz", "lambda_vel",
                                                          "lambda_fc", "batch_size", "seed", "save_dir")}
    assert config.emb_trans_dec is False and config.text_dim == 512
    assert config.mask_frames is False and config.use_ema is False and config.text_encoder_type == "clip"
    assert MDMConfig.from_args(config.to_args()) == config
    assert config.to_args()["ff_size"] == 1024


def test_config_rejects_other_architectures_and_datasets():
    with pytest.raises(UserError, match="arch 'gru' is not supported"):
        MDMConfig.from_args({**OFFICIAL_ARGS, "arch": "gru"})
    for dataset in ("humanact12", "uestc"):
        with pytest.raises(UserError, match=f"action-to-motion MDM checkpoint \\(dataset '{dataset}'\\)"):
            MDMConfig.from_args({**OFFICIAL_ARGS, "dataset": dataset})
    with pytest.raises(UserError, match="unconstrained"):
        MDMConfig.from_args({**OFFICIAL_ARGS, "dataset": "humanact12", "unconstrained": True})
    with pytest.raises(UserError, match="must have arch 'trans_dec'"):
        MDMConfig.from_args({**OFFICIAL_ARGS, "text_encoder_type": "bert"})


# args.json keys of the official humanml_trans_dec_512_bert recipe that the architecture depends on.
BERT_ARGS = {**OFFICIAL_ARGS, "arch": "trans_dec", "text_encoder_type": "bert", "diffusion_steps": 50,
             "mask_frames": True, "use_ema": True, "pos_embed_max_len": 5000}


def test_full_size_bert_decoder_matches_official_keys_and_shapes():
    shapes = json.loads(shared_path("mdm_reference", "humanml_trans_dec_512_bert.state_dict_shapes.json").read_text())
    config = MDMConfig.from_args(BERT_ARGS)
    with torch.device("meta"):
        model = MDM(config)
    state = model.state_dict()
    assert list(state) == list(shapes)
    for key, shape in shapes.items():
        assert tuple(state[key].shape) == tuple(shape), key
    assert len(shapes) == 156
    assert sum(p.numel() for p in model.parameters()) == 26_424_583
    assert config.text_dim == 768 and tuple(state["embed_text.weight"].shape) == (512, 768)


def test_emb_trans_dec_behaviour_follows_the_args_json_rule():
    # 2022 releases (humanml_trans_dec_emb_512): no text_encoder_type in args.json -> legacy token
    legacy = MDMConfig.from_args({**OFFICIAL_ARGS, "arch": "trans_dec", "emb_trans_dec": True})
    assert legacy.legacy_token and "2022" in legacy.describe()
    # trained by the 2025 code (which writes text_encoder_type) -> time token alone
    current = MDMConfig.from_args({**OFFICIAL_ARGS, "arch": "trans_dec", "emb_trans_dec": True,
                                   "text_encoder_type": "clip"})
    assert not current.legacy_token and "2025" in current.describe()
    # an explicit emb_trans_dec_legacy wins either way, and survives to_args/from_args
    forced = MDMConfig.from_args({**OFFICIAL_ARGS, "arch": "trans_dec", "emb_trans_dec": True,
                                  "text_encoder_type": "clip", "emb_trans_dec_legacy": True})
    assert forced.legacy_token and MDMConfig.from_args(forced.to_args()).legacy_token
    assert not MDMConfig.from_args(current.to_args()).legacy_token
    # without emb_trans_dec the question does not arise
    assert not MDMConfig.from_args({**OFFICIAL_ARGS, "arch": "trans_dec"}).legacy_token


def test_kit_model_has_251_features():
    model = MDM(tiny_config(dataset="kit")).eval()
    x = torch.randn(2, 251, 1, 7)
    out = model(x, torch.tensor([3, 5]), {"text_embed": torch.randn(2, 512)})
    assert out.shape == x.shape
    assert model.input_process.poseEmbedding.in_features == 251


def test_positional_table_is_the_sinusoid():
    pe = sinusoidal_table(50, 16)
    p, i = 7, 3
    w = math.exp(-2 * i * math.log(10000) / 16)
    assert pe.shape == (50, 1, 16)
    assert pe[p, 0, 2 * i].item() == pytest.approx(math.sin(p * w), abs=1e-6)
    assert pe[p, 0, 2 * i + 1].item() == pytest.approx(math.cos(p * w), abs=1e-6)


# --- parity with the official implementation --------------------------------------------------------


@pytest.mark.parametrize("name", ALL_FIXTURES)
@pytest.mark.parametrize("case", ["T60_full", "T40_padded"])
def test_forward_reproduces_official_outputs(name, case):
    loaded = load_model(shared_path("mdm_reference", name, CHECKPOINT))
    io = torch.load(shared_path("mdm_reference", name, "forward_io.pt"), weights_only=True)[case]
    model = loaded.model
    assert not model.training
    y = {"text_embed": io["text_embed"], "mask": io["mask"]}
    with torch.no_grad():
        out_cond = model(io["x"], io["timesteps"], y)
        out_uncond = model(io["x"], io["timesteps"], {**y, "uncond": True})
    out_cfg = out_uncond + 2.5 * (out_cond - out_uncond)
    torch.testing.assert_close(out_cond, io["out_cond"], atol=1e-5, rtol=0)
    torch.testing.assert_close(out_uncond, io["out_uncond"], atol=1e-5, rtol=0)
    torch.testing.assert_close(out_cfg, io["out_cfg_2.5"], atol=1e-5, rtol=0)
    if loaded.config.text_encoder_type == "clip":
        with torch.no_grad():  # [B, 512] text embeddings are accepted as well as MDM's [1, B, 512]
            out_flat = model(io["x"], io["timesteps"], {**y, "text_embed": io["text_embed"][0]})
        torch.testing.assert_close(out_flat, out_cond, atol=0, rtol=0)


@pytest.mark.parametrize("case", ["T60_full", "T40_padded"])
def test_emb_trans_dec_legacy_reproduces_the_2022_code(case):
    """The same weights run by the official code of 2024-04 (94c173f, the code the 2022
    humanml_trans_dec_emb_512 release was trained with): time + text token prepended."""
    loaded = load_model(shared_path("mdm_reference", "tiny_trans_dec_emb", CHECKPOINT))
    io = torch.load(shared_path("mdm_reference", "tiny_trans_dec_emb", "forward_io.pt"), weights_only=True)[case]
    assert not loaded.config.legacy_token  # its args.json comes from the 2025 trainer
    legacy = MDM(MDMConfig.from_args({**loaded.config.to_args(), "emb_trans_dec_legacy": True}))
    legacy.load_state_dict(loaded.model.state_dict())
    legacy.eval()
    y = {"text_embed": io["text_embed"], "mask": io["mask"]}
    with torch.no_grad():
        out_cond = legacy(io["x"], io["timesteps"], y)
        out_uncond = legacy(io["x"], io["timesteps"], {**y, "uncond": True})
    torch.testing.assert_close(out_cond, io["legacy_94c173f"]["out_cond"], atol=1e-5, rtol=0)
    torch.testing.assert_close(out_uncond, io["legacy_94c173f"]["out_uncond"], atol=1e-5, rtol=0)
    assert (out_cond - io["out_cond"]).abs().max() > 1e-4  # the two behaviours really differ


def test_bert_text_padding_tokens_do_not_matter():
    """DistilBERT's pad-token states are masked out of the decoder's memory."""
    loaded = load_model(shared_path("mdm_reference", "tiny_trans_dec_bert", CHECKPOINT))
    io = torch.load(shared_path("mdm_reference", "tiny_trans_dec_bert", "forward_io.pt"), weights_only=True)["T60_full"]
    states, pad = io["text_embed"]
    assert pad.any()
    changed = states.masked_fill(pad.T[..., None], 7.0)
    with torch.no_grad():
        out = loaded.model(io["x"], io["timesteps"], {"text_embed": (states, pad), "mask": io["mask"]})
        out_changed = loaded.model(io["x"], io["timesteps"], {"text_embed": (changed, pad), "mask": io["mask"]})
    torch.testing.assert_close(out_changed, out, atol=1e-6, rtol=0)


def test_loader_says_which_architecture_and_text_encoder(capsys):
    load_model(shared_path("mdm_reference", "tiny_trans_dec_bert", CHECKPOINT), verbose=True)
    line = capsys.readouterr().out.strip()
    assert "trans_dec" in line and "DistilBERT" in line and "50 diffusion steps" in line


@pytest.mark.parametrize("args, message", [
    ({"dataset": "humanact12", "arch": "trans_enc"}, "action-to-motion"),
    ({"dataset": "humanml", "arch": "gru"}, "arch 'gru'"),
])
def test_unsupported_checkpoint_kinds_are_refused_in_one_line(tmp_path, args, message):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "args.json").write_text(json.dumps(args))
    torch.save({"gru.weight_ih_l0": torch.zeros(3)}, folder / CHECKPOINT)
    with pytest.raises(UserError, match=message) as err:
        load_model(folder / CHECKPOINT)
    assert "\n" not in str(err.value)


def test_mask_frames_uses_the_key_padding_mask_and_original_ignores_it():
    io = torch.load(shared_path("mdm_reference", FIXTURES[0], "forward_io.pt"), weights_only=True)["T40_padded"]
    assert not io["mask"].all()
    results = {}
    for name in FIXTURES:
        model = load_model(shared_path("mdm_reference", name, CHECKPOINT)).model
        y = {"text_embed": io["text_embed"]}
        with torch.no_grad():
            masked = model(io["x"], io["timesteps"], {**y, "mask": io["mask"]})
            unmasked = model(io["x"], io["timesteps"], y)
        results[name] = (masked - unmasked).abs().max().item()
    assert results["tiny_trans_enc"] == 0.0
    assert results["tiny_trans_enc_maskframes_ema"] > 1e-3


def test_per_sample_uncond_tensor_matches_the_global_flag():
    model = MDM(tiny_config()).eval()
    x, t, text = torch.randn(3, 263, 1, 9), torch.tensor([1, 500, 999]), torch.randn(3, 512)
    with torch.no_grad():
        cond = model(x, t, {"text_embed": text})
        uncond = model(x, t, {"text_embed": text, "uncond": True})
        mixed = model(x, t, {"text_embed": text, "uncond": torch.tensor([False, True, False])})
    torch.testing.assert_close(mixed[[0, 2]], cond[[0, 2]])
    torch.testing.assert_close(mixed[1], uncond[1])
    assert (cond[1] - uncond[1]).abs().max() > 1e-4


# --- loading ----------------------------------------------------------------------------------------


def test_load_returns_eval_model_config_and_path():
    path = shared_path("mdm_reference", "tiny_trans_enc", CHECKPOINT)
    loaded = load_model(path)
    assert isinstance(loaded, LoadedModel)
    assert loaded.path == path
    assert not loaded.model.training
    # args.json has no ff_size: read off the checkpoint (128 in these fixtures, 1024 officially)
    assert loaded.config.ff_size == 128 and loaded.config.latent_dim == 64 and loaded.config.layers == 2


def test_ema_checkpoint_uses_model_avg(tmp_path):
    path = shared_path("mdm_reference", "tiny_trans_enc_maskframes_ema", CHECKPOINT)
    raw = torch.load(path, weights_only=True)
    loaded = load_model(path)
    key = "output_process.poseFinal.weight"
    assert not torch.equal(raw["model"][key], raw["model_avg"][key])
    torch.testing.assert_close(loaded.model.state_dict()[key], raw["model_avg"][key], atol=0, rtol=0)
    # with use_ema false the same file gives 'model'
    copy = fixture_copy(tmp_path, "tiny_trans_enc_maskframes_ema")
    args = json.loads((copy.parent / "args.json").read_text())
    (copy.parent / "args.json").write_text(json.dumps({**args, "use_ema": False}))
    torch.testing.assert_close(load_model(copy).model.state_dict()[key], raw["model"][key], atol=0, rtol=0)


def test_positional_tables_are_recomputed_from_any_stored_length(tmp_path):
    path = fixture_copy(tmp_path)
    state = torch.load(path, weights_only=True)
    state["sequence_pos_encoder.pe"] = torch.zeros(100, 1, 64)  # an older, shorter (and wrong) table
    del state["embed_timestep.sequence_pos_encoder.pe"]
    path.unlink()
    torch.save(state, path)
    model = load_model(path).model
    torch.testing.assert_close(model.sequence_pos_encoder.pe, sinusoidal_table(5000, 64), atol=0, rtol=0)


def test_save_and_load_round_trip_a_small_mask_frames_model(tmp_path):
    config = tiny_config(mask_frames=True, use_ema=True, diffusion_steps=50, text_encoder_type="minilm")
    model, ema = MDM(config), MDM(config)
    path = save_model(tmp_path / "demo" / "model000001000.pt", model, model_avg=ema)
    loaded = load_model(path)
    assert loaded.config == config
    for key, value in ema.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[key], value, atol=0, rtol=0)
    # a second checkpoint of the same run shares args.json; nothing is overwritten
    save_model(tmp_path / "demo" / "model000002000.pt", model)
    with pytest.raises(UserError, match="already exists"):
        save_model(path, model)
    with pytest.raises(UserError, match="another model"):
        save_model(tmp_path / "demo" / "model000003000.pt", MDM(tiny_config(layers=1)))


def test_wrong_path_and_folder_give_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist") as err:
        load_model(tmp_path / "nope.pt")
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="is a folder"):
        load_model(tmp_path)


def test_missing_args_json(tmp_path):
    path = fixture_copy(tmp_path)
    (path.parent / "args.json").unlink()
    with pytest.raises(UserError, match="no args.json beside") as err:
        load_model(path)
    assert "\n" not in str(err.value)


def test_truncated_and_non_checkpoint_files(tmp_path):
    path = fixture_copy(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated or not a torch checkpoint") as err:
        load_model(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    path.write_text("this is not a checkpoint\n")
    with pytest.raises(UserError, match="truncated or not a torch checkpoint"):
        load_model(path)
    path.unlink()
    torch.save([1, 2, 3], path)
    with pytest.raises(UserError, match="not an MDM checkpoint"):
        load_model(path)


def _rewrite(path, edit):
    state = torch.load(path, weights_only=True)
    edit(state)
    path.unlink()
    torch.save(state, path)


def test_stray_clip_keys_are_ignored_but_other_unexpected_keys_are_errors(tmp_path):
    path = fixture_copy(tmp_path)
    assert any(k.startswith("clip_model.") for k in torch.load(path, weights_only=True))
    load_model(path)  # the fixture carries two clip_model.* keys
    _rewrite(path, lambda s: s.__setitem__("embed_action.weight", torch.zeros(3)))
    with pytest.raises(UserError, match="unexpected key 'embed_action.weight'"):
        load_model(path)


def test_missing_key_is_named(tmp_path):
    path = fixture_copy(tmp_path)
    _rewrite(path, lambda s: s.pop("embed_text.bias"))
    with pytest.raises(UserError, match="lacks key 'embed_text.bias'"):
        load_model(path)


def test_misshaped_key_is_named(tmp_path):
    path = fixture_copy(tmp_path)
    _rewrite(path, lambda s: s.__setitem__("embed_text.weight", torch.zeros(64, 768)))
    with pytest.raises(UserError, match=r"'embed_text.weight' has shape \(64, 768\).*\(64, 512\)"):
        load_model(path)


def test_args_json_of_another_model_is_reported(tmp_path):
    path = fixture_copy(tmp_path)
    args = json.loads((path.parent / "args.json").read_text())
    (path.parent / "args.json").write_text(json.dumps({**args, "layers": 3}))
    with pytest.raises(UserError, match="lacks key 'seqTransEncoder.layers.2"):
        load_model(path)


def test_unexpected_top_level_entry_is_an_error(tmp_path):
    path = fixture_copy(tmp_path, "tiny_trans_enc_maskframes_ema")
    _rewrite(path, lambda s: s.__setitem__("optimizer", {"lr": torch.tensor(1.0)}))
    with pytest.raises(UserError, match="unexpected top-level entry 'optimizer'"):
        load_model(path)


@pytest.mark.parametrize("key, value", [("latent_dim", "128"), ("layers", 2.5), ("max_motion_length", "abc"),
                                        ("max_motion_length", 0), ("mask_frames", 1), ("dropout", 7),
                                        ("noise_schedule", 3)])
def test_args_json_values_of_the_wrong_type_are_one_line_errors_naming_the_key(key, value):
    with pytest.raises(UserError, match=f"args.json key '{key}' must be"):
        MDMConfig.from_args({key: value})
    assert MDMConfig.from_args({"max_motion_length": None, "dropout": 0}).max_frames == 196
