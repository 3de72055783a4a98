"""Output files of a sampling run, in MDM's layout so MDM's own tools read them.

``results.npy``: ``np.save`` of a dict ``{'motion': float32 [N*R, 22, 3, T] joint positions
(axes joints, xyz, time), 'text': [N*R], 'lengths': int [N*R], 'num_samples': N,
'num_repetitions': R}`` with index ``rep * N + sample``; ``results.txt`` (one prompt a line),
``results_len.txt`` (one length a line), videos ``sample##_rep##.mp4`` (and ``sample##.mp4`` with
the repetitions side by side), and ``run.json`` with what produced the run.

Every file is written under a temporary name in its directory and moved into place with
os.replace, so an interrupted run never leaves a half-written file under a final name; existing
files are never replaced unless ``overwrite=True``.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from motion_loop.errors import UserError
from motion_loop.skeleton import FPS, KIT_NUM_JOINTS, NUM_JOINTS

RESULTS_NPY = "results.npy"
RESULTS_TXT = "results.txt"
RESULTS_LEN_TXT = "results_len.txt"
RUN_JSON = "run.json"


def _refuse_existing(path: Path, overwrite: bool) -> None:
    if not overwrite and (path.exists() or path.is_symlink()):
        raise UserError(f"{path} already exists; pass --overwrite (overwrite=True) or choose "
                        f"another output directory")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_output(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it onto ``path`` (os.replace).

    The temporary name is hidden and ends in ``.tmp<suffix>`` (e.g. ``.tmp.mp4``, so tools that
    guess formats from names still work). On any error the temporary file is removed and
    ``path`` is untouched. Without ``overwrite`` an existing ``path`` raises UserError, both
    before the work starts and again right before the move.
    """
    path = Path(path)
    _refuse_existing(path, overwrite)
    if not path.parent.is_dir():
        raise UserError(f"output directory {path.parent} does not exist; create it or choose "
                        f"another output path")
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())               # mkstemp makes it private (0600)
        _refuse_existing(path, overwrite)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: str | os.PathLike, write: Callable[[Path], object], *,
                 overwrite: bool = False) -> Path:
    """Call ``write(tmp_path)`` and move the result onto ``path`` atomically; returns ``path``."""
    with atomic_output(path, overwrite=overwrite) as tmp:
        write(tmp)
    return Path(path)


def _write_text(path: Path, text: str, overwrite: bool) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"),
                        overwrite=overwrite)


def _json_default(value):
    """numpy values and paths, which metadata often carries, as plain JSON."""
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def video_name(sample: int, rep: int, suffix: str = ".mp4") -> str:
    """MDM's video file name, e.g. ``sample00_rep01.mp4``."""
    return f"sample{sample:02d}_rep{rep:02d}{suffix}"


def mdm_results(motions: Sequence[np.ndarray], texts: Sequence[str], num_samples: int,
                num_repetitions: int) -> dict:
    """The results.npy dict from motions [T_i, 22, 3] listed in MDM order (rep * N + sample).

    Motions shorter than the longest are padded by holding their last frame; 'lengths' records
    the true lengths (MDM's tools crop to them).
    """
    count = num_samples * num_repetitions
    if num_samples < 1 or num_repetitions < 1:
        raise UserError(f"num_samples and num_repetitions must be >= 1, got {num_samples} and "
                        f"{num_repetitions}")
    if len(motions) != count or len(texts) != count:
        raise UserError(f"expected {count} motions and texts (num_samples {num_samples} x "
                        f"num_repetitions {num_repetitions}), got {len(motions)} motions and "
                        f"{len(texts)} texts; list them as rep * num_samples + sample")
    arrays = []
    for i, motion in enumerate(motions):
        motion = np.asarray(motion)
        # 22 joints (HumanML3D), or 21 (KIT), the same for every motion of a run
        joints = np.asarray(motions[0]).shape[1:2] if np.asarray(motions[0]).ndim == 3 else None
        if motion.ndim != 3 or motion.shape[1:] not in ((NUM_JOINTS, 3), (KIT_NUM_JOINTS, 3)) or len(motion) < 1 \
                or motion.shape[1:2] != joints:
            raise UserError(f"motion {i} must be joint positions [T, {NUM_JOINTS}, 3] (KIT: [T, {KIT_NUM_JOINTS}, 3]), "
                            f"got shape {tuple(motion.shape)}")
        arrays.append(motion.astype(np.float32))
    lengths = np.array([len(m) for m in arrays], dtype=np.int64)
    frames = int(lengths.max())
    padded = np.stack([np.concatenate([m, np.repeat(m[-1:], frames - len(m), axis=0)])
                       for m in arrays])                        # [N*R, T, 22, 3]
    return {
        "motion": np.ascontiguousarray(padded.transpose(0, 2, 3, 1)),  # [N*R, 22, 3, T]
        "text": [str(t) for t in texts],
        "lengths": lengths,
        "num_samples": int(num_samples),
        "num_repetitions": int(num_repetitions),
    }


# What a results.npy pickle may name: numpy's array and scalar rebuilders, and nothing else.
_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
}


class _ResultsUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _SAFE_GLOBALS:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a results file never holds")
        return super().find_class(module, name)


def load_results(path: str | os.PathLike, *, trusted: bool = False) -> dict:
    """Read a results.npy written here or by MDM.

    MDM's format is a *pickled* dict, and unpickling an untrusted file can run arbitrary code. So
    the file is first read with ``allow_pickle=False``; a pickled one is then read by an unpickler
    that only rebuilds numpy arrays, scalars, lists, dicts, strings and numbers (all MDM's results
    hold) and refuses anything else with a :class:`UserError`. Pass ``trusted=True`` only for files
    you made or trust, to unpickle without that restriction.
    """
    path = Path(path)
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as err:
        if "allow_pickle" not in str(err):
            raise UserError(f"{path} is not a results.npy file ({err})") from None
    except OSError as err:
        raise UserError(f"cannot read {path} ({err.strerror or err})") from None
    else:
        raise UserError(f"{path} holds a plain {array.dtype} array {array.shape}, not MDM's results dict "
                        "{'motion', 'text', 'lengths', ...}")
    if trusted:
        return np.load(path, allow_pickle=True).item()
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:
                raise ValueError(f"unknown .npy format version {version}")
            shape, _, dtype = read_header(f, max_header_size=1 << 20)
            if dtype != np.dtype(object) or shape != ():
                raise pickle.UnpicklingError(f"it holds an object array of shape {shape}, not one dict")
            value = _ResultsUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, ValueError, AttributeError, TypeError) as err:
        raise UserError(f"{path} is not a plain results file ({err}): load_results refuses it; pass "
                        "trusted=True only if you made or trust this file (unpickling can run code)") from None
    if isinstance(value, np.ndarray) and value.shape == ():  # np.save pickles the 0-d object array
        value = value.item()
    if not isinstance(value, dict):
        raise UserError(f"{path} holds a {type(value).__name__}, not MDM's results dict")
    return value


def results_motion(results: Mapping, index: int) -> np.ndarray:
    """Motion ``index`` (rep * N + sample) of a results dict as [length, 22, 3]."""
    return results["motion"][index].transpose(2, 0, 1)[: int(results["lengths"][index])]


def save_results(output_dir: str | os.PathLike, motions: Sequence[np.ndarray],
                 texts: Sequence[str], *, num_samples: int, num_repetitions: int = 1,
                 titles: Sequence | None = None,
                 metadata: Mapping | None = None, videos: bool = True, loop_cycles: int = 1,
                 in_place: bool = False, combine_repetitions: bool = True, fps: float = FPS,
                 figsize: tuple[float, float] = (3.0, 3.0), dpi: float = 100,
                 ffmpeg: str | os.PathLike | None = None, overwrite: bool = False,
                 progress: bool = False) -> dict[str, Path]:
    """Write a run's files into ``output_dir`` (created if needed); returns name -> path.

    motions: N*R joint arrays [T_i, 22, 3] in MDM order (index = rep * N + sample).
    metadata: any JSON-serialisable dict (prompts, model path, sampler, steps, seed, guidance,
        loop layout, seam report ...), written as run.json; numpy values and paths are converted.
    titles: the video caption of each motion instead of its text: a string, or a schedule
        ``[(first frame, text), ...]`` that changes the caption with the segment (every cycle of a loop).
    loop_cycles > 1: each motion is a loop; its video plays it that many times back to back
        (see render.tile_loop, ``in_place`` holds the root still). results.npy keeps one cycle.
    combine_repetitions: also write ``sample##.mp4`` with the repetitions side by side (MP4 only).
    figsize, dpi: one video panel's size (MDM: 3 x 3 inches at 100 dpi, 300 x 300 pixels).
    """
    output_dir = Path(output_dir)
    results = mdm_results(motions, texts, num_samples, num_repetitions)
    try:
        run_json = json.dumps(dict(metadata or {}), indent=2, allow_nan=False,
                              default=_json_default) + "\n"
    except (TypeError, ValueError) as err:
        raise UserError(f"run metadata is not JSON-serialisable ({err}); pass plain numbers, "
                        f"strings, lists and dicts") from None
    if isinstance(loop_cycles, bool) or int(loop_cycles) != loop_cycles or loop_cycles < 1:
        raise UserError(f"loop_cycles must be a positive integer, got {loop_cycles!r}")
    names = [RESULTS_NPY, RESULTS_TXT, RESULTS_LEN_TXT, RUN_JSON]
    if videos:
        from motion_loop.render import find_ffmpeg, render_motion, render_videos, tile_loop

        suffix = ".mp4" if find_ffmpeg(ffmpeg) is not None else ".gif"  # GIF: no ffmpeg at all
        names += [video_name(s, r, suffix) for r in range(num_repetitions)
                  for s in range(num_samples)]
        combine = combine_repetitions and num_repetitions > 1 and suffix == ".mp4"
        if combine:
            names += [f"sample{s:02d}.mp4" for s in range(num_samples)]
    for name in names:                       # fail before any work, not halfway through
        _refuse_existing(output_dir / name, overwrite)
    output_dir.mkdir(parents=True, exist_ok=True)

    written: dict[str, Path] = {}

    def save_npy(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, results, allow_pickle=True)

    written[RESULTS_NPY] = write_atomic(output_dir / RESULTS_NPY, save_npy, overwrite=overwrite)
    prompts = "\n".join(" ".join(text.splitlines()) for text in results["text"])  # MDM: no final \n
    written[RESULTS_TXT] = _write_text(output_dir / RESULTS_TXT, prompts, overwrite)
    lengths = "\n".join(str(n) for n in results["lengths"])
    written[RESULTS_LEN_TXT] = _write_text(output_dir / RESULTS_LEN_TXT, lengths, overwrite)
    written[RUN_JSON] = _write_text(output_dir / RUN_JSON, run_json, overwrite)
    if not videos:
        return written

    for sample in range(num_samples):
        indices = [rep * num_samples + sample for rep in range(num_repetitions)]
        clips, labels = [], []
        for index in indices:
            motion = results_motion(results, index)
            if loop_cycles > 1 or in_place:
                motion = tile_loop(motion, loop_cycles, in_place=in_place)
            clips.append(motion)
            labels.append(titles[index] if titles is not None else results["text"][index])
        periods = [int(results["lengths"][index]) for index in indices]
        options = dict(fps=fps, figsize=figsize, dpi=dpi, ffmpeg=ffmpeg, overwrite=overwrite, progress=progress)
        if suffix == ".mp4":  # every repetition and the side-by-side video in one pass
            paths = render_videos(clips, [output_dir / video_name(sample, rep) for rep in range(num_repetitions)],
                                  labels, combined=output_dir / f"sample{sample:02d}.mp4" if combine else None,
                                  title_periods=periods, **options)
        else:
            paths = [render_motion(motion, output_dir / video_name(sample, rep), label, title_period=period, **options)
                     for rep, (motion, label, period) in enumerate(zip(clips, labels, periods))]
        for path in paths:
            written[path.name] = path
    return written
