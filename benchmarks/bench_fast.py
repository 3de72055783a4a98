"""Seconds per loop of the full-size MDM, before and after issue 14's levers, as ratios measured in
one run: layout (two windows, or one window closing on itself), sampler and steps, precision (fp32 /
bf16 weights / int8 dynamic quantization of the Linear layers), packing of a ``mask_frames``
model's pieces, and torch's CPU threads.

The official ``humanml_trans_enc_512`` architecture with random weights (speed does not depend on
them), guidance 2.5, the CLI's ``seamless`` collage. An evaluation of a loop costs what its rows
cost: above the collage's switch level (sigma 0.5) windows and overlaps, at or below it windows
only; the sampler decides how many evaluations fall on each side. So each (loop, layout,
precision, threads, packing) case is timed per evaluation at a high and a low noise level,
interleaved with the other cases (``--repeats`` rounds of every case, medians), and a sampler's
loop costs ``n_high * t_high + n_low * t_low`` with its evaluation levels counted on the model's
schedule. Times are process CPU seconds (what the computation itself took, which other processes'
load barely moves at one thread; at several threads it adds the threads' CPU time) and wall
seconds; on a shared CPU read the ratios to the former default in the same run (each round also
reports the CPU share other processes took).

Two architectures: the original checkpoint's (``mask_frames`` False: every row sits on the
196-frame canvas) and the same with ``mask_frames`` (the 50-step checkpoints: pieces packed into
calls of their own length, or padded to the window as before).

    python benchmarks/bench_fast.py                              # CPU: 6 s and 10 s loops, 1 and 2 threads
    python benchmarks/bench_fast.py --device cuda --compile reduce-overhead    # a GPU, CUDA graphs
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from motion_loop.collage import CollageDenoiser, Layout
from motion_loop.diffusion import MDMDenoiser
from motion_loop.generate import choose_layout
from motion_loop.mdm import MDM, MDMConfig
from motion_loop.sampling import SAMPLERS, evaluation_sigmas
from motion_loop.speed import fill_canvas, one_window_cycle

from bench_speed import OthersMeter, compiled, load, machine, sync  # benchmarks/ is on the path when this script runs

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "int8": torch.float32}
# sampler:steps settings; the first is the former default
DEFAULT_SETTINGS = ["heun:40", "heun:20", "dpmpp_2m:20", "dpmpp_3m:20", "unipc:20", "unipc:15"]
HIGH, LOW = 5.0, 0.1  # noise levels timed: above and below the seamless collage's switch


def layouts_for(seconds: float, config: MDMConfig) -> list[tuple[str, Layout]]:
    """(label, layout) of a loop: the CLI's layout; for a canvas model the windows with their
    overlaps grown to the canvas (``--num_windows 2``) and, where it fits, the one window closing on
    itself that the CLI picks."""
    base = choose_layout(round(seconds * 20), config.max_frames, True)
    if config.mask_frames:
        return [("CLI", base)]
    one = one_window_cycle(base, config.max_frames)
    out = [("two windows", fill_canvas(base, config.max_frames))]
    return out + ([("one window", one)] if one is not None else [])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--seconds", type=float, nargs="+", default=[6.0, 10.0], help="loop periods (default 6 10)")
    p.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=["fp32", "int8"],
                   help="precisions timed (int8: Linear layers dynamically quantized, CPU only) (default fp32 int8)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                   help="torch CPU threads to compare (default 1 2; ignored on GPUs)")
    p.add_argument("--settings", nargs="+", default=DEFAULT_SETTINGS,
                   help=f"sampler:steps settings, the first one the reference of the ratios (default {' '.join(DEFAULT_SETTINGS)})")
    p.add_argument("--mask_frames", action=argparse.BooleanOptionalAction, default=False,
                   help="time the mask_frames architecture (packed and padded pieces) instead of the canvas one")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds of every case (default 3)")
    p.add_argument("--evals", type=int, default=2, help="evaluations timed per case, level and round (default 2)")
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
        if name == "int8":
            if device.type != "cpu":
                raise SystemExit("int8 dynamic quantization runs on CPUs only: drop int8 from --dtypes")
            model = torch.ao.quantization.quantize_dynamic(copy.deepcopy(base), {torch.nn.Linear}, dtype=torch.qint8)
        else:
            model = MDM(config).to(device=device, dtype=DTYPES[name]).eval()
            model.load_state_dict(base.state_dict())
        models[name] = compiled(model, args.compile) if args.compile != "none" else model
    threads = args.threads if device.type == "cpu" else [torch.get_num_threads()]
    packings = [True, False] if args.mask_frames else [True]
    text = torch.randn(1, 512, device=device)
    schedule = MDMDenoiser(base)
    settings = []
    for text_setting in args.settings:
        sampler, steps = text_setting.split(":")
        if sampler not in SAMPLERS:
            raise SystemExit(f"unknown sampler {sampler!r}: use one of {', '.join(SAMPLERS)}")
        levels = evaluation_sigmas(sampler, schedule.sigmas(int(steps)))
        settings.append((text_setting, sum(s > 0.5 for s in levels), sum(s <= 0.5 for s in levels)))
    print(f"device: {machine(device)}; torch {torch.__version__}; MDM trans_enc {config.latent_dim} x {config.layers} layers "
          f"({'mask_frames' if args.mask_frames else '196-frame canvas'}; {sum(p.numel() for p in base.parameters()):,} "
          f"parameters, random weights); seamless collage; compile {args.compile}; {load()}")

    cases = []  # (seconds, layout label, layout, dtype, threads, packed)
    for seconds in args.seconds:
        for label, layout in layouts_for(seconds, config):
            for dtype in args.dtypes:
                for n_threads in threads:
                    for packed in packings:
                        cases.append((seconds, label, layout, dtype, n_threads, packed))
    key = lambda case: case[:2] + case[3:]  # noqa: E731
    timed = {(key(c), level): {"cpu": [], "wall": []} for c in cases for level in (HIGH, LOW)}
    pieces = {}
    others: list[float] = []
    g = torch.Generator(device).manual_seed(0)

    def evaluate(case, n_evals, record):
        seconds, _, layout, dtype, n_threads, packed = case
        if device.type == "cpu":
            torch.set_num_threads(n_threads)
        denoiser = MDMDenoiser(models[dtype], guidance_scale=args.guidance, pack=packed)
        for level in (HIGH, LOW):
            collage = CollageDenoiser(denoiser, layout, "seamless")
            sigma = denoiser.round_sigma(torch.tensor(level)).float().to(device)
            x = sigma * torch.randn(1, config.n_feats, 1, layout.length, generator=g, device=device)
            for _ in range(n_evals):
                sync(device)
                cpu = time.process_time()
                with OthersMeter() as meter:
                    collage(x, sigma.expand(1), text_embed=text)
                    sync(device)
                if record:
                    timed[(key(case), level)]["cpu"].append(time.process_time() - cpu)
                    timed[(key(case), level)]["wall"].append(meter.wall)
                    if meter.others is not None and device.type == "cpu":
                        others.append(meter.others)
            pieces[(layout, level)] = collage.rows / collage.calls if collage.calls else 0

    with torch.inference_mode():
        for case in cases:  # warm-up (and compilation) of every case
            evaluate(case, 2 if args.compile != "none" else 1, False)
        for round_ in range(args.repeats):
            for case in cases:
                evaluate(case, args.evals, True)
            print(f"  round {round_ + 1}/{args.repeats} done; {load()}", flush=True)

    reference: dict[float, float] = {}
    print("\n| loop | layout | model rows per evaluation (high / low noise) | precision | threads | pieces | "
          "s / evaluation, CPU (high / low) | s / evaluation, wall (high / low) | "
          + " | ".join(f"{s}: CPU s / loop" for s, _, _ in settings)
          + f" | CPU time vs the first case of the loop, {settings[0][0]} |")
    print("|---|---|---|---|---|---|---|---|" + "---|" * len(settings) + "---|")
    for case in cases:
        seconds, label, layout, dtype, n_threads, packed = case
        med = {(level, what): statistics.median(timed[(key(case), level)][what]) for level in (HIGH, LOW) for what in ("cpu", "wall")}
        loops = [n_hi * med[(HIGH, "cpu")] + n_lo * med[(LOW, "cpu")] for _, n_hi, n_lo in settings]
        reference.setdefault(seconds, loops[0])
        guidance_rows = 2 if args.guidance != 1 else 1
        rows = " / ".join(f"{pieces[(layout, level)] * guidance_rows:.0f}" for level in (HIGH, LOW))
        kind = ("packed" if packed else "padded") if args.mask_frames else "canvas"
        print(f"| {seconds:g} s | {label}: {layout.n_windows} x {layout.window} (overlap {layout.overlap}) | {rows} | {dtype} | "
              f"{n_threads} | {kind} | {med[(HIGH, 'cpu')]:.3f} / {med[(LOW, 'cpu')]:.3f} | "
              f"{med[(HIGH, 'wall')]:.3f} / {med[(LOW, 'wall')]:.3f} | " + " | ".join(f"{s:.1f}" for s in loops)
              + " | " + " / ".join(f"{s / reference[seconds]:.2f}" for s in loops) + " |")
    print("\nModel evaluations per loop (above / at or below sigma 0.5): "
          + ", ".join(f"{s} {hi + lo} ({hi} / {lo})" for s, hi, lo in settings))
    if others:
        print(f"Other processes took {min(others):.0%}-{max(others):.0%} (median {statistics.median(others):.0%}) "
              f"of the CPU during the timed evaluations; {load()}")


if __name__ == "__main__":
    main()
