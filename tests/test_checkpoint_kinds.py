"""``python -m sample --loop`` end to end with a tiny random-weight checkpoint of every official
text-to-motion kind: trans_enc, trans_dec, trans_dec + emb_trans_dec (2022 and 2025 tokens),
trans_dec + DistilBERT (50 steps, mask_frames, EMA) and KIT (251 features, 21 joints, 12.5 fps)."""

import json

import numpy as np
import pytest
import torch
from test_generate import run_ok
from test_text_encoders import tiny_distilbert_dir

from motion_loop.generate import main
from motion_loop.mdm import MDM, MDMConfig, load_model
from motion_loop.text_encoders import clip_modules

SMALL = dict(latent_dim=32, layers=1, num_heads=2, cond_mask_prob=0.1)
# args.json as the official trainers write them (no ff_size: read off the weights)
KINDS = {
    "trans_enc": dict(arch="trans_enc", dataset="humanml", text_encoder_type="clip", diffusion_steps=50),
    "trans_dec": dict(arch="trans_dec", dataset="humanml", emb_trans_dec=False, diffusion_steps=50),
    "trans_dec_emb_2022": dict(arch="trans_dec", dataset="humanml", emb_trans_dec=True, diffusion_steps=50),
    "trans_dec_emb_2025": dict(arch="trans_dec", dataset="humanml", emb_trans_dec=True, text_encoder_type="clip",
                               diffusion_steps=50),
    "trans_dec_bert": dict(arch="trans_dec", dataset="humanml", text_encoder_type="bert", diffusion_steps=50,
                           mask_frames=True, use_ema=True),
    "kit_trans_enc": dict(arch="trans_enc", dataset="kit", diffusion_steps=50),
}


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kinds")
    clip_model, _ = clip_modules()
    torch.manual_seed(0)
    clip = clip_model.CLIP(embed_dim=512, image_resolution=32, vision_layers=1, vision_width=64,
                           vision_patch_size=16, context_length=77, vocab_size=49408,
                           transformer_width=64, transformer_heads=1, transformer_layers=1)
    clip_model.convert_weights(clip)
    torch.save(clip.state_dict(), folder / "clip.pt")
    return {"folder": folder, "clip": folder / "clip.pt", "bert": tiny_distilbert_dir(folder / "distilbert")}


def make_checkpoint(folder, kind):
    """An official-format folder: args.json, model000000100.pt (plain or {'model', 'model_avg'}), Mean/Std."""
    args = {**KINDS[kind], "latent_dim": SMALL["latent_dim"], "layers": SMALL["layers"],
            "cond_mask_prob": SMALL["cond_mask_prob"]}
    config = MDMConfig.from_args({**args, "num_heads": 2, "ff_size": 48})
    torch.manual_seed(1)
    model = MDM(config)
    folder.mkdir()
    (folder / "args.json").write_text(json.dumps({**args, "num_heads": 2}))
    state = model.state_dict()
    torch.save({"model": state, "model_avg": state} if config.use_ema else state, folder / "model000000100.pt")
    rng = np.random.default_rng(0)
    np.save(folder / "Mean.npy", (0.1 * rng.standard_normal(config.n_feats)).astype(np.float32))
    np.save(folder / "Std.npy", (0.05 + 0.1 * rng.random(config.n_feats)).astype(np.float32))
    return folder / "model000000100.pt"


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_loop_is_sampled_with_every_checkpoint_kind(kind, assets, tmp_path, capsys):
    path = make_checkpoint(tmp_path / kind, kind)
    config = load_model(path).config
    out_dir = tmp_path / "out"
    out = run_ok(["--model_path", str(path), "--clip_weights", str(assets["clip"]), "--bert_dir", str(assets["bert"]),
                  "--text_prompt", "a person walks forward", "--loop", "--motion_length", "3",
                  "--num_repetitions", "1", "--steps", "3", "--no-progress", "--no-render",
                  "--output_dir", str(out_dir)], capsys)
    assert "checkpoint: MDM " + config.arch in out
    assert ("DistilBERT" in out) == (kind == "trans_dec_bert")
    if kind.startswith("trans_dec_emb"):
        assert ("2022" in out) == kind.endswith("2022")
    results = np.load(out_dir / "results.npy", allow_pickle=True).item()
    run = json.loads((out_dir / "run.json").read_text())
    joints = 21 if kind == "kit_trans_enc" else 22
    fps = 12.5 if kind == "kit_trans_enc" else 20.0
    assert run["fps"] == fps and run["loop"]
    frames = run["frames"]
    assert abs(frames - 3 * fps) <= 10  # the period: a multiple of the windows near 3 s
    assert results["motion"].shape == (1, joints, 3, frames)
    assert np.isfinite(results["motion"]).all()
    features = np.load(out_dir / "features.npy")
    assert features.shape == (1, frames, config.n_feats)
    assert run["seam_reports"] and len(run["seam_reports"]) == 1
    bvh = (out_dir / "sample00_rep00.bvh").read_text()
    assert f"Frame Time: {1 / fps:.8f}" in bvh and bvh.count("JOINT ") == joints - 1


def test_a_kit_motion_renders_with_its_own_chains(tmp_path):
    from motion_loop.render import render_frames, render_motion
    from motion_loop.skeleton import KIT_KINEMATIC_CHAIN
    from test_export import kit_clip

    joints = kit_clip(12)
    path = render_motion(joints, tmp_path / "kit.gif", "kit")
    assert path.is_file() and path.stat().st_size > 1000
    frames = list(render_frames([joints], figsize=(2, 2), dpi=50))
    assert len(frames) == 12 and frames[0].std() > 0
    assert max(max(chain) for chain in KIT_KINEMATIC_CHAIN) == 20


def sample_argv(path, assets, out_dir, *extra):
    return ["--model_path", str(path), "--clip_weights", str(assets["clip"]), "--bert_dir", str(assets["bert"]),
            "--text_prompt", "a person walks forward", "--num_repetitions", "1", "--steps", "3", "--no-progress",
            "--no-render", "--output_dir", str(out_dir), *extra]


def test_bert_model_samples_with_mdm_own_ddpm_sampler(assets, tmp_path, capsys):
    path = make_checkpoint(tmp_path / "bert", "trans_dec_bert")
    out = run_ok(sample_argv(path, assets, tmp_path / "out", "--sampler", "ddpm", "--motion_length", "2"), capsys)
    assert "50 diffusion steps" in out
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["steps"] == 50 and run["frames"] == 40


def test_emb_trans_dec_behaviour_can_be_forced_from_the_command_line(assets, tmp_path, capsys):
    path = make_checkpoint(tmp_path / "emb", "trans_dec_emb_2025")
    out = run_ok(sample_argv(path, assets, tmp_path / "a", "--emb_trans_dec_legacy"), capsys)
    assert "2022: time+text token" in out
    out = run_ok(sample_argv(path, assets, tmp_path / "b"), capsys)
    assert "2025: time token" in out
    legacy = np.load(tmp_path / "a" / "features.npy")
    assert np.abs(legacy - np.load(tmp_path / "b" / "features.npy")).max() > 1e-4


def test_missing_distilbert_and_kit_statistics_are_one_line_errors(assets, tmp_path, capsys):
    from test_generate import run_error

    bert = make_checkpoint(tmp_path / "bert", "trans_dec_bert")
    argv = sample_argv(bert, assets, tmp_path / "out")
    argv[argv.index("--bert_dir") + 1] = str(tmp_path / "nowhere")
    assert "prepare/download_distilbert.py" in run_error(argv, capsys)
    kit = make_checkpoint(tmp_path / "kit", "kit_trans_enc")
    for name in ("Mean.npy", "Std.npy"):
        (kit.parent / name).unlink()
    line = run_error(sample_argv(kit, assets, tmp_path / "out2", "--stats_dir", str(tmp_path / "none")), capsys)
    assert "prepare/download_kit_stats.py" in line
    # HumanML3D's statistics do not fit a KIT model
    (tmp_path / "hml").mkdir()
    np.save(tmp_path / "hml" / "Mean.npy", np.zeros(263, np.float32))
    np.save(tmp_path / "hml" / "Std.npy", np.ones(263, np.float32))
    line = run_error(sample_argv(kit, assets, tmp_path / "out3", "--stats_dir", str(tmp_path / "hml")), capsys)
    assert "expected float (251,)" in line
    assert not (tmp_path / "out").exists() and not (tmp_path / "out2").exists()


@pytest.mark.parametrize("name", ["tiny_trans_dec", "tiny_trans_dec_emb", "tiny_trans_dec_bert", "tiny_kit_trans_enc"])
def test_a_loop_is_sampled_with_the_official_tiny_checkpoints(name, assets, tmp_path, capsys):
    """The folders the official MDM code wrote (../shared/mdm_reference), as a user would pass them."""
    import shutil

    from conftest import shared_path

    folder = tmp_path / name
    shutil.copytree(shared_path("mdm_reference", name), folder)
    config = load_model(folder / "model000000100.pt").config
    rng = np.random.default_rng(0)
    np.save(folder / "Mean.npy", (0.1 * rng.standard_normal(config.n_feats)).astype(np.float32))
    np.save(folder / "Std.npy", (0.05 + 0.1 * rng.random(config.n_feats)).astype(np.float32))
    run_ok(sample_argv(folder / "model000000100.pt", assets, tmp_path / "out", "--loop", "--motion_length", "3"),
           capsys)
    results = np.load(tmp_path / "out" / "results.npy", allow_pickle=True).item()
    assert results["motion"].shape[1] == (21 if config.dataset == "kit" else 22)
    assert np.isfinite(results["motion"]).all()
