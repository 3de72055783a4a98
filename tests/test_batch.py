"""``python -m motion_loop.batch`` on a local Ray with 2 CPUs and a tiny random-weight model.

Ray takes seconds to start, so one session serves every test of the module (``ray_local``).
"""

import json
from collections import deque
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_mdm

from motion_loop import batch
from motion_loop.batch import Batch, Job, Scheduler, cut_batches, main, motion_name, motion_seed, plan_jobs
from motion_loop.results import load_results, results_motion

ROOT = Path(__file__).resolve().parents[1]

# four prompts, an empty line (line 2) and a line that is not UTF-8 (line 5)
PROMPTS = b"a person walks forward\n\na person jumps\r\nsomeone waves\n\xff\xfe broken\na man squats\n"
GOOD_LINES = [0, 2, 3, 5]  # prompt indices (line - 1) of the good prompts


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny CLIP-conditioned MDM checkpoint (with Mean/Std), tiny CLIP weights and the prompt file."""
    folder = tmp_path_factory.mktemp("batch_model")
    tiny = tiny_mdm(folder)
    prompts = folder / "prompts.txt"
    prompts.write_bytes(PROMPTS)
    return {**tiny, "prompts": prompts}


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray", reason="Ray is in requirements.txt; python -m motion_loop.batch needs it")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
             object_store_memory=100 * 1024**2, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    yield ray
    ray.shutdown()


def argv(tiny, out, *extra):
    """A 2 s loop (so seam reports and foot locking run), two repetitions, batches of three motions."""
    return ["--input_text", str(tiny["prompts"]), "--output_dir", str(out), "--model_path", str(tiny["model"]),
            "--clip_weights", str(tiny["clip"]), "--loop", "--motion_length", "2", "--steps", "3",
            "--num_repetitions", "2", "--batch_size", "3", "--no-render", "--no-progress", *extra]


def run(args) -> dict:
    parsed = batch.build_parser().parse_args(args)
    return batch.run(parsed)


def files_of(library: Path) -> dict[str, bytes]:
    """Every motion file, except the two that record timings and workers (compared field by field)."""
    return {str(p.relative_to(library)): p.read_bytes() for p in sorted((library / "motions").rglob("*"))
            if p.is_file() and p.name not in ("run.json", "motion.json")}


def rows_of(library: Path) -> list[dict]:
    return [json.loads(line) for line in (library / "manifest.jsonl").read_text().splitlines()]


def without_timing(record: dict) -> dict:
    drop = {"seconds", "worker", "sampling_seconds", "attempt", "library", "made_at"}
    return {k: v for k, v in record.items() if k not in drop}


@pytest.fixture(scope="module")
def one_worker(tiny, ray_local, tmp_path_factory):
    out = tmp_path_factory.mktemp("library") / "one_worker"
    return out, run(argv(tiny, out, "--num_workers", "1"))


def test_library_files_manifest_and_results(tiny, one_worker):
    out, result = one_worker
    assert result["complete"] == result["total"] == 8 and sorted(result["made"]) == sorted(
        (i, r) for i in GOOD_LINES for r in range(2))
    rows = rows_of(out)
    done = [r for r in rows if r["status"] == "done"]
    bad = [r for r in rows if r["status"] == "bad_prompt"]
    assert [(r["prompt_index"], r["repetition"]) for r in done] == [(i, r) for i in GOOD_LINES for r in range(2)]
    assert [(r["line"], r["error"]) for r in bad] == [(2, "empty line"), (5, "not UTF-8 text (byte 1 of the line)")]
    texts = {0: "a person walks forward", 2: "a person jumps", 3: "someone waves", 5: "a man squats"}
    for row in done:
        index, rep = row["prompt_index"], row["repetition"]
        assert row["prompt"] == texts[index]  # the \r of a Windows line end is not part of the prompt
        assert row["seed"] == motion_seed(10, index, rep)
        assert row["worker"]["name"] == "w0" and row["worker"]["device"] == "cpu" and row["seconds"] > 0
        assert row["seam_report"]["velocity_ratio"] > 0 and set(row["foot_skating"]) == {"model", "locked"}
        folder = out / "motions" / motion_name(index, rep)
        assert sorted(row["files"]) == sorted(f"motions/{folder.name}/{p.name}" for p in folder.iterdir()
                                              if p.name != "motion.json")
        # what python -m sample writes for one motion: its results.npy, features, BVH and run.json
        own = load_results(folder / "results.npy")
        assert own["text"] == [texts[index]] and own["motion"].shape == (1, 22, 3, 40)
        assert np.load(folder / "features.npy").shape == (1, 40, 263)
        assert (folder / "sample00_rep00.bvh").read_text().startswith("HIERARCHY")
        run_json = json.loads((folder / "run.json").read_text())
        assert run_json["seed"] == row["seed"] and run_json["loop"] is True
        assert run_json["library"]["prompt_index"] == index and run_json["library"]["library_seed"] == 10
    assert len({r["seed"] for r in done}) == 8
    # the library's results.npy: MDM's layout over the four good prompts, index rep * 4 + sample
    results = load_results(out / "results.npy")
    assert results["motion"].shape == (8, 22, 3, 40)
    assert (results["num_samples"], results["num_repetitions"]) == (4, 2)
    assert results["text"] == [texts[i] for i in GOOD_LINES] * 2
    assert json.loads((out / "run.json").read_text())["prompt_indices"] == GOOD_LINES
    for rep in range(2):
        for sample, index in enumerate(GOOD_LINES):
            own = load_results(out / "motions" / motion_name(index, rep) / "results.npy")
            np.testing.assert_array_equal(results_motion(results, rep * 4 + sample), results_motion(own, 0))
    assert not [p for p in (out / "motions").iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_two_workers_make_the_same_files(tiny, one_worker, tmp_path):
    reference, _ = one_worker
    out = tmp_path / "two_workers"
    result = run(argv(tiny, out, "--num_workers", "2"))
    assert {w["name"] for w in result["workers"]} == {"w0", "w1"}
    # Batches go to whichever worker is ready: one that loads its model late may find them all taken
    # (seen once in a loaded test run), so only "by these workers" is certain, not "by both".
    assert {r["worker"]["name"] for r in rows_of(out) if r["status"] == "done"} <= {"w0", "w1"}
    assert files_of(out) == files_of(reference)  # byte for byte, whichever worker made each motion
    assert [without_timing(r) for r in rows_of(out)] == [without_timing(r) for r in rows_of(reference)]


def test_rerun_skips_made_motions_and_finishes_the_rest(tiny, one_worker, tmp_path, capsys):
    reference, _ = one_worker
    out = tmp_path / "resumed"
    assert main(argv(tiny, out, "--num_workers", "1", "--num_samples", "2")) == 0  # the first two prompts
    assert sorted(p.name for p in (out / "motions").iterdir()) == [motion_name(i, r) for i in (0, 2) for r in (0, 1)]
    assert load_results(out / "results.npy")["num_samples"] == 2
    lost = out / "motions" / motion_name(2, 1)  # a motion deleted by hand is made again
    for path in lost.iterdir():
        path.unlink()
    lost.rmdir()
    kept = {p: p.stat().st_mtime_ns for p in (out / "motions").rglob("*")}
    capsys.readouterr()

    result = run(argv(tiny, out, "--num_workers", "1"))  # all prompts: the rest is made, nothing redone
    assert sorted(result["made"]) == [(2, 1), (3, 0), (3, 1), (5, 0), (5, 1)]
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())
    assert files_of(out).keys() == files_of(reference).keys()
    for name, data in files_of(reference).items():  # batches cut around made motions: equal to rounding
        if name.endswith(".npy"):
            np.testing.assert_allclose(load_npy(out / name), load_npy(reference / name), rtol=1e-5, atol=1e-5)
    assert load_results(out / "results.npy")["num_samples"] == 4
    assert [without_timing(r) for r in rows_of(out)] == [without_timing(r) for r in rows_of(reference)]

    result = run(argv(tiny, out, "--num_workers", "1"))  # complete: Ray is not even needed
    assert result["made"] == [] and result["workers"] == [] and result["complete"] == 8
    assert "nothing to make" in capsys.readouterr().out

    # other settings, or a prompt line that changed, need --overwrite, which remakes every motion
    assert main(argv(tiny, out, "--steps", "4")) == 2
    assert "--steps 3 -> 4" in capsys.readouterr().err
    changed = tiny["prompts"].parent / "changed.txt"
    changed.write_bytes(PROMPTS.replace(b"someone waves", b"someone dances"))
    args = argv(tiny, out, "--num_workers", "1")
    args[args.index("--input_text") + 1] = str(changed)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: 1 prompt line(s) changed") and "line 4 was 'someone waves'" in err
    result = run(args + ["--overwrite"])
    assert len(result["made"]) == 8
    assert [r["prompt"] for r in rows_of(out) if r["prompt_index"] == 3] == ["someone dances"] * 2
    assert load_results(out / "results.npy")["text"][2] == "someone dances"


def load_npy(path: Path) -> np.ndarray:
    value = np.load(path, allow_pickle=True)
    return value.item()["motion"] if value.dtype == object else value


def test_killed_worker_batch_is_retried_on_another(tiny, one_worker, tmp_path, monkeypatch, ray_local):
    """Kill the first worker to finish a batch right after it was handed its next one."""
    reference, _ = one_worker
    ray = ray_local
    killed = []
    add = batch.Library.add

    def add_then_kill(self, result):
        if not killed:
            name = result["row"]["worker"]["name"]
            actor = [n for n in ray.util.list_named_actors() if n.endswith(f"/{name}")]
            assert len(actor) == 1
            ray.kill(ray.get_actor(actor[0]))
            killed.append(name)
        return add(self, result)

    monkeypatch.setattr(batch.Library, "add", add_then_kill)
    out = tmp_path / "killed"
    result = run(argv(tiny, out, "--num_workers", "2"))
    assert result["complete"] == 8 and sorted(result["made"]) == sorted(set(result["made"]))
    assert result["failed"] == []
    rows = [r for r in rows_of(out) if r["status"] == "done"]
    assert len(rows) == 8 and len({(r["prompt_index"], r["repetition"]) for r in rows}) == 8
    retried = [r for r in rows if r["attempt"] == 2]
    assert retried and all(r["worker"]["name"] != killed[0] for r in retried)  # done by another worker
    assert files_of(out) == files_of(reference)  # nothing lost, nothing different
    assert not [p for p in (out / "motions").iterdir() if p.name.startswith(".")]


def test_benchmark_script_prints_its_table(tiny, ray_local, capsys):
    import runpy

    bench = runpy.run_path(str(ROOT / "benchmarks" / "bench_batch.py"), run_name="bench_batch")
    rows = bench["main"](["--workers", "1", "--prompts", "3", "--steps", "2", "--motion_length", "2", "--no-render",
                          "--model_path", str(tiny["model"]), "--clip_weights", str(tiny["clip"])])
    out = capsys.readouterr().out
    assert [r["motions"] for r in rows] == [3] and rows[0]["per_minute"] > 0 and 0 < rows[0]["startup"] < rows[0]["seconds"]
    assert "| workers | motions |" in out and "| 1 | 3 |" in out


# ----------------------------------------------------------------------------------------------
# Without Ray: prompts, seeds, batches, retries, flag errors


def test_seeds_and_batches_do_not_depend_on_workers_or_what_was_made():
    from motion_loop.batch import Prompt

    prompts = [Prompt(0, "a"), Prompt(1, None, "empty line"), Prompt(2, "b")]
    jobs = plan_jobs(prompts, 2, seed=10)
    assert [(j.index, j.rep) for j in jobs] == [(0, 0), (0, 1), (2, 0), (2, 1)]
    assert motion_seed(10, 2, 1) == jobs[3].seed != motion_seed(11, 2, 1)
    assert motion_seed(10, 2, 1) == motion_seed(10, 2, 1) < 2**63
    full = cut_batches(jobs, 3, done=set())
    assert [[(j.index, j.rep) for j in b.jobs] for b in full] == [[(0, 0), (0, 1), (2, 0)], [(2, 1)]]
    partly = cut_batches(jobs, 3, done={(0, 1), (2, 1)})
    assert [[(j.index, j.rep) for j in b.jobs] for b in partly] == [[(0, 0), (2, 0)]]


def test_retry_policy():
    jobs = [Job(i, 0, f"p{i}", i) for i in range(4)]
    failed = []
    queue = deque()
    # a dead worker: the same batch again, then halves after MAX_ATTEMPTS
    Scheduler._retry(queue, Batch(list(jobs)), "died", died=True, on_failed=failed.append)
    assert [(len(b.jobs), b.attempt) for b in queue] == [(4, 2)]
    queue.clear()
    Scheduler._retry(queue, Batch(list(jobs), attempt=batch.MAX_ATTEMPTS), "died", died=True, on_failed=failed.append)
    assert [([j.index for j in b.jobs], b.attempt) for b in queue] == [([0, 1], 4), ([2, 3], 4)]
    # an error inside the batch: halves at once, a single motion is retried, then reported
    queue.clear()
    Scheduler._retry(queue, Batch(jobs[:2]), "boom", died=False, on_failed=failed.append)
    assert [[j.index for j in b.jobs] for b in queue] == [[0], [1]]
    queue.clear()
    Scheduler._retry(queue, Batch(jobs[:1]), "boom", died=False, on_failed=failed.append)
    assert [b.attempt for b in queue] == [2] and not failed
    queue.clear()
    Scheduler._retry(queue, Batch(jobs[:1], attempt=batch.MAX_ATTEMPTS), "boom", died=False, on_failed=failed.append)
    assert not queue and len(failed) == 1 and failed[0].errors == ["boom"]


def test_prompt_file_lines(tmp_path):
    path = tmp_path / "p.txt"
    path.write_bytes(b"\xef\xbb\xbfwalk\r\n  \nr\xc3\xa9sum\xc3\xa9 run\n\x80\njump\nwave")
    args = batch.build_parser().parse_args(["--input_text", str(path), "--output_dir", str(tmp_path / "o")])
    lines = batch.read_prompt_lines(args)
    assert [(p.index, p.text, p.problem) for p in lines] == [
        (0, "walk", None), (1, None, "empty line"), (2, "résumé run", None),
        (3, None, "not UTF-8 text (byte 1 of the line)"), (4, "jump", None), (5, "wave", None)]
    args.num_samples = 3
    assert [p.index for p in batch.read_prompt_lines(args)] == [0, 1, 2, 3, 4]  # up to the third good prompt


@pytest.mark.parametrize("extra, message", [
    (["--output_dir", "{tmp}/o", "--input_text", "{tmp}/nothing.txt"], "has no prompts"),
    (["--input_text", "{tmp}/nothing.txt"], "pass --output_dir"),
    (["--output_dir", "{tmp}/o", "--input_text", "{tmp}/missing.txt"], "does not exist"),
    (["--output_dir", "{tmp}/mine", "--text_prompt", "walk"], "not a motion library"),
    (["--output_dir", "{tmp}/o", "--text_prompt", "walk", "--num_workers", "0"], "--num_workers"),
    (["--output_dir", "{tmp}/o", "--text_prompt", "walk", "--cpus_per_worker", "0"], "--cpus_per_worker"),
    (["--output_dir", "{tmp}/o", "--text_prompt", "walk", "--motion_length", "-1"], "positive number of seconds"),
])
def test_user_errors_are_one_line_before_ray_starts(tmp_path, capsys, extra, message):
    (tmp_path / "nothing.txt").write_bytes(b"\n  \n\xff\n")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert main([a.replace("{tmp}", str(tmp_path)) for a in extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    assert not (tmp_path / "o").exists()
