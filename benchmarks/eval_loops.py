"""Loop quality: DiffCollage (condind, avg) against an independent sample played as a loop and
sequential outpainting by replacement, on one model, the same prompts, seeds and EDM settings.

For every prompt x seed x method: a loop of --seconds (the CLI's layout for that length), decoded
to joints, then the seam report (seam / interior ratios of velocity, acceleration and jerk), PJ
and AUJ over 60 frames centred on the seam (FlowMDM), GMD foot skating over the loop's frames,
the motion-kind accuracy of each window (motion_loop.evaluation's classifier, when present) and the
wall time per loop. Prints Markdown tables (means, standard deviations, medians) and draws the
mean jerk profile around the seam for each method.

    python benchmarks/eval_loops.py                      # the bundled demo model, 10 prompts x 5 seeds
    python benchmarks/eval_loops.py --model_path M.pt --stats_dir DIR --random_text --seeds 0  # smoke run
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np
import torch

from motion_loop.baselines import METHODS
from motion_loop.diffusion import DEFAULT_GUIDANCE_INTERVAL, MDMDenoiser
from motion_loop.foot_lock import lock_feet, toe_contacts
from motion_loop.generate import DEMO_MODEL, choose_layout, decode, load_stats
from motion_loop.mdm import load_model
from motion_loop.sampling import DEFAULT_SAMPLER, DEFAULT_STEPS, ODE_SAMPLERS, evaluations
from motion_loop.metrics import _next_repetition, foot_skating_ratio, jerk_profile, loop_seam_report

from bench_speed import OthersMeter  # benchmarks/ is on the path when this script runs

# One training caption per motion kind (HumanML3D style, as the procedural captions).
PROMPTS = {
    "walk": "a person walks forward",
    "run": "a person jogs forward",
    "march": "a person marches in place",
    "jumping_jacks": "a person does jumping jacks",
    "wave": "a person waves with their right hand",
    "squat": "a person does squats",
    "side_step": "a person dances side to side",
    "arm_circles": "a person does arm circles",
    "punch": "a person punches with their right hand",
    "jump": "a person jumps in place",
}

# (label, sampler in motion_loop.baselines.METHODS, s_churn, decode positions by velocity fusion or not
# (None: as --velocity_fusion says, the CLI's default))
RUNS = [
    ("DiffCollage seamless", "seamless", 0.0, None),
    ("DiffCollage condind", "condind", 0.0, None),
    ("DiffCollage avg", "avg", 0.0, None),
    ("independent, wrapped", "independent", 0.0, None),
    ("sequential outpainting", "outpainting", 0.0, None),
    ("DiffCollage condind, churn 10", "condind", 10.0, None),
    ("DiffCollage seamless, positions only", "seamless", 0.0, False),
    ("DiffCollage seamless, churn 10", "seamless", 10.0, None),
]
CHAIN_METHODS = ("seamless", "condind", "avg")  # samplers that make a chain (--chain)
SEAM_KEYS = ("velocity_ratio", "acceleration_ratio", "jerk_ratio", "peak_jerk", "auj")


def load_classifier():
    """``classify(list of joints [T, 22, 3]) -> kinds``: motion_loop.evaluation's held-out
    classifier of procedural kinds (fitted here, on its own procedural sample), or None without it."""
    try:
        from motion_loop.evaluation import KindClassifier
    except ImportError:
        return None
    return KindClassifier.fit_procedural().predict


def random_text_embed(prompts: list[str], dim: int) -> torch.Tensor:
    """A fixed random embedding per prompt (seeded by its text): smoke runs of models whose text
    encoder is not at hand. The model does not understand it."""
    rows = [torch.randn(dim, generator=torch.Generator().manual_seed(sum(map(ord, p)) * 7919 + len(p))) for p in prompts]
    return torch.stack(rows)


def prompt_encoder(loaded, device: torch.device, random_text: bool):
    """``encode(prompts) -> [N, D]`` on ``device``: the model's own text encoder, or
    :func:`random_text_embed` for smoke runs (``--random_text``)."""
    if random_text:
        return lambda prompts: random_text_embed(list(prompts), loaded.config.text_dim).to(device)
    from motion_loop.text_encoders import text_encoder_for

    encoder = text_encoder_for(loaded, device=device)
    return lambda prompts: encoder.encode(list(prompts)).to(device)


def seam_centred(joints: np.ndarray) -> tuple[np.ndarray, int]:
    """The loop's second half followed by its first half placed where it follows on (as
    loop_seam_report builds it) and the index of the seam's first frame."""
    half = joints.shape[0] // 2
    return np.concatenate([joints[half:], _next_repetition(joints)[:half]]), joints.shape[0] - half


def composition_edges(layout) -> tuple[np.ndarray, np.ndarray]:
    """Frames where the layout's composition changes (window and overlap starts and ends, the seam at
    0 among them) and the frames midway between consecutive edges, both modulo the loop. A chain:
    its inner edges (overlap starts and ends) and the frames midway between consecutive ones."""
    if not layout.cyclic:
        edges = np.array(sorted(e for i in range(1, layout.n_windows)
                                for e in (i * layout.stride, i * layout.stride + layout.overlap)))
        return edges, edges[:-1] + np.diff(edges) // 2
    edges = np.unique([e % layout.length for i in range(layout.n_windows)
                       for e in (i * layout.stride, i * layout.stride + layout.overlap)])
    gaps = np.diff(np.append(edges, edges[0] + layout.length))
    return edges, (edges + gaps // 2) % layout.length


def edge_midway_jerk(loop: np.ndarray, layout) -> tuple[float, float, float]:
    """Jerk at the composition edges and midway between them, each over the loop's median jerk:
    the mean of the three stencils around the frame (a step between frames e-1 and e shows in
    stencils e-3 .. e-1), cyclically (the next repetition placed as the seam report places it)."""
    twice = np.concatenate([loop, _next_repetition(loop)]) if layout.cyclic else loop
    per_stencil = np.linalg.norm(np.diff(twice, n=3, axis=0), axis=-1).mean(axis=-1)
    length = loop.shape[0] if layout.cyclic else len(per_stencil) + 3  # a chain's edges lie inside it
    median = max(float(np.median(per_stencil[:length])), 1e-9)
    edges, midway = composition_edges(layout)
    around = lambda frames: float(np.mean([per_stencil[(f + d) % length] for f in frames for d in (-3, -2, -1)]))  # noqa: E731
    edge, mid = around(edges), around(midway)
    return edge / median, mid / median, edge / max(mid, 1e-9)


def max_joint_speed(loop: np.ndarray, fps: float, cyclic: bool = True) -> float:
    """Fastest any joint moves relative to the pelvis (m/s), the wrap from last to first frame included
    (``cyclic``)."""
    rel = loop - loop[:, :1]
    rel = np.concatenate([rel, rel[:1]]) if cyclic else rel
    return float(np.linalg.norm(np.diff(rel, axis=0), axis=-1).max() * fps)


def evaluate_loops(joints: np.ndarray, kinds: list[str], layout, classify, fps: float) -> list[dict]:
    """Metrics of each loop ``joints [B, T, 22, 3]`` (of prompts of motion kinds ``kinds``); a chain
    (non-cyclic ``layout``) has no seam: its jerk is measured as it is and at its inner edges."""
    rows = []
    for b, loop in enumerate(joints):
        if layout.cyclic:
            report = loop_seam_report(loop, fps).to_dict()
            sequence, seam = seam_centred(loop)
            row = {k: report[k] for k in SEAM_KEYS}
        else:
            sequence, seam, row = loop, None, {}
        row["foot_skating"] = foot_skating_ratio(loop, fps)
        row["jerk_profile"] = jerk_profile(sequence).tolist()
        # absolute jerk (max over joints, m/s^3): a ratio can also fall because its median rises
        row["median_jerk"] = float(np.median(row["jerk_profile"]) * fps**3)
        # Worst jerk anywhere in the loop (window and overlap edges too), as loop_seam_report measures
        # jerk (per-stencil L2 norm averaged over joints), relative to the loop's median.
        per_stencil = np.linalg.norm(np.diff(sequence, n=3, axis=0), axis=-1).mean(axis=-1)
        row["worst_jerk_ratio"] = float(per_stencil.max() / max(np.median(per_stencil), 1e-9))
        row["seam_index"] = seam
        row["edge_jerk"], row["midway_jerk"], row["edge_midway"] = edge_midway_jerk(loop, layout)
        row["max_joint_speed"] = max_joint_speed(loop, fps, layout.cyclic)
        if classify is not None:
            # Windows read off the loop played twice (no jump where a window wraps around).
            twice = np.concatenate([loop, _next_repetition(loop)]) if layout.cyclic else loop
            starts = np.arange(layout.n_windows) * layout.stride
            predicted = list(classify([twice[s:s + layout.window] for s in starts]))
            row["window_kinds"] = predicted
            row["kind_accuracy"] = float(np.mean([p == kinds[b] for p in predicted]))
        rows.append(row)
    return rows


def summarize(values: list[float]) -> dict:
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "sd": float(a.std(ddof=1)) if len(a) > 1 else 0.0, "median": float(np.median(a)),
            "q25": float(np.percentile(a, 25)), "q75": float(np.percentile(a, 75)), "n": len(a)}


def markdown_tables(results: dict, columns: list[tuple[str, str, str]]) -> str:
    head = "| method | " + " | ".join(title for _, title, _ in columns) + " |"
    rule = "|---|" + "---|" * len(columns)
    views = (("Mean ± standard deviation over prompts x seeds:", lambda s, f: f"{s['mean']:{f}} ± {s['sd']:{f}}"),
             ("Median [25th, 75th percentile]:", lambda s, f: f"{s['median']:{f}} [{s['q25']:{f}}, {s['q75']:{f}}]"))
    lines = []
    for caption, cell in views:
        lines += ["" if lines else None, caption, "", head, rule]
        for label, runs in results.items():
            cells = []
            for key, _, fmt in columns:
                s = summarize([r[key] for r in runs]) if key in runs[0] else None
                cells.append("n/a" if s is None else cell(s, fmt))
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(line for line in lines if line is not None)


def per_kind_table(results: dict, kinds: list[str], key: str) -> str:
    labels = list(results)
    lines = [f"| kind | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for kind in kinds:
        cells = [f"{np.median([r[key] for r in results[label] if r['kind'] == kind]):.2f}" for label in labels]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_profiles(results: dict, path: Path, layout, fps: float, title: str) -> None:
    """Jerk profile around the seam, mean (left) and median (right) over runs, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), dpi=90, sharey=True)
    for ax, (name, reduce) in zip(axes, (("mean", np.mean), ("median", np.median))):
        for label, runs in results.items():
            profiles = np.array([r["jerk_profile"] for r in runs]) * fps**3  # m/s^3
            x = np.arange(profiles.shape[1]) + 1.5 - runs[0]["seam_index"]  # centre of the stencil k .. k+3
            ax.plot(x, reduce(profiles, axis=0), label=label, lw=1.1)
        # Where the collage's composition changes (window and overlap edges), relative to the seam,
        # which is the first frame of window 0.
        edges = {e % layout.length for i in range(layout.n_windows)
                 for e in (i * layout.stride, i * layout.stride + layout.overlap)}
        for edge in edges:
            for offset in (edge, edge - layout.length):
                if x[0] <= offset <= x[-1]:
                    ax.axvline(offset, color="0.75" if offset else "k", lw=0.6, ls="-" if offset else ":", zorder=0)
        ax.set_yscale("log")
        ax.set_xlabel("frame relative to the loop's seam (grey: window/overlap edges)", fontsize=8)
        ax.set_title(f"{name} over runs", fontsize=9)
    axes[0].set_ylabel("jerk, max over joints (m/s³)", fontsize=8)
    axes[1].legend(fontsize=7, loc="upper right")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="Example: python benchmarks/eval_loops.py --seeds 0 1 2 3 4")
    p.add_argument("--model_path", type=Path, default=DEMO_MODEL, help=f"MDM checkpoint (default {DEMO_MODEL})")
    p.add_argument("--stats_dir", type=Path, default=None, help="Mean.npy/Std.npy folder (default: beside the checkpoint)")
    p.add_argument("--random_text", action=argparse.BooleanOptionalAction, default=False,
                   help="a fixed random embedding per prompt instead of the model's text encoder (smoke runs only)")
    p.add_argument("--kinds", nargs="+", default=list(PROMPTS), choices=list(PROMPTS), help="motion kinds to prompt")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="seeds (each: one batch of all prompts)")
    p.add_argument("--seconds", type=float, default=6.0, help="loop period in seconds (default 6)")
    p.add_argument("--window", type=int, default=None, help="window frames (default: the CLI's choice)")
    p.add_argument("--overlap", type=int, default=None, help="overlap frames (default: the CLI's choice)")
    p.add_argument("--num_windows", type=int, default=None, help="windows (default: the CLI's choice)")
    p.add_argument("--sampler", choices=ODE_SAMPLERS, default=DEFAULT_SAMPLER,
                   help=f"sampler of every row, as python -m sample's --sampler (default {DEFAULT_SAMPLER}, its "
                        "default); rows with churn need edm and are left out otherwise")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"sampler steps (default {DEFAULT_STEPS})")
    p.add_argument("--guidance", type=float, default=2.5, help="classifier-free guidance scale (default 2.5)")
    p.add_argument("--guidance_interval", type=float, nargs=2, default=list(DEFAULT_GUIDANCE_INTERVAL), metavar=("LO", "HI"),
                   help="guide only at noise levels in [LO, HI], conditional only elsewhere (default: python -m sample's, "
                        f"{DEFAULT_GUIDANCE_INTERVAL[0]:g} inf; 0 inf guides at every level)")
    p.add_argument("--methods", nargs="+", default=[r[0] for r in RUNS], choices=[r[0] for r in RUNS],
                   help="which rows to run (default all)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--plot", type=Path, default=Path(__file__).parent / "loop_jerk_profile.png",
                   help="where to write the jerk-profile plot (default benchmarks/loop_jerk_profile.png)")
    p.add_argument("--json", type=Path, default=None, help="also write every run's metrics to this JSON file")
    p.add_argument("--velocity_fusion", action=argparse.BooleanOptionalAction, default=True,
                   help="decode positions from the position and velocity features together, as python -m sample "
                        "does (rows marked 'positions only' never do) (default on)")
    p.add_argument("--foot_lock", action=argparse.BooleanOptionalAction, default=False,
                   help="plant the feet as python -m sample does before measuring (default off: the model's motion "
                        "as decoded, which the issue-13 targets were set on)")
    p.add_argument("--chain", action=argparse.BooleanOptionalAction, default=False,
                   help="long motion instead of loops: a chain of --seconds (e.g. 12), measured at its inner window "
                        "and overlap edges; runs the DiffCollage rows only (no seam, no plot)")
    args = p.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    loaded = load_model(args.model_path, device)
    config = loaded.config
    normalizer, stats_dir = load_stats(args.stats_dir, args.model_path)
    fps = 20.0
    layout = choose_layout(round(args.seconds * fps), config.max_frames, not args.chain, args.window, args.overlap,
                           args.num_windows)
    sampler_of = {label: method for label, method, _, _ in RUNS}
    churn_of = {label: churn for label, _, churn, _ in RUNS}
    if args.sampler != "edm":  # churn is Heun's
        args.methods = [m for m in args.methods if not churn_of[m]]
    if args.chain:
        if layout is None:
            raise SystemExit(f"a {args.seconds} s motion fits one window: ask for a longer chain (--seconds)")
        args.methods = [m for m in args.methods if sampler_of[m] in CHAIN_METHODS]
    if layout.length > config.max_frames and any(sampler_of[m] == "independent" for m in args.methods):
        raise SystemExit(f"a {layout.length}-frame loop is longer than the model's {config.max_frames} frames: "
                         "drop the independent baseline (--methods) or ask for a shorter loop")
    kinds = list(args.kinds)
    prompts = [PROMPTS[k] for k in kinds]
    text = prompt_encoder(loaded, device, args.random_text)(prompts)
    denoiser = MDMDenoiser(loaded.model, guidance_scale=args.guidance,
                           guidance_interval=args.guidance_interval)
    sigmas = denoiser.sigmas(args.steps).to(device)
    classify = load_classifier()
    shape = (len(prompts), config.n_feats, 1)

    print(f"model {args.model_path} ({sum(p.numel() for p in loaded.model.parameters()):,} parameters, "
          f"max {config.max_frames} frames), stats {stats_dir}")
    print(f"{'chain' if args.chain else 'loop'} {layout.length} frames = {layout.n_windows} windows of {layout.window} overlapping by {layout.overlap}; "
          f"{len(sigmas) - 1} {args.sampler} steps ({evaluations(args.sampler, sigmas)} "
          f"model calls), guidance {args.guidance} at sigma in {args.guidance_interval}; {len(prompts)} prompts x {len(args.seeds)} seeds; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print(f"motion-kind classifier: {'motion_loop.evaluation.KindClassifier.fit_procedural()' if classify else 'absent (accuracy n/a)'}")

    results: dict[str, list[dict]] = {}
    with torch.inference_mode():
        # warm-up (first calls allocate): two steps of each sampler
        for label in args.methods:
            METHODS[sampler_of[label]](denoiser, layout, shape, sigmas[-3:], cond={"text_embed": text},
                            generator=torch.Generator(device).manual_seed(0), device=device, sampler=args.sampler)
        samples = {}  # (sampler, churn, seed) -> (x0, timing): rows that differ in decoding only sample once
        for label, method, churn, fusion in [r for r in RUNS if r[0] in args.methods]:
            results[label] = []
            for seed in args.seeds:
                if (method, churn, seed) not in samples:
                    generator = torch.Generator(device).manual_seed(seed)
                    with OthersMeter() as meter:
                        x0 = METHODS[method](denoiser, layout, shape, sigmas, cond={"text_embed": text}, s_churn=churn,
                                             generator=generator, device=device, sampler=args.sampler)
                        if device.type == "cuda":
                            torch.cuda.synchronize(device)
                    samples[method, churn, seed] = x0, {"seconds_per_loop": meter.wall / len(prompts),
                                                        "others_cpu": meter.others}
                x0, timing = samples[method, churn, seed]
                raw, joints = decode(x0, normalizer, velocity_fusion=args.velocity_fusion if fusion is None else fusion,
                                     cyclic=layout.cyclic)
                if args.foot_lock:
                    joints = np.stack([lock_feet(j, c, loop=layout.cyclic, fps=fps) for j, c in zip(joints, toe_contacts(raw))])
                for row, kind, prompt in zip(evaluate_loops(joints, kinds, layout, classify, fps), kinds, prompts):
                    results[label].append({**row, "kind": kind, "prompt": prompt, "seed": seed, **timing})
            print(f"  {label}: done ({np.mean([r['seconds_per_loop'] for r in results[label]]):.2f} s per loop)", flush=True)

    columns = [("velocity_ratio", "seam/interior velocity", ".2f"), ("acceleration_ratio", "seam/interior accel.", ".2f"),
               ("jerk_ratio", "seam/interior jerk", ".2f"), ("edge_jerk", "edge/median jerk", ".2f"),
               ("midway_jerk", "midway/median jerk", ".2f"), ("edge_midway", "edge/midway jerk", ".2f"),
               ("worst_jerk_ratio", "worst/median jerk, whole loop", ".1f"),
               ("max_joint_speed", "max joint speed rel. pelvis (m/s)", ".1f"),
               ("median_jerk", "median jerk (m/s³)", ".0f"),
               ("peak_jerk", "PJ (m/frame³)", ".3f"),
               ("auj", "AUJ (m/frame³)", ".2f"), ("foot_skating", "foot skating", ".3f"),
               ("kind_accuracy", "kind accuracy", ".2f"), ("seconds_per_loop", "s / loop", ".2f")]
    print()
    print(markdown_tables(results, columns))
    print(f"\nWall time per loop (one batch of {len(prompts)} prompts per seed, divided by {len(prompts)}; "
          f"min / median / max over the {len(args.seeds)} seeds; {len(sigmas) - 1} {args.sampler} steps):\n")
    print("| method | s / loop, min | median | max | CPU share other processes took, max over seeds |")
    print("|---|---|---|---|---|")
    for label, runs in results.items():
        per_seed = sorted({r["seed"]: r["seconds_per_loop"] for r in runs}.values())
        others = [r["others_cpu"] for r in runs if r["others_cpu"] is not None]
        print(f"| {label} | {per_seed[0]:.2f} | {np.median(per_seed):.2f} | {per_seed[-1]:.2f} | "
              f"{f'{max(others):.0%}' if others else 'n/a'} |")
    print("\nFastest joint relative to the pelvis (m/s), over all loops:\n")
    print("| method | max | loops over 12 m/s | worst loop |\n|---|---|---|---|")
    for label, runs in results.items():
        worst = max(runs, key=lambda r: r["max_joint_speed"])
        print(f"| {label} | {worst['max_joint_speed']:.1f} | {sum(r['max_joint_speed'] > 12 for r in runs)} / {len(runs)} | "
              f"{worst['kind']}, seed {worst['seed']} |")
    if not args.chain:
        print("\nSeam/interior jerk ratio by motion kind (median over seeds):\n")
        print(per_kind_table(results, kinds, "jerk_ratio"))
    print("\nWorst/median jerk over the whole motion by motion kind (median over seeds):\n")
    print(per_kind_table(results, kinds, "worst_jerk_ratio"))
    if classify is not None:
        print("\nMotion-kind accuracy by kind (mean over seeds and windows):\n")
        labels = list(results)
        print("| kind | " + " | ".join(labels) + " |\n|---|" + "---|" * len(labels))
        for kind in kinds:
            cells = [f"{np.mean([r['kind_accuracy'] for r in results[lab] if r['kind'] == kind]):.2f}" for lab in labels]
            print(f"| {kind} | " + " | ".join(cells) + " |")
    title = (f"{args.model_path.parent.name}: {layout.length}-frame loops ({layout.n_windows} x {layout.window}, overlap "
             f"{layout.overlap}), mean of {len(prompts)} prompts x {len(args.seeds)} seeds")
    if not args.chain:
        plot_profiles(results, args.plot, layout, fps, title)
        print(f"\nplot: {args.plot}")
    if args.json is not None:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}))
        print(f"metrics: {args.json}")


if __name__ == "__main__":
    main()
