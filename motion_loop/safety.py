"""Guards around a sampling run, so that no work is thrown away and no broken file is written.

Before sampling: the bounds of the flags (guidance, seed, video length, prompt size), the model's
weights, and whether the output folder can be written at all (permissions, read-only or virtual
file systems, free space, folders in the way of file names). After sampling: NaN or infinite
values stop the run before any file is written, with the likely cause named. While writing: a
failure (disk full half way, ffmpeg dying) keeps the files already in place (each is complete:
see results.atomic_output) and saves the sampled features to a temporary folder that the one-line
error names.

``--overwrite`` is made exact by a manifest, ``.motion_loop_manifest.json``, listing every file a
run wrote into its folder: a later run replaces exactly that set (its stale files are removed)
and refuses to replace any file the manifest does not list (the user's own).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from motion_loop.errors import UserError, printable

MANIFEST = ".motion_loop_manifest.json"
MAX_GUIDANCE = 50.0  # MDM uses 2.5; far above it the sample only amplifies noise, then overflows
SEED_RANGE = (0, 2**63 - 1)  # torch.Generator.manual_seed takes 64-bit seeds; MDM's are >= 0
MAX_VIDEO_SECONDS = 600.0  # one video, a loop played --loop_repeats times included
MAX_PROMPT_CHARS = 1000  # CLIP reads 77 tokens, MiniLM 256: a longer prompt is a mistake
MAX_PROMPT_FILE_BYTES = 1 << 20
MAX_PROMPTS = 10_000
MAX_REPETITIONS = 1_000  # samples per prompt; more is a typo (memory grows with every one)
VIDEO_BYTES_PER_FRAME = 8_000  # a 300 x 300 H.264 stick figure is ~2 KB a frame; generous


# ----------------------------------------------------------------------------------------------
# Flags and prompts


def check_bounds(args) -> None:
    """Bounds on --guidance_param, --num_repetitions, --seed and the length of a loop's video (before any work)."""
    if not math.isfinite(args.guidance_param) or not 0 <= args.guidance_param <= MAX_GUIDANCE:
        raise UserError(f"--guidance_param must be between 0 and {MAX_GUIDANCE:g} (MDM uses 2.5; 1 disables "
                        f"guidance), got {args.guidance_param:g}")
    if args.num_repetitions > MAX_REPETITIONS:
        raise UserError(f"--num_repetitions {args.num_repetitions} is more than {MAX_REPETITIONS} samples per prompt: "
                        "ask for fewer (or run again with another --seed)")
    low, high = SEED_RANGE
    if not low <= args.seed <= high:
        raise UserError(f"--seed must be between {low} and {high} (2**63 - 1), got {args.seed}")
    if getattr(args, "loop", False) and args.render and args.loop_repeats is not None and args.loop_repeats > 0:
        seconds = args.loop_repeats * args.motion_length
        if seconds > MAX_VIDEO_SECONDS:
            raise UserError(f"--loop_repeats {args.loop_repeats} plays the {args.motion_length:g} s loop for "
                            f"{seconds:g} s; a video is at most {MAX_VIDEO_SECONDS:g} s: use --loop_repeats "
                            f"{max(1, int(MAX_VIDEO_SECONDS // args.motion_length))} or less (a player can loop it)")


def check_prompt_file(path: Path) -> None:
    """--input_text is a readable text file of sensible size (checked before it is read)."""
    if path.is_dir():
        raise UserError(f"--input_text {path} is a folder: pass a text file with one prompt per line")
    if path.exists() and not path.is_file():
        raise UserError(f"--input_text {path} is not a regular file: pass a text file with one prompt per line")
    if path.is_file() and path.stat().st_size > MAX_PROMPT_FILE_BYTES:
        raise UserError(f"--input_text {path} has {path.stat().st_size} bytes; at most "
                        f"{MAX_PROMPT_FILE_BYTES >> 20} MB of prompts are read: split the file")


def check_prompts(prompts: Sequence[str]) -> None:
    """Each prompt at most MAX_PROMPT_CHARS characters, at most MAX_PROMPTS of them."""
    if len(prompts) > MAX_PROMPTS:
        raise UserError(f"{len(prompts)} prompts given; at most {MAX_PROMPTS} per run: split them (--num_samples)")
    for number, prompt in enumerate(prompts, 1):
        if len(prompt) > MAX_PROMPT_CHARS:
            raise UserError(f"prompt {number} has {len(prompt)} characters (it starts "
                            f"\"{printable(prompt, 40)}\"); at most {MAX_PROMPT_CHARS}: describe the motion briefly")


# ----------------------------------------------------------------------------------------------
# Model and sample


def check_weights(model, path) -> None:
    """A checkpoint with NaN or infinite weights can only sample NaN: refuse it before sampling."""
    import torch

    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise UserError(f"checkpoint {path} has NaN or infinite weights (in {name!r}): the file is "
                            "damaged or from a diverged training run; download or train it again")


def check_sample(features: np.ndarray, joints: np.ndarray, *, guidance: float, normalizer, stage: str = "sampling") -> None:
    """Stop before writing when the sample holds NaN or inf, naming the likely cause."""
    bad = [name for name, a in (("features", features), ("joints", joints)) if not np.isfinite(a).all()]
    if not bad:
        return
    if guidance > 10:
        cause = f"the guidance scale --guidance_param {guidance:g} is very high: try MDM's 2.5"
    elif float(np.max(normalizer.std)) > 10 or float(np.max(np.abs(normalizer.mean))) > 100:
        cause = "the statistics (Mean.npy/Std.npy) are far from HumanML3D's: check --stats_dir"
    else:
        cause = ("the checkpoint's weights or the statistics do not fit each other: check --model_path and "
                 "--stats_dir, or try another --seed / more --steps")
    raise UserError(f"{stage} produced NaN or infinite values (in the {' and '.join(bad)}); nothing was written. "
                    f"Likely cause: {cause}")


# ----------------------------------------------------------------------------------------------
# Output folder


def planned_files(num_samples: int, repetitions: int, *, videos: bool, bvh: bool, video_suffix: str = ".mp4",
                  combine: bool = True) -> list[str]:
    """The names a run writes into its folder (results.save_results, features.npy, BVH)."""
    from motion_loop.results import RESULTS_LEN_TXT, RESULTS_NPY, RESULTS_TXT, RUN_JSON, video_name

    names = [RESULTS_NPY, RESULTS_TXT, RESULTS_LEN_TXT, RUN_JSON, "features.npy"]
    pairs = [(s, r) for r in range(repetitions) for s in range(num_samples)]
    if videos:
        names += [video_name(s, r, video_suffix) for s, r in pairs]
        if combine and repetitions > 1 and video_suffix == ".mp4":
            names += [f"sample{s:02d}.mp4" for s in range(num_samples)]
    if bvh:
        names += [video_name(s, r, ".bvh") for s, r in pairs]
    return names


def run_files(args, num_prompts: int) -> list[str]:
    """:func:`planned_files` for the flags of ``python -m sample``."""
    suffix = ".mp4"
    if args.render:
        from motion_loop.render import find_ffmpeg

        suffix = ".mp4" if find_ffmpeg() is not None else ".gif"
    return planned_files(num_prompts, args.num_repetitions, videos=args.render, bvh=args.bvh, video_suffix=suffix)


def read_manifest(folder: Path) -> list[str] | None:
    """The files an earlier run wrote into ``folder`` (None: no run of ours wrote there)."""
    try:
        data = json.loads((folder / MANIFEST).read_text())
        files = data["files"]
        if isinstance(files, list) and all(isinstance(f, str) and "/" not in f and f not in ("", ".", "..")
                                           for f in files):
            return files
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        pass
    raise UserError(f"{folder / MANIFEST} (the list of files an earlier run wrote) is damaged: delete it and "
                    "move that run's files away, or choose another --output_dir")


def _existing_ancestor(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_dir(folder: Path, names: Iterable[str], *, overwrite: bool, estimated_bytes: int = 0) -> None:
    """Before sampling: ``folder`` can be created and written, no name in ``names`` is a folder there,
    and with ``overwrite`` only files an earlier run listed in its manifest would be replaced.
    A full disk is caught when ``estimated_bytes`` do not fit. Creates nothing."""
    names = list(names)
    if folder.is_dir():
        for name in names:
            target = folder / name
            if target.is_dir():
                raise UserError(f"{target} is a folder, but the run writes a file of that name: move it away "
                                "or choose another --output_dir")
        if overwrite:
            previous = read_manifest(folder)
            ours = set(previous or ()) | {MANIFEST}
            theirs = [name for name in names if (folder / name).exists() and name not in ours]
            if theirs:
                why = "is not listed" if previous is not None else "was not written by python -m sample (no manifest)"
                raise UserError(f"--overwrite would replace {folder / theirs[0]}, which {why}: move your file "
                                "away or choose another --output_dir")
    base = _existing_ancestor(folder)
    if not base.is_dir():
        raise UserError(f"--output_dir {folder} cannot be made: {base} is a file, not a folder")
    try:  # the only reliable test (root ignores permissions, /proc refuses new files, ro mounts)
        if base == Path(os.path.abspath(folder)):
            fd, probe = tempfile.mkstemp(dir=base, prefix=".motion_loop_probe_")
            os.close(fd)
            os.unlink(probe)
        else:
            os.rmdir(tempfile.mkdtemp(dir=base, prefix=".motion_loop_probe_"))
    except OSError as err:
        raise UserError(f"cannot write to --output_dir {folder} ({err.strerror or err} in {base}): "
                        "choose a folder you can write to with --output_dir") from None
    free = shutil.disk_usage(base).free
    if estimated_bytes > free:
        raise UserError(f"--output_dir {folder} has {free / 1e6:.1f} MB free, and this run writes about "
                        f"{estimated_bytes / 1e6:.1f} MB: free some space or choose another folder")


def estimate_bytes(num_motions: int, frames: int, *, videos: bool, video_frames: int, bvh: bool) -> int:
    """A generous estimate of the bytes a run writes (results, features, BVH, videos)."""
    per_motion = frames * (22 * 3 * 4 + 263 * 4) + (frames * 22 * 3 * 12 if bvh else 0)
    per_motion += video_frames * VIDEO_BYTES_PER_FRAME if videos else 0
    return num_motions * per_motion + (1 << 16)


def begin_manifest(folder: Path, names: Iterable[str]) -> list[str] | None:
    """Before writing: list the earlier run's files and this run's in the manifest (so an
    interrupted run's files are still known as ours); returns the earlier run's list."""
    previous = read_manifest(folder) if folder.is_dir() else None
    _write_manifest(folder, sorted(set(previous or ()) | set(names)))
    return previous


def finish_manifest(folder: Path, previous: Sequence[str] | None, written: Iterable[str]) -> list[str]:
    """After writing: remove the earlier run's files this run did not write again (never any
    other file), and list exactly this run's files. Returns the names removed."""
    written = set(written)
    stale = [name for name in (previous or ()) if name not in written and name != MANIFEST]
    for name in stale:
        path = folder / name
        if path.is_file() or path.is_symlink():
            path.unlink()
    _write_manifest(folder, sorted(written))
    return stale


def _write_manifest(folder: Path, files: Sequence[str]) -> None:
    from motion_loop.results import write_atomic

    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"written_by": "python -m sample", "files": list(files)}, indent=1) + "\n"
    write_atomic(folder / MANIFEST, lambda tmp: tmp.write_text(text), overwrite=True)


# ----------------------------------------------------------------------------------------------
# Writing with a rescue


def rescue(features: np.ndarray, joints: np.ndarray, metadata: dict) -> Path | None:
    """Save the sampled motion to a new temporary folder; None when that fails too."""
    try:
        folder = Path(tempfile.mkdtemp(prefix="motion_loop_rescue_"))
        np.save(folder / "features.npy", np.asarray(features, dtype=np.float32))
        np.save(folder / "joints.npy", np.asarray(joints, dtype=np.float32))
        (folder / "run.json").write_text(json.dumps(metadata, indent=1, default=str) + "\n")
        return folder
    except (OSError, ValueError, TypeError):
        return None


def write_or_rescue(write: Callable[[], dict], folder: Path, names: Sequence[str], features: np.ndarray,
                    joints: np.ndarray, metadata: dict) -> dict:
    """Run ``write()`` (which writes ``names`` into ``folder``) under the manifest; if it fails,
    keep what is in place, save the sample to a temporary folder and say so in one line."""
    from motion_loop.render import FFmpegError

    try:
        previous = begin_manifest(folder, names)
        result = write()
        removed = finish_manifest(folder, previous, result["written"])
        if removed:
            print(f"  --overwrite: removed {len(removed)} file(s) of the earlier run that this run did not write "
                  f"({', '.join(removed[:3])}{' ...' if len(removed) > 3 else ''})")
        return result
    except KeyboardInterrupt:
        raise
    except (OSError, FFmpegError, UserError) as err:
        saved = rescue(features, joints, metadata)
        done = [name for name in names if (folder / name).is_file()]
        reason = printable(getattr(err, "strerror", None) or err, 300)
        kept = f"the {len(done)} file(s) already in place are complete" if done else "no file was written"
        where = (f"the sampled motion is saved in {saved} (features.npy, joints.npy, run.json)" if saved
                 else "saving the sample to a temporary folder failed too")
        raise UserError(f"writing {folder} failed after sampling ({reason}); {kept}; {where}: free space or "
                        "fix the folder and run again") from None
    except Exception:
        saved = rescue(features, joints, metadata)
        if saved:
            print(f"note: the sampled motion is saved in {saved}", file=sys.stderr)
        raise
