"""EDM samplers (Karras et al. 2022) over the contract ``denoiser(x, sigma, **cond) -> x0``.

``x_sigma = x0 + sigma * eps``. Samplers are pure functions of a decreasing sigma tensor; all their
randomness comes from the ``torch.Generator`` they are given. A denoiser whose model only knows
discrete noise levels exposes ``round_sigma(sigma)`` (as EDM's networks do) and the samplers snap
the churned level ``t_hat`` with it.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

Denoiser = Callable[..., Tensor]


def karras_sigmas(
    n_steps: int,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    *,
    append_zero: bool = True,
    device: torch.device | str | None = None,
) -> Tensor:
    """EDM eq. 5: ``sigma_i = (smax^(1/rho) + i/(N-1) * (smin^(1/rho) - smax^(1/rho)))^rho``.

    Returns ``n_steps`` levels from ``sigma_max`` down to ``sigma_min`` (float64), followed by 0
    when ``append_zero`` (then ``n_steps`` sampler steps end on the clean sample).
    """
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    if not 0 < sigma_min <= sigma_max:
        raise ValueError(f"need 0 < sigma_min <= sigma_max, got {sigma_min}, {sigma_max}")
    ramp = torch.linspace(0, 1, n_steps, dtype=torch.float64, device=device)
    max_inv_rho, min_inv_rho = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho
    if append_zero:
        sigmas = torch.cat([sigmas, sigmas.new_zeros(1)])
    return sigmas


def rev_ts(
    n_step: int,
    ts_order: float,
    sigma_min: float = 1e-3,
    sigma_max: float = 80.0,
    *,
    device: torch.device | str | None = None,
) -> Tensor:
    """The DiffCollage seed's schedule: ``n_step + 1`` levels from ``sigma_max`` to ``sigma_min``.

    It is :func:`karras_sigmas` with ``rho = ts_order`` and no trailing zero, so every one of the
    ``n_step`` Heun steps (the last one too) gets its second-order correction.
    """
    return karras_sigmas(n_step + 1, sigma_min, sigma_max, ts_order, append_zero=False, device=device)


def _round_sigma(denoiser: Denoiser, sigma: Tensor) -> Tensor:
    round_sigma = getattr(denoiser, "round_sigma", None)
    return sigma if round_sigma is None else round_sigma(sigma)


def _sigma_batch(sigma: Tensor, x: Tensor) -> Tensor:
    # float32 at least: a bf16 sigma could not name a discrete level of a 1000-step model.
    dtype = torch.promote_types(x.dtype, torch.float32)
    return sigma.to(device=x.device, dtype=dtype).expand(x.shape[0])


def _steps(n: int, progress: bool, desc: str):
    if not progress:
        return range(n)
    from tqdm.auto import trange

    return trange(n, desc=desc, leave=False)


@torch.no_grad()
def sample_heun(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond: dict | None = None,
    s_churn: float = 0.0,
    s_tmin: float = 0.05,
    s_tmax: float = 50.0,
    s_noise: float = 1.003,
    generator: torch.Generator | None = None,
    noise_sampler: Callable[[Tensor, Tensor], Tensor] | None = None,
    callback: Callable[[dict], None] | None = None,
    progress: bool = False,
) -> Tensor:
    """EDM Algorithm 2: Heun's 2nd-order method with stochastic churn.

    ``x`` is the initial sample at noise level ``sigmas[0]`` (e.g. ``sigma_max * randn``).
    ``sigmas`` is decreasing; when it ends in 0 the last step is a plain Euler step (EDM), else
    every step is corrected (the DiffCollage seed). Churn ``gamma = min(s_churn / N, sqrt(2) - 1)``
    with N the number of steps is applied while ``s_tmin <= t <= s_tmax``; the injected noise is
    drawn from ``generator`` (or from ``noise_sampler(t_cur, t_hat)`` when given).
    ``callback`` gets ``{"i", "x", "sigma", "sigma_hat", "denoised"}`` after each step.
    """
    cond = cond or {}
    n_steps = len(sigmas) - 1
    gamma_max = min(s_churn / n_steps, math.sqrt(2) - 1) if n_steps > 0 else 0.0
    for i in _steps(n_steps, progress, "sampling"):
        t_cur, t_next = sigmas[i], sigmas[i + 1]
        # Increase noise temporarily: t_hat = t_cur * (1 + gamma).
        gamma = gamma_max if s_tmin <= t_cur <= s_tmax else 0.0
        t_hat = _round_sigma(denoiser, t_cur * (1 + gamma)) if gamma > 0 else t_cur
        if gamma > 0:
            eps = (
                noise_sampler(t_cur, t_hat)
                if noise_sampler is not None
                else torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            )
            x_hat = x + (t_hat**2 - t_cur**2).clamp(min=0).sqrt().to(x.dtype) * s_noise * eps
        else:
            x_hat = x
        # Euler step from t_hat to t_next.
        denoised = denoiser(x_hat, _sigma_batch(t_hat, x), **cond)
        d_cur = (x_hat - denoised) / t_hat.to(x.dtype)
        x_next = x_hat + (t_next - t_hat).to(x.dtype) * d_cur
        # 2nd-order correction, skipped on a final step to sigma = 0.
        if t_next > 0:
            denoised = denoiser(x_next, _sigma_batch(t_next, x), **cond)
            d_prime = (x_next - denoised) / t_next.to(x.dtype)
            x_next = x_hat + (t_next - t_hat).to(x.dtype) * (0.5 * d_cur + 0.5 * d_prime)
        x = x_next
        if callback is not None:
            callback({"i": i, "x": x, "sigma": t_cur, "sigma_hat": t_hat, "denoised": denoised})
    return x


@torch.no_grad()
def sample_euler(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond: dict | None = None,
    callback: Callable[[dict], None] | None = None,
    progress: bool = False,
) -> Tensor:
    """Deterministic Euler steps of the probability-flow ODE ``dx/dsigma = (x - D(x, sigma)) / sigma``
    (EDM Algorithm 1 without the correction): one model call per step."""
    cond = cond or {}
    for i in _steps(len(sigmas) - 1, progress, "sampling"):
        t_cur, t_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, _sigma_batch(t_cur, x), **cond)
        d_cur = (x - denoised) / t_cur.to(x.dtype)
        x = x + (t_next - t_cur).to(x.dtype) * d_cur
        if callback is not None:
            callback({"i": i, "x": x, "sigma": t_cur, "sigma_hat": t_cur, "denoised": denoised})
    return x


@torch.no_grad()
def sample_dpmpp_2m(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond: dict | None = None,
    callback: Callable[[dict], None] | None = None,
    progress: bool = False,
) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2): a multistep second-order
    solver of the probability-flow ODE in ``lambda = -log sigma``, one model call per step.

    With ``h_i = lambda_{i+1} - lambda_i`` and ``r_i = h_{i-1} / h_i``:
    ``D_i = (1 + 1/(2 r_i)) x0_i - 1/(2 r_i) x0_{i-1}`` (x0_0 alone on the first step) and
    ``x_{i+1} = (sigma_{i+1} / sigma_i) x_i - expm1(-h_i) D_i``; a step to sigma = 0 returns ``D_i``'s
    first-order value, the denoised sample itself. Deterministic: no generator.
    """
    cond = cond or {}
    denoised_prev = None
    for i in _steps(len(sigmas) - 1, progress, "sampling"):
        t_cur, t_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, _sigma_batch(t_cur, x), **cond)
        if t_next == 0:
            x = denoised  # lambda -> inf: the exponential integrator lands on the prediction
        else:
            h = (t_cur / t_next).log()  # lambda_next - lambda_cur
            d = denoised
            if denoised_prev is not None:
                r = (sigmas[i - 1] / t_cur).log() / h
                d = (1 + 1 / (2 * r)).to(x.dtype) * denoised - (1 / (2 * r)).to(x.dtype) * denoised_prev
            x = (t_next / t_cur).to(x.dtype) * x - torch.expm1(-h).to(x.dtype) * d
        denoised_prev = denoised
        if callback is not None:
            callback({"i": i, "x": x, "sigma": t_cur, "sigma_hat": t_cur, "denoised": denoised})
    return x


def exponential_weights(h: float, nodes: list[float]) -> list[float]:
    """Weights ``w_k`` of the exponential integrator step ``x_next = e^-h x + sum_k w_k D_k``
    (probability-flow ODE in ``lambda = -log sigma``, x0-prediction ``D``), when ``D(lambda_cur + u)``
    is taken to be the polynomial through the values ``D_k`` at offsets ``u = nodes[k]``.

    The exact step is ``x(lambda_cur + h) = e^-h x + int_0^h e^-(h - u) D(u) du`` (DPM-Solver++,
    Lu et al. 2022, eq. 9 with alpha = 1). With ``D(u) = sum_j c_j u^j`` it is
    ``sum_j c_j psi_j(h)``, ``psi_j(h) = int_0^h e^-(h-u) u^j du`` (``psi_0 = 1 - e^-h``,
    ``psi_j = h^j - j psi_{j-1}``), and ``c = V^-1 D`` with the Vandermonde ``V_kj = nodes[k]^j``,
    so ``w = V^-T psi``. One node (0) is DPM-Solver++(1), Euler in lambda; nodes at earlier steps
    make Adams-Bashforth-like multistep solvers (DPM-Solver++(kM) with exact phi functions); a node
    at ``h`` makes the Adams-Moulton-like corrector of UniPC (Zhao et al. 2023).
    """
    m = len(nodes)
    psi = [-math.expm1(-h)]
    for j in range(1, m):
        psi.append(h**j - j * psi[-1])
    vander = torch.tensor([[u**j for j in range(m)] for u in nodes], dtype=torch.float64)
    return torch.linalg.solve(vander.T, torch.tensor(psi, dtype=torch.float64)).tolist()


@torch.no_grad()
def sample_multistep(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    order: int = 3,
    corrector: bool = False,
    cond: dict | None = None,
    callback: Callable[[dict], None] | None = None,
    progress: bool = False,
) -> Tensor:
    """Multistep exponential integrator of the probability-flow ODE, one model call per step.

    Order ``order`` (1-3, lower on the first steps, when fewer past predictions exist):
    DPM-Solver++(3M) with exact phi functions for ``order=3`` (:func:`exponential_weights` over the
    current and two previous predictions). With ``corrector`` (UniPC's UniC, Zhao et al. 2023),
    each new prediction ``D(x_next)``, which the next step needs anyway, first corrects ``x_next``:
    the step is redone with that prediction as one more node at ``u = h``, one order higher at no
    extra model call (the next step still uses the prediction made at the uncorrected point, as
    UniPC does). A step to sigma = 0 returns the prediction itself (lambda = inf).
    Deterministic: no generator.
    """
    if order not in (1, 2, 3):
        raise ValueError(f"order must be 1, 2 or 3, got {order}")
    cond = cond or {}
    lambdas = [-math.log(float(s)) if s > 0 else math.inf for s in sigmas]
    history: list[tuple[float, Tensor]] = []  # (lambda, D) of the last predictions, newest last
    x_prev = None  # x at the previous level, for the corrector
    for i in _steps(len(sigmas) - 1, progress, "sampling"):
        t_cur, t_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, _sigma_batch(t_cur, x), **cond)
        if corrector and x_prev is not None:
            # Redo the previous step with this prediction as a node at its end (u = h).
            lam_prev, h_prev = history[-1][0], lambdas[i] - history[-1][0]
            past = history[-order + 1:] if order > 1 else []
            nodes = [h_prev] + [lam - lam_prev for lam, _ in reversed(past)]
            values = [denoised] + [d for _, d in reversed(past)]
            x = _exp_step(x_prev, h_prev, nodes, values)
        history = (history + [(lambdas[i], denoised)])[-3:]
        if t_next == 0:
            x = denoised  # lambda -> inf: the exponential integrator lands on the prediction
        else:
            h = lambdas[i + 1] - lambdas[i]
            used = history[-order:]
            nodes = [lam - lambdas[i] for lam, _ in reversed(used)]
            x_prev, x = x, _exp_step(x, h, nodes, [d for _, d in reversed(used)])
        if callback is not None:
            callback({"i": i, "x": x, "sigma": t_cur, "sigma_hat": t_cur, "denoised": denoised})
    return x


def _exp_step(x: Tensor, h: float, nodes: list[float], values: list[Tensor]) -> Tensor:
    out = x * math.exp(-h)
    for weight, value in zip(exponential_weights(h, nodes), values):
        out = out + weight * value
    return out


def sample_dpmpp_3m(denoiser: Denoiser, x: Tensor, sigmas: Tensor, **kwargs) -> Tensor:
    """DPM-Solver++(3M), exact phi functions: :func:`sample_multistep` of order 3."""
    return sample_multistep(denoiser, x, sigmas, order=3, **kwargs)


def sample_unipc(denoiser: Denoiser, x: Tensor, sigmas: Tensor, **kwargs) -> Tensor:
    """UniPC-like: the order-2 multistep predictor with the free order-3 corrector (UniC)."""
    return sample_multistep(denoiser, x, sigmas, order=2, corrector=True, **kwargs)


# The CLI's sampler: DPM-Solver++(3M), 30 steps. On the demo model's loops (benchmarks/eval_loops.py, 10 kinds
# x 5 seeds) its seams were smoother than Heun 40's (seam/interior jerk median 1.28 against 1.45) for 0.37x the
# model calls; benchmarks/RESULTS.md, "Fast defaults".
DEFAULT_SAMPLER = "dpmpp_3m"
DEFAULT_STEPS = 30
# The --sampler names run_sampler takes (python -m sample adds its "ddpm"), the default first.
ODE_SAMPLERS = ("dpmpp_3m", "edm", "dpmpp_2m", "unipc")

SAMPLERS = {"heun": sample_heun, "euler": sample_euler, "dpmpp_2m": sample_dpmpp_2m,
            "dpmpp_3m": sample_dpmpp_3m, "unipc": sample_unipc}


def run_sampler(name: str, denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, cond: dict | None = None,
                s_churn: float = 0.0, generator: torch.Generator | None = None, progress: bool = False) -> Tensor:
    """The sampler called ``name`` in :data:`SAMPLERS` (``edm`` is ``heun``, the CLI's name for it)
    from ``x`` at ``sigmas[0]``. Only Heun takes stochastic churn; the others are deterministic."""
    name = "heun" if name == "edm" else name
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}: use edm or one of {', '.join(SAMPLERS)}")
    if name == "heun":
        return sample_heun(denoiser, x, sigmas, cond=cond, s_churn=s_churn, generator=generator, progress=progress)
    if s_churn:
        raise ValueError(f"stochastic churn needs the edm (Heun) sampler, not {name}")
    return SAMPLERS[name](denoiser, x, sigmas, cond=cond, progress=progress)


def evaluations(sampler: str, sigmas: Tensor) -> int:
    """Model evaluations a sampler makes over ``sigmas`` (Heun skips its correction on a step to 0)."""
    return len(evaluation_sigmas(sampler, sigmas))


def evaluation_sigmas(sampler: str, sigmas: Tensor) -> list[float]:
    """The noise levels at which a deterministic sampler calls the denoiser, in order: Heun at
    each step's start and (unless it ends at 0) its end; the one-call samplers at each step's start.
    What a call costs can depend on the level (the ``seamless`` collage drops its overlap rows at
    low noise)."""
    levels = [float(s) for s in sigmas]
    sampler = "heun" if sampler == "edm" else sampler
    if sampler == "heun":
        out = []
        for t_cur, t_next in zip(levels[:-1], levels[1:]):
            out += [t_cur] + ([t_next] if t_next > 0 else [])
        return out
    return levels[:-1]
