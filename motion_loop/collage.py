"""DiffCollage (Zhang et al., CVPR 2023): a denoiser for long or looped content built from a
denoiser of short windows.

The content is a factor graph: windows ``x_f`` (factors, what the model was trained on) and the
overlaps ``x_v`` between neighbouring windows (variables). With
``p(x) = prod_f p(x_f) / prod_v p(x_v)^(deg(v) - 1)`` the score, and so the x0-prediction (affine in
the score), composes as ``D(x) = sum_f scatter(D_f(x_f)) - sum_v (deg(v) - 1) scatter(D_v(x_v))``.
In a chain and in a cycle every overlap has degree 2: each overlapped frame gets
"window A + window B - overlap", and the coefficients at every position sum to one.

All pieces are independent given ``x_t``, so every step evaluates all windows and overlaps of all
samples in one batched call of the inner denoiser (or one call per distinct piece length when the
inner denoiser cannot take padded rows). :class:`CollageDenoiser` is itself a denoiser, so every
sampler in :mod:`motion_loop.sampling` works with it unchanged.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Literal

import torch
from torch import Tensor

Method = Literal["condind", "avg"]
WINDOW, OVERLAP = 0, 1


@dataclass(frozen=True)
class Layout:
    """Windows of ``window`` frames overlapping by ``overlap`` along the last axis.

    Window ``i`` starts at ``i * (window - overlap)``. Overlap ``j`` is shared by windows ``j`` and
    ``j + 1`` and covers the last ``overlap`` frames of window ``j``. A chain of n windows has
    length ``n * (window - overlap) + overlap`` and n - 1 overlaps; a cycle has length
    ``n * (window - overlap)``, n overlaps, and window n - 1 wraps around onto the first frames
    (its overlap with window 0 is the seam of the loop).
    """

    window: int
    overlap: int
    n_windows: int
    cyclic: bool = False

    def __post_init__(self):
        for name in ("window", "overlap", "n_windows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ValueError(f"{name} must be an integer number of frames, got {value!r} ({type(value).__name__})")
            object.__setattr__(self, name, int(value))  # numpy integers become plain ints
        w, o, n = self.window, self.overlap, self.n_windows
        if w < 2 or n < 1:
            raise ValueError(f"window must be >= 2 and n_windows >= 1, got window={w}, n_windows={n}")
        if not 0 < o <= w // 2:
            raise ValueError(f"overlap must satisfy 0 < overlap <= window/2 = {w // 2}, got {o}")
        if self.cyclic and (n < 2 or n * (w - o) <= w):
            raise ValueError(
                f"a cycle needs at least 2 windows, each shorter than the loop: n_windows={n} "
                f"with window={w}, overlap={o} gives a loop of {n * (w - o)} frames"
            )

    @property
    def stride(self) -> int:
        return self.window - self.overlap

    @property
    def length(self) -> int:
        """Frames of the whole sequence (the loop's period for a cycle)."""
        return self.n_windows * self.stride + (0 if self.cyclic else self.overlap)

    @property
    def n_overlaps(self) -> int:
        return self.n_windows if self.cyclic else self.n_windows - 1

    @cached_property
    def window_index(self) -> Tensor:
        """``[n_windows, window]`` positions covered by each window (modulo the length in a cycle)."""
        return self._index(torch.arange(self.n_windows) * self.stride, self.window)

    @cached_property
    def overlap_index(self) -> Tensor:
        """``[n_overlaps, overlap]`` positions of each overlap (overlap j: end of window j)."""
        return self._index((torch.arange(self.n_overlaps) + 1) * self.stride, self.overlap)

    def _index(self, starts: Tensor, size: int) -> Tensor:
        return (starts[:, None] + torch.arange(size)) % self.length

    def coverage(self) -> Tensor:
        """How many windows cover each position, ``[length]``."""
        return torch.bincount(self.window_index.flatten(), minlength=self.length)

    def coefficients(self, method: Method) -> tuple[Tensor, Tensor]:
        """Per-position weights ``(of each window frame [n, w], of each overlap frame [m, o])``.

        ``condind``: +1 per window, -1 per overlap (degree 2). ``avg``: 1/coverage per window frame,
        overlaps unused. Either way the weights at every position sum to one.
        """
        if method == "condind":
            return torch.ones(self.window_index.shape), -torch.ones(self.overlap_index.shape)
        if method == "avg":
            return 1.0 / self.coverage()[self.window_index], torch.zeros(self.overlap_index.shape)
        raise ValueError(f"unknown collage method {method!r}: use 'condind' or 'avg'")

    @classmethod
    def for_length(cls, length: int, window: int, overlap: int, cyclic: bool) -> "Layout":
        """The layout of exactly ``length`` frames with the given window and overlap, if one exists."""
        stride = window - overlap
        n, rest = divmod(length - (0 if cyclic else overlap), stride) if stride > 0 else (0, 1)
        if rest or n < 1:
            kind = "loop" if cyclic else "chain"
            raise ValueError(
                f"no {kind} of windows of {window} frames overlapping by {overlap} is {length} frames "
                f"long: the length must be a multiple of {stride}{'' if cyclic else f' plus {overlap}'}"
            )
        return cls(window, overlap, n, cyclic)


@dataclass(frozen=True)
class Pieces:
    """Which piece of the factor graph each row of a batched inner-denoiser call is.

    All fields are LongTensors ``[rows]`` on the rows' device: ``sample`` (index in the outer
    batch), ``kind`` (``WINDOW`` = 0 or ``OVERLAP`` = 1), ``index`` (window i, or overlap j, shared by
    windows j and (j + 1) mod n), ``start`` (first position in the long sequence) and ``length``
    (valid frames; the rest of the row is zero padding). ``layout`` is the whole graph.
    """

    sample: Tensor
    kind: Tensor
    index: Tensor
    start: Tensor
    length: Tensor
    layout: Layout

    def neighbours(self) -> tuple[Tensor, Tensor]:
        """The windows on either side of each row: ``(i, i)`` for window i, ``(j, j+1 mod n)`` for
        overlap j. Lets a per-window condition (e.g. one prompt per window) reach the overlaps."""
        n = self.layout.n_windows
        is_overlap = self.kind == OVERLAP
        return self.index, torch.where(is_overlap, (self.index + 1) % n, self.index)


class CollageDenoiser:
    """A denoiser of ``[B, ..., layout.length]`` built from a denoiser of pieces.

    ``inner(x_rows, sigma_rows, pieces=Pieces, **cond) -> x0_rows``, where ``x_rows`` is
    ``[rows, ..., width]`` with the rows of each sample together (``row = b * n + i`` within a
    kind, as the seed's ``(b n)`` layout). If ``inner.accepts_padding`` is true, windows and
    overlaps (zero-padded to the window width) go in a single call; otherwise one call per distinct
    piece length. ``cond`` passes through untouched: the inner denoiser reads per-sample or
    per-window conditions through ``pieces``.
    """

    def __init__(self, inner: Callable[..., Tensor], layout: Layout, method: Method = "condind"):
        layout.coefficients(method)  # validates the method
        self.inner, self.layout, self.method = inner, layout, method
        self.accepts_padding = bool(getattr(inner, "accepts_padding", False))
        self.calls = 0  # inner-denoiser calls so far (benchmarks read it)

    def __getattr__(self, name):
        # Forward what samplers and callers ask of a denoiser (round_sigma, sigma_min, ...).
        if name in ("round_sigma", "sigma_min", "sigma_max", "sigmas"):
            return getattr(self.inner, name)
        raise AttributeError(name)

    def __call__(self, x: Tensor, sigma: Tensor, **cond) -> Tensor:
        layout = self.layout
        if x.ndim < 2 or x.shape[-1] != layout.length:
            raise ValueError(
                f"expected x of shape [batch, ..., {layout.length}] for this layout, got {tuple(x.shape)}"
            )
        sigma = torch.as_tensor(sigma, device=x.device)
        sigma = sigma.expand(x.shape[0]) if sigma.ndim == 0 else sigma
        if sigma.shape != (x.shape[0],):
            raise ValueError(f"sigma must be a scalar or have shape [{x.shape[0]}], got {tuple(sigma.shape)}")

        use_overlaps = self.method == "condind" and layout.n_overlaps > 0
        groups = [(WINDOW, layout.window_index)] + ([(OVERLAP, layout.overlap_index)] if use_overlaps else [])
        rows = [self._rows(x, sigma, kind, index) for kind, index in groups]
        if self.accepts_padding and len(rows) > 1:
            outputs = self._call_padded(rows, cond)
        else:
            outputs = [self._call(r["x"], r["sigma"], r["pieces"], cond) for r in rows]

        # Compose: scatter each piece's x0 back with its coefficient ("windows minus overlaps").
        w_coef, o_coef = layout.coefficients(self.method)
        out = torch.zeros_like(x)
        for (kind, index), x0 in zip(groups, outputs):
            coef = (w_coef if kind == WINDOW else o_coef).to(device=x.device, dtype=x.dtype)
            pieces = x0.unflatten(0, (x.shape[0], index.shape[0])).movedim(1, -2)  # [B, ..., n, width]
            out.index_add_(-1, index.flatten().to(x.device), (pieces * coef).flatten(-2))
        return out

    def _rows(self, x: Tensor, sigma: Tensor, kind: int, index: Tensor) -> dict:
        n, width = index.shape
        batch = x.shape[0]
        x_rows = x[..., index.to(x.device)].movedim(-2, 1).flatten(0, 1)  # [B * n, ..., width]
        device = x.device
        pieces = Pieces(
            sample=torch.arange(batch, device=device).repeat_interleave(n),
            kind=torch.full((batch * n,), kind, device=device),
            index=torch.arange(n, device=device).repeat(batch),
            start=index[:, 0].to(device).repeat(batch),
            length=torch.full((batch * n,), width, device=device),
            layout=self.layout,
        )
        return {"x": x_rows, "sigma": sigma.repeat_interleave(n), "pieces": pieces}

    def _call(self, x_rows: Tensor, sigma_rows: Tensor, pieces: Pieces, cond: dict) -> Tensor:
        self.calls += 1
        out = self.inner(x_rows, sigma_rows, pieces=pieces, **cond)
        if not isinstance(out, Tensor):
            raise TypeError(f"the inner denoiser must return a tensor x0 of shape {tuple(x_rows.shape)}, "
                            f"got {type(out).__name__}: it is called as inner(x, sigma, pieces=..., **cond) -> x0")
        if out.shape != x_rows.shape:
            raise ValueError(f"inner denoiser returned shape {tuple(out.shape)} for input {tuple(x_rows.shape)}")
        return out

    def _call_padded(self, rows: list[dict], cond: dict) -> list[Tensor]:
        width = self.layout.window
        x_all = torch.cat([torch.nn.functional.pad(r["x"], (0, width - r["x"].shape[-1])) for r in rows])
        sigma_all = torch.cat([r["sigma"] for r in rows])
        fields = ("sample", "kind", "index", "start", "length")
        pieces = Pieces(
            **{f: torch.cat([getattr(r["pieces"], f) for r in rows]) for f in fields}, layout=self.layout
        )
        out = self._call(x_all, sigma_all, pieces, cond)
        sizes = [r["x"].shape[0] for r in rows]
        return [o[..., : r["x"].shape[-1]] for o, r in zip(out.split(sizes), rows)]
