"""The benchmark scripts run end to end (tiny settings): what RESULTS.md quotes can be reproduced."""

import json
import subprocess
import sys
from pathlib import Path

from conftest import shared_path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_eval_loops_compares_every_method(tmp_path):
    model = shared_path("mdm_reference", "tiny_trans_enc", "model000000100.pt")
    stats = shared_path("humanml3d", "Mean.npy").parent
    out = run("eval_loops.py", "--model_path", str(model), "--stats_dir", str(stats), "--random_text",
              "--seeds", "0", "--kinds", "walk", "wave", "--sampler", "edm", "--steps", "3", "--seconds", "3",
              "--plot", str(tmp_path / "profile.png"), "--json", str(tmp_path / "runs.json"))
    results = json.loads((tmp_path / "runs.json").read_text())["results"]
    assert list(results) == ["DiffCollage seamless", "DiffCollage condind", "DiffCollage avg", "independent, wrapped",
                             "sequential outpainting", "DiffCollage condind, churn 10",
                             "DiffCollage seamless, positions only", "DiffCollage seamless, churn 10"]
    for runs in results.values():
        assert len(runs) == 2 and all(r["jerk_ratio"] > 0 for r in runs)
        assert all(r["edge_jerk"] > 0 and r["midway_jerk"] > 0 and r["max_joint_speed"] > 0 for r in runs)
    assert (tmp_path / "profile.png").stat().st_size > 0 and "| DiffCollage condind |" in out
    # the same samples, decoded from the positions alone or fused with the velocities
    plain, fused = results["DiffCollage seamless, positions only"], results["DiffCollage seamless"]
    assert [r["seconds_per_loop"] for r in plain] == [r["seconds_per_loop"] for r in fused]
    assert [r["median_jerk"] for r in plain] != [r["median_jerk"] for r in fused]


def test_eval_loops_can_measure_the_feet_locked(tmp_path):
    model = shared_path("mdm_reference", "tiny_trans_enc", "model000000100.pt")
    stats = shared_path("humanml3d", "Mean.npy").parent
    rows = {}
    for flag in ("--no-foot_lock", "--foot_lock"):
        run("eval_loops.py", "--model_path", str(model), "--stats_dir", str(stats), "--random_text", "--seeds", "0",
            "--kinds", "walk", "--steps", "3", "--seconds", "3", "--methods", "DiffCollage seamless", flag,
            "--plot", str(tmp_path / "profile.png"), "--json", str(tmp_path / f"{flag}.json"))
        (rows[flag],) = json.loads((tmp_path / f"{flag}.json").read_text())["results"]["DiffCollage seamless"]
    # the same loop, its feet planted (python -m sample's output): it moves, and skates no more than before
    assert rows["--foot_lock"]["median_jerk"] != rows["--no-foot_lock"]["median_jerk"]
    assert rows["--foot_lock"]["foot_skating"] <= rows["--no-foot_lock"]["foot_skating"]


def test_eval_loops_measures_chains(tmp_path):
    model = shared_path("mdm_reference", "tiny_trans_enc", "model000000100.pt")
    stats = shared_path("humanml3d", "Mean.npy").parent
    out = run("eval_loops.py", "--model_path", str(model), "--stats_dir", str(stats), "--random_text", "--chain",
              "--seeds", "0", "--kinds", "walk", "--steps", "3", "--seconds", "4", "--window", "40", "--overlap", "10",
              "--methods", "DiffCollage seamless", "DiffCollage condind", "sequential outpainting",
              "--plot", str(tmp_path / "profile.png"), "--json", str(tmp_path / "runs.json"))
    results = json.loads((tmp_path / "runs.json").read_text())["results"]
    assert list(results) == ["DiffCollage seamless", "DiffCollage condind"]  # chains come from collages only
    assert "chain 100 frames = 3 windows of 40 overlapping by 10" in out and not (tmp_path / "profile.png").exists()
    assert "3 dpmpp_3m steps (3 model calls)" in out  # python -m sample's sampler unless --sampler says
    for (row,) in results.values():
        assert "jerk_ratio" not in row and row["edge_midway"] > 0 and row["worst_jerk_ratio"] > 1


def test_bench_collage_calls_per_step_do_not_grow_with_n():
    out = run("bench_collage.py", "--steps", "4", "--batch", "1")
    rows = [line.split("|") for line in out.splitlines() if line.startswith("| ") and line.split("|")[1].strip().isdigit()]
    calls = {row[3].strip() for row in rows[:4]}
    assert len(rows) >= 4 and len(calls) == 1, out


def test_bench_speed_prints_every_row(tmp_path):
    out = run("bench_speed.py", "--tiny", "--tries", "1", "--edm-steps", "2", "--windows", "2", "--ddpm-windows", "2", "--check-windows",
              "--ddpm-steps-timed", "1", "--steps-timed", "1", "--window-steps-timed", "1", "--loop-steps", "2",
              "--frames", "40", "--plot", str(tmp_path / "speed.png"))
    for row in ("official DDPM, guidance in 2 calls", "EDM Heun, batched guidance", "DiffCollage condind",
                "DiffCollage avg", "sequential outpainting", "official DDPM (1000 steps)"):
        assert row in out, row
    assert (tmp_path / "speed.png").stat().st_size > 0


def test_bench_render_measures_both_renderers():
    out = run("bench_render.py", "--frames", "20", "--repeats", "1")
    assert "motion_loop.render" in out and "FuncAnimation.save" in out and "speed-up:" in out


def test_bench_fast_times_every_case():
    out = run("bench_fast.py", "--tiny", "--seconds", "6", "--dtypes", "fp32", "--threads", "1", "--repeats", "1",
              "--evals", "1")
    # a canvas model's 6 s loop: two windows (8 rows per evaluation above the seamless switch, 4 below)
    # against one window closing on itself (4 / 2); evaluations counted on each side of the switch
    assert "| 6 s | two windows: 2 x 110 (overlap 50) | 8 / 4 | fp32 | 1 | canvas |" in out
    assert "| 6 s | one window: 1 x 196 (overlap 76) | 4 / 2 | fp32 | 1 | canvas |" in out
    assert "heun:40 79 (55 / 24)" in out
    out = run("bench_fast.py", "--tiny", "--seconds", "6", "--dtypes", "fp32", "--threads", "1", "--repeats", "1",
              "--evals", "1", "--mask_frames")
    assert "| packed |" in out and "| padded |" in out


def test_bench_steps_compares_settings_with_the_reference():
    model = shared_path("mdm_reference", "tiny_trans_enc", "model000000100.pt")
    stats = shared_path("humanml3d", "Mean.npy").parent
    out = run("bench_steps.py", "--model_path", str(model), "--stats_dir", str(stats), "--random_text", "--seeds", "0",
              "--kinds", "walk", "--seconds", "3", "--reference", "heun:3", "--settings", "heun:2", "dpmpp_2m:2",
              "heun:2:bf16")
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    assert rows["heun:3 (reference)"].split("|")[4].strip() == "0.00 / 0.00"  # the reference against itself
    assert float(rows["heun:2"].split("|")[4].split("/")[0]) > 0
    assert rows["heun:2:bf16"].split("|")[9].strip() != ""  # bf16 against fp32 of the same setting


SEGMENT_METHODS = ["collage average", "collage uncond", "collage left", "collage right", "collage seamless",
                   "collage crossfade", "late linear", "late fade", "late split", "hybrid split", "hybrid shared",
                   "hybrid fade", "bridge", "outpainting", "blend", "single prompt", "single prompt seamless",
                   "each prompt seamless"]
CHAIN_METHODS = ["collage seamless", "late linear", "bridge", "outpainting", "blend", "each prompt seamless"]
SPLICED = "each prompt spliced"  # derived from "each prompt seamless": each action's own jerk in its segment


def test_eval_segments_runs_every_method_on_loops_and_chains(tmp_path):
    model = shared_path("mdm_reference", "tiny_trans_enc", "model000000100.pt")
    stats = shared_path("humanml3d", "Mean.npy").parent
    out = run("eval_segments.py", "--model_path", str(model), "--stats_dir", str(stats), "--random_text",
              "--per_count", "1", "--counts", "2", "--steps", "2", "--segment_seconds", "1.5",
              "--methods", *SEGMENT_METHODS, "--chain_methods", *CHAIN_METHODS,
              "--segment_guidance", "3", "--json", str(tmp_path / "runs.json"))
    results = json.loads((tmp_path / "runs.json").read_text())["results"]
    assert {k for k in results if k.startswith("loop: ")} == {f"loop: {m}" for m in [*SEGMENT_METHODS, SPLICED]}
    assert {k for k in results if k.startswith("chain: ")} == {f"chain: {m}" for m in [*CHAIN_METHODS, SPLICED]}
    for label, runs in results.items():
        if label.endswith(SPLICED):  # one row per sequence, transitions only (no motion to classify)
            assert len(runs) == 1 and runs[0]["peak_jerk"] > 0 and runs[0]["transition_jerk_ratio"] > 0
            continue
        assert len(runs) == (2 if "each prompt" in label else 1)  # a loop of each of the 2 prompts
        for r in runs:
            assert r["transition_jerk_ratio"] > 0 and len(r["segment_kinds"]) == 2
            assert len(r["core_kinds"]) == 2 and 0 <= r["core_accuracy"] <= 1
    first, second = results["loop: each prompt seamless"]
    assert first["expected_kinds"] == [first["kinds"][0]] * 2 and second["expected_kinds"] == [first["kinds"][1]] * 2
    assert results["loop: late linear"][0]["expected_kinds"] == first["kinds"]
    assert "| collage average |" in out and "| collage seamless |" in out and "segments right per kind" in out


def test_bench_main_prints_every_phase_of_the_main_command():
    out = run("bench_main.py", "--rounds", "1", "--", "--steps", "1", "--num_repetitions", "2", "--motion_length", "2",
              "--loop_repeats", "1", "--threads", "1")
    for phase in ("| interpreter start and exit |", "| import (motion_loop.generate, torch, numpy) |", "| model load |",
                  "| text encoder load |", "| sampling |", "| foot lock |", "| BVH |",
                  "| videos (every repetition and side by side, one pass) |", "| **total (as a user waits)** |"):
        assert phase in out, phase
    assert "sample00.mp4, sample00_rep00.bvh" in out and "the CLI's own line (last round): sampling" in out
