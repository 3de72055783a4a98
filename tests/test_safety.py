"""Hardening of ``python -m sample`` (issue 17): no lost work, no NaN files, no tracebacks, every
signal and bound handled. Uses test_generate's tiny random-weight model; runs are tiny."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from motion_loop import generate, safety
from motion_loop.errors import printable
from motion_loop.generate import main
from motion_loop.results import load_results
from test_generate import cli, run_error, run_ok, tiny  # noqa: F401  (tiny is a fixture)

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--steps", "2", "--num_repetitions", "1", "--motion_length", "1", "--no-render"]


def no_sampling(monkeypatch):
    """Make sampling fail loudly: the checks under test must stop the run before it."""
    def refuse(*args, **kwargs):
        raise AssertionError("sampling started")
    monkeypatch.setattr(generate, "sample_features", refuse)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".tmp" in p.name or "probe" in p.name)


# ----------------------------------------------------------------------------------------------
# Work is never thrown away


def test_unwritable_output_dir_fails_before_sampling(tiny, tmp_path, capsys, monkeypatch):
    no_sampling(monkeypatch)
    base = cli(tiny, "--text_prompt", "a person walks", *TINY)
    assert "cannot write to --output_dir /proc/motion_loop" in run_error(
        base + ["--output_dir", "/proc/motion_loop/out"], capsys)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert "is a file, not a folder" in run_error(base + ["--output_dir", str(a_file / "out")], capsys)
    # a read-only folder (root ignores permission bits, so the write itself is made to fail)
    real_mkdtemp = safety.tempfile.mkdtemp

    def read_only(*args, dir=None, **kwargs):
        if dir is not None and str(dir).startswith(str(tmp_path)):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_mkdtemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(safety.tempfile, "mkdtemp", read_only)
    line = run_error(base + ["--output_dir", str(tmp_path / "ro")], capsys)
    assert "Read-only file system" in line and not (tmp_path / "ro").exists()


def test_a_folder_named_like_an_output_file_fails_before_sampling(tiny, tmp_path, capsys, monkeypatch):
    no_sampling(monkeypatch)
    out = tmp_path / "out"
    (out / "sample00_rep00.bvh").mkdir(parents=True)
    line = run_error(cli(tiny, "--text_prompt", "a", *TINY, "--output_dir", str(out), "--overwrite"), capsys)
    assert "sample00_rep00.bvh is a folder" in line


def test_full_disk_is_known_before_sampling(tiny, tmp_path, capsys, monkeypatch):
    no_sampling(monkeypatch)
    monkeypatch.setattr(safety.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9, 1000))
    line = run_error(cli(tiny, "--text_prompt", "a", *TINY, "--output_dir", str(tmp_path / "out")), capsys)
    assert "MB free" in line and not (tmp_path / "out").exists()


def test_write_failure_after_sampling_keeps_files_and_saves_the_sample(tiny, tmp_path, capsys, monkeypatch):
    import motion_loop.export

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(motion_loop.export, "write_bvh", disk_full)
    out = tmp_path / "out"
    line = run_error(cli(tiny, "--text_prompt", "a person walks", *TINY, "--num_repetitions", "2",
                         "--output_dir", str(out)), capsys)
    assert "No space left on device" in line and "saved in" in line
    rescued = Path(line.split("saved in ")[1].split(" ")[0])
    try:
        assert np.load(rescued / "features.npy").shape == (2, 20, 263)
        assert np.load(rescued / "joints.npy").shape == (2, 20, 22, 3)
        assert json.loads((rescued / "run.json").read_text())["frames"] == 20
    finally:
        shutil.rmtree(rescued)
    assert load_results(out / "results.npy")["motion"].shape == (2, 22, 3, 20)  # complete
    assert np.load(out / "features.npy").shape == (2, 20, 263)
    assert leftovers(out) == []


# ----------------------------------------------------------------------------------------------
# No NaN or absurd files


def test_nan_sample_writes_nothing_and_names_the_cause(tiny, tmp_path, capsys, monkeypatch):
    real = generate.sample_features

    def nan_sample(*args, **kwargs):
        x0, steps = real(*args, **kwargs)
        return x0 * float("nan"), steps

    monkeypatch.setattr(generate, "sample_features", nan_sample)
    out = tmp_path / "out"
    line = run_error(cli(tiny, "--text_prompt", "a", *TINY, "--guidance_param", "40", "--output_dir", str(out)), capsys)
    assert "NaN or infinite" in line and "nothing was written" in line and "guidance" in line
    assert not out.exists()


@pytest.mark.parametrize("value", ["1e30", "51", "-1", "nan"])
def test_guidance_is_bounded(tiny, tmp_path, capsys, value):
    assert "--guidance_param must be" in run_error(
        cli(tiny, "--text_prompt", "a", *TINY, "--guidance_param", value, "--output_dir", str(tmp_path / "o")), capsys)


def copy_model(tiny, tmp_path, name="ckpt"):
    folder = tmp_path / name
    shutil.copytree(tiny["model"].parent, folder, ignore=shutil.ignore_patterns("samples_*"))
    return folder / tiny["model"].name


def test_nan_weights_and_absurd_statistics_are_refused(tiny, tmp_path, capsys, monkeypatch):
    no_sampling(monkeypatch)
    model = copy_model(tiny, tmp_path)
    state = torch.load(model, weights_only=True)
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = torch.full_like(state[key], float("nan"))
    torch.save(state, model)
    argv = cli(tiny, "--text_prompt", "a", *TINY, "--output_dir", str(tmp_path / "o"), model=model)
    assert "NaN or infinite weights" in run_error(argv, capsys)

    stats = tmp_path / "stats"
    stats.mkdir()
    np.save(stats / "Mean.npy", np.zeros(263, np.float32))
    for std in (1e30, 1e-12):
        np.save(stats / "Std.npy", np.full(263, std, np.float32))
        line = run_error(cli(tiny, "--text_prompt", "a", *TINY, "--stats_dir", str(stats),
                             "--output_dir", str(tmp_path / "o")), capsys)
        assert "Std.npy is absurd" in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("key, value", [("latent_dim", "128"), ("max_motion_length", "abc"),
                                        ("max_motion_length", 0), ("mask_frames", "yes")])
def test_args_json_values_of_the_wrong_type_name_the_key(tiny, tmp_path, capsys, key, value):
    model = copy_model(tiny, tmp_path)
    args = json.loads((model.parent / "args.json").read_text())
    (model.parent / "args.json").write_text(json.dumps({**args, key: value}))
    line = run_error(cli(tiny, "--text_prompt", "a", *TINY, "--output_dir", str(tmp_path / "o"), model=model), capsys)
    assert f"args.json key '{key}' must be" in line


# ----------------------------------------------------------------------------------------------
# Signals, pipes, bounds (real processes)


def sample_cmd(tiny, *extra):
    return [sys.executable, "-m", "sample", *cli(tiny, "--text_prompt", "a person walks"), *extra]


def test_sigterm_removes_temporary_files_and_exits_143(tiny, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen(sample_cmd(tiny, "--steps", "2", "--num_repetitions", "2", "--motion_length", "3",
                                       "--loop", "--loop_repeats", "3", "--output_dir", str(out)),
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not (out.is_dir() and any(".tmp" in p.name for p in out.iterdir())):  # a video is being written
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.splitlines()[-1].startswith("interrupted (terminated): ") and "Traceback" not in err
    assert leftovers(out) == []


def test_closed_stdout_pipe_is_quiet_and_the_run_finishes(tmp_path):
    if not generate.DEMO_MODEL.is_file():  # its caption bank line comes after a flush: the pipe breaks there
        pytest.skip("the bundled demo model is absent")
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "sample", "--model_path", str(generate.DEMO_MODEL), "--text_prompt",
            "a person walks", "--no-progress", *TINY, "--output_dir", str(out)]
    cmd = " ".join(f"'{a}'" for a in argv)
    done = subprocess.run(["bash", "-c", f"set -o pipefail; {cmd} | head -1"], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1 and done.stderr == ""
    assert (out / "results.npy").is_file() and (out / "run.json").is_file()


@pytest.mark.parametrize("extra, message", [
    (["--seed", str(2**63)], "--seed must be between 0 and"),
    (["--seed", "-1"], "--seed must be between 0 and"),
    (["--num_repetitions", "100000"], "more than 1000 samples per prompt"),
    (["--loop", "--motion_length", "2", "--loop_repeats", "100000"], "a video is at most 600 s"),
])
def test_seed_and_video_length_are_bounded(tiny, tmp_path, capsys, extra, message):
    argv = cli(tiny, "--text_prompt", "a", "--steps", "2", *extra, "--output_dir", str(tmp_path / "o"))
    assert message in run_error(argv, capsys)


def test_huge_prompts_are_refused_without_echo(tiny, tmp_path, capsys):
    huge = "\x1b[31ma person walks " * 1000
    line = run_error(cli(tiny, "--text_prompt", huge, *TINY, "--output_dir", str(tmp_path / "o")), capsys)
    assert "at most 1000" in line and len(line) < 400 and "\x1b" not in line
    big = tmp_path / "prompts.txt"
    with open(big, "w") as f:  # 2 MB: refused from its size, before reading it
        f.write(("a person walks\n" * 1000) * 140)
    assert "split the file" in run_error(cli(tiny, "--input_text", str(big), *TINY), capsys)


def test_video_memory_does_not_grow_with_its_length(tmp_path):
    import tracemalloc

    from motion_loop.render import render_motion, synthetic_walk

    peaks = {}
    for frames in (20, 80):
        walk = synthetic_walk(frames)
        tracemalloc.start()
        render_motion(walk, tmp_path / f"walk{frames}.mp4", dpi=40)
        peaks[frames] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    frame_bytes = 120 * 120 * 3
    # holding the 60 extra frames would take 2.6 MB; streaming them to ffmpeg takes none
    assert peaks[80] - peaks[20] < 10 * frame_bytes, peaks


# ----------------------------------------------------------------------------------------------
# Outputs stay consistent


def test_overwrite_replaces_exactly_the_earlier_runs_files(tiny, tmp_path, capsys):
    out = tmp_path / "out"
    argv = cli(tiny, "--text_prompt", "a person walks", *TINY, "--output_dir", str(out))
    run_ok(argv + ["--num_repetitions", "3"], capsys)
    assert (out / "sample00_rep02.bvh").is_file()
    (out / "notes.txt").write_text("mine")
    out_text = run_ok(argv + ["--overwrite"], capsys)
    names = sorted(p.name for p in out.iterdir())
    assert names == [".motion_loop_manifest.json", "features.npy", "joints_rigid.npy", "notes.txt", "results.npy", "results.txt",
                     "results_len.txt", "run.json", "sample00_rep00.bvh"]
    assert "removed 2 file(s)" in out_text
    assert json.loads((out / safety.MANIFEST).read_text())["files"] == [n for n in names[1:] if n != "notes.txt"]
    assert load_results(out / "results.npy")["num_repetitions"] == 1
    # a file of ours by name but not listed as ours is the user's: never replaced
    (out / "sample00_rep00.bvh").unlink()
    (out / "sample00_rep00.bvh").write_text("my own bvh")
    manifest = json.loads((out / safety.MANIFEST).read_text())
    manifest["files"].remove("sample00_rep00.bvh")
    (out / safety.MANIFEST).write_text(json.dumps(manifest))
    assert "is not listed" in run_error(argv + ["--overwrite"], capsys)
    assert (out / "sample00_rep00.bvh").read_text() == "my own bvh" and (out / "notes.txt").read_text() == "mine"


# ----------------------------------------------------------------------------------------------
# Messages


def test_messages_say_what_a_wrong_path_is(tiny, tmp_path, capsys):
    line = run_error(cli(tiny, "--input_text", str(tmp_path), *TINY), capsys)
    assert "is a folder" in line
    a_file = tmp_path / "Mean.npy"
    a_file.write_bytes(b"")
    line = run_error(cli(tiny, "--text_prompt", "a", *TINY, "--stats_dir", str(a_file),
                         "--output_dir", str(tmp_path / "o")), capsys)
    assert "is a file" in line and "does not exist" not in line


def test_torch_load_error_is_whole_sentences(tiny, tmp_path, capsys):
    model = copy_model(tiny, tmp_path)
    model.write_bytes(model.read_bytes()[:5000])  # truncated
    line = run_error(cli(tiny, "--text_prompt", "a", *TINY, "--output_dir", str(tmp_path / "o"), model=model), capsys)
    reason = line.split("(", 1)[1].split("): the file")[0]
    assert "..." not in reason and len(reason) > 10
    from motion_loop.mdm import _first_sentences

    long = "Weights only load failed. " + "This is a long sentence of advice. " * 20
    assert _first_sentences(long) .endswith("advice") and len(_first_sentences(long)) <= 240


def test_control_characters_are_not_echoed_raw():
    assert printable("a \x1b[31mred\x1b[0m walk\r\n") == "a \\x1b[31mred\\x1b[0m walk\\r\\n"
    assert printable("x" * 500, 10) == "xxxxxxxxxx... (500 characters)"


def test_caption_bank_line_escapes_control_characters(tmp_path, capsys):
    if not generate.DEMO_MODEL.is_file():
        pytest.skip("the bundled demo model is absent")
    out = run_ok(["--model_path", str(generate.DEMO_MODEL), "--text_prompt", "a \x1b[2Jperson walks", *TINY,
                  "--no-progress", "--no-bvh", "--output_dir", str(tmp_path / "o")], capsys)
    assert "\x1b" not in out and "\\x1b[2J" in out
