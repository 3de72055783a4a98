"""Seconds per loop of the full-size MDM, before and after issue 14's levers, as ratios measured in
one run: precision (fp32 / bf16 weights), sampler and steps, packing of a ``mask_frames`` model's
pieces, and torch's CPU threads.

The official ``humanml_trans_enc_512`` architecture with random weights (speed does not depend on
them), guidance 2.5, loops in the CLI's layout. The cost of one evaluation of a loop's collage
depends on the precision, the layout and the threads, not on the sampler, so each (loop, precision,
threads, packing) case is timed per evaluation, interleaved with the others (``--repeats`` rounds
of every case, medians), and multiplied by the sampler's number of evaluations. On a shared CPU
absolute seconds move with other processes' load; the ratios to the former default in the same run
are what to read (each round also reports the CPU share other processes took).

Two architectures: the original checkpoint's (``mask_frames`` False: every row sits on the
196-frame canvas) and the same with ``mask_frames`` (the 50-step checkpoints: pieces packed into
calls of their own length, or padded to the window as before).

    python benchmarks/bench_fast.py                              # CPU: 6 s and 10 s loops, 1 and 2 threads
    python benchmarks/bench_fast.py --device cuda --compile reduce-overhead    # a GPU, CUDA graphs
"""

from __future__ import annotations

import argparse
import statistics

import torch

from motion_loop.collage import CollageDenoiser
from motion_loop.diffusion import MDMDenoiser
from motion_loop.generate import choose_layout
from motion_loop.mdm import MDM, MDMConfig
from motion_loop.sampling import evaluations

from bench_speed import OthersMeter, compiled, load, machine, sync  # benchmarks/ is on the path when this script runs

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# (label, sampler, steps): the former default first
SETTINGS = [("Heun 40 (former default)", "heun", 40), ("Heun 20", "heun", 20), ("DPM-Solver++(2M) 40", "dpmpp_2m", 40),
            ("DPM-Solver++(2M) 20", "dpmpp_2m", 20)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--seconds", type=float, nargs="+", default=[6.0, 10.0], help="loop periods (default 6 10)")
    p.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=["fp32", "bf16"], help="precisions timed")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                   help="torch CPU threads to compare (default 1 2; ignored on GPUs)")
    p.add_argument("--mask_frames", action=argparse.BooleanOptionalAction, default=False,
                   help="time the mask_frames architecture (packed and padded pieces) instead of the canvas one")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds of every case (default 3)")
    p.add_argument("--evals", type=int, default=2, help="evaluations timed per case and round (default 2)")
    p.add_argument("--compile", choices=("none", "default", "reduce-overhead", "max-autotune"), default="none",
                   help="torch.compile the model with this mode (reduce-overhead: CUDA graphs on GPUs) (default none)")
    p.add_argument("--tiny", action="store_true", help="a 1-layer, 64-wide model (smoke runs: timings mean nothing)")
    p.add_argument("--guidance", type=float, default=2.5, help="classifier-free guidance scale (default 2.5)")
    args = p.parse_args()

    device = torch.device(args.device)
    size = dict(latent_dim=64, layers=1, ff_size=128, num_heads=4) if args.tiny else {}
    config = MDMConfig(mask_frames=args.mask_frames, **size)
    torch.manual_seed(0)
    base = MDM(config).to(device).eval()
    models = {}
    for name in args.dtypes:
        model = MDM(config).to(device=device, dtype=DTYPES[name]).eval()
        model.load_state_dict(base.state_dict())
        models[name] = compiled(model, args.compile) if args.compile != "none" else model
    threads = args.threads if device.type == "cpu" else [torch.get_num_threads()]
    packings = [True, False] if args.mask_frames else [True]
    text = torch.randn(1, 512, device=device)
    print(f"device: {machine(device)}; torch {torch.__version__}; MDM trans_enc {config.latent_dim} x {config.layers} layers "
          f"({'mask_frames' if args.mask_frames else '196-frame canvas'}; {sum(p.numel() for p in base.parameters()):,} "
          f"parameters, random weights); compile {args.compile}; {load()}")

    cases = []  # (seconds, layout, dtype, threads, packed)
    for seconds in args.seconds:
        layout = choose_layout(round(seconds * 20), config.max_frames, True)
        for dtype in args.dtypes:
            for n_threads in threads:
                for packed in packings:
                    cases.append((seconds, layout, dtype, n_threads, packed))
    per_eval: dict[tuple, list[float]] = {c[:1] + c[2:]: [] for c in cases}
    others: list[float] = []
    g = torch.Generator(device).manual_seed(0)

    def evaluate(case, n_evals):
        seconds, layout, dtype, n_threads, packed = case
        if device.type == "cpu":
            torch.set_num_threads(n_threads)
        denoiser = MDMDenoiser(models[dtype], guidance_scale=args.guidance, pack=packed)
        collage = CollageDenoiser(denoiser, layout)
        sigma = denoiser.round_sigma(torch.tensor(5.0)).float().to(device)
        x = sigma * torch.randn(1, config.n_feats, 1, layout.length, generator=g, device=device)
        times = []
        for _ in range(n_evals):
            sync(device)
            with OthersMeter() as meter:
                collage(x, sigma.expand(1), text_embed=text)
                sync(device)
            times.append(meter.wall)
            if meter.others is not None and device.type == "cpu":
                others.append(meter.others)
        return times

    with torch.inference_mode():
        for case in cases:  # warm-up (and compilation) of every case
            evaluate(case, 2 if args.compile != "none" else 1)
        for round_ in range(args.repeats):
            for case in cases:
                per_eval[case[:1] + case[2:]].extend(evaluate(case, args.evals))
            print(f"  round {round_ + 1}/{args.repeats} done; {load()}", flush=True)

    reference = {}
    print("\n| loop | layout | precision | threads | pieces | s / evaluation (median) | "
          + " | ".join(f"{label}: s / loop" for label, _, _ in SETTINGS) + " | vs former default (fp32, "
          f"{threads[-1]} threads{', padded' if args.mask_frames else ''}, Heun 40) |")
    print("|---|---|---|---|---|---|" + "---|" * len(SETTINGS) + "---|")
    n_evals = {label: evaluations(sampler, torch.tensor([1.0] * steps + [0.0])) for label, sampler, steps in SETTINGS}
    for seconds, layout, dtype, n_threads, packed in cases:
        key = (seconds, dtype, n_threads, packed)
        eval_s = statistics.median(per_eval[key])
        base_key = (seconds, "fp32" if "fp32" in args.dtypes else args.dtypes[0], threads[-1], packings[-1])
        reference.setdefault(seconds, statistics.median(per_eval[base_key]) * n_evals[SETTINGS[0][0]])
        loops = [eval_s * n_evals[label] for label, _, _ in SETTINGS]
        ratios = " / ".join(f"{s / reference[seconds]:.2f}" for s in loops)
        pieces = ("packed" if packed else "padded") if args.mask_frames else "canvas"
        print(f"| {seconds:g} s | {layout.n_windows} x {layout.window} (overlap {layout.overlap}) | {dtype} | {n_threads} | "
              f"{pieces} | {eval_s:.3f} | " + " | ".join(f"{s:.1f}" for s in loops) + f" | {ratios} |")
    print(f"\nModel evaluations per loop: " + ", ".join(f"{label} {n}" for label, n in n_evals.items()))
    if others:
        print(f"Other processes took {min(others):.0%}-{max(others):.0%} (median {statistics.median(others):.0%}) "
              f"of the CPU during the timed evaluations; {load()}")


if __name__ == "__main__":
    main()
