"""End-to-end tests of ``python -m sample`` with a tiny random-weight model (no downloads)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_mdm

from motion_loop import generate
from motion_loop.collage import Layout
from motion_loop.errors import UserError
from motion_loop.generate import SAMPLER_TITLES, choose_layout, main
from motion_loop.mdm import MDM, MDMConfig, save_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny CLIP-conditioned MDM folder (args.json, weights, Mean/Std) and tiny CLIP weights."""
    return tiny_mdm(tmp_path_factory.mktemp("tiny_mdm"))


def cli(tiny, *extra, model=None):
    return ["--model_path", str(model or tiny["model"]), "--clip_weights", str(tiny["clip"]),
            "--steps", "4", "--no-progress", *extra]


def run_ok(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


def run_error(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_loop_writes_results_video_and_seam_report(tiny, tmp_path, capsys):
    out_dir = tmp_path / "loop"
    out = run_ok(cli(tiny, "--text_prompt", "a person walks forward", "--loop", "--motion_length", "3",
                     "--num_repetitions", "2", "--loop_repeats", "2", "--output_dir", str(out_dir)), capsys)
    results = np.load(out_dir / "results.npy", allow_pickle=True).item()
    assert results["motion"].shape == (2, 22, 3, 60)
    assert results["text"] == ["a person walks forward"] * 2
    assert list(results["lengths"]) == [60, 60]
    assert (results["num_samples"], results["num_repetitions"]) == (1, 2)
    assert np.isfinite(results["motion"]).all()
    assert np.load(out_dir / "features.npy").shape == (2, 60, 263)
    run = json.loads((out_dir / "run.json").read_text())
    assert run["loop"] is True and run["layout"]["cyclic"] is True
    layout = Layout(run["layout"]["window"], run["layout"]["overlap"], run["layout"]["n_windows"], True)
    assert layout.length == 60 and layout.window <= 60
    assert len(run["seam_reports"]) == 2 and run["seam_reports"][0]["velocity_ratio"] > 0
    assert run["sampler"] == "dpmpp_3m" and run["seed"] == 10  # the default sampler
    videos = sorted(p.name for p in out_dir.glob("sample*_rep*.mp4"))
    assert videos == ["sample00_rep00.mp4", "sample00_rep01.mp4"]
    bvh = (out_dir / "sample00_rep01.bvh").read_text()
    assert bvh.startswith("HIERARCHY") and "Frames: 60" in bvh  # one cycle of the loop
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(out_dir / "sample00_rep00.mp4"))
    meta = next(reader)
    assert sum(1 for _ in reader) == 2 * 60  # two cycles of the loop, nothing dropped or doubled
    assert meta["fps"] == 20
    assert "loop seam" in out and str(out_dir) in out


def test_foot_lock_changes_joints_not_features(tiny, tmp_path, capsys, monkeypatch):
    import motion_loop.foot_lock
    from motion_loop.humanml import recover_from_ric
    from motion_loop.velocity_fusion import fuse_velocities

    calls = []

    def lift(joints, contacts, *, loop, fps):  # a stand-in lock whose effect is easy to see: up by 1 m
        calls.append((contacts.shape, contacts.dtype, loop, fps))
        return joints + np.array([0.0, 1.0, 0.0])

    monkeypatch.setattr(motion_loop.foot_lock, "lock_feet", lift)
    common = ("--text_prompt", "a person walks forward", "--loop", "--motion_length", "3", "--num_repetitions", "2",
              "--no-render", "--no-bvh")
    runs = {}
    for flag in ("--foot_lock", "--no-foot_lock"):
        out_dir = tmp_path / flag
        out = run_ok(cli(tiny, *common, flag, "--output_dir", str(out_dir)), capsys)
        joints = np.load(out_dir / "results.npy", allow_pickle=True).item()["motion"].transpose(0, 3, 1, 2)
        runs[flag] = (joints, np.load(out_dir / "features.npy"), json.loads((out_dir / "run.json").read_text()), out)
    locked, features, run, out = runs["--foot_lock"]
    raw, raw_features, raw_run, raw_out = runs["--no-foot_lock"]
    # each motion locked once, as a loop, with its predicted toe contacts; not at all without the flag
    assert calls == [((60, 2), np.dtype(bool), True, 20.0)] * 2
    np.testing.assert_array_equal(features, raw_features)  # features.npy: the model's output either way
    np.testing.assert_allclose(raw, recover_from_ric(fuse_velocities(features, cyclic=True)), atol=1e-5)
    np.testing.assert_allclose(locked, raw + np.array([0.0, 1.0, 0.0]), atol=1e-5)
    assert run["foot_lock"] is True and raw_run["foot_lock"] is False and raw_run["foot_skating_ratio"] is None
    assert run["foot_skating_ratio"]["locked"] == 0.0  # 1 m up, no foot touches the floor
    assert "foot lock: foot skating ratio" in out and "foot lock" not in raw_out


def test_velocity_fusion_decodes_positions_and_velocities_together(tiny, tmp_path, capsys):
    """Default: joints from the positions fitted to the velocity features too (a chain: not cyclic);
    --no-velocity_fusion: from the positions alone. features.npy is the model's output either way."""
    from motion_loop.humanml import recover_from_ric
    from motion_loop.velocity_fusion import fuse_velocities

    common = ("--text_prompt", "a person walks forward", "--motion_length", "2", "--num_repetitions", "1",
              "--no-render", "--no-bvh", "--no-foot_lock")
    runs = {}
    for flag in ("--velocity_fusion", "--no-velocity_fusion"):
        out_dir = tmp_path / flag
        run_ok(cli(tiny, *common, flag, "--output_dir", str(out_dir)), capsys)
        joints = np.load(out_dir / "results.npy", allow_pickle=True).item()["motion"].transpose(0, 3, 1, 2)
        runs[flag] = (joints, np.load(out_dir / "features.npy"), json.loads((out_dir / "run.json").read_text()))
    (fused, features, run), (plain, plain_features, plain_run) = runs["--velocity_fusion"], runs["--no-velocity_fusion"]
    np.testing.assert_array_equal(features, plain_features)
    np.testing.assert_allclose(plain, recover_from_ric(features), atol=1e-5)
    np.testing.assert_allclose(fused, recover_from_ric(fuse_velocities(features, cyclic=False)), atol=1e-5)
    assert np.abs(fused - plain).max() > 1e-3  # a random-weight model's channels disagree
    assert run["velocity_fusion"] is True and plain_run["velocity_fusion"] is False


@pytest.mark.parametrize("seconds", ["0.05", "0.15"])
def test_motions_of_one_and_three_frames(tiny, tmp_path, capsys, seconds):
    out_dir = tmp_path / seconds
    run_ok(cli(tiny, "--text_prompt", "a person jumps", "--motion_length", seconds, "--num_repetitions", "1",
               "--no-render", "--output_dir", str(out_dir)), capsys)
    frames = round(float(seconds) * 20)
    assert np.load(out_dir / "results.npy", allow_pickle=True).item()["motion"].shape == (1, 22, 3, frames)


def test_long_motion_is_a_chain_of_windows(tiny, tmp_path, capsys):
    out_dir = tmp_path / "long"
    run_ok(cli(tiny, "--text_prompt", "someone runs", "--motion_length", "7.5", "--num_repetitions", "1",
               "--no-render", "--output_dir", str(out_dir)), capsys)
    results = np.load(out_dir / "results.npy", allow_pickle=True).item()
    assert results["motion"].shape == (1, 22, 3, 150)  # 7.5 s at 20 fps, past the model's 60 frames
    run = json.loads((out_dir / "run.json").read_text())
    assert run["layout"]["cyclic"] is False and run["layout"]["n_windows"] >= 3
    assert run["seam_reports"] is None
    assert not list(out_dir.glob("*.mp4"))
    assert (out_dir / "sample00_rep00.bvh").is_file()


def test_input_text_batches_and_ddpm_sampler(tiny, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a person jumps\n\nsomeone waves\na man squats\n")
    out_dir = tmp_path / "ddpm"
    run_ok(cli(tiny, "--input_text", str(prompts), "--num_samples", "2", "--num_repetitions", "2",
               "--motion_length", "2", "--sampler", "ddpm", "--batch_size", "3", "--no-render",
               "--output_dir", str(out_dir)), capsys)
    results = np.load(out_dir / "results.npy", allow_pickle=True).item()
    assert results["text"] == ["a person jumps", "someone waves"] * 2
    assert results["motion"].shape == (4, 22, 3, 40)
    run = json.loads((out_dir / "run.json").read_text())
    assert run["sampler"] == "ddpm" and run["steps"] == 50 and run["layout"] is None
    assert run["guidance_interval"] == [0.0, None]  # MDM's sampler guides at every step, as MDM does
    assert (out_dir / "results.txt").read_text().splitlines() == results["text"]


def test_same_seed_same_motion_and_default_folder_is_never_reused(tiny, capsys):
    argv = cli(tiny, "--text_prompt", "a person walks.", "--motion_length", "2", "--num_repetitions", "1",
               "--no-render", "--sampler", "edm", "--s_churn", "5")
    run_ok(argv, capsys)
    run_ok(argv, capsys)
    first = tiny["model"].parent / "samples_ckpt_000000007_seed10_a_person_walks"
    second = first.with_name(first.name + "_2")
    assert first.is_dir() and second.is_dir()
    a = np.load(first / "results.npy", allow_pickle=True).item()["motion"]
    b = np.load(second / "results.npy", allow_pickle=True).item()["motion"]
    np.testing.assert_array_equal(a, b)


def test_existing_output_dir_needs_overwrite_and_keeps_user_files(tiny, tmp_path, capsys):
    out_dir = tmp_path / "mine"
    out_dir.mkdir()
    (out_dir / "notes.txt").write_text("keep me")
    argv = cli(tiny, "--text_prompt", "a person walks", "--motion_length", "2", "--num_repetitions", "1",
               "--no-render", "--output_dir", str(out_dir))
    assert "already has files" in run_error(argv, capsys)
    assert sorted(p.name for p in out_dir.iterdir()) == ["notes.txt"]
    run_ok(argv + ["--overwrite"], capsys)
    assert (out_dir / "notes.txt").read_text() == "keep me"
    assert (out_dir / "results.npy").is_file()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--text_prompt", "   "], "prompt is empty"),
        (["--text_prompt", "a", "--motion_length", "0"], "positive number of seconds"),
        (["--text_prompt", "a", "--motion_length", "-3"], "positive number of seconds"),
        (["--text_prompt", "a", "--motion_length", "nan"], "positive number of seconds"),
        (["--text_prompt", "a", "--loop", "--motion_length", "0.5"], "too short"),
        (["--text_prompt", "a", "--loop", "--window", "500"], "limit"),
        (["--text_prompt", "a", "--loop", "--window", "40", "--overlap", "30"], "half"),
        (["--text_prompt", "a", "--num_repetitions", "0"], "num_repetitions"),
        (["--text_prompt", "a", "--steps", "-1"], "steps"),
        (["--text_prompt", "a", "--s_churn", "5"], "--sampler edm"),  # the default sampler is deterministic
        (["--text_prompt", "a", "--guidance_interval", "5", "0.3"], "--guidance_interval needs 0 <= LO <= HI"),
        (["--text_prompt", "a", "--guidance_interval", "inf", "inf"], "--guidance_interval needs 0 <= LO <= HI"),
        (["--text_prompt", "a", "--guidance_interval", "0", "nan"], "--guidance_interval needs 0 <= LO <= HI"),
        (["--text_prompt", "a", "--threads", "0"], "threads"),
        (["--text_prompt", "a", "--threads", "100000"], "cores"),
        (["--text_prompt", "a", "--device", "tpu"], "device"),
        (["--input_text", "/nonexistent/prompts.txt"], "does not exist"),
        ([], "exactly one of"),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(tiny, tmp_path, capsys, extra, message):
    line = run_error(cli(tiny, *extra, "--output_dir", str(tmp_path / "out")), capsys)
    assert message in line
    assert not (tmp_path / "out").exists()


def test_missing_and_broken_models_and_weights(tiny, tmp_path, capsys):
    argv = ["--text_prompt", "a person walks", "--no-progress", "--output_dir", str(tmp_path / "out")]
    assert "does not exist" in run_error(["--model_path", str(tmp_path / "nope.pt"), *argv], capsys)
    lonely = tmp_path / "lonely" / "model000000001.pt"
    lonely.parent.mkdir()
    lonely.write_bytes(tiny["model"].read_bytes())
    assert "args.json" in run_error(["--model_path", str(lonely), *argv], capsys)
    assert "download_clip" in run_error(["--model_path", str(tiny["model"]), "--clip_weights",
                                         str(tmp_path / "ViT-B-32.pt"), *argv], capsys)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    assert "no prompts" in run_error(cli(tiny, "--input_text", str(empty)), capsys)
    assert not (tmp_path / "out").exists()


def test_missing_statistics_name_the_fix(tiny, tmp_path, capsys):
    line = run_error(cli(tiny, "--text_prompt", "a", "--stats_dir", str(tmp_path / "none"),
                         "--output_dir", str(tmp_path / "out")), capsys)
    assert "download_humanml_stats" in line


def test_bad_flag_is_one_line_via_the_real_command(tmp_path):
    done = subprocess.run([sys.executable, "-m", "sample", "--text_prompt", "x", "--loop", "maybe"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ")


def test_choose_layout():
    assert choose_layout(100, 196, loop=False) is None
    loop = choose_layout(120, 196, loop=True)
    assert loop.cyclic and loop.length == 120 and loop.n_windows == 2 and loop.window <= 196
    assert choose_layout(121, 196, loop=True).length == 120  # rounded to a multiple of the windows
    long = choose_layout(1200, 196, loop=False)
    assert not long.cyclic and long.length >= 1200 and long.window <= 196
    assert choose_layout(120, 196, loop=True, window=60, overlap=20) == Layout(60, 20, 3, True)
    assert choose_layout(120, 196, loop=True, num_windows=4).n_windows == 4
    with pytest.raises(UserError, match="limit"):
        choose_layout(120, 60, loop=True, window=90)
    for frames in range(20, 400, 7):  # every loop length finds a layout within the model's limit
        layout = choose_layout(frames, 60, loop=True)
        assert abs(layout.length - frames) <= layout.n_windows / 2 and layout.window <= 60


def test_default_model_prefers_official_weights(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    official = tmp_path / generate.OFFICIAL_MODEL
    if generate.DEMO_MODEL.is_file():
        assert generate.resolve_model_path(None) == (generate.DEMO_MODEL, generate.resolve_model_path(None)[1])
    official.parent.mkdir(parents=True)
    official.write_bytes(b"")
    assert generate.resolve_model_path(None)[0] == generate.OFFICIAL_MODEL


def test_seamless_collage_is_the_default_and_the_others_stay_selectable(tiny, tmp_path, capsys):
    from motion_loop.generate import build_parser

    parser = build_parser()
    assert parser.parse_args(["--text_prompt", "a person walks"]).collage is None  # seamless, condind for segments
    out_dir = tmp_path / "default"
    run_ok(cli(tiny, "--text_prompt", "a person walks", "--loop", "--motion_length", "2", "--num_repetitions", "1",
               "--no-render", "--no-bvh", "--output_dir", str(out_dir)), capsys)
    assert json.loads((out_dir / "run.json").read_text())["layout"]["collage"] == "seamless"
    for method in ("condind", "avg"):
        assert parser.parse_args(["--text_prompt", "a person walks", "--collage", method]).collage == method


@pytest.mark.parametrize("sampler", ["dpmpp_2m", "unipc"])
def test_dpmpp_sampler_bf16_and_threads_are_recorded(tiny, tmp_path, capsys, sampler):
    out_dir = tmp_path / "fast"
    out = run_ok(cli(tiny, "--text_prompt", "a person walks", "--loop", "--motion_length", "2", "--num_repetitions", "1",
                     "--sampler", sampler, "--dtype", "bf16", "--threads", "1", "--no-render", "--no-bvh",
                     "--output_dir", str(out_dir)), capsys)
    assert f"{SAMPLER_TITLES[sampler]} sampler, bf16, 1 thread(s)" in out
    run = json.loads((out_dir / "run.json").read_text())
    assert run["sampler"] == sampler and run["dtype"] == "bf16" and run["threads"] == 1
    assert run["steps"] == 4  # one model call per step
    assert np.isfinite(np.load(out_dir / "features.npy")).all()


def test_mixed_precision_is_recorded_and_stays_close_to_fp32(tiny, tmp_path, capsys):
    features = {}
    for dtype in ("fp32", "mixed"):
        out = run_ok(cli(tiny, "--text_prompt", "a person walks", "--loop", "--motion_length", "2",
                         "--num_repetitions", "1", "--dtype", dtype, "--no-render", "--no-bvh",
                         "--output_dir", str(tmp_path / dtype)), capsys)
        assert f"sampler, {dtype}, " in out
        assert json.loads((tmp_path / dtype / "run.json").read_text())["dtype"] == dtype
        features[dtype] = np.load(tmp_path / dtype / "features.npy")
    # the high-noise levels ran in bf16: the result moved, but little
    assert not np.array_equal(features["fp32"], features["mixed"])
    np.testing.assert_allclose(features["mixed"], features["fp32"], atol=0.1 * np.abs(features["fp32"]).max())


def test_canvas_model_loop_uses_the_canvas(tiny, tmp_path, capsys):
    import shutil

    folder = tmp_path / "canvas"
    torch.manual_seed(0)
    config = MDMConfig(latent_dim=32, layers=1, ff_size=64, num_heads=2, mask_frames=False,
                       diffusion_steps=50, max_motion_length=60)
    model_path = save_model(folder / "model000000007.pt", MDM(config))
    for name in ("Mean.npy", "Std.npy"):
        shutil.copy(tiny["model"].parent / name, folder / name)
    def layout_of(name, *flags):
        out = run_ok(cli(tiny, "--text_prompt", "a person walks", "--loop", "--num_repetitions", "1", *flags,
                         "--no-render", "--no-bvh", "--output_dir", str(tmp_path / name), model=model_path), capsys)
        layout = json.loads((tmp_path / name / "run.json").read_text())["layout"]
        return (layout["n_windows"], layout["window"], layout["overlap"]), out

    # a 2 s loop (40 frames) fits the 60-frame canvas: one window closing on itself (half the rows)
    layout, out = layout_of("one", "--motion_length", "2")
    assert layout == (1, 60, 20) and "loop of one window of 60 frames closing on itself (overlap 20)" in out
    assert layout_of("asked", "--motion_length", "2", "--num_windows", "1")[0] == (1, 60, 20)
    # two windows when asked: stride 20, the canvas costs the same, so the overlaps grow from 10 to 17
    assert layout_of("two", "--motion_length", "2", "--num_windows", "2")[0] == (2, 37, 17)
    # 2.5 s (50 frames) leaves too little of the canvas to wrap onto: two windows, overlaps grown 12 -> 21
    assert layout_of("long", "--motion_length", "2.5")[0] == (2, 46, 21)


def test_guidance_interval_is_used_and_recorded(tiny, tmp_path, capsys):
    # The default guides at sigma >= 2 only; "0 inf" guides everywhere (MDM's way). run.json is strict
    # JSON, so an unbounded HI is recorded as null.
    motions = {}
    for name, extra, recorded in (("default", [], [2.0, None]), ("everywhere", ["--guidance_interval", "0", "inf"], [0.0, None]),
                                  ("interval", ["--guidance_interval", "0.28", "5.42"], [0.28, 5.42])):
        out_dir = tmp_path / name
        run_ok(cli(tiny, "--text_prompt", "a person jumps", "--motion_length", "2", "--num_repetitions", "1",
                   "--no-render", "--output_dir", str(out_dir), *extra), capsys)
        motions[name] = np.load(out_dir / "features.npy")
        assert json.loads((out_dir / "run.json").read_text())["guidance_interval"] == recorded
    assert not np.allclose(motions["everywhere"], motions["interval"])
    assert not np.allclose(motions["everywhere"], motions["default"])


def test_every_sampler_choice_has_a_title_for_the_outputs():
    from motion_loop.generate import SAMPLER_NAMES

    assert set(SAMPLER_TITLES) == set(SAMPLER_NAMES)
