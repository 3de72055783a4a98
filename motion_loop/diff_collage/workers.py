"""The DiffCollage seed's API (``CondIndLong``, ``AvgLong``, ``sampling``, ...) as thin adapters.

Workers turn an ``eps_fn(xs, scalar_t, enable_grad)`` over pieces ``[(B*n), C, H, w]`` into an
x0-predictor of the long content ``[B, C, H, L]`` through :class:`motion_loop.collage.CollageDenoiser`,
and :func:`sampling` runs :func:`motion_loop.sampling.sample_heun`. Unlike the public reference,
they run on CPU, take any overlap up to half a window, clip x0 only when asked
(``clip_x0=True``, for images in [-1, 1]), average with a real average, and subtract every
overlap of a cycle, the wrap-around seam included.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..collage import CollageDenoiser, Layout
from ..sampling import rev_ts as _rev_ts
from ..sampling import sample_heun

__all__ = ["BaseWorker", "CondIndLong", "CondIndCircle", "AvgLong", "AvgCircle", "sampling"]


class BaseWorker:
    """A DiffCollage layout of ``num_img`` pieces of ``shape = (C, H, w)`` along the last axis."""

    method = "condind"
    cyclic = False

    def __init__(
        self,
        shape: tuple[int, ...],
        eps_fn: Callable[[Tensor, Tensor, bool], Tensor],
        num_img: int,
        overlap_size: int | None = None,
        sigma_max: float = 80.0,
        sigma_min: float = 1e-3,
        *,
        device: torch.device | str | None = None,
        clip_x0: bool = False,
    ):
        *rest, width = shape
        overlap = width // 2 if overlap_size is None else overlap_size
        self.layout = Layout(width, overlap, num_img, self.cyclic)
        self.piece_shape = tuple(shape)
        self.shape = (*rest, self.layout.length)
        self.eps_fn = eps_fn
        self.sigma_max, self.sigma_min = sigma_max, sigma_min
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.clip_x0 = clip_x0
        self.denoiser = CollageDenoiser(self._piece_x0, self.layout, self.method)

    def _piece_x0(self, xs: Tensor, sigma: Tensor, pieces, enable_grad: bool = False) -> Tensor:
        del pieces  # one model for every piece
        scalar_t = sigma[0]
        eps = self.eps_fn(xs, scalar_t, enable_grad)
        return xs - scalar_t.to(xs.dtype) * eps

    def generate_xT(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Initial noise ``sigma_max * randn`` of ``n`` long samples."""
        return self.sigma_max * torch.randn((n, *self.shape), generator=generator, device=self.device)

    def noise(self, xt: Tensor, scalar_t=None) -> Tensor:
        del scalar_t
        return torch.randn_like(xt)

    def rev_ts(self, n_step: int, ts_order: float) -> Tensor:
        return _rev_ts(n_step, ts_order, self.sigma_min, self.sigma_max, device=self.device)

    def x0_fn(self, xt: Tensor, scalar_t, enable_grad: bool = False):
        """``(x0, loss_info, traj_info)`` of the long content at noise level ``scalar_t``."""
        with torch.set_grad_enabled(enable_grad):
            x0 = self.denoiser(xt, torch.as_tensor(scalar_t, device=xt.device))
        if self.clip_x0:
            x0 = x0.clamp(-1, 1)
        return x0, {}, {"x0": x0.detach().cpu()}


class CondIndLong(BaseWorker):
    """Long content: a chain of windows, composed with the conditional-independence factor graph."""


class CondIndCircle(BaseWorker):
    """Looped content: a cycle of windows; all n overlaps (the seam too) are subtracted."""

    cyclic = True


class AvgLong(BaseWorker):
    """MultiDiffusion-style baseline: average overlapping windows' predictions."""

    method = "avg"


class AvgCircle(AvgLong):
    cyclic = True


def sampling(
    x: Tensor | Callable[[], Tensor],
    rev_ts: Tensor,
    noise_fn: Callable[[Tensor, Tensor], Tensor],
    x0_pred_fn: Callable,
    s_churn: float = 0.0,
    is_tqdm: bool = True,
    is_traj: bool = False,
    return_traj: bool | None = None,
):
    """The seed's EDM sampler (Heun, churn with ``eta = min(s_churn / len(rev_ts), sqrt(2) - 1)``).

    Returns the final sample, or with ``is_traj`` (alias ``return_traj``) ``(traj, measure_loss)``
    where ``traj["xt"]`` lists x_T and the sample after every step (CPU) and ``traj["x0"]`` each
    step's x0 prediction.
    """
    want_traj = is_traj if return_traj is None else return_traj
    x = x() if callable(x) else x
    traj: dict[str, list] = {"xt": [x.detach().cpu()], "x0": []}
    measure_loss: dict[str, list] = {}

    def denoiser(x_t: Tensor, sigma: Tensor) -> Tensor:
        x0, loss_info, traj_info = x0_pred_fn(x_t, sigma[0])
        for key, value in loss_info.items():
            measure_loss.setdefault(key, []).append(value)
        if want_traj and "x0" in traj_info:
            traj["x0"].append(traj_info["x0"])
        return x0

    def record(info: dict) -> None:
        if want_traj:
            traj["xt"].append(info["x"].detach().cpu())

    # The seed divides s_churn by the number of levels, EDM (our sampler) by the number of steps.
    n_levels = len(rev_ts)
    sample = sample_heun(
        denoiser,
        x,
        rev_ts,
        s_churn=s_churn * (n_levels - 1) / n_levels,
        noise_sampler=lambda t_cur, t_hat: noise_fn(x, t_cur),
        callback=record,
        progress=is_tqdm,
    )
    return (traj, measure_loss) if want_traj else sample
