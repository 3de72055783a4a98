"""``python -m sample``: text to (looping or long) motion, MDM's flags and outputs.

    python -m sample --text_prompt "a person walks forward" --loop

A loop is a DiffCollage cycle of overlapping windows, a motion longer than the model's limit a
chain; both are sampled with every window and overlap batched into one model call per step.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from motion_loop.collage import METHODS as COLLAGE_METHODS
from motion_loop.collage import CollageDenoiser, Layout
from motion_loop.diffusion import DEFAULT_GUIDANCE_INTERVAL
from motion_loop import safety
from motion_loop.errors import UserError, printable, run_cli
from motion_loop.sampling import DEFAULT_SAMPLER, DEFAULT_STEPS, ODE_SAMPLERS
from motion_loop.segments import BOUNDARY_MODES, DEFAULT_BOUNDARY, DEFAULT_SPLIT_SIGMA

ROOT = Path(__file__).resolve().parents[1]
OFFICIAL_MODEL = Path("save/humanml_trans_enc_512/model000200000.pt")
DEMO_MODEL = ROOT / "save" / "demo_humanml_trans_enc_128_minilm" / "model000008000.pt"
HUMANML_STATS = Path("dataset/HumanML3D")
KIT_STATS = Path("dataset/KIT-ML")  # MDM's place for KIT-ML's Mean.npy / Std.npy (251 features)
MIN_LOOP_FRAMES = 20  # two windows of 15 frames overlapping by 5: anything shorter is not a motion
MAX_SECONDS = 600.0
SAMPLER_NAMES = (*ODE_SAMPLERS, "ddpm")
SAMPLER_TITLES = {"dpmpp_3m": "DPM-Solver++(3M)", "edm": "EDM Heun", "dpmpp_2m": "DPM-Solver++(2M)",
                  "unipc": "UniPC-like", "ddpm": "MDM's DDPM"}  # each --sampler choice, as the outputs name it


# ----------------------------------------------------------------------------------------------
# Command line


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse prints the whole usage otherwise)
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m sample", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("model and prompts (MDM's flags)")
    g.add_argument("--model_path", type=Path, default=None,
                   help=f"MDM checkpoint model*.pt with args.json beside it (default: {OFFICIAL_MODEL} when "
                        "present, else the bundled demo model)")
    g.add_argument("--text_prompt", default=None, help="the text to animate")
    g.add_argument("--input_text", type=Path, default=None, help="a text file with one prompt per line")
    g.add_argument("--num_samples", type=int, default=None,
                   help="use at most this many prompts of --input_text (default: all; 1 with --text_prompt)")
    g.add_argument("--num_repetitions", type=int, default=3, help="samples per prompt (default 3)")
    g.add_argument("--motion_length", type=float, default=6.0,
                   help="seconds of motion; with --loop the loop's period (default 6.0)")
    g.add_argument("--guidance_param", type=float, default=2.5,
                   help="classifier-free guidance scale; 1 disables guidance (default 2.5)")
    g.add_argument("--guidance_interval", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                   help="guide only at noise levels sigma in [LO, HI] and run the conditional model alone "
                        "elsewhere, for half the rows there; HI may be inf; 0 inf guides at every level, as MDM "
                        f"does (default: {DEFAULT_GUIDANCE_INTERVAL[0]:g} inf for one prompt, as guidance at the "
                        "lowest levels makes one-frame glitches; every level for several actions, whose segments "
                        "take their kind from the guided low levels, and for --sampler ddpm, MDM's own sampler)")
    g.add_argument("--seed", type=int, default=10, help="random seed (default 10)")
    g.add_argument("--device", default=None,
                   help="cpu, cuda, cuda:N or a GPU index N (default: cuda when available, else cpu)")
    g.add_argument("--output_dir", type=Path, default=None,
                   help="where to write results (default: beside the checkpoint, named as MDM does)")
    g.add_argument("--batch_size", type=int, default=None,
                   help="samples sampled together (default: all of them at once)")
    g.add_argument("--caption_bank", action=argparse.BooleanOptionalAction, default=True,
                   help="for a model shipped with caption_bank.npz (the demo model): read each prompt as the "
                        "closest caption the model was trained on, and say which (default on)")

    g = p.add_argument_group("loops and long motion (DiffCollage)")
    g.add_argument("--loop", action=argparse.BooleanOptionalAction, default=False,
                   help="make a seamless loop whose period is --motion_length")
    g.add_argument("--collage", choices=COLLAGE_METHODS, default=None,
                   help="how windows are combined: seamless (condind at high noise, then windows crossfaded, the "
                        "layout shifted at random every step: no visible edge), condind (windows minus overlaps, "
                        "the exact DiffCollage factor graph) or avg (MultiDiffusion-style averaging) (default seamless; "
                        "with several actions its layout moves by at most half an overlap, so that every window keeps "
                        "to its own segment's prompt)")
    g.add_argument("--window", type=int, default=None, help="window length in frames (default: chosen automatically)")
    g.add_argument("--overlap", type=int, default=None, help="overlap between windows in frames (default: automatic)")
    g.add_argument("--num_windows", type=int, default=None,
                   help="number of windows (default: automatic: for a canvas model such as the official "
                        "checkpoints, a loop up to ~8 s is one window closing on itself, at half the rows of two; "
                        "otherwise the fewest that fit); 1 asks for one window, 2 for two")

    g = p.add_argument_group("several actions (segments, one factor graph)")
    g.add_argument("--split", action=argparse.BooleanOptionalAction, default=True,
                   help="split a prompt into actions at clause boundaries (\"then\", \"after that\", \";\", "
                        "sentence ends; spaCy) and give each its share of --motion_length; --no-split keeps it whole. "
                        "Explicit segments: \"a person walks | a person jumps\" (default on)")
    g.add_argument("--timeline", type=Path, default=None,
                   help="segments with exact durations instead of --text_prompt: JSON [{\"prompt\": ..., \"seconds\": ...}] "
                        "or TSV lines prompt<TAB>seconds; the motion lasts their sum")
    g.add_argument("--boundary", choices=BOUNDARY_MODES, default=DEFAULT_BOUNDARY,
                   help="what the frames two segments share are conditioned on: the unconditional model, the earlier "
                        "or later prompt, or the average of both predictions (default uncond: most segments right and "
                        "smoothest transitions in benchmarks/eval_segments.py, and the cheapest)")
    g.add_argument("--segment_split", type=float, default=None, metavar="SIGMA",
                   help="noise level at and below which every segment's windows finish on their own, each with its "
                        "own copy of the frames it shares with the next segment, the two copies faded linearly "
                        "(above it the collage sets out one motion with its transitions): a fast action between "
                        "slow ones keeps its speed; 0 runs the collage to the end (default "
                        f"{DEFAULT_SPLIT_SIGMA}: benchmarks/RESULTS.md, \"Segments that finish on their own\")")

    g = p.add_argument_group("sampler")
    g.add_argument("--sampler", choices=SAMPLER_NAMES, default=DEFAULT_SAMPLER,
                   help="dpmpp_3m: DPM-Solver++(3M), one model call per step; edm: Heun steps over MDM as an EDM "
                        "denoiser (two calls per step; the only one with --s_churn); dpmpp_2m: DPM-Solver++(2M); "
                        "unipc: the 2M predictor with UniPC's free corrector, one call per step; ddpm: MDM's own "
                        f"ancestral sampler over every diffusion step (default {DEFAULT_SAMPLER}: the smoothest loops "
                        "per second measured, benchmarks/RESULTS.md)")
    g.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                   help=f"sampler steps (default {DEFAULT_STEPS}; ddpm uses all model steps)")
    g.add_argument("--dtype", choices=("auto", "fp32", "bf16", "mixed"), default="auto",
                   help="model precision: auto picks the measured default of the device (mixed on CPUs with native "
                        "bf16, else fp32; bf16 alone moves a loop by ~2 cm); bf16 is meant for GPUs (on CPUs without "
                        "native bf16 it is 4-6x slower); mixed runs bf16 at high noise only and fp32 below (under "
                        "1 cm from fp32; faster where bf16 is native) (default auto)")
    g.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: the cores other processes leave free, measured over 0.1 s; "
                        "threads beyond that make sampling several times slower)")
    g.add_argument("--s_churn", type=float, default=0.0,
                   help="EDM stochastic churn, with --sampler edm (0 = deterministic ODE; the DiffCollage seed uses 10) "
                        "(default 0)")

    g = p.add_argument_group("outputs")
    g.add_argument("--velocity_fusion", action=argparse.BooleanOptionalAction, default=True,
                   help="decode joint positions as the least-squares fit to the model's position AND velocity "
                        "features (they agree exactly in real data; a one-frame glitch in one is spread out by the "
                        "other; motion_loop.velocity_fusion) instead of the positions alone (default on)")
    g.add_argument("--foot_lock", action=argparse.BooleanOptionalAction, default=True,
                   help="plant the feet where the model's foot contacts say they touch the floor (body speed matched "
                        "to the legs, two-bone IK; default on); results.npy, BVH and videos get locked feet, "
                        "features.npy stays the model's output")
    g.add_argument("--render", action=argparse.BooleanOptionalAction, default=True,
                   help="render stick-figure videos (default on)")
    g.add_argument("--loop_repeats", type=int, default=3,
                   help="a loop's video plays it this many times back to back (default 3)")
    g.add_argument("--bvh", action=argparse.BooleanOptionalAction, default=True,
                   help="also write each motion as BVH for animation tools (default on; a loop's BVH is one cycle)")
    g.add_argument("--in_place", action=argparse.BooleanOptionalAction, default=False,
                   help="play loops in place (root x,z held at the origin, the net turn per cycle removed: the cycle tiles by repetition) instead of advancing")
    g.add_argument("--loop_heading", choices=("auto", "keep", "remove"), default="auto",
                   help="a loop's net turn per cycle: keep it (a loop that turns on purpose), remove it (spread "
                        "evenly over the cycle, so the loop tiles facing one way) or auto: keep a turn of 30 "
                        "degrees or more per cycle, remove less (drift); --in_place always removes it (default auto)")
    g.add_argument("--closing_frame", action=argparse.BooleanOptionalAction, default=False,
                   help="a loop's BVH ends with its first pose again (one cycle on), as Blender's Cycles modifier, "
                        "Unity's Loop Time/Loop Pose and Unreal's looping want (default off: frame 0 follows the "
                        "last frame)")
    g.add_argument("--smpl", action=argparse.BooleanOptionalAction, default=False,
                   help="also fit SMPL bodies (smplx): sample##_rep##_smpl.npz (AMASS keys) and one OBJ mesh per "
                        "frame in sample##_rep##_obj/; needs the SMPL files (python prepare/download_smpl.py)")
    g.add_argument("--smpl_model", type=Path, default=None,
                   help="SMPL model file or folder for --smpl (default body_models/smpl/SMPL_NEUTRAL.pkl)")
    g.add_argument("--overwrite", action=argparse.BooleanOptionalAction, default=False,
                   help="write into an existing --output_dir, replacing exactly the files an earlier run wrote "
                        "there (listed in its .motion_loop_manifest.json; stale ones are removed); other files are "
                        "never replaced")
    g.add_argument("--clip_weights", type=Path, default=None,
                   help="CLIP ViT-B-32.pt for CLIP models (default ~/.cache/clip/ViT-B-32.pt)")
    g.add_argument("--emb_trans_dec_legacy", action=argparse.BooleanOptionalAction, default=None,
                   help="for trans_dec models with emb_trans_dec: prepend the time+text token of the 2022 code "
                        "(--emb_trans_dec_legacy) or the time token of the 2025 code (--no-emb_trans_dec_legacy) "
                        "(default: 2022 when args.json has no text_encoder_type, as the 2022 releases)")
    g.add_argument("--bert_dir", type=Path, default=None,
                   help="DistilBERT files for MDM+DistilBERT models (default deps/distilbert-base-uncased, "
                        "from prepare/download_distilbert.py)")
    g.add_argument("--stats_dir", type=Path, default=None,
                   help="folder with the dataset's Mean.npy/Std.npy (default: the checkpoint's folder if it has "
                        f"them, else {HUMANML_STATS}, or {KIT_STATS} for KIT models)")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="show progress bars")
    return p


# ----------------------------------------------------------------------------------------------
# Validation: everything the user can get wrong fails here, before any model is loaded


def read_prompts(args) -> list[str]:
    if getattr(args, "timeline", None) is not None:
        if args.text_prompt is not None or args.input_text is not None:
            raise UserError("give --timeline FILE or a prompt (--text_prompt / --input_text), not both")
        from motion_loop.segments import read_timeline

        return [" | ".join(s.text for s in read_timeline(args.timeline))]
    if (args.text_prompt is None) == (args.input_text is None):
        raise UserError("give exactly one of --text_prompt \"...\" or --input_text FILE")
    if args.text_prompt is not None:
        prompts = [args.text_prompt.strip()]
        safety.check_prompts(prompts)
        if not prompts[0]:
            raise UserError("the text prompt is empty: describe the motion, e.g. --text_prompt \"a person walks forward\"")
    else:
        path = args.input_text
        safety.check_prompt_file(path)
        if not path.is_file():
            raise UserError(f"--input_text file {path} does not exist: pass a text file with one prompt per line")
        try:
            prompts = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        except UnicodeDecodeError:
            raise UserError(f"--input_text file {path} is not UTF-8 text: pass a text file with one prompt per line") from None
        if not prompts:
            raise UserError(f"--input_text file {path} has no prompts: write one prompt per line")
        safety.check_prompts(prompts)
    if args.num_samples is not None:
        if args.num_samples < 1:
            raise UserError(f"--num_samples must be at least 1, got {args.num_samples}")
        prompts = prompts[: args.num_samples]
    return prompts


def check_numbers(args) -> None:
    def positive(name, value, kind="number"):
        if value is not None and not value > 0:
            raise UserError(f"--{name} must be a positive {kind}, got {value}")

    positive("num_repetitions", args.num_repetitions, "integer")
    positive("batch_size", args.batch_size, "integer")
    positive("steps", args.steps, "integer")
    positive("threads", args.threads, "integer")
    cores = os.cpu_count() or 1
    if args.threads is not None and args.threads > 4 * cores:
        raise UserError(f"--threads {args.threads} is far more than this machine's {cores} cores: use at most {cores} "
                        "(or leave it out: the default uses the free cores)")
    positive("loop_repeats", args.loop_repeats, "integer")
    positive("window", args.window, "number of frames")
    positive("overlap", args.overlap, "number of frames")
    positive("num_windows", args.num_windows, "integer")
    if not math.isfinite(args.motion_length) or args.motion_length <= 0:
        raise UserError(f"--motion_length must be a positive number of seconds, got {args.motion_length}")
    if args.motion_length > MAX_SECONDS:
        raise UserError(f"--motion_length {args.motion_length} s is longer than {MAX_SECONDS:.0f} s: ask for less")
    if not math.isfinite(args.guidance_param) or args.guidance_param < 0:
        raise UserError(f"--guidance_param must be >= 0, got {args.guidance_param}")
    if args.guidance_interval is not None:
        lo, hi = args.guidance_interval
        if not (math.isfinite(lo) and not math.isnan(hi) and 0 <= lo <= hi):
            raise UserError(f"--guidance_interval needs 0 <= LO <= HI (HI may be inf), got {lo:g} {hi:g}")
    if not math.isfinite(args.s_churn) or args.s_churn < 0:
        raise UserError(f"--s_churn must be >= 0, got {args.s_churn}")
    if args.s_churn and args.sampler != "edm":
        raise UserError(f"--s_churn needs the Heun sampler: add --sampler edm (--sampler {args.sampler} is deterministic)")
    safety.check_bounds(args)


def resolve_device(name: str | None) -> torch.device:
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = f"cuda:{name}" if name.isdigit() else name
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}: use cpu, cuda, cuda:N or a GPU index") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {name} asked for, but CUDA is not available here: use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"device {name} does not exist ({torch.cuda.device_count()} GPUs): pick another index")
    elif device.type != "cpu":
        raise UserError(f"device {name!r} is not supported: use cpu, cuda, cuda:N or a GPU index")
    return device


def resolve_model_path(path: Path | None) -> tuple[Path, str]:
    """The checkpoint to use and a word on why."""
    if path is not None:
        return path, "given"
    if OFFICIAL_MODEL.is_file():
        return OFFICIAL_MODEL, "official MDM weights"
    if DEMO_MODEL.is_file():
        return DEMO_MODEL, "bundled demo model (official weights: python prepare/download_mdm.py)"
    raise UserError(f"no model found: pass --model_path, or run python prepare/download_mdm.py for {OFFICIAL_MODEL}")


def check_asset_flags(args) -> None:
    """Loop-asset and SMPL flags (loop_root.py, smpl.py) that cannot work, before any sampling."""
    if args.closing_frame and not args.loop:
        raise UserError("--closing_frame repeats a loop's first pose: add --loop, or drop --closing_frame")
    if args.loop and args.in_place and args.loop_heading == "keep":
        raise UserError("--loop_heading keep with --in_place cannot tile: an in-place cycle that turns snaps round "
                        "at the wrap; drop --in_place or use --loop_heading auto")
    if args.smpl:
        from motion_loop.smpl import smpl_file

        smpl_file(args.smpl_model)


def asset_files(args, num_prompts: int, output_dir: Path) -> list[str]:
    """The files rigid.py and smpl.py add to a run (for the output-folder checks); an existing
    mesh folder an earlier run of ours did not write is refused."""
    from motion_loop.results import video_name
    from motion_loop.rigid import JOINTS_RIGID_NPY
    from motion_loop.safety import read_manifest

    names = [JOINTS_RIGID_NPY]
    if args.smpl:
        pairs = [(s, r) for r in range(args.num_repetitions) for s in range(num_prompts)]
        names += [video_name(s, r, "_smpl.npz") for s, r in pairs]
        ours = set(read_manifest(output_dir) or ()) if output_dir.is_dir() else set()
        for s, r in pairs:
            folder = output_dir / video_name(s, r, "_obj")
            if folder.exists() and (not args.overwrite or folder.name not in ours):
                why = "was not written by python -m sample" if args.overwrite else "would be written into"
                raise UserError(f"{folder} already exists and {why}: move it away or choose another --output_dir")
    return names


# ----------------------------------------------------------------------------------------------
# Loop and chain layouts


def choose_layout(frames: int, max_window: int, loop: bool, window: int | None = None,
                  overlap: int | None = None, num_windows: int | None = None) -> Layout | None:
    """The DiffCollage layout for a ``frames``-frame motion (None: one plain window suffices).

    Automatic choice: the fewest windows (at least two for a loop) whose length fits
    ``max_window`` with an overlap of half the stride (a third of the window). A loop's period is
    ``n * stride``, so it is rounded to a multiple of the number of windows (by at most n/2 frames);
    a chain is made at least ``frames`` long and the caller crops it. ``window``, ``overlap`` and
    ``num_windows`` override the automatic values.
    """
    given = window is not None or overlap is not None or num_windows is not None
    if not loop and not given and frames <= max_window:
        return None
    if window is not None and overlap is not None and not 0 < 2 * overlap <= window:
        raise UserError(f"--overlap {overlap} must be at most half of --window {window}")
    if window is not None and window > max_window:
        raise UserError(f"--window {window} is longer than the model's {max_window}-frame limit: use at most {max_window}")
    if num_windows is not None:
        counts = [num_windows]
    elif window is not None and overlap is not None and window > overlap:  # the stride is fixed
        stride = window - overlap
        counts = [max(2, round(frames / stride))] if loop else [max(1, math.ceil((frames - overlap) / stride))]
    else:
        counts = range(2 if loop else 1, frames + 1)
    for n in counts:
        if window is not None and overlap is not None:
            stride = window - overlap
        elif loop:
            stride = round(frames / n)
        else:  # n * stride + overlap >= frames with overlap ~ stride / 2
            stride = math.ceil((frames - (overlap or 0)) / (n + (0 if overlap else 0.5)))
        o = overlap if overlap is not None else (window - stride if window is not None else max(1, stride // 2))
        try:
            layout = Layout(stride + o, o, n, cyclic=loop)
        except ValueError:
            continue
        if layout.window <= max_window and (loop or layout.length >= frames):
            return layout
    kind = "loop" if loop else "motion"
    raise UserError(
        f"no layout of windows of at most {max_window} frames makes a {frames}-frame {kind}"
        f"{_describe(window, overlap, num_windows)}: change --motion_length"
        f"{' or the --window/--overlap/--num_windows overrides' if given else ''}"
    )


def _describe(window, overlap, num_windows) -> str:
    parts = [f"{name} {v}" for name, v in (("window", window), ("overlap", overlap), ("num_windows", num_windows))
             if v is not None]
    return f" with {', '.join(parts)}" if parts else ""


# ----------------------------------------------------------------------------------------------
# Model, text encoder, statistics, output folder


def load_stats(stats_dir: Path | None, model_path: Path, dataset: str = "humanml"):
    from motion_loop.humanml import STATS_HINT, Normalizer
    from motion_loop.mdm import N_FEATS

    default = KIT_STATS if dataset == "kit" else HUMANML_STATS
    if stats_dir is None:
        stats_dir = model_path.parent if (model_path.parent / "Mean.npy").is_file() else default
    hint = STATS_HINT if dataset == "humanml" else (
        "run `python prepare/download_kit_stats.py` to fetch KIT-ML's Mean.npy and Std.npy (251 features)")
    from motion_loop.skeleton import KIT_METRES_PER_UNIT

    unit = 1 / KIT_METRES_PER_UNIT if dataset == "kit" else 1.0  # dataset units per metre
    return Normalizer.from_dir(stats_dir, dim=N_FEATS[dataset], hint=hint, unit=unit), stats_dir


def default_output_dir(model_path: Path, seed: int, prompts_from: str) -> Path:
    """MDM's name: ``<ckpt dir>/samples_<ckpt dir name>_<ckpt number>_seed<seed>_<prompt>``."""
    niter = model_path.name.replace("model", "").replace(".pt", "")
    tag = re.sub(r"[^A-Za-z0-9_-]+", "", prompts_from.replace(" ", "_"))[:80]
    name = f"samples_{model_path.parent.name}_{niter}_seed{seed}" + (f"_{tag}" if tag else "")
    return model_path.parent / name


def resolve_output_dir(args, model_path: Path) -> Path:
    """Never touches what exists: an explicit folder that is not empty needs --overwrite, a default
    name that is taken gets a numbered sibling."""
    if args.output_dir is not None:
        out = args.output_dir
        if out.exists() and not out.is_dir():
            raise UserError(f"--output_dir {out} is a file: pass a folder")
        if out.is_dir() and any(out.iterdir()) and not args.overwrite:
            raise UserError(f"--output_dir {out} already has files: pass --overwrite to replace ours, or another folder")
        return out
    source = args.text_prompt if args.text_prompt is not None else (args.input_text or args.timeline).stem
    out = default_output_dir(model_path, args.seed, source)
    candidate, k = out, 2
    while candidate.exists() and not (args.overwrite and candidate == out):
        candidate, k = out.with_name(f"{out.name}_{k}"), k + 1
    return candidate


# ----------------------------------------------------------------------------------------------
# Sampling


@dataclass
class Plan:
    """What one run makes: prompts, repetitions, frames and the DiffCollage layout (if any)."""

    prompts: list[str]
    repetitions: int
    frames: int  # frames per motion (a loop's period)
    layout: Layout | None
    loop: bool
    fps: float

    @property
    def texts(self) -> list[str]:
        """One prompt per motion in MDM's order (index = rep * N + sample)."""
        return [self.prompts[i % len(self.prompts)] for i in range(len(self.prompts) * self.repetitions)]

    def describe(self) -> str:
        seconds = f"{self.frames / self.fps:.2f} s ({self.frames} frames)"
        if self.layout is None:
            return f"{seconds}, one window"
        lay = self.layout
        kind = "loop" if self.loop else "chain"
        if lay.n_windows == 1 and lay.cyclic:
            return f"{seconds} loop of one window of {lay.window} frames closing on itself (overlap {lay.overlap})"
        return f"{seconds} {kind} of {lay.n_windows} windows of {lay.window} frames overlapping by {lay.overlap}"


def sample_features(plan: Plan, denoiser, text_embed, generator: torch.Generator, *,
                    sampler: str, steps: int, s_churn: float, collage: str, progress: bool,
                    cond: dict | None = None, finish=None, noise: torch.Tensor | None = None,
                    max_shift: int | None = None, split_sigma: float = 0.0) -> tuple[torch.Tensor, int]:
    """Normalized features ``[B, F, 1, frames]`` of one batch, and the number of sampler steps.

    ``cond`` replaces ``{"text_embed": text_embed}`` (segments); ``finish(x0)`` runs before cropping.
    ``noise``: the EDM sampler's starting draw ``[B, F, 1, length]`` (standard normal) instead of one
    from ``generator``, so that each row can have its own seed (python -m motion_loop.batch).
    ``max_shift``: seamless moves its layout by at most this many frames (segments: see
    :attr:`motion_loop.segments.SegmentRun.max_shift`); None: up to a stride.
    ``split_sigma`` (segments, ``cond`` with ``frame_segment``): at and below it every segment's windows
    finish on their own (:class:`motion_loop.segments.HybridSegmentCollage`); 0: the collage throughout.
    """
    from motion_loop.diffusion import ddpm_sample, vp_model_fn
    from motion_loop.sampling import run_sampler

    device = text_embed.device
    length = plan.layout.length if plan.layout is not None else plan.frames
    shape = (len(text_embed), denoiser.config.n_feats, 1, length)  # a tensor or TextTokens: one row per motion
    full = CollageDenoiser(denoiser, plan.layout, collage, max_shift=max_shift,
                           generator=generator) if plan.layout is not None else denoiser
    cond = {"text_embed": text_embed} if cond is None else cond
    hybrid = None
    if split_sigma > 0 and plan.layout is not None and "frame_segment" in cond:
        from motion_loop.segments import HybridSegmentCollage

        # The sampler's state holds a second copy of every overlap: shape and noise grow to it.
        full = hybrid = HybridSegmentCollage(denoiser, full, plan.layout, split_sigma)
        shape = (*shape[:-1], hybrid.state_length)
    if sampler == "ddpm":
        if noise is not None:
            raise ValueError("the ddpm sampler draws its own starting noise from the generator")
        abar = denoiser.alphas_cumprod
        x0 = ddpm_sample(vp_model_fn(full, abar, **cond), shape, abar,
                         generator=generator, device=device, progress=progress)
        n_steps = len(abar)
    else:
        sigmas = denoiser.sigmas(steps).to(device)
        if noise is None:
            noise = torch.randn((*shape[:-1], length), generator=generator, device=device)
        x = sigmas[0].to(torch.float32) * noise
        x = hybrid.expand(x) if hybrid is not None else x
        x0 = run_sampler(sampler, full, x, sigmas, cond=cond, s_churn=s_churn, generator=generator, progress=progress)
        n_steps = len(sigmas) - 1
    x0 = hybrid.merge(x0, cond["frame_segment"]) if hybrid is not None else x0
    x0 = finish(x0) if finish is not None else x0
    return x0[..., : plan.frames], n_steps


def decode(features: torch.Tensor, normalizer, dataset: str = "humanml", *, velocity_fusion: bool = False,
           cyclic: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Raw features and joint positions in metres of normalized ``[B, F, 1, T]``: ``[B, T, 22, 3]``
    (HumanML3D, 263 features) or ``[B, T, 21, 3]`` (KIT, 251; its units scaled to metres).

    ``velocity_fusion``: positions fitted to the position and velocity channels together
    (:mod:`motion_loop.velocity_fusion`; ``cyclic`` for loops); the raw features stay the model's."""
    from motion_loop.humanml import recover_from_ric
    from motion_loop.skeleton import KIT_METRES_PER_UNIT, KIT_NUM_JOINTS, NUM_JOINTS

    raw = normalizer.denormalize(features[:, :, 0].transpose(1, 2).float().cpu().numpy())
    joints_num = KIT_NUM_JOINTS if dataset == "kit" else NUM_JOINTS
    positions = raw
    if velocity_fusion:
        from motion_loop.velocity_fusion import fuse_velocities

        positions = fuse_velocities(raw, cyclic=cyclic, joints_num=joints_num)
    if dataset == "kit":
        return raw, recover_from_ric(positions, KIT_NUM_JOINTS) * np.float32(KIT_METRES_PER_UNIT)
    return raw, recover_from_ric(positions)


# ----------------------------------------------------------------------------------------------
# The run


def cached_model(cache: dict | None, model_path: Path, device: torch.device, args):
    """The checkpoint loaded once per ``cache`` (a server such as motion_loop.app keeps one); None loads it."""
    from motion_loop.mdm import load_model

    key = ("model", str(model_path), str(device), args.emb_trans_dec_legacy)
    return _cached(cache, key, lambda: load_model(model_path, device, verbose=True,
                                                  emb_trans_dec_legacy=args.emb_trans_dec_legacy))


def cached_text_encoder(cache: dict | None, loaded, model_path: Path, device: torch.device, args):
    """The model's text encoder (CLIP, MiniLM, caption bank) loaded once per ``cache``."""
    from motion_loop.text_encoders import text_encoder_for

    key = ("text", str(model_path), str(device), str(args.clip_weights), args.caption_bank, str(args.bert_dir))
    return _cached(cache, key, lambda: text_encoder_for(loaded, clip_weights=args.clip_weights, device=device,
                                                        caption_bank=args.caption_bank, bert_dir=args.bert_dir))


def _cached(cache: dict | None, key, make):
    if cache is None:
        return make()
    if key not in cache:
        cache[key] = make()
    return cache[key]


@dataclass
class Setup:
    """A model loaded and ready to sample the motion the flags ask for: what a run and each worker of
    python -m motion_loop.batch make once."""

    model_path: Path
    why: str  # why this model (given, official weights, demo model)
    config: object  # motion_loop.mdm.MDMConfig
    device: torch.device
    layout: Layout | None
    frames: int  # frames per motion (a loop's period)
    fps: float
    normalizer: object  # motion_loop.humanml.Normalizer
    stats_dir: Path
    text_encoder: object
    denoiser: object  # motion_loop.diffusion.MDMDenoiser, or segments.SegmentDenoiser around it
    dtype: str  # the model's precision (fp32, bf16, mixed)
    threads: int | None  # torch CPU threads (None on a GPU)
    segments: object | None = None  # motion_loop.segments.SegmentRun when a prompt has several actions


def load_setup(args, device: torch.device, model_path: Path, why: str, cache: dict | None = None,
               prompts: list[str] | None = None) -> Setup:
    """Load the model, statistics and text encoder (once per ``cache``, see :func:`cached_model`) and
    choose the layout (from ``prompts``' segments when one has several actions); prints what it chose."""
    from motion_loop.diffusion import MDMDenoiser
    from motion_loop.speed import MIXED_ABOVE, canvas_layout, resolve_dtype, set_threads

    print(f"model: {model_path} ({why})")
    threads = set_threads(args.threads)
    loaded = cached_model(cache, model_path, device, args)
    safety.check_weights(loaded.model, model_path)
    config = loaded.config
    dtype_name, dtype = resolve_dtype(args.dtype, device)
    loaded.model.to(dtype)
    # mixed: a bf16 copy runs the high noise levels (speed.MIXED_ABOVE), the fp32 model the rest
    coarse = copy.deepcopy(loaded.model).to(torch.bfloat16) if dtype_name == "mixed" else None
    kit = config.dataset == "kit"
    if kit:
        from motion_loop.skeleton import KIT_FPS
    fps = KIT_FPS if kit else 20.0
    requested = max(1, round(args.motion_length * fps))
    if args.loop and requested < MIN_LOOP_FRAMES:
        raise UserError(f"a {args.motion_length} s loop is too short: ask for at least {MIN_LOOP_FRAMES / fps:.0f} s")
    segments = None if prompts is None else _segment_run(args, prompts, requested, config.max_frames, fps)
    if segments is not None:
        layout = segments.layout
    else:
        layout = choose_layout(requested, config.max_frames, args.loop, args.window, args.overlap, args.num_windows)
        if layout is not None and not config.mask_frames and (args.window, args.overlap) == (None, None):
            # every row costs the whole canvas: use it (one window closing on itself, or longer overlaps)
            layout = canvas_layout(layout, config.max_frames, one_window=args.num_windows is None)
    if args.collage is None:
        args.collage = "seamless"  # with segments, moved at most segments.max_shift: each window keeps its prompt
    if args.guidance_interval is None:  # measured defaults (benchmarks/RESULTS.md): see DEFAULT_GUIDANCE_INTERVAL
        everywhere = segments is not None or args.sampler == "ddpm"  # ddpm: MDM's sampler as MDM runs it
        args.guidance_interval = [0.0, math.inf] if everywhere else list(DEFAULT_GUIDANCE_INTERVAL)
    frames = layout.length if args.loop else requested
    if args.loop and frames != requested:
        print(f"loop period: {frames} frames ({frames / fps:.2f} s), the nearest multiple of {layout.n_windows} windows")
    normalizer, stats_dir = load_stats(args.stats_dir, model_path, config.dataset)
    text_encoder = cached_text_encoder(cache, loaded, model_path, device, args)
    denoiser = MDMDenoiser(loaded.model, guidance_scale=args.guidance_param, padding_seed=args.seed,
                           guidance_interval=args.guidance_interval, coarse_model=coarse, coarse_above=MIXED_ABOVE)
    if segments is not None:
        from motion_loop.segments import SegmentDenoiser

        denoiser = SegmentDenoiser(denoiser, args.boundary)
    return Setup(model_path, why, config, device, layout, frames, fps, normalizer, stats_dir, text_encoder, denoiser,
                 dtype_name, threads if device.type == "cpu" else None, segments)


@dataclass
class Sampled:
    """Motions of one :func:`sample_motions` call, in the order of its texts."""

    features: np.ndarray  # [B, T, F] raw features as the model made them (denormalized)
    joints: np.ndarray  # [B, T, J, 3] joint positions in metres, loop root handled, feet locked with --foot_lock
    skating: dict[str, list[float]] | None  # foot skating ratio of each motion, "model" and "locked"
    seams: list[dict] | None  # each loop's seam report
    steps: int  # sampler steps
    seconds: float  # sampling time
    loop_root: list[dict] | None = None  # each loop's heading and travel per cycle (motion_loop.loop_root)


def sample_motions(setup: Setup, args, plan: Plan, texts: list[str], generator: torch.Generator, *,
                   batch_size: int, progress: bool, noise: torch.Tensor | None = None) -> Sampled:
    """Sample ``texts`` in batches of ``batch_size``, decode and check them, handle a loop's root, lock
    their feet, measure them.

    ``noise``: every motion's starting draw (see :func:`sample_features`), else drawn from ``generator``.
    """
    fps, device, dataset, segments = setup.fps, setup.device, setup.config.dataset, setup.segments
    started = time.perf_counter()
    features, joints = [], []
    with torch.inference_mode():
        for first in range(0, len(texts), batch_size):
            chunk = texts[first: first + batch_size]
            cond = segments.cond(chunk, setup.text_encoder.encode, device) if segments is not None else None
            text_embed = setup.text_encoder.encode(chunk).to(device) if cond is None else cond["segment_embed"]
            x0, n_steps = sample_features(plan, setup.denoiser, text_embed, generator,
                                          sampler=args.sampler, steps=args.steps, s_churn=args.s_churn,
                                          collage=args.collage, progress=progress, cond=cond,
                                          finish=segments.unroll if segments is not None else None,
                                          max_shift=segments.max_shift if segments is not None else None,
                                          split_sigma=segments.split_sigma if segments is not None else 0.0,
                                          noise=None if noise is None else noise[first: first + batch_size])
            raw, positions = decode(x0, setup.normalizer, dataset, velocity_fusion=args.velocity_fusion, cyclic=plan.loop)
            features.append(raw)
            joints.append(positions)
    features, joints = np.concatenate(features), np.concatenate(joints)
    safety.check_sample(features, joints, guidance=args.guidance_param, normalizer=setup.normalizer)
    sampling_s = time.perf_counter() - started
    loop_root = None
    if args.loop:  # before the foot lock, so planted feet are pinned on the final path
        from motion_loop.loop_root import handle_loop_root

        handled = [handle_loop_root(j, args.loop_heading, in_place=args.in_place) for j in joints]
        joints = np.stack([j for j, _ in handled]).astype(joints.dtype)
        loop_root = [record for _, record in handled]
    skating = None
    if dataset == "kit" and args.foot_lock:
        # The foot locker's contacts and leg IK are written for HumanML3D's 22-joint legs.
        print("KIT model: foot locking applies to HumanML3D skeletons only; skipped")
        args.foot_lock = False
    if args.foot_lock:
        from motion_loop.foot_lock import lock_feet, toe_contacts
        from motion_loop.metrics import foot_skating_ratio

        locked = np.stack([lock_feet(j, c, loop=args.loop, fps=fps) for j, c in zip(joints, toe_contacts(features))])
        if plan.frames >= 2:  # skating needs a step between frames
            skating = {"model": [foot_skating_ratio(j, fps) for j in joints],
                       "locked": [foot_skating_ratio(j, fps) for j in locked]}
        safety.check_sample(features, locked, guidance=args.guidance_param, normalizer=setup.normalizer,
                            stage="foot locking")
        joints = locked

    seams = None
    if args.loop:
        from motion_loop.loop_root import cycle_motion
        from motion_loop.metrics import loop_seam_report

        seams = [loop_seam_report(j, fps).to_dict() for j in joints]
        for record, j in zip(loop_root, joints):  # what the files hold: after the foot lock
            record["after"] = cycle_motion(j) if not args.in_place else {**cycle_motion(j), "displacement_m": [0.0, 0.0],
                                                                         "distance_m": 0.0}
    return Sampled(features, joints, skating, seams, n_steps, sampling_s, loop_root)


def interval_record(interval) -> list | None:
    """``--guidance_interval`` as JSON records it: ``[lo, hi]``, hi None where unbounded (JSON has no inf)."""
    if interval is None:
        return None
    lo, hi = interval
    return [float(lo), float(hi) if math.isfinite(hi) else None]


def run_metadata(args, setup: Setup, plan: Plan, read_as: list[str] | None, sampled: Sampled, *,
                 seed: int | None = None) -> dict:
    """What run.json records about a run (``seed``: the run's, default ``args.seed``)."""
    layout = setup.layout
    skating = sampled.skating
    return {
        "prompts": plan.prompts,
        "texts": plan.texts,
        "read_as": read_as,
        "model_path": str(setup.model_path),
        "model": setup.why,
        "model_args": setup.config.to_args(),
        "stats_dir": str(setup.stats_dir),
        "sampler": args.sampler,
        "steps": sampled.steps,
        "s_churn": args.s_churn if args.sampler == "edm" else None,
        "dtype": setup.dtype,
        "threads": setup.threads,
        "guidance_param": args.guidance_param,
        "guidance_interval": interval_record(args.guidance_interval),
        "seed": args.seed if seed is None else seed,
        "device": str(setup.device),
        "fps": setup.fps,
        "motion_length_requested": args.motion_length,
        "frames": plan.frames,
        "loop": args.loop,
        "layout": None if layout is None else {
            "window": layout.window, "overlap": layout.overlap, "n_windows": layout.n_windows,
            "cyclic": layout.cyclic, "collage": args.collage},
        "seam_reports": sampled.seams,
        "loop_root": sampled.loop_root,
        "segments": None if setup.segments is None else setup.segments.to_dict(),
        "foot_lock": args.foot_lock,
        "velocity_fusion": args.velocity_fusion,
        "foot_skating_ratio": None if skating is None else {k: float(np.mean(v)) for k, v in skating.items()},
        "sampling_seconds": round(sampled.seconds, 3),
        "torch": torch.__version__,
    }


def run(args, cache: dict | None = None) -> dict:
    """One run of ``python -m sample``; ``cache`` keeps the model and text encoder between runs."""
    from motion_loop.text_encoders import CaptionBank

    prompts = read_prompts(args)
    if getattr(args, "timeline", None) is not None:  # the motion lasts the timeline's sum
        from motion_loop.segments import read_timeline

        args.motion_length = sum(s.seconds for s in read_timeline(args.timeline))
    check_numbers(args)
    check_asset_flags(args)
    device = resolve_device(args.device)
    model_path, why = resolve_model_path(args.model_path)
    output_dir = resolve_output_dir(args, model_path)
    files = safety.run_files(args, len(prompts)) + asset_files(args, len(prompts), output_dir)
    motions, frames = len(prompts) * args.num_repetitions, math.ceil(args.motion_length * 20)
    safety.check_output_dir(output_dir, files, overwrite=args.overwrite, estimated_bytes=safety.estimate_bytes(
        motions, frames, videos=args.render, bvh=args.bvh,
        video_frames=frames * (2 * args.loop_repeats if args.loop else 1)))  # combined videos: twice
    setup = load_setup(args, device, model_path, why, cache, prompts=prompts)
    segments = setup.segments
    plan = Plan(prompts, args.num_repetitions, setup.frames, setup.layout, args.loop, setup.fps)
    read_as = None
    if isinstance(setup.text_encoder, CaptionBank):
        read = segments.segment_texts() if segments is not None else prompts
        nearest = setup.text_encoder.nearest(read)
        read_as = [caption for caption, _ in nearest]
        for prompt, (caption, cosine) in zip(read, nearest):
            print(f'caption bank: "{printable(prompt)}" is read as the training caption "{caption}" (cosine {cosine:.2f})')

    generator = torch.Generator(device).manual_seed(args.seed)
    texts = plan.texts
    print(f"sampling {len(texts)} motion(s): {plan.describe()}, {SAMPLER_TITLES[args.sampler]} sampler, {setup.dtype}"
          + (f", {setup.threads} thread(s)" if setup.threads is not None else ""))
    sampled = sample_motions(setup, args, plan, texts, generator, batch_size=args.batch_size or len(texts),
                             progress=args.progress)
    metadata = run_metadata(args, setup, plan, read_as, sampled)
    if metadata["foot_skating_ratio"] is not None:
        skating = metadata["foot_skating_ratio"]
        print(f"foot lock: foot skating ratio {skating['model']:.3f} -> {skating['locked']:.3f} "
              f"(mean of {len(sampled.joints)})")
    features, joints = sampled.features, sampled.joints
    return safety.write_or_rescue(
        lambda: _write_outputs(args, output_dir, plan, features, joints, metadata, sampled.seams, sampled.seconds,
                               segments),
        output_dir, files, features, joints, metadata)


def _segment_run(args, prompts: list[str], frames: int, max_window: int, fps: float):
    """The run's segments (motion_loop.segments.SegmentRun), printed, or None for one action per prompt."""
    from motion_loop.segments import plan_run, read_segments

    segments = read_segments(prompts, split=getattr(args, "split", True), timeline=getattr(args, "timeline", None))
    run = plan_run(prompts, segments, frames, fps, max_window, args.loop, choose_layout,
                   boundary=getattr(args, "boundary", DEFAULT_BOUNDARY),
                   split_sigma=getattr(args, "segment_split", None), window=args.window, overlap=args.overlap,
                   num_windows=args.num_windows)
    if run is not None:
        for prompt, seg in run.plans.items():
            print(f"segments of \"{prompt}\"{' (loop: the last leads back into the first)' if args.loop else ''}:")
            for k, (text, (a, b)) in enumerate(zip(seg.texts, seg.spans)):
                print(f"  {k + 1}. {text}: frames {a}-{b - 1} ({a / fps:.2f}-{b / fps:.2f} s)")
    return run


def _write_outputs(args, output_dir, plan, features, joints, metadata, seams, sampling_s, segments=None) -> dict:
    from motion_loop.results import save_results, video_name, write_atomic

    started = time.perf_counter()
    texts = plan.texts if segments is None else [segments.result_line(t) for t in plan.texts]
    titles = None if segments is None else [segments.titles(t) for t in plan.texts]
    written = save_results(
        output_dir, list(joints), texts, titles=titles, num_samples=len(plan.prompts), num_repetitions=plan.repetitions,
        metadata=metadata, videos=args.render, loop_cycles=args.loop_repeats if args.loop else 1,
        in_place=args.in_place, fps=plan.fps, overwrite=args.overwrite, progress=args.progress,
    )
    written["features.npy"] = write_atomic(output_dir / "features.npy",
                                           lambda tmp: np.save(tmp, features.astype(np.float32)),
                                           overwrite=args.overwrite)
    from motion_loop.rigid import JOINTS_RIGID_NPY, save_rigid

    written[JOINTS_RIGID_NPY] = save_rigid(output_dir / JOINTS_RIGID_NPY, joints, overwrite=args.overwrite)
    n = len(plan.prompts)
    if args.bvh:
        from motion_loop.export import write_bvh

        for index, motion in enumerate(joints):
            name = video_name(index % n, index // n, ".bvh")
            written[name] = write_bvh(output_dir / name, motion, plan.fps, loop=plan.loop,
                                      in_place=args.in_place, closing_frame=args.closing_frame,
                                      overwrite=args.overwrite)
    if args.smpl:
        from motion_loop.smpl import load_body_model, write_smpl

        body = load_body_model(args.smpl_model)
        errors = []
        for index, motion in enumerate(joints):
            files, fit = write_smpl(output_dir, video_name(index % n, index // n, ""), motion, body, fps=plan.fps,
                                    overwrite=args.overwrite)
            written.update(files)
            errors.append(fit.joint_error_m)
        errors = np.stack(errors) * 1000
        print(f"  SMPL (smplx): sample##_rep##_smpl.npz and _obj/ meshes; joints 0-21 within "
              f"{errors.mean():.1f} mm (mean), {errors.max():.1f} mm (max) of ours")
    rendering_s = time.perf_counter() - started

    videos = sorted(name for name in written if name.endswith((".mp4", ".gif")))
    print(f"wrote {len(joints)} motion(s) to {output_dir}")
    bvh = "BVH, " if args.bvh else ""
    print(f"  results.npy (joints), joints_rigid.npy (rigid skeleton), features.npy (HumanML3D features), {bvh}run.json, {len(videos)} video(s)"
          + (f": {', '.join(videos[:4])}{' ...' if len(videos) > 4 else ''}" if videos else ""))
    if metadata.get("loop_root"):
        for i, rec in enumerate(metadata["loop_root"][:4]):
            print(f"  loop {i}: turn per cycle {rec['before']['turn_degrees']:+.1f} deg {rec['heading']} "
                  f"({rec['why']}), moves {rec['after']['distance_m']:.2f} m per cycle")
    if seams:
        med = {k: float(np.median([s[k] for s in seams])) for k in ("velocity_ratio", "acceleration_ratio", "jerk_ratio")}
        print(f"  loop seam vs interior (1 = invisible): velocity {med['velocity_ratio']:.2f}, "
              f"acceleration {med['acceleration_ratio']:.2f}, jerk {med['jerk_ratio']:.2f} (median of {len(seams)})")
    print(f"  sampling {sampling_s:.1f} s, writing{' and rendering' if args.render else ''} {rendering_s:.1f} s")
    return {"output_dir": output_dir, "written": written, "metadata": metadata}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: run(args), interrupted="files already moved into place are complete, nothing else was written")
