import shutil

import numpy as np
import pytest
import torch

from motion_loop.dataset import CropSampler, build_procedural, feature_stats, load_or_build
from motion_loop.errors import UserError
from motion_loop.humanml import recover_from_ric
from motion_loop.mdm import MDM, MDMConfig, load_model
from motion_loop.text_encoders import MiniLMTextEncoder, text_encoder_for
from motion_loop.train import (Trainer, ema_decay_at, foot_contact_loss, jerk_loss, learning_rate, main,
                               update_ema)

TINY_FLAGS = [
    "--motions_per_kind", "1", "--motion_frames", "40", "--min_frames", "10", "--max_frames", "30",
    "--captions_per_motion", "2", "--latent_dim", "16", "--layers", "1", "--ff_size", "32", "--num_heads", "2",
    "--batch_size", "4", "--diffusion_steps", "50", "--warmup", "2", "--no-progress",
]


@pytest.fixture(scope="module")
def tiny_data():
    return build_procedural(2, 40, seed=0, kinds=("walk", "jump"), captions_per_motion=4, margin=10)


@pytest.fixture(scope="module")
def minilm():
    return MiniLMTextEncoder()


@pytest.fixture
def tiny_trainer(tiny_data, minilm):
    def make(seed=0, **kwargs) -> Trainer:
        mean, std = feature_stats(tiny_data.features)
        sampler = CropSampler(tiny_data, mean, std, 16, 32)
        config = MDMConfig(latent_dim=32, layers=2, ff_size=64, num_heads=4, text_dim=384, text_encoder_type="minilm",
                           mask_frames=True, diffusion_steps=50, pos_embed_max_len=100, max_motion_length=32,
                           dropout=0.0)
        torch.manual_seed(seed)
        return Trainer(MDM(config), minilm, sampler, seed=seed, **kwargs)

    return make


@torch.no_grad()
def fixed_loss(trainer: Trainer, batches: int = 8) -> float:
    """The loss on the same noisy batches every time (own generator; the trainer's is kept)."""
    saved = trainer.generator.get_state()
    trainer.generator.manual_seed(1234)
    trainer.model.eval()
    value = float(np.mean([float(trainer.loss(*trainer.sampler.sample(16, trainer.generator))) for _ in range(batches)]))
    trainer.generator.set_state(saved)
    return value


def test_procedural_data_and_crops(tiny_data):
    assert tiny_data.features.shape == (4, 40, 263) and tiny_data.features.dtype == np.float32
    assert tiny_data.kinds == ["walk", "walk", "jump", "jump"]
    assert all(1 <= len(c) <= 4 for c in tiny_data.captions)
    mean, std = feature_stats(tiny_data.features)
    assert std.min() >= 0.01  # the floor guards near-constant features
    sampler = CropSampler(tiny_data, mean, std, 5, 12)
    x, texts = sampler.sample(6, torch.Generator().manual_seed(0))
    assert x.shape[:3] == (6, 263, 1) and 5 <= x.shape[-1] <= 12 and len(texts) == 6
    # every crop is a contiguous piece of one normalized motion
    normalized = (tiny_data.features - mean) / std
    for row in x[:, :, 0].transpose(1, 2).numpy():
        hits = [np.abs(normalized[i, s: s + len(row)] - row).max() < 1e-5
                for i in range(4) for s in range(40 - len(row) + 1)]
        assert any(hits)
    with pytest.raises(ValueError, match="max_frames"):
        CropSampler(tiny_data, mean, std, 5, 41)


def test_dataset_cache_is_reused(tmp_path):
    first, path = load_or_build(tmp_path, 1, 12, seed=3, margin=5)
    stamp = path.stat().st_mtime_ns
    again, path_again = load_or_build(tmp_path, 1, 12, seed=3, margin=5)
    assert path_again == path and path.stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(first.features, again.features)
    assert first.captions == again.captions and first.kinds == again.kinds and first.params == again.params
    _, other = load_or_build(tmp_path, 1, 12, seed=4, margin=5)
    assert other != path


def test_a_few_steps_reduce_the_loss(tiny_trainer):
    trainer = tiny_trainer(lr=3e-3, warmup=5, total_steps=80)
    before = fixed_loss(trainer)
    for _ in range(80):
        trainer.train_step(16)
    after = fixed_loss(trainer)
    assert after < 0.7 * before, (before, after)
    assert trainer.step == 80 and len(trainer.history) == 80


def test_ema_update_and_decay():
    assert ema_decay_at(0, 0.999) == pytest.approx(0.1)
    assert ema_decay_at(90, 0.999) == pytest.approx(91 / 100)
    assert ema_decay_at(10**6, 0.999) == 0.999
    model, ema = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    model.register_buffer("count", torch.tensor(5.0))
    ema.register_buffer("count", torch.tensor(0.0))
    expected = [0.75 * e + 0.25 * p for e, p in zip(ema.parameters(), model.parameters())]
    update_ema(ema, model, 0.75)
    for e, want in zip(ema.parameters(), expected):
        torch.testing.assert_close(e, want)
    assert float(ema.count) == 5.0  # buffers are copied


def test_trainer_ema_follows_the_weights(tiny_trainer):
    trainer = tiny_trainer(ema_decay=0.5)
    start = {k: v.clone() for k, v in trainer.ema.state_dict().items()}
    trainer.train_step(4)
    decay = ema_decay_at(0, 0.5)  # 0.1: the first update mostly takes the new weights
    for key, value in trainer.model.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(trainer.ema.state_dict()[key], decay * start[key] + (1 - decay) * value)


def test_learning_rate_schedule():
    assert learning_rate(0, 1.0, 10, 100) == pytest.approx(0.1)
    assert learning_rate(9, 1.0, 10, 100) == pytest.approx(1.0)
    assert learning_rate(10, 1.0, 10, 100) == pytest.approx(1.0)
    assert learning_rate(100, 1.0, 10, 100) == pytest.approx(0.1)
    assert learning_rate(55, 1.0, 10, 100) == pytest.approx(0.55)


def test_checkpoint_and_resume_reproduce_training(tmp_path, capsys):
    straight = tmp_path / "straight"
    flags = TINY_FLAGS + ["--cache_dir", str(tmp_path / "cache"), "--seed", "3"]
    assert main(flags + ["--save_dir", str(straight), "--steps", "6", "--save_every", "3"]) == 0
    names = sorted(p.name for p in straight.iterdir())
    assert names == ["Mean.npy", "Std.npy", "args.json", "caption_bank.npz", "model000000003.pt", "model000000006.pt",
                     "train000000003.pt", "train000000006.pt", "train_log.jsonl"]
    with np.load(straight / "caption_bank.npz") as bank:
        # one subject ("a person ...") of the training captions, with their MiniLM embeddings
        captions = [str(c) for c in bank["captions"]]
        assert captions and all("a person" in c for c in captions)
        assert bank["embeddings"].shape == (len(captions), 384)

    # A run stopped after step 3: resume it and compare with the straight run.
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    for name in ["Mean.npy", "Std.npy", "args.json", "model000000003.pt", "train000000003.pt"]:
        shutil.copy(straight / name, resumed / name)
    assert main(flags + ["--save_dir", str(resumed), "--steps", "6", "--save_every", "3", "--resume"]) == 0
    assert "resumed from" in capsys.readouterr().out
    a = torch.load(straight / "train000000006.pt", weights_only=True)
    b = torch.load(resumed / "train000000006.pt", weights_only=True)
    assert a["step"] == b["step"] == 6
    for part in ("model", "ema"):
        for key in a[part]:
            torch.testing.assert_close(a[part][key], b[part][key], atol=0, rtol=0, msg=f"{part}.{key}")
    torch.testing.assert_close(a["history"], b["history"], atol=0, rtol=0)
    torch.testing.assert_close(a["optimizer"]["state"][0]["exp_avg"], b["optimizer"]["state"][0]["exp_avg"], atol=0, rtol=0)

    # Nothing is overwritten: a fresh run into a used folder, or resuming where nothing is, is refused.
    assert main(flags + ["--save_dir", str(straight), "--steps", "6"]) == 2
    assert main(flags + ["--save_dir", str(tmp_path / "empty"), "--steps", "6", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "already holds checkpoints" in err and "no train*.pt" in err


def test_saved_checkpoint_loads_with_its_text_encoder(tmp_path, tiny_trainer, minilm):
    trainer = tiny_trainer()
    for _ in range(3):
        trainer.train_step(4)
    model_path, state_path = trainer.save(tmp_path)
    assert model_path.name == "model000000003.pt" and state_path.name == "train000000003.pt"
    with pytest.raises(UserError, match="already exists"):
        trainer.save(tmp_path)

    loaded = load_model(model_path)
    assert loaded.config == trainer.model.config and loaded.config.text_encoder_type == "minilm"
    encoder = text_encoder_for(loaded)  # the frozen MiniLM of its pip package: nothing in the checkpoint
    assert isinstance(encoder, MiniLMTextEncoder)
    prompts = ["a person walks forward", "someone jumps up and down", "an unseen zebra phrase"]
    torch.testing.assert_close(encoder.encode(prompts), minilm.encode(prompts), atol=1e-6, rtol=0)
    x = torch.randn(2, 263, 1, 20)
    t = torch.tensor([3, 40])
    y = {"text_embed": encoder.encode(prompts[:2]), "mask": torch.ones(2, 1, 1, 20, dtype=torch.bool)}
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x, t, y), trainer.ema.eval()(x, t, y))
    # the sampling file holds the EMA weights of MDM only (small), the training state the rest
    saved = torch.load(model_path, weights_only=True)
    assert sorted(saved) == sorted(trainer.ema.state_dict())


def test_bad_flags_are_one_line_errors(tmp_path, capsys):
    assert main(TINY_FLAGS + ["--save_dir", str(tmp_path / "x"), "--min_frames", "35"]) == 2
    assert main(TINY_FLAGS + ["--save_dir", str(tmp_path / "x"), "--steps", "0"]) == 2
    assert main(TINY_FLAGS + ["--save_dir", str(tmp_path / "x"), "--jerk_max_t", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "--min_frames" in err[0] and "--steps" in err[1] and "--jerk_max_t" in err[2]


def loss_with_and_without(trainer, **weights):
    """The trainer's loss on one batch, plain and with the extra ``weights`` set, from the same random
    draws; also the model's (shared) prediction and the batch."""
    trainer.model.eval()
    x0, texts = trainer.sampler.sample(4, torch.Generator().manual_seed(5))
    outputs = []
    trainer.model.register_forward_hook(lambda module, args, out: outputs.append(out.detach()))
    state = trainer.generator.get_state()
    with torch.no_grad():
        plain = trainer.loss(x0, texts)
        trainer.generator.set_state(state)
        for name, value in weights.items():
            setattr(trainer, name, value)
        weighted = trainer.loss(x0, texts)
    torch.testing.assert_close(outputs[0], outputs[1])  # same draws, same prediction
    return plain, weighted, outputs[0], x0


def test_velocity_loss_adds_the_mse_of_frame_differences(tiny_trainer):
    plain, with_vel, pred, x0 = loss_with_and_without(tiny_trainer(), lambda_vel=2.0)
    torch.testing.assert_close(plain, ((pred - x0) ** 2).mean())
    torch.testing.assert_close(with_vel - plain, 2.0 * ((pred.diff(dim=-1) - x0.diff(dim=-1)) ** 2).mean())


# ----------------------------------------------------------------------------------------------
# Foot contact loss


def walking_features(frames=6, speed=0.03):
    """Raw features of a body gliding forward at ``speed`` m/frame with a frozen pose: every joint,
    feet included, moves ``speed`` per frame. Contacts: left ankle, right ankle and right toe planted,
    left toe in the air."""
    x = torch.zeros(1, frames, 263, dtype=torch.float64)
    x[..., 2] = speed  # root velocity z, in the facing frame (heading 0)
    x[..., 3] = 0.9
    x[..., 4:67] = torch.linspace(-0.5, 0.5, 63, dtype=torch.float64)  # some fixed pose
    x[..., 259:263] = torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    return x


def test_foot_contact_loss_is_the_squared_slide_of_planted_feet():
    x = walking_features(speed=0.03)
    valid = torch.ones(1, 6, dtype=torch.bool)
    # 3 of 4 feet planted, each sliding 0.03 m per frame: sum 3 * 0.03^2 over 12 entries per pair
    torch.testing.assert_close(foot_contact_loss(x, x, valid), torch.tensor(3 * 0.03**2 / 12, dtype=torch.float64))
    # no planted foot: no loss however fast the feet move
    lifted = x.clone()
    lifted[..., 259:263] = 0.0
    assert foot_contact_loss(x, lifted, valid) == 0
    # a pose that moves the feet backwards as fast as the root advances keeps them planted
    planted = x.clone()
    for joint in (7, 10, 8, 11):
        column = 4 + 3 * (joint - 1) + 2  # z of the joint relative to the root
        planted[0, :, column] = planted[0, 0, column] - 0.03 * torch.arange(6, dtype=torch.float64)
    assert foot_contact_loss(planted, x, valid) < 1e-20
    # padded frames (and the pair that reaches into them) do not count, whatever they hold
    valid[0, 4:] = False
    garbage = x.clone()
    garbage[0, 4:, 2] = 5.0
    torch.testing.assert_close(foot_contact_loss(garbage, x, valid), foot_contact_loss(x, x, valid))


def test_foot_contact_loss_is_differentiable_through_recover_from_ric():
    x = (0.1 * torch.randn(1, 5, 263, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    assert torch.autograd.gradcheck(recover_from_ric, (x.requires_grad_(),))
    target = walking_features(frames=5)
    valid = torch.ones(1, 5, dtype=torch.bool)
    assert torch.autograd.gradcheck(lambda f: foot_contact_loss(f, target, valid), (x,))
    pred = walking_features(frames=5).requires_grad_()
    foot_contact_loss(pred, target, valid).backward()
    assert pred.grad[..., 2].abs().sum() > 0  # the root velocity is pushed back


def raw_features(trainer, *normalized):
    """``[B, F, 1, T]`` model-space tensors as de-normalized ``[B, T, F]`` features (what the losses decode)."""
    mean, std = (torch.from_numpy(a) for a in (trainer.sampler.normalizer.mean, trainer.sampler.normalizer.std))
    return [x[:, :, 0].transpose(1, 2) * std + mean for x in normalized]


@pytest.mark.parametrize("term, weight, loss", [("fc", 3.0, foot_contact_loss), ("jerk", 7.0, jerk_loss)])
def test_trainer_adds_the_weighted_loss_of_the_decoded_prediction(tiny_trainer, term, weight, loss):
    trainer = tiny_trainer()
    plain, weighted, pred, x0 = loss_with_and_without(trainer, **{f"lambda_{term}": weight})
    raw_pred, raw_x0 = raw_features(trainer, pred, x0)
    expected = weight * loss(raw_pred, raw_x0, torch.ones(raw_x0.shape[:2], dtype=torch.bool))
    assert expected > 0
    torch.testing.assert_close(weighted - plain, expected)
    assert set(trainer.terms) == {"mse", term}


def test_jerk_max_t_counts_the_jerk_of_the_low_noise_rows_only(tiny_trainer):
    trainer = tiny_trainer()
    # the diffusion steps loss() will draw: its first draw from the trainer's generator
    t = torch.randint(0, len(trainer.abar), (4,), generator=torch.Generator().set_state(trainer.generator.get_state()))
    max_t = int(t.sort().values[2])
    low = t < max_t
    assert 0 < int(low.sum()) < 4  # some rows in, some out, so the check below can fail either way
    plain, weighted, pred, x0 = loss_with_and_without(trainer, lambda_jerk=7.0, jerk_max_t=max_t)
    raw_pred, raw_x0 = raw_features(trainer, pred, x0)
    expected = 7.0 * jerk_loss(raw_pred[low], raw_x0[low], torch.ones(raw_x0[low].shape[:2], dtype=torch.bool))
    assert expected > 0
    torch.testing.assert_close(weighted - plain, expected)


# ----------------------------------------------------------------------------------------------
# Jerk loss


def lift(x, frame, height):
    """``x`` with the whole body (root and the 21 joints' y features) lifted by ``height`` in one frame."""
    x = x.clone()
    x[0, frame, 3] += height
    x[0, frame, 5:67:3] += height
    return x


def test_jerk_loss_is_zero_for_equal_motions_and_the_squared_jerk_error_otherwise():
    x = walking_features(frames=8, speed=0.03)  # constant velocity: no jerk of its own
    valid = torch.ones(1, 8, dtype=torch.bool)
    assert float(jerk_loss(x, x, valid)) == 0.0
    # a 1 cm bump of the root height at frame 4: the third difference of every joint's y over
    # frames 1..7 is 0.01 * (1, -3, 3, -1) in the 4 stencils that hold frame 4 (5 stencils in all)
    bumped = lift(x, 4, 0.01)
    expected = 22 * 0.01**2 * (1 + 9 + 9 + 1) / (5 * 22 * 3)
    torch.testing.assert_close(jerk_loss(bumped, x, valid), torch.tensor(expected, dtype=torch.float64))
    torch.testing.assert_close(jerk_loss(x, bumped, valid), jerk_loss(bumped, x, valid))  # symmetric


def test_jerk_loss_ignores_stencils_that_reach_into_padded_frames():
    x = walking_features(frames=10, speed=0.03)
    valid = torch.ones(1, 10, dtype=torch.bool)
    valid[0, 7:] = False  # 4 valid stencils (frames 0..6)
    garbage = lift(x, 7, 4.0)  # the body jumps 4 m up in the padding only
    garbage = lift(garbage, 9, -2.0)
    assert jerk_loss(garbage, x, valid) == 0
    # the same bump inside the valid frames counts, normalized by the valid stencils only
    garbage = lift(garbage, 3, 0.01)  # frame 3 lies in the valid stencils 0..3 (not 4..6, which reach padding)
    expected = 22 * 0.01**2 * (1 + 9 + 9 + 1) / (4 * 22 * 3)
    torch.testing.assert_close(jerk_loss(garbage, x, valid), torch.tensor(expected, dtype=torch.float64))
    assert jerk_loss(garbage, x, torch.zeros(1, 10, dtype=torch.bool)) == 0  # nothing valid: no loss, no NaN


def test_jerk_loss_is_differentiable_and_pulls_the_prediction_to_the_data():
    target = walking_features(frames=7)
    valid = torch.ones(1, 7, dtype=torch.bool)
    x = target + 0.01 * torch.randn(target.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert jerk_loss(x, target, valid) > 0
    assert torch.autograd.gradcheck(lambda f: jerk_loss(f, target, valid), (x.clone().requires_grad_(),))
    pred = x.clone().requires_grad_()
    optimizer = torch.optim.Adam([pred], lr=1e-3)
    before = float(jerk_loss(x, target, valid))
    for _ in range(100):
        optimizer.zero_grad()
        jerk_loss(pred, target, valid).backward()
        optimizer.step()
    assert float(jerk_loss(pred.detach(), target, valid)) < 0.5 * before



# ----------------------------------------------------------------------------------------------
# --init_from


def test_init_from_starts_from_the_given_weights(tmp_path, capsys):
    flags = TINY_FLAGS + ["--cache_dir", str(tmp_path / "cache"), "--seed", "3", "--dropout", "0"]
    assert main(flags + ["--save_dir", str(tmp_path / "base"), "--steps", "2", "--save_every", "2"]) == 0
    base = torch.load(tmp_path / "base" / "model000000002.pt", weights_only=True)

    # one step at learning rate 0 changes nothing: the fine-tune's model and EMA are the given weights
    assert main(flags + ["--save_dir", str(tmp_path / "ft"), "--steps", "1", "--lr", "0", "--lambda_jerk", "10",
                         "--init_from", str(tmp_path / "base" / "model000000002.pt")]) == 0
    assert "initialized from" in capsys.readouterr().out
    state = torch.load(tmp_path / "ft" / "train000000001.pt", weights_only=True)
    for part in ("model", "ema"):
        for key, value in base.items():
            torch.testing.assert_close(state[part][key], value, atol=0, rtol=0, msg=f"{part}.{key}")
    log = (tmp_path / "ft" / "train_log.jsonl").read_text().splitlines()
    assert set(__import__("json").loads(log[-1])["terms"]) == {"mse", "jerk"}

    # a random init (same seed) differs from them, so the check above can fail
    assert main(flags + ["--save_dir", str(tmp_path / "fresh"), "--steps", "1", "--lr", "0"]) == 0
    fresh = torch.load(tmp_path / "fresh" / "train000000001.pt", weights_only=True)
    assert any(not torch.equal(fresh["model"][k], v) for k, v in base.items())

    # a train*.pt gives its model and its EMA (which differ after 2 steps)
    train_state = torch.load(tmp_path / "base" / "train000000002.pt", weights_only=True)
    assert main(flags + ["--save_dir", str(tmp_path / "ft2"), "--steps", "1", "--lr", "0",
                         "--init_from", str(tmp_path / "base" / "train000000002.pt")]) == 0
    state = torch.load(tmp_path / "ft2" / "train000000001.pt", weights_only=True)
    for key, value in train_state["model"].items():
        torch.testing.assert_close(state["model"][key], value, atol=0, rtol=0)


def test_init_from_another_architecture_or_data_is_a_one_line_error(tmp_path, capsys):
    flags = TINY_FLAGS + ["--cache_dir", str(tmp_path / "cache"), "--seed", "3"]
    assert main(flags + ["--save_dir", str(tmp_path / "base"), "--steps", "1"]) == 0
    checkpoint = str(tmp_path / "base" / "model000000001.pt")
    capsys.readouterr()
    wider = [f if f != "16" else "32" for f in flags]  # --latent_dim 32
    assert main(wider + ["--save_dir", str(tmp_path / "a"), "--steps", "1", "--init_from", checkpoint]) == 2
    assert main(flags + ["--save_dir", str(tmp_path / "b"), "--steps", "1", "--init_from", checkpoint,
                         "--diffusion_steps", "60"]) == 2
    assert main(flags + ["--save_dir", str(tmp_path / "c"), "--steps", "1", "--init_from", checkpoint,
                         "--data_seed", "1"]) == 2
    assert main(flags + ["--save_dir", str(tmp_path / "d"), "--steps", "1",
                         "--init_from", str(tmp_path / "nothing.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4, err
    assert "shape" in err[0] and "--latent_dim" in err[0]
    assert "diffusion_steps" in err[1]
    assert "Mean.npy" in err[2]
    assert "does not exist" in err[3]
