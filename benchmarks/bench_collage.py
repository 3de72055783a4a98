"""DiffCollage cost and quality with toy denoisers (CPU or CUDA).

1. Cycle of n = 2, 4, 8, 16 windows, a small transformer as the window denoiser: wall time per
   sampling run, inner-model calls per step (constant in n: all windows and overlaps are batched).
2. Closed-form quality: stationary Gaussian AR(1) (rho 0.9) sampled as a chain and a cycle with
   `seamless` (the default), `condind` and `avg`: worst variance and lag-1 correlation over all positions.

    python benchmarks/bench_collage.py [--device cuda] [--steps 40]
"""

import argparse
import time

import torch

from motion_loop.collage import CollageDenoiser, Layout
from motion_loop.sampling import karras_sigmas, sample_heun


class ToyWindowModel(torch.nn.Module):
    """Stands in for MDM: a 2-layer transformer over the frames of a window."""

    accepts_padding = True

    def __init__(self, channels=64, width=128):
        super().__init__()
        self.inp = torch.nn.Linear(channels, width)
        layer = torch.nn.TransformerEncoderLayer(width, 4, 2 * width, dropout=0.0, batch_first=True)
        self.body = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.out = torch.nn.Linear(width, channels)

    def forward(self, x, sigma, pieces=None):
        h = self.inp(x.transpose(1, 2) / (1 + sigma[:, None, None] ** 2).sqrt())
        mask = None
        if pieces is not None:
            mask = torch.arange(x.shape[-1], device=x.device)[None] >= pieces.length[:, None]
        return self.out(self.body(h, src_key_padding_mask=mask)).transpose(1, 2)


def bench_cycles(device, steps, batch):
    model = ToyWindowModel().to(device).eval()
    print(f"\n## cycle of n windows (window 40, overlap 10), {steps} Heun steps, batch {batch}, {device}")
    print("| n windows | frames | inner calls / Heun step (2 evaluations) | rows / call | s / run |")
    print("|---|---|---|---|---|")
    for n in (2, 4, 8, 16):
        layout = Layout(40, 10, n, cyclic=True)
        den = CollageDenoiser(model, layout)
        g = torch.Generator(device).manual_seed(0)
        x = 80 * torch.randn(batch, 64, layout.length, generator=g, device=device)
        sigmas = karras_sigmas(steps, 0.002, 80.0, device=device)
        with torch.inference_mode():
            sample_heun(den, x, sigmas[:3], generator=g)  # warm-up
            den.calls = 0
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            sample_heun(den, x, sigmas, s_churn=10.0, generator=g)
            if device.type == "cuda":
                torch.cuda.synchronize()
            elapsed = time.perf_counter() - start
        print(f"| {n} | {layout.length} | {den.calls / steps:.2f} | {2 * n * batch} | {elapsed:.3f} |")


def ar1_denoiser(rho=0.9):
    def denoiser(x, sigma, pieces=None):
        n = x.shape[-1]
        pos = torch.arange(n, dtype=torch.float64, device=x.device)
        cov = rho ** (pos[:, None] - pos[None]).abs()
        out = torch.empty_like(x)
        for s in sigma.unique():
            eye = torch.eye(n, dtype=torch.float64, device=x.device)
            gain = cov @ torch.linalg.inv(cov + float(s) ** 2 * eye)
            rows = sigma == s
            out[rows] = (x[rows] @ gain.T).to(x.dtype)
        return out

    return denoiser


def bench_ar1(device, samples=4000, steps=60):
    print(f"\n## AR(1) rho=0.9, window 16, overlap 5, 5 windows, {samples} samples, {steps} Heun steps (churn 10)")
    print("| graph | method | variance min..max | lag-1 corr min..max | worst |corr - rho| at |")
    print("|---|---|---|---|---|")
    for cyclic in (False, True):
        for method in ("seamless", "condind", "avg"):
            layout = Layout(16, 5, 5, cyclic)
            g = torch.Generator(device).manual_seed(0)
            x = 80 * torch.randn(samples, 1, layout.length, generator=g, dtype=torch.float64, device=device)
            s = sample_heun(CollageDenoiser(ar1_denoiser(), layout, method, generator=g), x,
                            karras_sigmas(steps, 0.002, 80.0, device=device), s_churn=10.0, generator=g)[:, 0]
            var = s.var(0)
            nxt = torch.roll(s, -1, 1)
            corr = ((s - s.mean(0)) * (nxt - nxt.mean(0))).mean(0) / (s.std(0) * nxt.std(0))
            corr = corr if cyclic else corr[:-1]
            worst = int((corr - 0.9).abs().argmax())
            pair = f"({worst}, {(worst + 1) % layout.length})"
            print(f"| {'cycle' if cyclic else 'chain'} | {method} | {var.min():.3f}..{var.max():.3f} | "
                  f"{corr.min():.3f}..{corr.max():.3f} | {pair} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    parser.add_argument("--steps", type=int, default=40, help="Heun steps per run")
    parser.add_argument("--batch", type=int, default=2, help="samples per run")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.set_grad_enabled(False)
    bench_cycles(device, args.steps, args.batch)
    bench_ar1(device)


if __name__ == "__main__":
    main()
