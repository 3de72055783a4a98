"""Time MDM sampling the official way (1000 DDPM steps, two forward calls per step for guidance)
against the EDM path (Heun on Karras levels, both guidance branches in one batched call), for one
196-frame motion and for a DiffCollage loop of several windows.

Full-size ``humanml_trans_enc_512`` architecture with random weights (speed does not depend on
them; no files needed). The DDPM runs are timed over a slice of steps and extrapolated.

    python benchmarks/bench_mdm.py [--device cuda] [--ddpm-steps-timed 20]
"""

from __future__ import annotations

import argparse
import time

import torch

from motion_loop.collage import CollageDenoiser, Layout
from motion_loop.diffusion import MDMDenoiser, ddpm_sample, vp_model_fn
from motion_loop.mdm import MDM, MDMConfig
from motion_loop.sampling import sample_heun


class _Enough(Exception):
    pass


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ddpm(model_fn, shape, alphas_cumprod, device, steps_timed: int, warmup: int = 2) -> float:
    """Seconds for all N steps, extrapolated from ``steps_timed`` steps after ``warmup`` steps."""
    stamps: list[float] = []

    def callback(info):
        _sync(device)
        stamps.append(time.perf_counter())
        if len(stamps) > warmup + steps_timed:
            raise _Enough

    try:
        ddpm_sample(model_fn, shape, alphas_cumprod, generator=torch.Generator(device).manual_seed(0),
                    device=device, callback=callback)
    except _Enough:
        pass
    per_step = (stamps[-1] - stamps[warmup]) / (len(stamps) - 1 - warmup)
    return per_step * len(alphas_cumprod)


def time_heun(denoiser, shape, sigmas, cond, device) -> float:
    g = torch.Generator(device).manual_seed(0)
    x = sigmas[0].float() * torch.randn(shape, generator=g, device=device)
    # warm-up on a two-step schedule, then the real run
    sample_heun(denoiser, x, sigmas[-3:], cond=cond)
    _sync(device)
    start = time.perf_counter()
    sample_heun(denoiser, x, sigmas, cond=cond)
    _sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="torch device to run on (cpu, cuda, cuda:1, ...)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--frames", type=int, default=196, help="frames of the single motion")
    parser.add_argument("--heun-steps", type=int, default=40, help="Heun steps of the EDM path")
    parser.add_argument("--ddpm-steps-timed", type=int, default=20, help="DDPM steps timed (then extrapolated to 1000)")
    parser.add_argument("--window", type=int, default=120, help="frames per DiffCollage window of the loop")
    parser.add_argument("--overlap", type=int, default=40, help="frames shared by neighbouring windows")
    parser.add_argument("--windows", type=int, default=4, help="windows in the loop")
    parser.add_argument("--guidance", type=float, default=2.5, help="classifier-free guidance scale")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = MDM(MDMConfig()).to(device).eval()  # humanml_trans_enc_512, random weights
    n_params = sum(p.numel() for p in model.parameters())
    text = torch.randn(1, 512, device=device)
    official = MDMDenoiser(model, guidance_scale=args.guidance, batch_guidance=False)
    ours = MDMDenoiser(model, guidance_scale=args.guidance)
    abar = official.alphas_cumprod
    sigmas = ours.sigmas(args.heun_steps)
    n_evals = 2 * (len(sigmas) - 1) - 1
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else f'{torch.get_num_threads()} threads'}), "
          f"MDM trans_enc {n_params:,} parameters, guidance {args.guidance}")

    with torch.inference_mode():
        shape = (1, 263, 1, args.frames)
        t_ddpm = time_ddpm(official.ddpm_model_fn(text), shape, abar, device, args.ddpm_steps_timed)
        t_edm = time_heun(ours, shape, sigmas, {"text_embed": text}, device)
        print(f"one {args.frames}-frame motion: official DDPM {len(abar)} steps x 2 calls: {t_ddpm:8.2f} s (extrapolated) | "
              f"EDM Heun {args.heun_steps} steps, {n_evals} batched calls: {t_edm:6.2f} s | speed-up {t_ddpm / t_edm:5.1f}x")

        layout = Layout(args.window, args.overlap, args.windows, cyclic=True)
        shape = (1, 263, 1, layout.length)
        loop_official = CollageDenoiser(official, layout)
        loop_ours = CollageDenoiser(ours, layout)
        t_ddpm = time_ddpm(vp_model_fn(loop_official, abar, text_embed=text), shape, abar, device, args.ddpm_steps_timed)
        t_edm = time_heun(loop_ours, shape, sigmas, {"text_embed": text}, device)
        rows = 2 * layout.n_windows
        print(f"{args.windows}-window loop ({layout.length} frames, {rows} pieces on a 196-frame canvas): "
              f"official DDPM: {t_ddpm:8.2f} s (extrapolated) | EDM Heun: {t_edm:6.2f} s | speed-up {t_ddpm / t_edm:5.1f}x")


if __name__ == "__main__":
    main()
