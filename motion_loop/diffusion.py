"""MDM's diffusion: the cosine schedule, the official DDPM ancestral sampler, and an adapter that
turns an MDM into an EDM denoiser ``D(x, sigma) -> x0`` with classifier-free guidance.

MDM is a discrete VP model: ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` for t = 0 .. N-1, and
the network predicts x0. In EDM coordinates (Karras et al. 2022, Table 1, "VP" column) the same
state is ``x = x_t / sqrt(abar_t) = x0 + sigma_t eps`` with ``sigma_t = sqrt((1 - abar_t) / abar_t)``, so

    D(x, sigma_t) = model(x / sqrt(1 + sigma_t^2), t)        (1 / sqrt(1 + sigma^2) = sqrt(abar_t))

and only the N discrete sigmas are valid inputs: the adapter snaps any sigma to the nearest level
(in log sigma) and exposes ``round_sigma`` so EDM samplers do the same.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import Tensor

from motion_loop.collage import OVERLAP, Pieces
from motion_loop.mdm import MDM, MDMConfig, TextTokens
from motion_loop.sampling import karras_sigmas

DEFAULT_GUIDANCE = 2.5  # MDM's --guidance_param
# Noise levels at which python -m sample guides a motion of one prompt: sigma >= 2, the conditional
# model alone below. Guidance at the lowest levels amplifies the small differences of the two branches
# into one-frame glitches (a waving wrist: worst/median jerk 6.1 -> 2.9) and costs two rows per
# evaluation. Several actions keep guidance at every level: below sigma 2 each segment's windows
# finish on their own, and unguided they lose their kind (jogs read as walks). Both measured on the
# demo model (benchmarks/RESULTS.md, "Guidance off at the lowest noise levels").
DEFAULT_GUIDANCE_INTERVAL = (2.0, math.inf)

# ----------------------------------------------------------------------------------------------
# Schedules


def cosine_alphas_cumprod(n_steps: int) -> Tensor:
    """Nichol & Dhariwal's cosine schedule as MDM builds it (float64): ``f(t) = cos^2((t + 0.008) /
    1.008 * pi/2)``, ``beta_i = min(1 - f((i+1)/N) / f(i/N), 0.999)``, ``abar = cumprod(1 - beta)``."""
    f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    betas = [min(1 - f((i + 1) / n_steps) / f(i / n_steps), 0.999) for i in range(n_steps)]
    return torch.cumprod(1 - torch.tensor(betas, dtype=torch.float64), dim=0)


def linear_alphas_cumprod(n_steps: int) -> Tensor:
    """DDPM's linear schedule as MDM scales it to N steps: betas from 1e-4 to 0.02 times 1000 / N."""
    scale = 1000 / n_steps
    betas = torch.linspace(scale * 1e-4, scale * 0.02, n_steps, dtype=torch.float64)
    return torch.cumprod(1 - betas, dim=0)


def alphas_cumprod_for(config: MDMConfig) -> Tensor:
    """The schedule a checkpoint was trained with (``noise_schedule``, ``diffusion_steps``)."""
    schedules = {"cosine": cosine_alphas_cumprod, "linear": linear_alphas_cumprod}
    if config.noise_schedule not in schedules:
        raise ValueError(f"unknown noise_schedule {config.noise_schedule!r}: use 'cosine' or 'linear'")
    return schedules[config.noise_schedule](config.diffusion_steps)


def vp_to_edm_sigmas(alphas_cumprod: Tensor) -> Tensor:
    """``sigma_t = sqrt((1 - abar_t) / abar_t)``, increasing with t."""
    return ((1 - alphas_cumprod) / alphas_cumprod).sqrt()


# ----------------------------------------------------------------------------------------------
# The official DDPM ancestral sampler


def _posterior(alphas_cumprod: Tensor) -> dict[str, Tensor]:
    """Posterior q(x_{t-1} | x_t, x0) coefficients (float64) as MDM's GaussianDiffusion computes them,
    with betas recovered from abar (MDM's SpacedDiffusion does the same)."""
    abar = alphas_cumprod.double()
    abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])
    betas = 1 - abar / abar_prev
    variance = betas * (1 - abar_prev) / (1 - abar)
    return {
        "coef_x0": betas * abar_prev.sqrt() / (1 - abar),
        "coef_xt": (1 - abar_prev) * (1 - betas).sqrt() / (1 - abar),
        # The t = 0 variance is 0; its log is clipped to the t = 1 value (never used: no noise at t = 0).
        "log_variance": torch.cat([variance[1:2], variance[1:]]).log(),
    }


def _randn_mdm_order(shape: torch.Size, generator: torch.Generator | None, frame_major: bool, like: Tensor) -> Tensor:
    """``randn(shape)``, filled row-major, or frame-major (last axis slowest) when ``frame_major``."""
    if not frame_major:
        return torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)
    # normal_ on a non-contiguous tensor, as randn_like of MDM's x_t (torch then takes its
    # element-by-element path, which gives other numbers than a contiguous randn).
    noise = torch.empty((shape[-1], *shape[:-1]), device=like.device, dtype=like.dtype).movedim(0, -1)
    return noise.normal_(generator=generator)


@torch.no_grad()
def ddpm_sample(
    model_fn: Callable[[Tensor, Tensor], Tensor],
    shape: tuple[int, ...] | list[int],
    alphas_cumprod: Tensor,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    callback: Callable[[dict], None] | None = None,
    progress: bool = False,
) -> Tensor:
    """MDM's ``p_sample_loop`` (Ho et al. 2020, Alg. 2, x0-parameterised, FIXED_SMALL variance,
    no clipping): ``x_T ~ N(0, I)``; for t = N-1 .. 0: ``x0 = model_fn(x_t, t)``,
    ``x_{t-1} = c1 x0 + c2 x_t + [t > 0] exp(logvar / 2) z``.

    Random draws in MDM's order: x_T first, then one ``randn`` after every model call (t = 0 too),
    all from ``generator``; a CPU generator seeded s gives the stream of ``torch.manual_seed(s)``.
    Each draw fills its tensor in the memory order MDM's ``randn_like`` uses (row-major for the
    first step, frame-major after), so a seed gives MDM's sample.
    ``model_fn(x_t [B, ...], t [B] long) -> x0`` must draw no random numbers from it.
    """
    post = _posterior(alphas_cumprod)
    # MDM extracts float64 coefficients and casts them to float32 before use.
    coef_x0, coef_xt, log_var = (post[k].to(device=device, dtype=dtype) for k in ("coef_x0", "coef_xt", "log_variance"))
    x = torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)
    steps = range(len(alphas_cumprod) - 1, -1, -1)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="ddpm", leave=False)
    for i in steps:
        t = torch.full((x.shape[0],), i, device=device, dtype=torch.long)
        x0 = model_fn(x, t)
        mean = coef_x0[i] * x0 + coef_xt[i] * x
        # MDM draws randn_like(x_t), which follows x_t's memory layout: row-major for x_T, then
        # frame-major from the second step on (x_t inherits the layout of the network output,
        # which is a permuted [T, B, F, 1] tensor).
        noise = _randn_mdm_order(x.shape, generator, frame_major=i < len(alphas_cumprod) - 1, like=x)
        nonzero = float(i != 0)
        x = mean + nonzero * torch.exp(0.5 * log_var[i]) * noise
        if callback is not None:
            callback({"i": i, "x": x, "denoised": x0})
    return x


def vp_model_fn(denoiser: Callable[..., Tensor], alphas_cumprod: Tensor, **cond) -> Callable[[Tensor, Tensor], Tensor]:
    """``model_fn(x_t, t)`` for :func:`ddpm_sample` from any EDM denoiser (e.g. a DiffCollage of
    MDM windows): ``x0 = D(x_t / sqrt(abar_t), sigma_t)``, the VP-to-EDM change of variables."""
    abar = alphas_cumprod.double()
    sigmas = vp_to_edm_sigmas(abar)

    def model_fn(x_t: Tensor, t: Tensor) -> Tensor:
        t_cpu = t.cpu()
        scale = abar[t_cpu].rsqrt().to(device=x_t.device, dtype=x_t.dtype)
        sigma = sigmas[t_cpu].to(device=x_t.device, dtype=torch.promote_types(x_t.dtype, torch.float32))
        return denoiser(x_t * scale.view(-1, *[1] * (x_t.ndim - 1)), sigma, **cond)

    return model_fn


# ----------------------------------------------------------------------------------------------
# MDM as an EDM denoiser


class MDMDenoiser:
    """``D(x [R, F, 1, T], sigma [R], *, pieces=None, text_embed, lengths=None) -> x0`` for an MDM.

    **Guidance.** ``x0 = u + s (c - u)`` (classifier-free guidance in x0 space, default s = 2.5) with
    the conditional and unconditional rows stacked into one forward call (``batch_guidance=False``
    makes two calls, as MDM does); s = 1 runs the conditional branch only. ``guidance_interval
    (lo, hi)`` guides only rows whose sigma lies in ``[lo, hi]`` and runs the others conditional
    only, for half their rows (Kynkäänniemi et al. 2024, "Applying Guidance in a Limited Interval
    Improves Sample and Distribution Quality in Diffusion Models": guidance at high noise mostly
    narrows the spread, at low noise it does little; for MDM it makes one-frame glitches there).
    The library's default guides everywhere, as MDM does; ``python -m sample`` passes
    :data:`DEFAULT_GUIDANCE_INTERVAL`. MDM's ddpm sampler (:meth:`ddpm_model_fn`) follows the
    interval too, at its steps' sigmas.

    **Conditions.** ``text_embed`` is ``[B, D]`` (one prompt per sample), ``[B, n_windows, D]`` (one
    prompt per DiffCollage window; needs ``pieces``) or None (unconditional); for a DistilBERT
    model, :class:`~motion_loop.mdm.TextTokens` of ``[B, L, D]`` or ``[B, n_windows, L, D]``. An overlap row takes
    its neighbouring windows' embedding when both carry the same one, else the unconditional
    embedding: the overlap's factor is the marginal over the shared frames, and no single prompt
    describes frames shared by two differently prompted windows, so they get the prior (STMC,
    Petrovich et al. 2024, does the same: its DiffCollage transition pieces get the empty,
    unconditional prompt). Without ``pieces`` rows are samples
    and ``lengths [R]`` (optional) gives each row's valid frames; with ``pieces`` they come from
    ``pieces.length``. Returned x0 is 0 on padded frames (the training padding).

    **Short rows.** ``mask_frames`` checkpoints get a key padding mask. The original checkpoint
    (``mask_frames`` False) was trained on 196-frame zero-padded sequences without a mask and goes
    static when simply run on fewer frames (MDM issues #104, #175); it sees each row inside a
    ``canvas_frames`` (196) canvas whose extra frames look like the training padding at the current
    noise level: x0 = 0, so ``x_t = sqrt(1 - abar_t) eps``. ``eps`` is one fixed draw (seeded by
    ``padding_seed``) reused at every level, which is exactly the probability-flow ODE trajectory
    of a frame whose x0 is 0; the denoiser stays a deterministic function of ``(x, sigma)`` and
    Heun's two evaluations of a step see consistent padding. ``canvas_frames=None`` runs rows at
    their own width (MDM's behaviour, needed for exact official parity on short samples).

    **Packing.** With ``pack`` (default) a ``mask_frames`` model evaluates rows of different
    lengths (a collage's windows and overlaps) in one call per distinct length, each at its own
    width: the key padding mask already makes padded frames invisible, so the result is the padded
    call's, without the padded frames' cost. Canvas models see every row on the canvas anyway.

    **Precision.** The forward runs in the model's parameter dtype (a bf16 model gets bf16 inputs);
    its output is taken back to float32 before guidance, so the sampler's state stays float32.
    ``coarse_model`` (e.g. a bf16 copy of ``model``) runs the calls whose noise levels all lie above
    ``coarse_above``: an error made there is a small change of a very noisy input, which the later
    levels, run by ``model``, denoise again (``--dtype mixed``; benchmarks/RESULTS.md).
    """

    accepts_padding = True

    def __init__(
        self,
        model: MDM,
        *,
        guidance_scale: float = DEFAULT_GUIDANCE,
        alphas_cumprod: Tensor | None = None,
        batch_guidance: bool = True,
        canvas_frames: int | None | str = "auto",
        padding_seed: int = 0,
        pack: bool = True,
        guidance_interval: Sequence[float] | None = None,
        coarse_model: MDM | None = None,
        coarse_above: float = float("inf"),
    ):
        self.model = model
        self.coarse_model, self.coarse_above = coarse_model, float(coarse_above)
        if guidance_interval is not None:
            guidance_interval = tuple(float(s) for s in guidance_interval)  # e.g. argparse's [lo, hi]
            if len(guidance_interval) != 2 or not 0 <= guidance_interval[0] <= guidance_interval[1]:
                raise ValueError(f"guidance_interval must be (lo, hi) with 0 <= lo <= hi, got {guidance_interval}")
        self.guidance_interval = guidance_interval
        self.pack = pack
        self.config = model.config
        self.guidance_scale = float(guidance_scale)
        self.batch_guidance = batch_guidance
        self.alphas_cumprod = (alphas_cumprod if alphas_cumprod is not None else alphas_cumprod_for(model.config)).double()
        self.discrete_sigmas = vp_to_edm_sigmas(self.alphas_cumprod).cpu()  # [N] float64, increasing
        self._log_sigmas = self.discrete_sigmas.log()
        self.sigma_min = float(self.discrete_sigmas[0])
        self.sigma_max = float(self.discrete_sigmas[-1])
        if canvas_frames == "auto":
            canvas_frames = None if self.config.mask_frames else self.config.max_frames
        self.canvas_frames = canvas_frames
        self.padding_seed = padding_seed
        self._padding_noise: Tensor | None = None

    # --- discrete noise levels ----------------------------------------------------------------

    def sigma_to_t(self, sigma: Tensor | float) -> Tensor:
        """The diffusion step whose sigma is nearest in log sigma (LongTensor, sigma's shape)."""
        sigma = torch.as_tensor(sigma)
        log_sigma = sigma.detach().double().cpu().clamp(min=1e-30).log()
        t = (log_sigma[..., None] - self._log_sigmas).abs().argmin(dim=-1)
        return t.to(sigma.device)

    def round_sigma(self, sigma: Tensor | float) -> Tensor:
        """Snap to the nearest discrete level (so always inside ``[sigma_min, sigma_max]``); a tensor
        keeps its dtype and device, a number gives float64."""
        sigma = sigma if isinstance(sigma, Tensor) else torch.tensor(sigma, dtype=torch.float64)
        dtype = sigma.dtype if sigma.is_floating_point() else torch.float64
        return self.discrete_sigmas[self.sigma_to_t(sigma).cpu()].to(device=sigma.device, dtype=dtype)

    def sigmas(self, n_steps: int, sigma_max: float = 80.0, rho: float = 7.0) -> Tensor:
        """A sampler schedule: ``n_steps`` Karras levels (EDM eq. 5) from ``min(sigma_max, model max)``
        to the model's smallest level, snapped to the discrete levels, repeats removed (a model
        with few steps can have fewer than ``n_steps`` distinct ones), then 0. Float64."""
        sigmas = karras_sigmas(n_steps, self.sigma_min, min(sigma_max, self.sigma_max), rho, append_zero=False)
        sigmas = torch.unique_consecutive(self.round_sigma(sigmas))
        return torch.cat([sigmas, sigmas.new_zeros(1)])

    # --- the denoiser ---------------------------------------------------------------------------

    def __call__(
        self,
        x: Tensor,
        sigma: Tensor,
        *,
        pieces: Pieces | None = None,
        text_embed: Tensor | None = None,
        lengths: Tensor | None = None,
        guidance: Tensor | None = None,
    ) -> Tensor:
        rows = x.shape[0]
        sigma = torch.as_tensor(sigma, device=x.device)
        sigma = sigma.expand(rows) if sigma.ndim == 0 else sigma
        t = self.sigma_to_t(sigma)
        # x_vp = x / sqrt(1 + sigma_t^2) = sqrt(abar_t) x, with the level's own sigma.
        c_in = self.alphas_cumprod[t.cpu()].sqrt().to(device=x.device, dtype=x.dtype)
        if pieces is not None:
            if lengths is not None:
                raise ValueError("pass lengths only without pieces (pieces.length gives each row's frames)")
            lengths = pieces.length
        emb, conditional = self.row_conditions(text_embed, rows, pieces, x.device)
        guidance = self.guidance_at(sigma, guidance)
        x_vp = x * c_in[:, None, None, None]
        model = self.model_at(t)
        if lengths is not None and self.pack and self.config.mask_frames and self.canvas_frames is None:
            widths = sorted(set(lengths.tolist()))
            if len(widths) > 1:
                return self._packed(x_vp, t, emb, conditional, lengths.to(x.device), widths, guidance, model).to(x.dtype)
        x0 = self.predict_x0(x_vp, t, emb, conditional, lengths, guidance, model)
        return x0.to(x.dtype)

    def guidance_at(self, sigma: Tensor, guidance: Tensor | None = None) -> Tensor | None:
        """Per-row guidance scales ``[R]`` at noise levels ``sigma [R]``: ``guidance`` (default: the
        scale) inside ``guidance_interval``, 1 (the conditional model alone) outside; None (the scale
        everywhere) when every row is inside."""
        if self.guidance_interval is None:
            return guidance
        lo, hi = self.guidance_interval
        inside = (sigma >= lo) & (sigma <= hi)
        if bool(inside.all()):
            return guidance
        scale = guidance.to(sigma.device) if guidance is not None else torch.full(sigma.shape, self.guidance_scale,
                                                                                    device=sigma.device)
        return torch.where(inside, scale, torch.ones_like(scale))

    def model_at(self, t: Tensor) -> MDM:
        """The network for a call at diffusion steps ``t``: ``coarse_model`` when every row's level
        lies above ``coarse_above``, else ``model``."""
        if self.coarse_model is not None and bool((self.discrete_sigmas[t.cpu()] > self.coarse_above).all()):
            return self.coarse_model
        return self.model

    def _packed(self, x_vp: Tensor, t: Tensor, emb: Tensor, conditional: Tensor, lengths: Tensor,
                widths: list[int], guidance: Tensor | None = None, model: MDM | None = None) -> Tensor:
        """One :meth:`predict_x0` call per distinct row length, each row at its own width."""
        out = torch.zeros(x_vp.shape, device=x_vp.device, dtype=torch.float32)
        for width in widths:
            rows = (lengths == width).nonzero().squeeze(1)
            out[rows, ..., :width] = self.predict_x0(
                x_vp[rows, ..., :width], t[rows.to(t.device)], emb[rows], conditional[rows], lengths[rows],
                None if guidance is None else guidance.to(rows.device)[rows], model,
            ).float()
        return out

    def row_conditions(
        self, text_embed: Tensor | TextTokens | None, rows: int, pieces: Pieces | None, device: torch.device
    ) -> tuple[Tensor | TextTokens, Tensor]:
        """Per-row text embedding ``[R, D]`` (or :class:`TextTokens` ``[R, L, D]``) and whether the row
        is conditional ``[R]`` bool."""
        if isinstance(text_embed, TextTokens):
            return self._token_rows(text_embed.to(device), rows, pieces)
        if text_embed is None:
            return torch.zeros(rows, self.config.text_dim, device=device), torch.zeros(rows, dtype=torch.bool, device=device)
        text_embed = text_embed.to(device)
        if text_embed.ndim == 2 and pieces is None:
            if text_embed.shape[0] != rows:
                raise ValueError(f"text_embed has {text_embed.shape[0]} rows for {rows} samples")
            return text_embed, torch.ones(rows, dtype=torch.bool, device=device)
        if pieces is None:
            raise ValueError("per-window text_embed [B, n_windows, D] needs pieces (use a CollageDenoiser)")
        if text_embed.ndim == 2:
            return text_embed[pieces.sample], torch.ones(rows, dtype=torch.bool, device=device)
        if text_embed.ndim != 3 or text_embed.shape[1] != pieces.layout.n_windows:
            raise ValueError(
                f"text_embed must be [B, D] or [B, n_windows={pieces.layout.n_windows}, D], got {tuple(text_embed.shape)}"
            )
        left, right = pieces.neighbours()
        emb_left, emb_right = text_embed[pieces.sample, left], text_embed[pieces.sample, right]
        shared = (emb_left == emb_right).all(dim=-1) | (pieces.kind != OVERLAP)
        return torch.where(shared[:, None], emb_left, torch.zeros_like(emb_left)), shared

    def _token_rows(self, text: TextTokens, rows: int, pieces: Pieces | None) -> tuple[TextTokens, Tensor]:
        """:meth:`row_conditions` for token states: ``[B, L, D]`` per sample, ``[B, n_windows, L, D]``
        per window (an overlap keeps its windows' text when both have the same, else is unconditional)."""
        conditional = torch.ones(rows, dtype=torch.bool, device=text.device)
        if text.states.ndim == 3:
            if pieces is None:
                if len(text) != rows:
                    raise ValueError(f"text_embed has {len(text)} rows for {rows} samples")
                return text, conditional
            return text[pieces.sample], conditional
        if pieces is None or text.states.ndim != 4 or text.states.shape[1] != pieces.layout.n_windows:
            raise ValueError("per-window text tokens must be [B, n_windows, L, D] and need pieces (a CollageDenoiser)")
        left, right = pieces.neighbours()
        a, b = text[(pieces.sample, left)], text[(pieces.sample, right)]
        same = (a.states == b.states).flatten(1).all(dim=1) & (a.pad == b.pad).all(dim=1)
        shared = same | (pieces.kind != OVERLAP)
        return TextTokens(a.states * shared[:, None, None].to(a.states.dtype), a.pad), shared

    def predict_x0(
        self,
        x_t: Tensor,
        t: Tensor,
        text_embed: Tensor | TextTokens,
        conditional: Tensor | None = None,
        lengths: Tensor | None = None,
        guidance: Tensor | None = None,
        model: MDM | None = None,
    ) -> Tensor:
        """Guided x0 from VP-space ``x_t [R, F, 1, T]`` at integer steps ``t [R]`` (MDM's
        ``ClassifierFreeSampleModel``). ``conditional [R]`` False makes a row unconditional in both
        branches; ``lengths [R]`` marks valid frames (see the class docstring); ``guidance [R]``
        replaces the guidance scale per row (segments: a scale per segment row); ``model``: the
        network to run (default ``self.model``)."""
        model = self.model if model is None else model
        rows, n_frames = x_t.shape[0], x_t.shape[-1]
        device = x_t.device
        conditional = torch.ones(rows, dtype=torch.bool, device=device) if conditional is None else conditional
        lengths = torch.full((rows,), n_frames, device=device) if lengths is None else lengths.to(device)
        dtype = next(model.parameters()).dtype
        x_in, t = x_t.to(dtype), t.to(device)
        text_embed = text_embed.to(device=device, dtype=dtype)

        width = n_frames
        if self.canvas_frames is not None and bool((lengths < self.canvas_frames).any()):
            width = max(n_frames, self.canvas_frames)
            x_in = self._on_canvas(x_in, t, lengths, width)
        mask = (torch.arange(width, device=device) < lengths[:, None])[:, None, None, :]  # [R, 1, 1, W]

        scale = self.guidance_scale
        if guidance is not None:
            scale = guidance.to(device=device, dtype=torch.float32)[:, None, None, None]
            if bool((scale == 1.0).all()):
                scale = 1.0
        if (isinstance(scale, float) and scale == 1.0) or not bool(conditional.any()):
            x0 = self._forward(model, x_in, t, text_embed, ~conditional, mask)
        elif self.batch_guidance:
            both = self._forward(
                model,
                torch.cat([x_in, x_in]),
                torch.cat([t, t]),
                TextTokens.cat([text_embed] * 2) if isinstance(text_embed, TextTokens) else torch.cat([text_embed] * 2),
                torch.cat([~conditional, torch.ones_like(conditional)]),
                torch.cat([mask, mask]),
            )
            out_cond, out_uncond = both.chunk(2)
            x0 = out_uncond + scale * (out_cond - out_uncond)
        else:
            out_cond = self._forward(model, x_in, t, text_embed, ~conditional, mask)
            out_uncond = self._forward(model, x_in, t, text_embed, torch.ones_like(conditional), mask)
            x0 = out_uncond + scale * (out_cond - out_uncond)
        return (x0 * mask)[..., :n_frames]  # 0 on padded frames, back to the rows' width

    @staticmethod
    def _forward(model: MDM, x: Tensor, t: Tensor, text_embed: Tensor | TextTokens, uncond: Tensor, mask: Tensor) -> Tensor:
        # float32 out: guidance amplifies (c - u), which bf16 would round first
        return model(x, t, {"text_embed": text_embed, "uncond": uncond, "mask": mask}).float()

    def _on_canvas(self, x_t: Tensor, t: Tensor, lengths: Tensor, width: int) -> Tensor:
        """Rows inside a ``width``-frame canvas whose frames past each row's length are training
        padding at step t: ``sqrt(1 - abar_t) eps`` (x0 = 0) with a fixed ``eps``."""
        eps = self.padding_noise(x_t.shape[1:-1], width, x_t.device).to(x_t.dtype)
        noise_std = (1 - self.alphas_cumprod[t.cpu()]).sqrt().to(device=x_t.device, dtype=x_t.dtype)
        padding = noise_std[:, None, None, None] * eps
        x_pad = torch.nn.functional.pad(x_t, (0, width - x_t.shape[-1]))
        valid = torch.arange(width, device=x_t.device) < lengths[:, None].to(x_t.device)
        return torch.where(valid[:, None, None, :], x_pad, padding)

    def padding_noise(self, feature_shape: tuple[int, ...], width: int, device: torch.device | str = "cpu") -> Tensor:
        """The fixed ``eps [*feature_shape, width]`` of the padding frames, drawn once on the CPU
        from ``padding_seed`` (the same numbers on every device; drawn again, from the same seed,
        if a wider canvas is needed)."""
        eps = self._padding_noise
        if eps is None or eps.shape[:-1] != tuple(feature_shape) or eps.shape[-1] < width:
            generator = torch.Generator().manual_seed(self.padding_seed)
            eps = torch.randn((*feature_shape, width), generator=generator)
        self._padding_noise = eps = eps.to(device)  # kept where it is used
        return eps[..., :width]

    # --- MDM's own sampler ------------------------------------------------------------------------

    def ddpm_model_fn(self, text_embed: Tensor | TextTokens | None, lengths: Tensor | None = None) -> Callable[[Tensor, Tensor], Tensor]:
        """``model_fn(x_t, t)`` for :func:`ddpm_sample`: guided x0 of samples with ``text_embed [B, D]``."""

        def model_fn(x_t: Tensor, t: Tensor) -> Tensor:
            emb, conditional = self.row_conditions(text_embed, x_t.shape[0], None, x_t.device)
            sigma = self.discrete_sigmas[t.cpu()].to(x_t.device)
            return self.predict_x0(x_t, t, emb, conditional, lengths, self.guidance_at(sigma), model=self.model_at(t))

        return model_fn

    def ddpm_sample(
        self,
        shape: tuple[int, ...] | list[int],
        text_embed: Tensor | TextTokens | None,
        *,
        lengths: Tensor | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        progress: bool = False,
    ) -> Tensor:
        """MDM's ``--sampler ddpm`` path: N ancestral steps (:func:`ddpm_sample`), in VP = x0 units."""
        device = device if device is not None else next(self.model.parameters()).device
        return ddpm_sample(
            self.ddpm_model_fn(text_embed, lengths),
            shape,
            self.alphas_cumprod,
            generator=generator,
            device=device,
            progress=progress,
        )
