"""Where the main command's time goes: ``python -m sample --text_prompt "a person walks forward" --loop``
(the bundled demo model, default settings), phase by phase, wall and CPU seconds.

Each round runs the command in a fresh interpreter, as a user does, with timers wrapped around the
functions of each phase (start-up imports, model load, text encoder, text encoding, sampling,
decoding, loop root, foot lock, metrics, each video, the other files). A phase's time is
exclusive: a timed function called inside another counts for itself only. CPU seconds are the
process's (all torch threads) plus its finished child processes' (ffmpeg). "interpreter" is what
the parent measured around the child minus what the child measured from its first line.

    python benchmarks/bench_main.py                          # 3 rounds, the main command
    python benchmarks/bench_main.py --rounds 1 -- --steps 2  # extra flags for python -m sample after --
    python benchmarks/bench_main.py --repo /path/to/other/checkout    # time another checkout's code

Every output goes to a fresh temporary folder; the embedding cache (MOTION_LOOP_CACHE) is the
user's unless ``--cold`` gives each round an empty one (a prompt never seen before).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAIN_ARGS = ["--text_prompt", "a person walks forward", "--loop"]

# (module, attribute, phase); a missing one (another checkout's code) is skipped
PHASES = [
    ("motion_loop.generate", "cached_model", "model load"),
    ("motion_loop.generate", "cached_text_encoder", "text encoder load"),
    ("motion_loop.text_encoders", "CaptionBank.nearest", "text encoding"),
    ("motion_loop.text_encoders", "CaptionBank.encode", "text encoding"),
    ("motion_loop.text_encoders", "FrozenTextEncoder.encode", "text encoding"),
    ("motion_loop.generate", "sample_features", "sampling"),
    ("motion_loop.generate", "decode", "decoding"),
    ("motion_loop.safety", "check_sample", "checks"),
    ("motion_loop.loop_root", "handle_loop_root", "loop root"),
    ("motion_loop.foot_lock", "lock_feet", "foot lock"),
    ("motion_loop.foot_lock", "toe_contacts", "foot lock"),
    ("motion_loop.metrics", "foot_skating_ratio", "metrics"),
    ("motion_loop.metrics", "loop_seam_report", "metrics"),
    ("motion_loop.results", "save_results", "results.npy, txt, run.json"),
    ("motion_loop.render", "render_motion", "video {name}"),
    ("motion_loop.render", "hstack_videos", "video {name}"),
    ("motion_loop.render", "render_videos", "videos (every repetition and side by side, one pass)"),
    ("motion_loop.rigid", "save_rigid", "joints_rigid.npy"),
    ("motion_loop.export", "write_bvh", "BVH"),
    ("motion_loop.safety", "write_or_rescue", "manifest, other"),
]


# ----------------------------------------------------------------------------------------------
# The child: one run of python -m sample with timers


def _cpu() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


class Timers:
    """Exclusive wall and CPU seconds per phase (a nested timed call is taken out of its caller's)."""

    def __init__(self):
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.stack: list[list[float]] = []  # per open call: [inner wall, inner cpu]

    def wrap(self, function, label: str):
        def timed(*args, **kwargs):
            name = ""
            for value in (*args, *kwargs.values()):
                if isinstance(value, (str, os.PathLike)) and Path(value).suffix in (".mp4", ".gif"):
                    name = Path(value).name
                    break
            phase = label.format(name=name)
            self.stack.append([0.0, 0.0])
            wall0, cpu0 = time.perf_counter(), _cpu()
            try:
                return function(*args, **kwargs)
            finally:
                wall, cpu = time.perf_counter() - wall0, _cpu() - cpu0
                inner_wall, inner_cpu = self.stack.pop()
                self.wall[phase] = self.wall.get(phase, 0.0) + wall - inner_wall
                self.cpu[phase] = self.cpu.get(phase, 0.0) + cpu - inner_cpu
                if self.stack:
                    self.stack[-1][0] += wall
                    self.stack[-1][1] += cpu

        timed.__wrapped__ = function
        return timed


def child(argv: list[str], report: Path) -> None:
    wall0, cpu0 = time.perf_counter(), _cpu()
    import importlib

    import motion_loop.generate as generate  # the start-up imports of python -m sample

    timers = Timers()
    timers.wall["import (motion_loop.generate, torch, numpy)"] = time.perf_counter() - wall0
    timers.cpu["import (motion_loop.generate, torch, numpy)"] = _cpu() - cpu0
    for module_name, attribute, label in PHASES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        owner, _, name = attribute.rpartition(".")
        target = getattr(module, owner) if owner else module
        if target is None or not hasattr(target, name):
            continue
        original = getattr(target, name)
        wrapped = timers.wrap(original, label)
        setattr(target, name, staticmethod(wrapped) if owner and isinstance(target.__dict__.get(name), staticmethod)
                else wrapped)
        if not owner:  # names already imported into generate (from ... import ...)
            for other in (generate,):
                if getattr(other, name, None) is original:
                    setattr(other, name, wrapped)
    import runpy

    sys.argv = ["sample", *argv]
    try:  # sample.py as python -m sample runs it (its __main__ block included)
        runpy.run_module("sample", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as stop:
        code = stop.code
    timers.wall["total in the interpreter"] = time.perf_counter() - wall0
    timers.cpu["total in the interpreter"] = _cpu() - cpu0
    report.write_text(json.dumps({"wall": timers.wall, "cpu": timers.cpu, "code": code}))
    sys.stdout.flush()


# ----------------------------------------------------------------------------------------------
# The parent


def load() -> str:
    try:
        return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "load average unknown"


def one_round(repo: Path, extra: list[str], cache: str | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_main_") as tmp:
        report = Path(tmp) / "report.json"
        argv = [*MAIN_ARGS, "--output_dir", str(Path(tmp) / "out"), "--no-progress", *extra]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
        if cache is not None:
            env["MOTION_LOOP_CACHE"] = cache
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run([sys.executable, __file__, "--child", str(report), "--", *argv], cwd=repo, env=env,
                              capture_output=True, text=True)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0 or not report.is_file():
            sys.exit(f"python -m sample failed in {repo}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        data = json.loads(report.read_text())
        if data["code"] not in (0, None):
            sys.exit(f"python -m sample exited with {data['code']} in {repo}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        files = sorted(p.name for p in (Path(tmp) / "out").iterdir())
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    data["wall"]["interpreter start and exit"] = wall - data["wall"]["total in the interpreter"]
    data["cpu"]["interpreter start and exit"] = cpu - data["cpu"]["total in the interpreter"]
    data["wall"]["total (as a user waits)"], data["cpu"]["total (as a user waits)"] = wall, cpu
    data["files"] = files
    data["stdout"] = done.stdout
    return data


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        rest = sys.argv[3:]
        child(rest[1:] if rest[:1] == ["--"] else rest, Path(sys.argv[2]))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="fresh-interpreter runs (medians reported) (default 3)")
    p.add_argument("--repo", type=Path, default=ROOT, help="the checkout whose code runs (default this one)")
    p.add_argument("--cold", action="store_true", help="an empty embedding cache each round (the prompt is new)")
    p.add_argument("extra", nargs="*", help="flags for python -m sample after --")
    args = p.parse_args()

    print(f"python -m sample {' '.join(MAIN_ARGS)} {' '.join(args.extra)} in {args.repo}; {os.cpu_count()} cores; {load()}")
    rounds = []
    for k in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="bench_main_cache_") as cache:
            rounds.append(one_round(args.repo.resolve(), args.extra, cache if args.cold else None))
        print(f"round {k + 1}: {rounds[-1]['wall']['total (as a user waits)']:.2f} s wall, "
              f"{rounds[-1]['cpu']['total (as a user waits)']:.2f} s CPU; {load()}")
    phases = list(dict.fromkeys(name for r in rounds for name in r["wall"]))
    totals = [p for p in phases if p.startswith("total")]
    phases = [p for p in phases if p not in totals and p != "interpreter start and exit"]
    phases = ["interpreter start and exit", *phases]
    in_child = statistics.median(r["wall"]["total in the interpreter"] - sum(v for k, v in r["wall"].items()
                                 if not k.startswith(("total", "interpreter"))) for r in rounds)
    print()
    print("| phase | wall s (median) | CPU s (median) |")
    print("|---|---|---|")
    for phase in phases:
        wall = statistics.median(r["wall"].get(phase, 0.0) for r in rounds)
        cpu = statistics.median(r["cpu"].get(phase, 0.0) for r in rounds)
        print(f"| {phase} | {wall:.2f} | {cpu:.2f} |")
    print(f"| untimed rest of the run | {in_child:.2f} | |")
    for phase in totals[::-1]:
        print(f"| **{phase}** | **{statistics.median(r['wall'][phase] for r in rounds):.2f}** | "
              f"**{statistics.median(r['cpu'][phase] for r in rounds):.2f}** |")
    print()
    print("files:", ", ".join(rounds[-1]["files"]))
    line = [ln for ln in rounds[-1]["stdout"].splitlines() if "sampling" in ln and "writing" in ln]
    print("the CLI's own line (last round):", line[0].strip() if line else "none")


if __name__ == "__main__":
    main()
