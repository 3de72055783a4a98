"""Sampling speed of MDM: the official sampler against EDM with batched guidance, and DiffCollage
loops against sequential outpainting, on the full-size ``humanml_trans_enc_512`` architecture with
random weights (speed does not depend on them; no files needed).

1. One 196-frame motion: official DDPM (1000 ancestral steps, the conditional and unconditional
   branches in two forward calls per step; timed over a slice of steps and extrapolated) and EDM
   Heun with both guidance branches in one call, at 20, 40 and 100 steps (full runs).
2. Loops of n = 2, 4, 8, 16 windows of 196 frames overlapping by 64: DiffCollage ``condind``
   (every window and overlap of the loop, both guidance branches, in ONE model call per
   evaluation), ``avg`` (windows only) and sequential outpainting by replacement (n window
   samplings one after the other; one window step is the same for every n, so it is timed once).
   Timed over a few Heun steps and extrapolated to a loop of --loop-steps steps; the n = 2 and
   n = 4 loops are also sampled in full to check the extrapolation. The n = 4 loop is also timed
   the official way (1000 DDPM steps of the same collage, guidance in two calls; 5 steps timed).

The original checkpoint's model (``mask_frames`` False) sees every row on its 196-frame canvas, so
every row of every call below is 196 frames: a window, an overlap or a single motion cost the same.

    python benchmarks/bench_speed.py                                   # CPU, about 10 minutes on 2 cores
    python benchmarks/bench_speed.py --device cuda --dtype bf16 --compile              # CUDA graphs
    python benchmarks/bench_speed.py --tiny --edm-steps 2 --windows 2 ...             # smoke run (timings mean nothing)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import textwrap
import time
from pathlib import Path

import torch

from motion_loop.baselines import ReplacementDenoiser, sample_collage, sample_outpainting
from motion_loop.collage import CollageDenoiser, Layout
from motion_loop.diffusion import MDMDenoiser, ddpm_sample, vp_model_fn
from motion_loop.mdm import MDM, MDMConfig
from motion_loop.sampling import sample_heun

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class _Enough(Exception):
    pass


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    return f"{model}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def load() -> str:
    return "load average %.2f %.2f %.2f" % os.getloadavg() if hasattr(os, "getloadavg") else "load n/a"


def _cpu_ticks() -> tuple[int, int] | None:
    """(busy ticks of the whole machine, ticks of this process) from /proc, or None off Linux."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError):
        return None
    return sum(fields[:8]) - fields[3] - fields[4], int(own[11]) + int(own[12])  # minus idle, iowait; utime + stime


class OthersMeter:
    """``with OthersMeter() as m: ...`` gives ``m.wall`` (seconds) and ``m.others``: the share of the
    machine's CPU time that other processes used meanwhile (None where /proc cannot tell). On a
    shared CPU a timing is only as good as that share is small."""

    def __enter__(self):
        self._before, self._start = _cpu_ticks(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        after, self.wall = _cpu_ticks(), time.perf_counter() - self._start
        self.others = None
        if self._before is not None and after is not None and self.wall > 0:
            ticks = os.sysconf("SC_CLK_TCK") * self.wall * os.cpu_count()
            self.others = max(0.0, ((after[0] - self._before[0]) - (after[1] - self._before[1])) / ticks)
        return False


OTHERS_MAX = 0.10  # a measurement is clean when other processes used under 10 % of the machine meanwhile
TRIES = 3


def measure(run, device: torch.device, label: str = "") -> tuple[float, float | None]:
    """``run()`` returns seconds (a total or a per-step figure). On a shared CPU other processes
    slow it down, so it is repeated (after a pause, at most TRIES times) while they used more than
    OTHERS_MAX of the machine; returns the fastest result and the share the others took during it
    (None on GPUs and where /proc cannot tell)."""
    best = None
    for attempt in range(TRIES):
        with OthersMeter() as meter:
            seconds = run()
        others = meter.others if device.type == "cpu" else None
        if best is None or seconds < best[0]:
            best = (seconds, others)
        if others is None or others < OTHERS_MAX:
            break
        if attempt < TRIES - 1:
            print(f"  (other processes took {others:.0%} of the CPU during {label or 'a measurement'}: measuring again)",
                  flush=True)
            time.sleep(20)
    return best


def flag(others: float | None) -> str:
    return "" if others is None or others < OTHERS_MAX else f" (others took {others:.0%} of the CPU)"


class _Compiled(torch.nn.Module):
    """A torch.compile'd MDM that the denoiser can hold like the model itself (``config``,
    ``parameters()``). Each call starts a new CUDA-graph step and returns a copy of the output:
    a graph replay overwrites its output buffers, and the official sampler keeps the conditional
    branch's output while it runs the unconditional one."""

    def __init__(self, model: MDM, mode: str):
        super().__init__()
        self.model, self.config = model, model.config
        self.compiled = torch.compile(model, mode=mode)

    def forward(self, *args, **kwargs):
        if hasattr(torch, "compiler") and hasattr(torch.compiler, "cudagraph_mark_step_begin"):
            torch.compiler.cudagraph_mark_step_begin()
        return self.compiled(*args, **kwargs).clone()


def compiled(model: MDM, mode: str = "reduce-overhead") -> torch.nn.Module:
    return _Compiled(model, mode)


def time_ddpm(model_fn, shape, alphas_cumprod, device, steps_timed: int, warmup: int = 2) -> float:
    """Median seconds per DDPM step over ``steps_timed`` steps after ``warmup`` steps."""
    stamps: list[float] = []

    def callback(info):
        sync(device)
        stamps.append(time.perf_counter())
        if len(stamps) > warmup + steps_timed:
            raise _Enough

    try:
        ddpm_sample(model_fn, shape, alphas_cumprod, generator=torch.Generator(device).manual_seed(0),
                    device=device, callback=callback)
    except _Enough:
        pass
    return statistics.median(b - a for a, b in zip(stamps[warmup:], stamps[warmup + 1:]))


def time_run(run, device) -> float:
    sync(device)
    start = time.perf_counter()
    run()
    sync(device)
    return time.perf_counter() - start


def heun_step_times(denoiser, x, sigmas, cond, device) -> list[float]:
    """Seconds of each Heun step of ``sample_heun`` over ``sigmas`` (a callback stamps every step)."""
    sync(device)
    stamps = [time.perf_counter()]

    def callback(info):
        sync(device)
        stamps.append(time.perf_counter())

    sample_heun(denoiser, x, sigmas, cond=cond, callback=callback)
    return [b - a for a, b in zip(stamps, stamps[1:])]


def time_heun_steps(denoiser, x, sigmas, cond, device, steps_timed: int) -> float:
    """Median seconds of a corrected Heun step (2 evaluations) over ``steps_timed`` steps after one
    warm-up step (the median keeps a step slowed by another process on the machine out)."""
    sample_heun(denoiser, x, sigmas[:2], cond=cond)
    return statistics.median(heun_step_times(denoiser, x, sigmas[: steps_timed + 1], cond, device))


def evaluations(steps: int) -> int:
    return 2 * steps - 1  # Heun; the last step (to sigma = 0) is a plain Euler step


def main() -> None:
    global TRIES
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="Example: python benchmarks/bench_speed.py --device cuda --dtype bf16")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 ... (default cpu)")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp32", help="model weights' dtype (default fp32)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False,
                   help="torch.compile the model (each new batch shape compiles during its warm-up)")
    p.add_argument("--compile-mode", choices=("default", "reduce-overhead", "max-autotune"), default="reduce-overhead",
                   help="torch.compile mode; reduce-overhead replays each batch shape as a CUDA graph on GPUs "
                        "(default reduce-overhead)")
    p.add_argument("--tries", type=int, default=TRIES,
                   help=f"measure again (after 20 s) while other processes take over 10%% of the CPU, up to this "
                        f"many times (default {TRIES})")
    p.add_argument("--tiny", action="store_true",
                   help="a 1-layer, 64-wide model instead of the full-size one (smoke runs: timings mean nothing)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--frames", type=int, default=196, help="frames of the single motion (default 196)")
    p.add_argument("--ddpm-steps-timed", type=int, default=20, help="DDPM steps timed, extrapolated to 1000 (default 20)")
    p.add_argument("--edm-steps", type=int, nargs="+", default=[20, 40, 100], help="EDM Heun steps (default 20 40 100)")
    p.add_argument("--windows", type=int, nargs="+", default=[2, 4, 8, 16], help="windows per loop (default 2 4 8 16)")
    p.add_argument("--window", type=int, default=196, help="frames per window (default 196)")
    p.add_argument("--overlap", type=int, default=64, help="frames shared by neighbouring windows (default 64)")
    p.add_argument("--loop-steps", type=int, default=40, help="Heun steps of a loop (default 40)")
    p.add_argument("--steps-timed", type=int, default=3, help="Heun steps timed per collage loop (default 3)")
    p.add_argument("--window-steps-timed", type=int, default=10,
                   help="Heun steps timed for one outpainting window (default 10)")
    p.add_argument("--ddpm-windows", type=int, nargs="*", default=[4],
                   help="loops also timed the official way: 1000 DDPM steps of the collage, guidance in 2 calls "
                        "(default 4)")
    p.add_argument("--check-windows", type=int, nargs="*", default=[2, 4],
                   help="loops also sampled in full to check the extrapolation (default 2 4)")
    p.add_argument("--guidance", type=float, default=2.5, help="classifier-free guidance scale (default 2.5)")
    p.add_argument("--plot", type=Path, default=None, help="also plot seconds per loop against n to this PNG")
    args = p.parse_args()

    TRIES = max(1, args.tries)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    size = dict(latent_dim=64, layers=1, ff_size=128, num_heads=4) if args.tiny else {}
    model = MDM(MDMConfig(**size)).to(device=device, dtype=DTYPES[args.dtype]).eval()  # humanml_trans_enc_512
    n_params = sum(p.numel() for p in model.parameters())
    if args.compile:
        model = compiled(model, args.compile_mode)
    text = torch.randn(1, 512, device=device)
    cond = {"text_embed": text}
    official = MDMDenoiser(model, guidance_scale=args.guidance, batch_guidance=False)
    ours = MDMDenoiser(model, guidance_scale=args.guidance)
    abar = official.alphas_cumprod
    g = torch.Generator(device).manual_seed(0)
    print(f"device: {machine(device)}; torch {torch.__version__}; {args.dtype}{f', compiled ({args.compile_mode})' if args.compile else ''}; "
          f"MDM trans_enc 512 ({n_params:,} parameters, random weights), guidance {args.guidance}; {load()}")

    with torch.inference_mode():
        # 1. one motion
        shape = (1, 263, 1, args.frames)
        ddpm_step, others = measure(lambda: time_ddpm(official.ddpm_model_fn(text), shape, abar, device,
                                                      args.ddpm_steps_timed), device, "DDPM")
        ddpm_total = ddpm_step * len(abar)
        print(f"\n## One {args.frames}-frame motion\n")
        print("| sampler | steps | model calls (rows each) | s / step (median) | s / motion | speed-up vs official |")
        print("|---|---|---|---|---|---|")
        print(f"| official DDPM, guidance in 2 calls | {len(abar)} | {2 * len(abar)} (1) | {ddpm_step:.3f} | "
              f"{ddpm_total:.1f} (extrapolated from {args.ddpm_steps_timed} steps){flag(others)} | 1.0 |", flush=True)
        for steps in args.edm_steps:
            sigmas = ours.sigmas(steps).to(device)
            x = sigmas[0].float() * torch.randn(shape, generator=g, device=device)
            sample_heun(ours, x, sigmas[-3:], cond=cond)  # warm-up
            times = []

            def edm_run():
                times[:] = heun_step_times(ours, x, sigmas, cond, device)
                return sum(times)

            seconds, others = measure(edm_run, device, f"EDM {steps} steps")
            n = len(sigmas) - 1
            levels = f"{n}" if n == steps else f"{n} ({steps} asked; {n} distinct discrete levels)"
            # the median corrected step (the last step, to sigma = 0, is a single evaluation)
            print(f"| EDM Heun, batched guidance | {levels} | {evaluations(n)} (2) | {statistics.median(times[:-1]):.3f} | "
                  f"{seconds:.1f}{flag(others)} | {ddpm_total / seconds:.0f}x |", flush=True)

        # 2. loops
        sigmas = ours.sigmas(args.loop_steps).to(device)
        n_steps = len(sigmas) - 1
        per_loop = evaluations(n_steps) / 2  # corrected-step equivalents of one sampling run
        # Outpainting: one window that holds its first overlap frames; the same cost for every n.
        mask = torch.arange(args.window, device=device) < args.overlap
        held = ReplacementDenoiser(ours, torch.zeros(1, 263, 1, args.window, device=device), mask, g)
        x = sigmas[0].float() * torch.randn(1, 263, 1, args.window, generator=g, device=device)
        window_step, window_others = measure(lambda: time_heun_steps(held, x, sigmas, cond, device, args.window_steps_timed),
                                             device, "an outpainting window")
        print(f"\n## Loops of n windows ({args.window} frames, overlap {args.overlap}), {n_steps} Heun steps "
              f"({evaluations(n_steps)} evaluations) per sampling; {load()}\n")
        print(f"One outpainting window: {window_step:.3f} s per Heun step (median of {args.window_steps_timed} steps)"
              f"{flag(window_others)}, {window_step * per_loop:.1f} s per window sampling.\n")
        print("| n | loop frames | sampler | model calls / evaluation | rows / call | s / Heun step (median) | s / loop | "
              "vs condind |")
        print("|---|---|---|---|---|---|---|---|")
        checks, per_loop_seconds = [], {"DiffCollage condind": [], "DiffCollage avg": [], "sequential outpainting": []}
        for n in args.windows:
            layout = Layout(args.window, args.overlap, n, cyclic=True)
            x = sigmas[0].float() * torch.randn(1, 263, 1, layout.length, generator=g, device=device)
            rows = {}
            for method in ("condind", "avg"):
                collage = CollageDenoiser(ours, layout, method)
                sample_heun(collage, x, sigmas[:2], cond=cond)  # warm-up: one step, 2 evaluations
                calls_per_evaluation = collage.calls / 2
                step, others = measure(lambda: statistics.median(heun_step_times(collage, x, sigmas[: args.steps_timed + 1],
                                                                                 cond, device)), device, f"{method} n={n}")
                pieces = layout.n_windows + (layout.n_overlaps if method == "condind" else 0)
                rows[method] = step
                per_loop_seconds[f"DiffCollage {method}"].append(step * per_loop)
                print(f"| {n} | {layout.length} | DiffCollage {method} | {calls_per_evaluation:.0f} | {2 * pieces} | "
                      f"{step:.2f}{flag(others)} | {step * per_loop:.1f} | {step / rows['condind']:.2f} |", flush=True)
            print(f"| {n} | {layout.length} | sequential outpainting | {n} sequential samplings x 1 | 2 | "
                  f"{window_step:.2f} per window | {n * window_step * per_loop:.1f} | "
                  f"{n * window_step / rows['condind']:.2f} |", flush=True)
            per_loop_seconds["sequential outpainting"].append(n * window_step * per_loop)
            if n in args.ddpm_windows:
                # The official way for a loop: MDM's 1000-step sampler over the same collage (x0 of the
                # composed windows), both guidance branches in separate calls.
                loop_official = vp_model_fn(CollageDenoiser(official, layout), abar, text_embed=text)
                ddpm_loop_step, others = measure(lambda: time_ddpm(loop_official, x.shape, abar, device, 5),
                                                 device, f"DDPM loop n={n}")
                print(f"| {n} | {layout.length} | DiffCollage condind, official DDPM (1000 steps) | 2 (guidance apart) | "
                      f"{layout.n_windows + layout.n_overlaps} | {ddpm_loop_step:.2f} per DDPM step{flag(others)} | "
                      f"{ddpm_loop_step * len(abar):.1f} | {ddpm_loop_step * len(abar) / (rows['condind'] * per_loop):.1f} |",
                      flush=True)
            if n in args.check_windows:
                full = {
                    "DiffCollage condind": measure(lambda: time_run(lambda: sample_collage(
                        ours, layout, (1, 263, 1), sigmas, cond=cond, generator=torch.Generator(device).manual_seed(1),
                        device=device), device), device, f"a full condind loop, n={n}"),
                    "sequential outpainting": measure(lambda: time_run(lambda: sample_outpainting(
                        ours, layout, (1, 263, 1), sigmas, cond=cond, generator=torch.Generator(device).manual_seed(1),
                        device=device), device), device, f"a full outpainting loop, n={n}"),
                }
                extrapolated = {"DiffCollage condind": rows["condind"] * per_loop,
                                "sequential outpainting": n * window_step * per_loop}
                checks.append((n, extrapolated, full))
        if checks:
            print("\nFull runs (measured) against the extrapolation:\n")
            print("| n | sampler | extrapolated s / loop | measured s / loop |")
            print("|---|---|---|---|")
            for n, extrapolated, full in checks:
                for name, (seconds, others) in full.items():
                    print(f"| {n} | {name} | {extrapolated[name]:.1f} | {seconds:.1f}{flag(others)} |")
    print(f"\n{load()}")
    if args.plot is not None:
        plot_loops(args.plot, args.windows, per_loop_seconds, f"{machine(device)}, {args.dtype}; windows of {args.window} "
                   f"frames, overlap {args.overlap}, {n_steps} Heun steps")
        print(f"plot: {args.plot}")


def plot_loops(path: Path, windows: list[int], seconds: dict[str, list[float]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=90)
    for (label, values), marker in zip(seconds.items(), "osd"):
        ax.plot(windows, values, marker=marker, label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(windows, [str(n) for n in windows])
    ax.set_xlabel("windows per loop")
    ax.set_ylabel("seconds per loop (extrapolated from timed steps)", fontsize=8)
    ax.set_title(textwrap.fill(title, 75), fontsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
