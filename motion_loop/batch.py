"""``python -m motion_loop.batch``: a library of motions from a file of prompts, sampled on Ray.

    python -m motion_loop.batch --input_text prompts.txt --output_dir library/ --loop
    python -m motion_loop.batch --ray_address auto --input_text prompts.txt --output_dir library/

Every flag of ``python -m sample`` works here. Workers are Ray actors (a local Ray on this machine,
or an existing cluster with --ray_address) that load the model once and sample --batch_size motions
per call. Each motion lands, when complete, in ``library/motions/sampleNNNNN_repRR/`` with the
files ``python -m sample`` writes for it; ``manifest.jsonl`` has one row per motion and per bad
prompt line; ``results.npy`` (MDM's format) covers the whole library at the end. Rerunning the same
command finishes what is missing (--overwrite to redo everything); a worker that dies has its
batch retried on another.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from motion_loop import generate
from motion_loop.errors import UserError, run_cli

LIBRARY_JSON = "library.json"  # the settings a library is made with (a rerun must match them)
MANIFEST = "manifest.jsonl"
MOTIONS = "motions"
ROW_JSON = "motion.json"  # a motion's manifest row, inside its folder: the folder is complete iff it has one
LOCK = ".batch.lock"
MAX_ATTEMPTS = 3  # tries of a batch whose worker died, before it is split (or its motion marked failed)
RAY_PIN = "ray==2.60.0"

# Flags that decide what a motion is: a library is finished with the same ones. --batch_size,
# --num_samples, --num_repetitions, --device and the Ray flags may change between runs.
CONTENT_FLAGS = ("model_path", "stats_dir", "clip_weights", "caption_bank", "motion_length", "loop", "collage",
                 "window", "overlap", "num_windows", "sampler", "steps", "s_churn", "guidance_param",
                 "guidance_interval", "seed", "foot_lock", "render", "loop_repeats", "bvh", "in_place", "bert_dir",
                 "emb_trans_dec_legacy", "velocity_fusion")


# ----------------------------------------------------------------------------------------------
# Command line: python -m sample's parser plus the Ray flags


def build_parser() -> argparse.ArgumentParser:
    p = generate.build_parser()
    p.prog = "python -m motion_loop.batch"
    p.description = __doc__
    p.set_defaults(batch_size=8)
    batch_help = {
        "output_dir": "the library's folder (required); rerunning into it finishes what is missing",
        "batch_size": "motions a worker samples together in one call (default 8)",
        "overwrite": "make every motion again, replacing the library's motions (other files are kept)",
        "device": "each worker's device: cpu, cuda, cuda:N (default: cuda when the worker has a GPU, else cpu)",
        "progress": "show a progress bar over the library's motions",
    }
    for action in p._actions:  # the flags mean the same; a few words differ for a library
        if action.dest in batch_help:
            action.help = batch_help[action.dest]
    g = p.add_argument_group("Ray")
    g.add_argument("--ray_address", default=None,
                   help="an existing Ray cluster: auto (the cluster this machine belongs to, e.g. on its head "
                        "node) or ray://HEAD:10001 (Ray Client) (default: start a local Ray on this machine)")
    g.add_argument("--num_workers", type=int, default=None,
                   help="workers to start, each loads the model once (default: as many as the cluster's "
                        "CPUs and GPUs hold, at most one per batch)")
    g.add_argument("--cpus_per_worker", type=float, default=1.0,
                   help="CPUs each worker reserves; its torch threads (default 1)")
    g.add_argument("--gpus_per_worker", type=float, default=None,
                   help="GPUs each worker reserves; a fraction shares a GPU between workers "
                        "(default: 1 when the cluster has GPUs, else 0)")
    return p


# ----------------------------------------------------------------------------------------------
# Prompts, motions and seeds


@dataclass(frozen=True)
class Prompt:
    """Line ``index + 1`` of the prompt file: a prompt, or a problem that keeps it out of the library."""

    index: int
    text: str | None
    problem: str | None = None


@dataclass(frozen=True)
class Job:
    """One motion to make: repetition ``rep`` of prompt ``index``."""

    index: int
    rep: int
    prompt: str
    seed: int

    @property
    def name(self) -> str:
        return motion_name(self.index, self.rep)


@dataclass
class Batch:
    jobs: list[Job]
    attempt: int = 1
    errors: list[str] = field(default_factory=list)


def motion_name(index: int, rep: int) -> str:
    """A motion's folder, MDM's sample/rep naming: ``sample00012_rep00``."""
    return f"sample{index:05d}_rep{rep:02d}"


def motion_seed(seed: int, index: int, rep: int) -> int:
    """The seed of repetition ``rep`` of prompt ``index``: a hash of the three, so that a motion does
    not depend on which worker makes it, on how many there are, or on the other prompts."""
    digest = hashlib.sha256(f"motion_loop.batch/{seed}/{index}/{rep}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1  # 63 bits: any torch generator takes it


def read_prompt_lines(args) -> list[Prompt]:
    """Every line of --input_text (or the one --text_prompt), numbered; empty and non-UTF-8 lines
    are kept as problems for the manifest, not raised. --num_samples keeps the first N good prompts."""
    if (args.text_prompt is None) == (args.input_text is None):
        raise UserError("give exactly one of --input_text FILE (one prompt per line) or --text_prompt \"...\"")
    if args.text_prompt is not None:
        lines = [args.text_prompt.encode("utf-8", "surrogateescape")]
        source = "--text_prompt"
    else:
        path = args.input_text
        if not path.is_file():
            raise UserError(f"--input_text file {path} does not exist: pass a text file with one prompt per line")
        data = path.read_bytes()
        lines = data.removeprefix(b"\xef\xbb\xbf").split(b"\n")
        if lines and lines[-1] == b"":  # the newline that ends the last line
            lines.pop()
        source = f"--input_text file {path}"
    prompts = []
    for index, raw in enumerate(lines):
        try:
            text = raw.removesuffix(b"\r").decode("utf-8").strip()
        except UnicodeDecodeError as err:
            prompts.append(Prompt(index, None, f"not UTF-8 text (byte {err.start + 1} of the line)"))
            continue
        prompts.append(Prompt(index, text) if text else Prompt(index, None, "empty line"))
    good = [p for p in prompts if p.text is not None]
    if not good:
        raise UserError(f"{source} has no prompts (lines that are UTF-8 text): write one prompt per line")
    if args.num_samples is not None:
        if args.num_samples < 1:
            raise UserError(f"--num_samples must be at least 1, got {args.num_samples}")
        if len(good) > args.num_samples:
            last = good[args.num_samples - 1].index
            prompts = prompts[: last + 1]
    return prompts


def plan_jobs(prompts: list[Prompt], repetitions: int, seed: int) -> list[Job]:
    """Every motion of the run, prompt by prompt: the order batches are cut in."""
    return [Job(p.index, rep, p.text, motion_seed(seed, p.index, rep))
            for p in prompts if p.text is not None for rep in range(repetitions)]


def cut_batches(jobs: list[Job], batch_size: int, done: set[tuple[int, int]]) -> list[Batch]:
    """Batches cut from the whole run and then stripped of motions already made: a batch's motions
    stay together across reruns whatever was finished before, and never depend on the workers."""
    batches = []
    for first in range(0, len(jobs), batch_size):
        todo = [job for job in jobs[first: first + batch_size] if (job.index, job.rep) not in done]
        if todo:
            batches.append(Batch(todo))
    return batches


# ----------------------------------------------------------------------------------------------
# The worker: a Ray actor that loads the model once


def _args_for_workers(args, model_path: Path) -> dict:
    """The flags as a plain dict, paths made absolute (workers run elsewhere)."""
    values = dict(vars(args))
    values["model_path"] = model_path
    for name in ("stats_dir", "clip_weights", "bert_dir", "input_text", "output_dir"):
        if values.get(name) is not None:
            values[name] = Path(values[name]).absolute()
    return values


class Worker:
    """Samples batches of motions and returns each motion's files (bytes) and manifest row; the
    driver writes them, so workers need no shared file system with it."""

    def __init__(self, name: str, args: dict, cwd: str, threads: int):
        import torch

        if os.path.isdir(cwd):  # relative paths mean what they meant to the driver
            os.chdir(cwd)
        torch.set_num_threads(max(1, threads))
        self.args = argparse.Namespace(**args)
        # files go to a fresh scratch folder per motion, quietly
        self.write_args = argparse.Namespace(**{**args, "overwrite": False, "progress": False})
        self.info = {"name": name, "pid": os.getpid()}
        self.error = None
        try:
            import ray

            self.info["node"] = ray.util.get_node_ip_address()
            if self.args.device is not None:
                device = generate.resolve_device(self.args.device)
            else:
                device = torch.device("cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu")
            self.info["device"] = str(device)
            with contextlib.redirect_stdout(io.StringIO()):
                self.setup = generate.load_setup(self.args, device, Path(self.args.model_path), self.args.why)
        except UserError as err:
            self.error = str(err)
        except Exception as err:  # noqa: BLE001 (reported to the driver, which stops the run)
            self.error = f"worker {name} could not load the model: {type(err).__name__}: {err}"

    def ready(self) -> dict:
        """What this worker is, or the one-line error that stops the run."""
        if self.error is not None:
            return {**self.info, "error": self.error}
        plan = generate.Plan([], 1, self.setup.frames, self.setup.layout, self.args.loop, self.setup.fps)
        return {**self.info, "error": None, "model": f"{self.setup.model_path} ({self.setup.why})",
                "plan": plan.describe()}

    def sample(self, jobs: list[Job]) -> list[dict]:
        import torch

        from motion_loop.text_encoders import CaptionBank

        args, setup = self.args, self.setup
        texts = [job.prompt for job in jobs]
        plan = generate.Plan(texts, 1, setup.frames, setup.layout, args.loop, setup.fps)
        noise = None
        if args.sampler != "ddpm":  # each motion starts from its own seed's draw (ddpm draws its own)
            length = setup.layout.length if setup.layout is not None else setup.frames
            noise = torch.cat([torch.randn((1, setup.config.n_feats, 1, length), device=setup.device,
                                           generator=torch.Generator(setup.device).manual_seed(job.seed))
                               for job in jobs])
        # later draws (--s_churn, the ddpm sampler) are shared by the batch: seeded by its first motion
        generator = torch.Generator(setup.device).manual_seed(jobs[0].seed)
        sampled = generate.sample_motions(setup, args, plan, texts, generator, batch_size=len(jobs),
                                          progress=False, noise=noise)
        read_as = ([c for c, _ in setup.text_encoder.nearest(texts)]
                   if isinstance(setup.text_encoder, CaptionBank) else None)
        return [self._motion(job, i, plan, sampled, read_as, len(jobs)) for i, job in enumerate(jobs)]

    def _motion(self, job: Job, i: int, plan, sampled, read_as, batch_len: int) -> dict:
        """One motion's files, written by python -m sample's writer into a scratch folder."""
        started = time.perf_counter()
        one = generate.Plan([job.prompt], 1, plan.frames, plan.layout, plan.loop, plan.fps)
        skating = None if sampled.skating is None else {k: v[i: i + 1] for k, v in sampled.skating.items()}
        seams = None if sampled.seams is None else sampled.seams[i: i + 1]
        loop_root = None if sampled.loop_root is None else sampled.loop_root[i: i + 1]
        mine = generate.Sampled(sampled.features[i: i + 1], sampled.joints[i: i + 1], skating, seams,
                                sampled.steps, sampled.seconds / batch_len, loop_root)
        metadata = generate.run_metadata(self.args, self.setup, one, None if read_as is None else read_as[i: i + 1],
                                         mine, seed=job.seed)
        metadata["library"] = {"prompt_index": job.index, "line": job.index + 1, "repetition": job.rep,
                               "library_seed": self.args.seed, "batch_size": batch_len, "worker": self.info}
        with tempfile.TemporaryDirectory(prefix="motion_loop_batch_") as scratch, \
                contextlib.redirect_stdout(io.StringIO()):
            generate._write_outputs(self.write_args, Path(scratch), one, mine.features, mine.joints, metadata,
                                    mine.seams, mine.seconds)
            files = {path.name: path.read_bytes() for path in sorted(Path(scratch).iterdir())}
        row = {
            "status": "done", "prompt_index": job.index, "line": job.index + 1, "prompt": job.prompt,
            "read_as": None if read_as is None else read_as[i], "repetition": job.rep, "seed": job.seed,
            "files": [f"{MOTIONS}/{job.name}/{name}" for name in files],
            "seam_report": None if seams is None else seams[0],
            "foot_skating": metadata["foot_skating_ratio"],
            "seconds": round(mine.seconds + time.perf_counter() - started, 3),
            "worker": self.info,
        }
        return {"index": job.index, "rep": job.rep, "files": files, "row": row}


# ----------------------------------------------------------------------------------------------
# The library folder


def _settings(worker_args: dict) -> dict:
    """The content flags as library.json records them (JSON: paths as text, no inf)."""
    settings = {name: (str(v) if isinstance(v, Path) else v) for name, v in worker_args.items() if name in CONTENT_FLAGS}
    if "guidance_interval" in settings:
        settings["guidance_interval"] = generate.interval_record(settings["guidance_interval"])
    return settings


class Library:
    """The output folder: what is already made, and atomic writes of new motions."""

    def __init__(self, out: Path, settings: dict, overwrite: bool):
        self.out = out
        self.motions = out / MOTIONS
        self.overwrite = overwrite
        if out.exists() and not out.is_dir():
            raise UserError(f"--output_dir {out} is a file: pass a folder")
        library_json = out / LIBRARY_JSON
        if out.is_dir() and any(out.iterdir()) and not library_json.is_file() and not overwrite:
            raise UserError(f"--output_dir {out} has files but no {LIBRARY_JSON}, so it is not a motion library: "
                            "pass a new or empty folder (or --overwrite to add one there)")
        out.mkdir(parents=True, exist_ok=True)
        self._lock = open(out / LOCK, "a+")
        try:
            import fcntl

            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # not POSIX: no lock
            pass
        except OSError:
            self._lock.close()
            raise UserError(f"another python -m motion_loop.batch is writing {out}: wait for it, or pick another "
                            "--output_dir") from None
        try:
            self._open(library_json, settings)
        except BaseException:
            self._lock.close()
            raise
        self.written: list[tuple[int, int]] = []  # motions this run wrote, in order (never one twice)

    def _open(self, library_json: Path, settings: dict) -> None:
        """Check the settings, record them, clear leftovers of a killed run and read what is made."""
        overwrite, out = self.overwrite, self.out
        if library_json.is_file() and not overwrite:
            try:
                before = json.loads(library_json.read_text())["settings"]
            except (ValueError, KeyError, TypeError):
                raise UserError(f"{library_json} is damaged: pass --overwrite to remake the library, or another "
                                "--output_dir") from None
            changed = [f"--{k} {before.get(k)!r} -> {settings[k]!r}" for k in settings if before.get(k) != settings[k]]
            if changed:
                raise UserError(f"{out} was made with other settings ({'; '.join(changed)}): pass the same flags to "
                                "finish it, --overwrite to remake it, or another --output_dir")
        from motion_loop.results import write_atomic

        write_atomic(library_json, lambda tmp: tmp.write_text(json.dumps({"settings": settings}, indent=2) + "\n"),
                     overwrite=True)
        self.motions.mkdir(exist_ok=True)
        for leftover in self.motions.glob(".*.tmp"):  # a run killed while moving a motion into place
            shutil.rmtree(leftover, ignore_errors=True)
        self.rows: dict[tuple[int, int], dict] = {}
        for folder in sorted(self.motions.iterdir()):
            try:
                row = json.loads((folder / ROW_JSON).read_text())
                self.rows[(row["prompt_index"], row["repetition"])] = row
            except (OSError, ValueError, KeyError, TypeError):
                continue  # not a finished motion folder of ours

    def check_prompts(self, prompts: list[Prompt]) -> None:
        """Motions made for a line that now says something else need --overwrite."""
        text = {p.index: p.text for p in prompts}
        stale = sorted({(i, row["prompt"]) for (i, _), row in self.rows.items() if i in text and text[i] != row["prompt"]})
        if stale and not self.overwrite:
            i, was = stale[0]
            raise UserError(f"{len(stale)} prompt line(s) changed since their motions were made (line {i + 1} was "
                            f"{was!r}, now {text[i]!r}): pass --overwrite to remake them, or another --output_dir")

    def add(self, result: dict) -> None:
        """Move one motion's files into place in one rename: its folder appears complete or not at all."""
        key = (result["index"], result["rep"])
        if key in self.written:
            raise RuntimeError(f"motion {key} arrived twice")  # the scheduler never retries a finished batch
        name = motion_name(*key)
        final = self.motions / name
        scratch = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=self.motions))
        try:
            for file_name, data in result["files"].items():
                (scratch / file_name).write_bytes(data)
            (scratch / ROW_JSON).write_text(json.dumps(result["row"], indent=1) + "\n")
            os.chmod(scratch, 0o777 & ~_umask())
            if final.exists():  # only with --overwrite (motions already made are not scheduled otherwise)
                old = Path(tempfile.mkdtemp(prefix=f".{name}.old.", suffix=".tmp", dir=self.motions))
                os.replace(final, old)
                os.replace(scratch, final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(scratch, final)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        self.rows[key] = result["row"]
        self.written.append(key)
        with open(self.out / MANIFEST, "a", encoding="utf-8") as journal:  # rewritten in order at the end
            journal.write(json.dumps(result["row"]) + "\n")

    def write_manifest(self, extra_rows: list[dict]) -> Path:
        from motion_loop.results import write_atomic

        rows = list(self.rows.values()) + extra_rows
        rows.sort(key=lambda r: (r["prompt_index"], -1 if r["repetition"] is None else r["repetition"]))
        text = "".join(json.dumps(row) + "\n" for row in rows)
        return write_atomic(self.out / MANIFEST, lambda tmp: tmp.write_text(text, encoding="utf-8"), overwrite=True)

    def write_results(self, prompts: list[Prompt], repetitions: int, metadata: dict) -> tuple[int, list[int]]:
        """results.npy (MDM's format) of the prompts whose every repetition is made; the prompts left out."""
        from motion_loop.results import load_results, results_motion, save_results

        complete = [p for p in prompts if p.text is not None
                    and all((p.index, r) in self.rows for r in range(repetitions))]
        missing = [p.index for p in prompts if p.text is not None and p not in complete]
        if not complete:
            return 0, missing
        motions = [results_motion(load_results(self.motions / motion_name(p.index, rep) / "results.npy"), 0)
                   for rep in range(repetitions) for p in complete]
        texts = [p.text for _ in range(repetitions) for p in complete]
        metadata = {**metadata, "prompt_indices": [p.index for p in complete],
                    "note": "results.npy index rep * num_samples + sample; sample s is prompt line prompt_indices[s] + 1"}
        save_results(self.out, motions, texts, num_samples=len(complete), num_repetitions=repetitions,
                     metadata=metadata, videos=False, overwrite=True)
        return len(complete), missing

    def close(self) -> None:
        self._lock.close()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ----------------------------------------------------------------------------------------------
# Ray


def _import_ray():
    try:
        import ray
    except ImportError:
        raise UserError(f"python -m motion_loop.batch needs Ray: pip install {RAY_PIN}") from None
    return ray


@contextlib.contextmanager
def ray_session(address: str | None):
    """Ray as the run needs it: the session already running in this process, an existing cluster
    (``auto`` or ``ray://...``, with this package shipped to its workers), or a local one."""
    ray = _import_ray()
    if ray.is_initialized():
        yield ray
        return
    package = Path(__file__).resolve().parent
    try:
        if address is None:  # workers import this very package, whatever the working directory
            path = os.pathsep.join(filter(None, [str(package.parent), os.environ.get("PYTHONPATH")]))
            ray.init(include_dashboard=False, logging_level="ERROR", log_to_driver=False,
                     object_store_memory=512 * 1024**2, runtime_env={"env_vars": {"PYTHONPATH": path}})
        else:
            ray.init(address=address, logging_level="ERROR", log_to_driver=False,
                     runtime_env={"py_modules": [str(package)], "excludes": ["__pycache__"]})
    except Exception as err:  # noqa: BLE001 (Ray's connection errors have many types)
        where = "a local Ray" if address is None else f"the Ray cluster at {address}"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        hint = ("check --ray_address (a cluster starts with `ray start --head`) and, for a cluster with token "
                "authentication, RAY_AUTH_TOKEN (`ray get-auth-token` on its head prints it)") if address else \
            "see Ray's messages above"
        raise UserError(f"could not start {where} ({first}): {hint}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _worker_count(ray, args, batches: int) -> tuple[int, float, float, int]:
    """Workers to start, the CPUs and GPUs each reserves, and how many fit in the cluster now."""
    resources = ray.cluster_resources()
    cpus_total, gpus_total = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    gpus = args.gpus_per_worker if args.gpus_per_worker is not None else (1.0 if gpus_total >= 1 else 0.0)
    cpus = args.cpus_per_worker
    if cpus > cpus_total or gpus > gpus_total:
        raise UserError(f"a worker asks for {cpus:g} CPU(s) and {gpus:g} GPU(s), but the Ray cluster has "
                        f"{cpus_total:g} CPU(s) and {gpus_total:g} GPU(s): lower --cpus_per_worker/--gpus_per_worker")
    fits = int(cpus_total // cpus) if cpus > 0 else batches
    if gpus > 0:
        fits = min(fits, int(gpus_total // gpus))
    count = args.num_workers if args.num_workers is not None else max(1, min(fits, batches))
    return count, cpus, gpus, fits


def _short(err: BaseException) -> str:
    """An exception (a Ray one wraps the worker's) in one line."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, BaseException):
        err = cause
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:300]}"


class Scheduler:
    """Hands batches to idle workers; a batch whose worker dies goes to another (a new worker takes
    the dead one's place), one that raises is split to find the motion at fault."""

    def __init__(self, ray, worker_args: dict, count: int, cpus: float, gpus: float, run_id: str):
        self.ray = ray
        self.remote = ray.remote(Worker)
        self.worker_args = worker_args
        self.cpus, self.gpus = cpus, gpus
        self.run_id = run_id
        self.handles: dict[str, object] = {}
        self.starting: dict[object, str] = {}  # ready() refs of workers loading the model
        self.idle: deque[str] = deque()
        self.running: dict[object, tuple[str, Batch]] = {}
        self.infos: dict[str, dict] = {}
        self.started = 0
        self.replacements = 2 * count + MAX_ATTEMPTS  # worker deaths the run survives
        self.lost: list[str] = []
        for _ in range(count):
            self._start_worker()

    def _start_worker(self) -> None:
        name = f"w{self.started}"
        self.started += 1
        handle = self.remote.options(name=f"motion_loop.batch/{self.run_id}/{name}", num_cpus=self.cpus,
                                     num_gpus=self.gpus, max_restarts=0, max_task_retries=0).remote(
            name, self.worker_args, os.getcwd(), max(1, math.floor(self.cpus)))
        self.handles[name] = handle
        self.starting[handle.ready.remote()] = name

    def _lose(self, name: str, err: BaseException) -> None:
        self.lost.append(f"{name}: {_short(err)}")
        handle = self.handles.pop(name, None)
        if handle is not None:
            with contextlib.suppress(Exception):
                self.ray.kill(handle)
        if self.replacements > 0:
            self.replacements -= 1
            self._start_worker()

    @property
    def alive(self) -> int:
        return len(self.handles)

    def run(self, batches: list[Batch], on_result, on_failed, on_ready, bar=None) -> None:
        ray = self.ray
        queue = deque(batches)
        while queue or self.running:
            while self.idle and queue:
                name, batch = self.idle.popleft(), queue.popleft()
                self.running[self.handles[name].sample.remote(batch.jobs)] = (name, batch)
            if not self.handles:
                raise UserError(f"every worker died ({self.lost[-1]}); the motions made so far are kept: rerun "
                                "the same command to finish")
            pending = list(self.running) + list(self.starting)
            done, _ = ray.wait(pending, num_returns=1, timeout=1.0)
            if bar is not None and sys.stderr.isatty():  # the clock and ETA move while a batch runs
                bar.refresh()
            for ref in done:
                if ref in self.starting:
                    name = self.starting.pop(ref)
                    try:
                        info = ray.get(ref)
                    except ray.exceptions.RayError as err:  # died while loading (out of memory, node lost)
                        self._lose(name, err)
                        continue
                    if info["error"] is not None:
                        raise UserError(info["error"])
                    self.infos[name] = info
                    on_ready(info)
                    self.idle.append(name)
                    continue
                name, batch = self.running.pop(ref)
                try:
                    results = ray.get(ref)
                except ray.exceptions.RayTaskError as err:  # the batch raised; the worker lives on
                    self.idle.append(name)
                    self._retry(queue, batch, _short(err), died=False, on_failed=on_failed)
                    continue
                except ray.exceptions.RayError as err:  # the worker died (killed, out of memory, node lost)
                    self._lose(name, err)
                    self._retry(queue, batch, f"worker {name} died: {_short(err)}", died=True, on_failed=on_failed)
                    continue
                self.idle.append(name)
                if queue:  # keep the worker busy while its motions are written
                    next_name, next_batch = self.idle.pop(), queue.popleft()
                    self.running[self.handles[next_name].sample.remote(next_batch.jobs)] = (next_name, next_batch)
                for result in results:
                    on_result(result, attempt=batch.attempt)

    @staticmethod
    def _retry(queue: deque, batch: Batch, error: str, *, died: bool, on_failed) -> None:
        batch.errors.append(error)
        if died and batch.attempt < MAX_ATTEMPTS:  # the same batch, so its motions stay what they would have been
            queue.appendleft(Batch(batch.jobs, batch.attempt + 1, batch.errors))
        elif len(batch.jobs) > 1:  # an error or a repeated death: halve it to find the motion at fault
            half = len(batch.jobs) // 2
            for part in (batch.jobs[half:], batch.jobs[:half]):
                queue.appendleft(Batch(part, batch.attempt + 1, list(batch.errors)))
        elif not died and batch.attempt < MAX_ATTEMPTS:
            queue.appendleft(Batch(batch.jobs, batch.attempt + 1, batch.errors))
        else:
            on_failed(batch)

    def close(self) -> None:
        for handle in self.handles.values():
            with contextlib.suppress(Exception):
                self.ray.kill(handle)
        self.handles.clear()


# ----------------------------------------------------------------------------------------------
# The run


def _progress_bar(total: int, enabled: bool):
    """A bar over the motions to make, with rate and ETA; in a log file (no terminal) a line every 30 s."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    terminal = sys.stderr.isatty()
    return tqdm(total=total, unit="motion", desc="motions", dynamic_ncols=True, smoothing=0.1,
                mininterval=0.1 if terminal else 30.0)


def run(args) -> dict:
    started = time.perf_counter()
    if args.output_dir is None:
        raise UserError("pass --output_dir FOLDER for the library (rerunning into it finishes what is missing)")
    prompts = read_prompt_lines(args)
    generate.check_numbers(args)
    if args.num_workers is not None and args.num_workers < 1:
        raise UserError(f"--num_workers must be at least 1, got {args.num_workers}")
    if not args.cpus_per_worker > 0 or not math.isfinite(args.cpus_per_worker):
        raise UserError(f"--cpus_per_worker must be a positive number, got {args.cpus_per_worker}")
    if args.gpus_per_worker is not None and (not math.isfinite(args.gpus_per_worker) or args.gpus_per_worker < 0):
        raise UserError(f"--gpus_per_worker must be >= 0, got {args.gpus_per_worker}")
    model_path, why = generate.resolve_model_path(args.model_path)
    worker_args = _args_for_workers(args, Path(model_path).absolute())
    worker_args["why"] = why
    settings = _settings(worker_args)

    library = Library(Path(args.output_dir), settings, args.overwrite)
    try:
        library.check_prompts(prompts)
        jobs = plan_jobs(prompts, args.num_repetitions, args.seed)
        done = set() if args.overwrite else {(j.index, j.rep) for j in jobs if (j.index, j.rep) in library.rows}
        batches = cut_batches(jobs, args.batch_size, done)
        bad = [p for p in prompts if p.text is None]
        bad_rows = [{"status": "bad_prompt", "prompt_index": p.index, "line": p.index + 1, "prompt": None,
                     "repetition": None, "error": p.problem} for p in bad]
        todo = sum(len(b.jobs) for b in batches)
        library.write_manifest(bad_rows)  # what is in place now; rows are appended as motions land
        good = len(prompts) - len(bad)
        print(f"library {library.out}: {good} prompt(s) x {args.num_repetitions} repetition(s) = {len(jobs)} motion(s), "
              f"{len(done)} already made, {todo} to make"
              + (f"; {len(bad)} bad line(s) skipped ({', '.join(str(p.index + 1) for p in bad[:8])}"
                 f"{' ...' if len(bad) > 8 else ''})" if bad else ""))
        failed_rows: list[dict] = []
        workers: list[dict] = []
        try:
            if batches:
                _sample_library(args, worker_args, library, batches, todo, failed_rows, workers)
        finally:  # also when interrupted: the manifest lists every motion that is in place
            library.write_manifest(bad_rows + failed_rows)
        summary = {"settings": settings, "input_text": str(args.input_text) if args.input_text else None,
                   "num_repetitions": args.num_repetitions, "bad_lines": [p.index + 1 for p in bad]}
        in_results, incomplete = library.write_results(prompts, args.num_repetitions, summary)
    finally:
        library.close()

    elapsed = time.perf_counter() - started
    made = len(library.written)
    rate = made / elapsed * 60 if elapsed > 0 else 0.0
    complete = sum((j.index, j.rep) in library.rows for j in jobs)
    speed = f"{made} made in {_clock(elapsed)} ({rate:.1f} motions/min, {len(workers)} worker(s))" if made else "nothing to make"
    print(f"done: {complete}/{len(jobs)} motions in {library.out}: {speed}, {len(done)} made before"
          + (f", {len(failed_rows)} failed (rerun the same command to retry them)" if failed_rows else "")
          + (f", {len(bad)} bad line(s)" if bad else "")
          + f"; {MANIFEST}, results.npy of {in_results} prompt(s)")
    return {"output_dir": library.out, "made": list(library.written), "failed": failed_rows, "bad": bad_rows,
            "workers": workers, "seconds": elapsed, "motions_per_minute": rate, "complete": complete,
            "total": len(jobs), "incomplete_prompts": incomplete}


def _sample_library(args, worker_args: dict, library: Library, batches: list[Batch], todo: int,
                    failed_rows: list[dict], workers: list[dict]) -> None:
    """Sample the batches on Ray; fills ``failed_rows`` and ``workers`` (the workers that started)."""
    with ray_session(args.ray_address) as ray:
        count, cpus, gpus, fits = _worker_count(ray, args, len(batches))
        print(f"ray: {count} worker(s) of {cpus:g} CPU(s) and {gpus:g} GPU(s), batches of up to {args.batch_size}"
              + (f" ({fits} fit in the cluster now, the others start when it has room)" if count > fits else ""))
        began = time.perf_counter()
        run_id = hashlib.sha256(f"{os.getpid()} {time.time()}".encode()).hexdigest()[:8]
        scheduler = Scheduler(ray, worker_args, count, cpus, gpus, run_id)
        bar = _progress_bar(todo, args.progress)

        def on_ready(info):
            info["ready_seconds"] = round(time.perf_counter() - began, 3)  # start-up: process, imports, model
            if not workers:
                _write(bar, f"model: {info['model']}; each motion {info['plan']}, "
                            f"{generate.SAMPLER_TITLES[args.sampler]} sampler")
            workers.append(info)

        def on_result(result, attempt):
            result["row"]["attempt"] = attempt
            result["row"]["made_at"] = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
            library.add(result)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(workers=scheduler.alive, failed=len(failed_rows), refresh=False)

        def on_failed(batch):
            for job in batch.jobs:
                failed_rows.append({"status": "failed", "prompt_index": job.index, "line": job.index + 1,
                                    "prompt": job.prompt, "repetition": job.rep, "seed": job.seed,
                                    "attempts": batch.attempt, "error": batch.errors[-1]})
            _write(bar, f"failed: {len(batch.jobs)} motion(s) of line(s) "
                        f"{sorted({j.index + 1 for j in batch.jobs})}: {batch.errors[-1]}")
            if bar is not None:
                bar.update(len(batch.jobs))

        try:
            scheduler.run(batches, on_result, on_failed, on_ready, bar)
        finally:
            scheduler.close()
            if bar is not None:
                bar.close()
            for lost in scheduler.lost:
                print(f"worker lost: {lost}")


def _write(bar, line: str) -> None:
    if bar is not None:
        bar.write(line)
    else:
        print(line)


def _clock(seconds: float) -> str:
    minutes, s = divmod(int(round(seconds)), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m{s:02d}s" if hours else f"{m}m{s:02d}s"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    outcome = {}

    def job():
        outcome.update(run(args))

    code = run_cli(job, interrupted="every motion in the library's motions/ folder is complete: rerun the same "
                                    "command to make the rest")
    if code == 0 and outcome.get("failed"):
        return 1  # the run finished, but some motions could not be made
    return code


if __name__ == "__main__":
    sys.exit(main())
