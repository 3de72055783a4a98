"""Loop samplers to compare DiffCollage with: one call each, the same signature, any EDM denoiser.

Every sampler makes ``[B, *features, layout.length]`` from a window denoiser
``D(x [R, *features, frames], sigma [R], **cond) -> x0`` (e.g. :class:`MDMDenoiser`) with the
same sampler (``sampler``: a name of :func:`motion_loop.sampling.run_sampler`, EDM Heun steps by
default) over the same ``sigmas``:

- ``sample_collage``: DiffCollage over the layout's windows and overlaps (``seamless``, ``condind``
  or ``avg``), all pieces in one batched call per evaluation.
- ``sample_independent``: one sample of the loop's whole length, played as a loop as it is (its
  last frame followed by its first): what you get without any loop-closing machinery.
- ``sample_outpainting``: sequential outpainting by replacement (the "autoregressive replacement"
  baseline of the DiffCollage paper, Zhang et al. 2023; the replacement method of Song et al. 2021,
  "Score-Based Generative Modeling through SDEs", and Ho et al. 2022, "Video Diffusion Models"):
  window by window, each one sampled with the frames it shares with windows already made held
  fixed. In a cycle the last window is held at both ends: the previous window's end and the first
  window's start.

``METHODS`` maps the names used by the benchmarks to these samplers.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from motion_loop.collage import CollageDenoiser, Layout, WrapsDenoiser
from motion_loop.sampling import Denoiser, run_sampler

class ReplacementDenoiser(WrapsDenoiser):
    """Inpainting by replacement: a denoiser of ``x`` in which the frames where ``mask`` is True are
    known to be ``known`` (clean, x0).

    At noise level sigma the inner denoiser sees the known frames as a fresh draw of
    ``x_sigma = known + sigma * eps`` (eps from ``generator``, a new draw at every call, as the
    forward process q(x_sigma | x0) gives them) and the sampler's own state elsewhere; the returned
    x0 is ``known`` on known frames and the inner prediction on the others. So any EDM sampler
    drives the known frames straight onto ``known`` (``d = (x - known) / sigma``) while the unknown
    frames are denoised in the context of the known ones.

    ``known`` is ``[B, ..., T]`` (the values on unknown frames are ignored); ``mask`` is bool and
    broadcasts to it (``[T]`` for the same frames in every sample).
    """

    def __init__(self, inner: Denoiser, known: Tensor, mask: Tensor, generator: torch.Generator | None = None):
        if mask.dtype != torch.bool:
            raise ValueError(f"mask must be a bool tensor, got {mask.dtype}")
        try:
            torch.broadcast_shapes(mask.shape, known.shape)
        except RuntimeError:
            raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to known {tuple(known.shape)}") from None
        self.inner, self.known, self.mask, self.generator = inner, known, mask.to(known.device), generator

    def __call__(self, x: Tensor, sigma: Tensor, **cond) -> Tensor:
        if x.shape != self.known.shape:
            raise ValueError(f"expected x of shape {tuple(self.known.shape)}, got {tuple(x.shape)}")
        sigma = torch.as_tensor(sigma, device=x.device)
        sigma_x = (sigma.expand(x.shape[0]) if sigma.ndim == 0 else sigma).to(x.dtype).view(-1, *[1] * (x.ndim - 1))
        eps = torch.randn(x.shape, generator=self.generator, device=x.device, dtype=x.dtype)
        known = self.known.to(x.dtype)
        x_in = torch.where(self.mask, known + sigma_x * eps, x)
        return torch.where(self.mask, known, self.inner(x_in, sigma, **cond))


def _initial_noise(shape: tuple[int, ...], sigmas: Tensor, generator: torch.Generator | None,
                   device: torch.device | str | None) -> Tensor:
    # x_T = sigma_max * eps, drawn as python -m sample draws it (same seed, same loop).
    device = device if device is not None else sigmas.device
    return sigmas[0].to(torch.float32) * torch.randn(shape, generator=generator, device=device)


def sample_collage(denoiser: Denoiser, layout: Layout, shape: tuple[int, ...], sigmas: Tensor, *,
                   method: str = "condind", cond: dict | None = None, s_churn: float = 0.0,
                   generator: torch.Generator | None = None, device: torch.device | str | None = None,
                   progress: bool = False, sampler: str = "heun") -> Tensor:
    """DiffCollage over ``layout``: ``[*shape, layout.length]`` (``shape = (B, *features)``)."""
    x = _initial_noise((*shape, layout.length), sigmas, generator, device)
    collage = CollageDenoiser(denoiser, layout, method, generator=generator)
    return run_sampler(sampler, collage, x, sigmas.to(x.device), cond=cond, s_churn=s_churn, generator=generator,
                       progress=progress)


def sample_independent(denoiser: Denoiser, layout: Layout, shape: tuple[int, ...], sigmas: Tensor, *,
                       cond: dict | None = None, s_churn: float = 0.0, generator: torch.Generator | None = None,
                       device: torch.device | str | None = None, progress: bool = False,
                       sampler: str = "heun") -> Tensor:
    """One plain sample of ``layout.length`` frames, ``[*shape, layout.length]``: the loop made by
    playing an ordinary motion over and over (the denoiser must take that many frames)."""
    x = _initial_noise((*shape, layout.length), sigmas, generator, device)
    return run_sampler(sampler, denoiser, x, sigmas.to(x.device), cond=cond, s_churn=s_churn, generator=generator,
                       progress=progress)


def outpainting_masks(layout: Layout) -> list[Tensor]:
    """For each window, in sampling order, which of its ``layout.window`` frames are already known.

    Window 0: none. Window i > 0: its first ``overlap`` frames (the end of window i - 1). In a cycle
    the last window also knows its last ``overlap`` frames, the start of window 0 (the loop closes).
    """
    w, o, n = layout.window, layout.overlap, layout.n_windows
    masks = []
    for i in range(n):
        mask = torch.zeros(w, dtype=torch.bool)
        if i > 0:
            mask[:o] = True
        if layout.cyclic and i == n - 1:
            mask[w - o:] = True
        masks.append(mask)
    return masks


def sample_outpainting(denoiser: Denoiser, layout: Layout, shape: tuple[int, ...], sigmas: Tensor, *,
                       cond: dict | None = None, s_churn: float = 0.0, generator: torch.Generator | None = None,
                       device: torch.device | str | None = None, progress: bool = False,
                       callback: Callable[[int, Tensor], None] | None = None,
                       window_cond: Callable[[int], dict] | None = None, sampler: str = "heun") -> Tensor:
    """Sequential outpainting by replacement over the windows of ``layout``, ``[*shape, layout.length]``.

    Window i (``layout.window_index[i]``) is sampled with ``sampler`` over ``sigmas`` through a
    :class:`ReplacementDenoiser` that holds the frames of :func:`outpainting_masks` at the values
    made so far; those frames are then copied in exactly (the sampler reaches them only up to
    rounding). n windows cost n sequential samplings of one window each. ``cond`` goes to every
    window, or ``window_cond(i)`` gives window i its own (e.g. its segment's prompt);
    ``callback(i, sequence)`` runs after each window.
    """
    out = None
    for i, (index, mask) in enumerate(zip(layout.window_index, outpainting_masks(layout))):
        x = _initial_noise((*shape, layout.window), sigmas, generator, device)
        if out is None:
            out = x.new_zeros((*shape, layout.length))
        index = index.to(x.device)
        mask = mask.to(x.device)
        known = out[..., index]
        window_denoiser = ReplacementDenoiser(denoiser, known, mask, generator) if bool(mask.any()) else denoiser
        window = run_sampler(sampler, window_denoiser, x, sigmas.to(x.device),
                             cond=window_cond(i) if window_cond is not None else cond, s_churn=s_churn,
                             generator=generator, progress=progress)
        out[..., index] = torch.where(mask, known, window)
        if callback is not None:
            callback(i, out)
    return out


def sample_blended_segments(denoiser: Denoiser, bounds: list[int], length: int, blend: int, shape: tuple[int, ...],
                            sigmas: Tensor, *, segment_cond: Callable[[int], dict], cyclic: bool,
                            s_churn: float = 0.0, generator: torch.Generator | None = None,
                            device: torch.device | str | None = None, sampler: str = "heun") -> Tensor:
    """Independent segments joined by a linear blend, ``[*shape, length]``.

    Segment k covers frames ``[bounds[k], bounds[k+1])`` (``bounds[0] = 0``, ``bounds[-1] = length``)
    and is sampled on its own, with ``segment_cond(k)``, ``blend / 2`` frames longer on each side;
    where two segments meet their samples are mixed with weights going linearly from one to the
    other over the ``blend`` frames centred on the boundary. In a cycle the last segment also blends
    into the first across frame 0. Segments of equal length are sampled in one batch each.
    """
    half = blend // 2
    out, weight = None, None
    for k in range(len(bounds) - 1):
        start, stop = bounds[k] - half, bounds[k + 1] + half
        x = _initial_noise((*shape, stop - start), sigmas, generator, device)
        sample = run_sampler(sampler, denoiser, x, sigmas.to(x.device), cond=segment_cond(k), s_churn=s_churn,
                             generator=generator)
        if out is None:
            out, weight = x.new_zeros((*shape, length)), x.new_zeros(length)
        # Ramp weights: 0 -> 1 over the first blend frames, 1 -> 0 over the last, 1 between.
        ramp = torch.ones(stop - start, device=x.device)
        edge = (torch.arange(blend, device=x.device) + 0.5) / blend
        ramp[:blend] = edge
        ramp[-blend:] = edge.flip(0)
        positions = torch.arange(start, stop, device=x.device)
        if cyclic:
            positions = positions % length
        else:  # a chain's ends have no neighbour: full weight, frames outside dropped
            ramp = torch.where((positions < half) | (positions >= length - half), torch.ones_like(ramp), ramp)
            keep = (positions >= 0) & (positions < length)
            positions, ramp, sample = positions[keep], ramp[keep], sample[..., keep]
        out.index_add_(-1, positions, sample * ramp)
        weight.index_add_(0, positions, ramp)
    return out / weight


def _collage(method: str):
    def sample(*args, **kwargs):
        return sample_collage(*args, method=method, **kwargs)

    sample.__doc__ = f"DiffCollage, {method}."
    return sample


METHODS: dict[str, Callable[..., Tensor]] = {
    "seamless": _collage("seamless"),
    "condind": _collage("condind"),
    "avg": _collage("avg"),
    "independent": sample_independent,
    "outpainting": sample_outpainting,
}
