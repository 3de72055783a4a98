"""How few steps (and how low a precision) keep the loop: every sampler setting against a 200-step
fp32 Heun reference from the SAME initial noise, on the bundled demo model.

For each seed, one batch of loops (one prompt per motion kind, the CLI's layout) is sampled with
every setting from one draw of ``x_T``. The decoded joints are compared with the reference's:
RMS joint distance in cm (global positions) and root-relative RMS in cm (each frame's joints minus
its root joint: the pose, without the root trajectory that integrates small velocity differences),
next to the seam report (seam/interior velocity and jerk) and the motion-kind accuracy of each
window. Time is a ratio to the CLI's former default (Heun 40, fp32, pieces padded to the window)
measured in the same run, seed by seed, interleaved (medians over seeds); other processes' CPU
share is reported.

    python benchmarks/bench_steps.py                               # 10 kinds x 2 seeds, 1 thread
    python benchmarks/bench_steps.py --seeds 0 --kinds walk --settings heun:4 dpmpp_2m:4   # smoke run
"""

from __future__ import annotations

import argparse
import copy
import statistics
from pathlib import Path

import numpy as np
import torch

from motion_loop.collage import CollageDenoiser
from motion_loop.diffusion import MDMDenoiser
from motion_loop.generate import DEMO_MODEL, choose_layout, decode, load_stats
from motion_loop.mdm import load_model
from motion_loop.metrics import loop_seam_report
from motion_loop.sampling import SAMPLERS, evaluations
from motion_loop.speed import MIXED_ABOVE

from bench_speed import OthersMeter, load  # benchmarks/ is on the path when this script runs
from eval_loops import PROMPTS, load_classifier, prompt_encoder

BASELINE = "heun:40:fp32:padded"  # the CLI's default before issue 14
DEFAULT_SETTINGS = [
    "heun:10", "heun:20", "heun:30", "heun:40", "heun:80",
    "dpmpp_2m:10", "dpmpp_2m:20", "dpmpp_2m:40", "dpmpp_2m:80",
    "dpmpp_2m:20:bf16", "heun:20:bf16",
    BASELINE,
]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "int8": torch.float32, "mixed": torch.float32}


def parse_setting(text: str) -> tuple[str, int, str, bool]:
    """``sampler:steps[:fp32|bf16|int8|mixed][:padded][:rho=R][:smax=S][:cseed=K]`` -> (sampler, steps, dtype,
    packed) (the schedule options: :func:`schedule_of`; int8: the Linear layers dynamically quantized;
    mixed: bf16 above the noise level ``speed.MIXED_ABOVE``, fp32 below, as ``--dtype mixed``; cseed:
    another sequence of the seamless collage's random shifts)."""
    parts = text.split(":")
    sampler, steps = parts[0], int(parts[1])
    dtype = next((p for p in parts[2:] if p in DTYPES), "fp32")
    if sampler not in SAMPLERS:
        raise SystemExit(f"unknown sampler {sampler!r} in {text!r}: use one of {', '.join(SAMPLERS)}")
    return sampler, steps, dtype, "padded" not in parts[2:]


def schedule_of(text: str) -> dict:
    """The schedule options of a setting: ``rho=R`` (Karras' rho, default 7), ``smax=S`` (highest sigma, default 80)."""
    names = {"rho": "rho", "smax": "sigma_max"}
    return {names[k]: float(v) for k, _, v in (p.partition("=") for p in text.split(":")[2:]) if k in names}


def rms_cm(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(((a - b) ** 2).sum(-1).mean()) * 100)


def root_relative(joints: np.ndarray) -> np.ndarray:
    return joints - joints[..., :1, :]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model_path", type=Path, default=DEMO_MODEL, help=f"MDM checkpoint (default {DEMO_MODEL})")
    p.add_argument("--stats_dir", type=Path, default=None, help="Mean.npy/Std.npy folder (default: beside the checkpoint)")
    p.add_argument("--random_text", action=argparse.BooleanOptionalAction, default=False,
                   help="a fixed random embedding per prompt instead of the model's text encoder (smoke runs only)")
    p.add_argument("--kinds", nargs="+", default=list(PROMPTS), choices=list(PROMPTS), help="motion kinds (one prompt each)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds (each: one batch of all prompts)")
    p.add_argument("--seconds", type=float, default=6.0, help="loop period in seconds (default 6)")
    p.add_argument("--reference", default="heun:200", help="the reference setting (default heun:200, fp32)")
    p.add_argument("--settings", nargs="+", default=DEFAULT_SETTINGS,
                   help="sampler:steps[:fp32|bf16][:padded] settings to compare (default: Heun and DPM-Solver++(2M) "
                        "at 10-80 steps, bf16, and the former default)")
    p.add_argument("--guidance", type=float, default=2.5, help="classifier-free guidance scale (default 2.5)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--collage", choices=("seamless", "condind", "avg"), default="seamless",
                   help="DiffCollage composition (default seamless, the CLI's default; the first table of issue 14 used condind)")
    p.add_argument("--window", type=int, default=None, help="window frames (default: the CLI's layout)")
    p.add_argument("--overlap", type=int, default=None, help="overlap frames (default: the CLI's layout)")
    p.add_argument("--num_windows", type=int, default=None, help="windows (default: the CLI's layout)")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    loaded = load_model(args.model_path, device)
    config = loaded.config
    normalizer, _ = load_stats(args.stats_dir, args.model_path)
    fps = 20.0
    layout = choose_layout(round(args.seconds * fps), config.max_frames, True, args.window, args.overlap, args.num_windows)
    kinds = list(args.kinds)
    prompts = [PROMPTS[k] for k in kinds]
    text = prompt_encoder(loaded, device, args.random_text)(prompts)
    models = {"fp32": loaded.model, "bf16": copy.deepcopy(loaded.model).to(torch.bfloat16)}
    if any(parse_setting(s)[2] == "int8" for s in args.settings):
        models["int8"] = torch.ao.quantization.quantize_dynamic(copy.deepcopy(loaded.model), {torch.nn.Linear}, dtype=torch.qint8)
    classify = load_classifier()
    settings = [args.reference] + [s for s in args.settings if s != args.reference]
    # the former default however it is spelled (heun:40:padded = heun:40:fp32:padded)
    baseline = next((s for s in settings if parse_setting(s) == parse_setting(BASELINE)), settings[min(1, len(settings) - 1)])

    print(f"model {args.model_path}; loop {layout.length} frames = {layout.n_windows} windows of {layout.window} "
          f"overlapping by {layout.overlap}; {args.collage} collage; {len(prompts)} prompts x {len(args.seeds)} seeds; guidance {args.guidance}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; {load()}")

    def sample(setting: str, seed: int):
        sampler, steps, dtype, packed = parse_setting(setting)
        coarse = {"coarse_model": models["bf16"], "coarse_above": MIXED_ABOVE} if dtype == "mixed" else {}
        inner = MDMDenoiser(models["fp32" if dtype == "mixed" else dtype], guidance_scale=args.guidance, pack=packed, **coarse)
        sigmas = inner.sigmas(steps, **schedule_of(setting)).to(device)
        g = torch.Generator(device).manual_seed(seed)
        # the same unit draw for every setting (a lower sigma_max scales it less)
        x = sigmas[0].float() * torch.randn(len(prompts), config.n_feats, 1, layout.length, generator=g, device=device)
        # seamless draws a random shift of the layout at every evaluation; cseed=K draws another sequence
        shifts = seed + 1000 * int(dict(p.partition("=")[::2] for p in setting.split(":")[2:]).get("cseed", 0))
        collage = CollageDenoiser(inner, layout, args.collage, generator=torch.Generator().manual_seed(shifts))
        with OthersMeter() as meter:
            x0 = SAMPLERS[sampler](collage, x, sigmas, cond={"text_embed": text})
        return x0, meter, (evaluations(sampler, sigmas), collage.rows / len(prompts))

    rows: dict[str, list[dict]] = {s: [] for s in settings}
    with torch.inference_mode():
        sample(settings[-1], 0)  # warm-up
        for seed in args.seeds:
            per_seed = {}
            for setting in settings:
                x0, meter, n_eval = sample(setting, seed)
                _, joints = decode(x0, normalizer)
                per_seed[setting] = (joints, meter)
                print(f"  seed {seed} {setting}: {meter.wall:.1f} s (others {meter.others or 0:.0%})", flush=True)
                ref = per_seed[settings[0]][0]
                predicted = None
                if classify is not None:
                    starts = np.arange(layout.n_windows) * layout.stride
                    predicted = [list(classify([np.concatenate([j, j])[s:s + layout.window] for s in starts])) for j in joints]
                sampler, steps, dtype, _ = parse_setting(setting)
                same_fp32 = per_seed.get(f"{sampler}:{steps}") if dtype != "fp32" else None
                for b, loop in enumerate(joints):
                    seam = loop_seam_report(loop, fps).to_dict()
                    rows[setting].append({
                        "rms_cm": rms_cm(loop, ref[b]), "root_rel_cm": rms_cm(root_relative(loop), root_relative(ref[b])),
                        "velocity_ratio": seam["velocity_ratio"], "jerk_ratio": seam["jerk_ratio"],
                        "kind_accuracy": None if predicted is None else float(np.mean([k == kinds[b] for k in predicted[b]])),
                        "vs_fp32_cm": None if same_fp32 is None else rms_cm(loop, same_fp32[0][b]),
                        "vs_fp32_root_cm": None if same_fp32 is None else rms_cm(root_relative(loop), root_relative(same_fp32[0][b])),
                        "seconds": meter.wall, "others": meter.others, "seed": seed, "evaluations": n_eval[0],
                        "pieces": n_eval[1],
                    })
            for setting in settings:
                for r in rows[setting][-len(prompts):]:
                    r["time_ratio"] = r["seconds"] / per_seed[baseline][1].wall

    print(f"\n## Steps, sampler and precision against the {args.reference} fp32 reference (same noise)\n")
    print(f"Median over {len(prompts)} kinds x {len(args.seeds)} seeds (RMS: mean); time: median over seeds of the "
          f"ratio to `{baseline}` in the same seed's run.\n")
    print("| setting | model evaluations | pieces per loop | RMS joints, cm (mean / median) | root-relative RMS, cm (mean / median) | "
          "seam/interior velocity | seam/interior jerk | kind accuracy | vs fp32 of the same setting, cm (root-rel.) | "
          "time vs former default | s / batch (median) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for setting in settings:
        rs = rows[setting]
        med = lambda k: statistics.median(r[k] for r in rs)  # noqa: E731
        mean = lambda k: statistics.fmean(r[k] for r in rs)  # noqa: E731
        acc = "n/a" if rs[0]["kind_accuracy"] is None else f"{mean('kind_accuracy'):.2f}"
        label = setting + (" (reference)" if setting == settings[0] else "")
        vs = "" if rs[0]["vs_fp32_cm"] is None else f"{mean('vs_fp32_cm'):.2f} ({mean('vs_fp32_root_cm'):.2f})"
        print(f"| {label} | {rs[0]['evaluations']} | {rs[0]['pieces']:.0f} | {mean('rms_cm'):.2f} / {med('rms_cm'):.2f} | "
              f"{mean('root_rel_cm'):.2f} / {med('root_rel_cm'):.2f} | {med('velocity_ratio'):.2f} | {med('jerk_ratio'):.2f} | "
              f"{acc} | {vs} | {med('time_ratio'):.2f} | {med('seconds'):.1f} |")
    others = [r["others"] for rs in rows.values() for r in rs if r["others"] is not None]
    if others:
        print(f"\nOther processes took {min(others):.0%}-{max(others):.0%} of the CPU during the timed runs; {load()}")


if __name__ == "__main__":
    main()
