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

``seamless`` (the CLI's default) keeps that composition while the noise is high and, below
``SWITCH_SIGMA``, crossfades the windows instead, with the layout moved at random at every
evaluation: a model whose windows and overlaps disagree on shared frames (the demo model's do by
0.04-0.11 however small the noise) then leaves no step at any composition edge.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Literal

import torch
from torch import Tensor

Method = Literal["seamless", "condind", "avg"]
METHODS = ("seamless", "condind", "avg")
WINDOW, OVERLAP = 0, 1
SWITCH_SIGMA = 0.5  # seamless: condind above this noise level, crossfade at or below


def smootherstep(u: Tensor) -> Tensor:
    """``6u^5 - 15u^4 + 10u^3``: 0 to 1 on [0, 1] with zero first and second derivatives at both ends."""
    return u * u * u * (u * (6 * u - 15) + 10)


@dataclass(frozen=True)
class Layout:
    """Windows of ``window`` frames overlapping by ``overlap`` along the last axis.

    Window ``i`` starts at ``i * (window - overlap)``. Overlap ``j`` is shared by windows ``j`` and
    ``j + 1`` and covers the last ``overlap`` frames of window ``j``. A chain of n windows has
    length ``n * (window - overlap) + overlap`` and n - 1 overlaps; a cycle has length
    ``n * (window - overlap)``, n overlaps, and window n - 1 wraps around onto the first frames
    (its overlap with window 0 is the seam of the loop). A cycle of one window is a window longer
    than the loop that wraps onto itself: its last ``overlap`` frames are its first ones, and its
    one overlap (those frames) is shared by its two ends.
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
        # One window may close a cycle on itself (its last `overlap` frames are its first ones);
        # several windows must each be shorter than the loop.
        if self.cyclic and n > 1 and n * (w - o) <= w:
            raise ValueError(
                f"in a cycle of several windows each must be shorter than the loop: n_windows={n} "
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

    def coefficients(self, method: str) -> tuple[Tensor, Tensor]:
        """Per-position weights ``(of each window frame [n, w], of each overlap frame [m, o])``.

        ``condind``: +1 per window, -1 per overlap (degree 2). ``avg``: 1/coverage per window frame,
        overlaps unused. ``crossfade``: across each overlap the earlier window fades out and the later
        one in along a smootherstep (weights C2-smooth in time, so windows that disagree leave no
        step), overlaps unused. Every way the weights at every position sum to one.
        """
        if method == "condind":
            return torch.ones(self.window_index.shape), -torch.ones(self.overlap_index.shape)
        if method == "avg":
            return 1.0 / self.coverage()[self.window_index], torch.zeros(self.overlap_index.shape)
        if method == "crossfade":
            return crossfade_weights(self.window, self.overlap, self.n_windows, self.cyclic), torch.zeros(self.overlap_index.shape)
        raise ValueError(f"unknown collage method {method!r}: use one of {', '.join(METHODS)}")

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


def fade_weights(length: int, overlap: int, fade_in: bool, fade_out: bool) -> Tensor:
    """Crossfade weights ``[length]`` of one window: a smootherstep rise over its first ``overlap``
    frames (``fade_in``, the overlap with the window before) and fall over its last ones (``fade_out``).

    Over an overlap's frames ``m = 0 .. o-1`` the incoming window weighs ``smootherstep((m+1)/(o+1))``
    and the outgoing one the rest, so the two sum to one and neither ends on a hard 0/1 step. The
    model's first and last frames, where its predictions are worst, get the least weight.
    """
    weights = torch.ones(length, dtype=torch.float64)
    rise = smootherstep(torch.arange(1, overlap + 1, dtype=torch.float64) / (overlap + 1))
    if fade_in:
        weights[:overlap] *= rise
    if fade_out:
        weights[length - overlap:] *= rise.flip(0)
    return weights


def crossfade_weights(window: int, overlap: int, n_windows: int, cyclic: bool) -> Tensor:
    """:func:`fade_weights` of every window of a layout, ``[n_windows, window]`` (a chain's first
    window does not fade in, its last does not fade out)."""
    return torch.stack([
        fade_weights(window, overlap, cyclic or i > 0, cyclic or i < n_windows - 1) for i in range(n_windows)
    ]).float()


@dataclass(frozen=True)
class Pieces:
    """Which piece of the factor graph each row of a batched inner-denoiser call is.

    All fields are LongTensors ``[rows]`` on the rows' device: ``sample`` (index in the outer
    batch), ``kind`` (``WINDOW`` = 0 or ``OVERLAP`` = 1), ``index`` (window i, or overlap j, shared by
    windows j and (j + 1) mod n), ``start`` (first position in the long sequence) and ``length``
    (valid frames; the rest of the row is zero padding). ``layout`` is the whole graph. ``left`` and
    ``right`` (optional) name the layout's windows whose conditions a row takes when its piece is not
    one of the layout's own (the shifted pieces of ``seamless``): see :meth:`neighbours`.
    """

    sample: Tensor
    kind: Tensor
    index: Tensor
    start: Tensor
    length: Tensor
    layout: Layout
    left: Tensor | None = None
    right: Tensor | None = None

    def neighbours(self) -> tuple[Tensor, Tensor]:
        """The windows on either side of each row: ``(i, i)`` for window i, ``(j, j+1 mod n)`` for
        overlap j. Lets a per-window condition (e.g. one prompt per window) reach the overlaps."""
        if self.left is not None and self.right is not None:
            return self.left, self.right
        n = self.layout.n_windows
        is_overlap = self.kind == OVERLAP
        return self.index, torch.where(is_overlap, (self.index + 1) % n, self.index)


@dataclass
class _Group:
    """Pieces of one width: ``positions [k, width]`` in the long sequence, composition weights
    ``coef [k, width]``, and per piece ``kind``, ``index``, ``left``, ``right`` (LongTensors ``[k]``)."""

    positions: Tensor
    coef: Tensor
    kind: Tensor
    index: Tensor
    left: Tensor
    right: Tensor


def _layout_groups(layout: Layout, method: str, shift: int = 0) -> list[_Group]:
    """The layout's own windows (and, for ``condind``, overlaps), moved ``shift`` frames along a cycle."""
    n = layout.n_windows
    w_coef, o_coef = layout.coefficients(method)
    windows = torch.arange(n)
    groups = [_Group((layout.window_index + shift) % layout.length, w_coef, torch.full((n,), WINDOW), windows,
                     windows, windows)]
    if method == "condind" and layout.n_overlaps > 0:
        m = layout.n_overlaps
        overlaps = torch.arange(m)
        groups.append(_Group((layout.overlap_index + shift) % layout.length, o_coef, torch.full((m,), OVERLAP),
                             overlaps, overlaps, (overlaps + 1) % n))
    return groups


def _shifted_chain_groups(layout: Layout, method: str, shift: int) -> list[_Group]:
    """A chain's windows moved ``shift`` (0 < shift < stride) frames back: ``n + 1`` windows at
    ``k * stride - shift``, the first and last cut at the chain's ends, the ``n`` overlaps between
    them whole. Every piece is named after the layout window nearest to it (for its condition)."""
    w, o, n, stride, length = layout.window, layout.overlap, layout.n_windows, layout.stride, layout.length
    label = lambda k: min(max(k - int(2 * shift >= stride), 0), n - 1)  # noqa: E731
    pieces = []  # (kind, index, left, right, start, length, coef)
    for k in range(n + 1):
        begin, end = max(k * stride - shift, 0), min(k * stride - shift + w, length)
        if method == "condind":
            coef = torch.ones(end - begin)
        else:
            coef = fade_weights(end - begin, o, k > 0, k < n).float()
        pieces.append((WINDOW, label(k), label(k), label(k), begin, end - begin, coef))
    if method == "condind":
        for j in range(n):
            pieces.append((OVERLAP, j, label(j), label(j + 1), (j + 1) * stride - shift, o, -torch.ones(o)))
    groups = []
    for width in sorted({p[5] for p in pieces}, reverse=True):
        chosen = [p for p in pieces if p[5] == width]
        col = lambda i: torch.tensor([p[i] for p in chosen])  # noqa: E731
        groups.append(_Group(col(4)[:, None] + torch.arange(width), torch.stack([p[6] for p in chosen]),
                             col(0), col(1), col(2), col(3)))
    return groups


class WrapsDenoiser:
    """A denoiser around ``self.inner``: what samplers and callers ask of a denoiser (``round_sigma``,
    ``sigmas``, ``config``, ...) is the inner one's."""

    FORWARDED = ("round_sigma", "sigma_min", "sigma_max", "sigmas", "config", "alphas_cumprod")

    def __getattr__(self, name):
        if name in WrapsDenoiser.FORWARDED:
            return getattr(self.inner, name)
        raise AttributeError(name)


class CollageDenoiser(WrapsDenoiser):
    """A denoiser of ``[B, ..., layout.length]`` built from a denoiser of pieces.

    ``inner(x_rows, sigma_rows, pieces=Pieces, **cond) -> x0_rows``, where ``x_rows`` is
    ``[rows, ..., width]`` with the rows of each sample together (``row = b * n + i`` within a
    group of pieces, as the seed's ``(b n)`` layout). If ``inner.accepts_padding`` is true, all
    pieces (zero-padded to the window width) go in a single call; otherwise one call per distinct
    piece length. ``cond`` passes through untouched: the inner denoiser reads per-sample or
    per-window conditions through ``pieces``.

    Methods:

    - ``condind``: the factor graph, windows minus overlaps (exact for Markov data; but a model
      whose windows and overlaps disagree on shared frames leaves a step at every place where the
      hard 0/1 weights change).
    - ``avg``: overlapping window predictions averaged (MultiDiffusion), overlaps unused.
    - ``seamless`` (the default of ``python -m sample``): ``condind`` above ``switch_sigma``, where
      the factor graph ties the windows together; at or below it, where the model's disagreement
      no longer shrinks, windows crossfaded along a smootherstep over each overlap (no overlap
      rows). At every evaluation the whole layout moves by a random shift (drawn from
      ``generator``) of less than one stride: cyclically in a loop; in a chain the windows move
      back, the end ones cut short. So no frame is a composition edge at every noise level and
      what one level leaves at an edge the next levels smooth out.
    """

    def __init__(self, inner: Callable[..., Tensor], layout: Layout, method: Method = "condind", *,
                 switch_sigma: float = SWITCH_SIGMA, shift: bool = True, max_shift: int | None = None,
                 generator: torch.Generator | None = None):
        if method not in METHODS:
            raise ValueError(f"unknown collage method {method!r}: use one of {', '.join(METHODS)}")
        if max_shift is not None and not 0 <= max_shift < layout.stride:
            raise ValueError(f"max_shift must be in [0, stride = {layout.stride}), got {max_shift}")
        self.inner, self.layout, self.method = inner, layout, method
        self.switch_sigma, self.shift = float(switch_sigma), shift and method == "seamless" and max_shift != 0
        self.max_shift = max_shift
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.accepts_padding = bool(getattr(inner, "accepts_padding", False))
        self.calls = 0  # inner-denoiser calls so far (benchmarks read it)
        self.rows = 0  # inner-denoiser rows so far

    def composition(self, sigma: float) -> str:
        """The composition used at noise level ``sigma``: ``condind``, ``avg`` or ``crossfade``."""
        if self.method != "seamless":
            return self.method
        return "condind" if sigma > self.switch_sigma else "crossfade"

    def draw_shift(self) -> int:
        """A random shift of the layout, ``[-stride/2, stride/2)`` in a cycle, ``[0, stride)`` in a chain;
        with ``max_shift``, ``[-max_shift, max_shift]`` in a cycle and ``[0, max_shift]`` in a chain
        (segments: each window stays on its own segment but for its overlaps)."""
        if not self.shift:
            return 0
        stride = self.layout.stride
        low = -(stride // 2) if self.layout.cyclic else 0
        high = low + stride
        if self.max_shift is not None:
            low, high = (-self.max_shift if self.layout.cyclic else 0), self.max_shift + 1
        g = self.generator
        return int(torch.randint(low, high, (), generator=g, device=g.device))

    def groups(self, sigma: float, shift: int) -> list[_Group]:
        """The pieces evaluated at noise level ``sigma`` with the layout moved by ``shift``."""
        method = self.composition(sigma)
        if shift and not self.layout.cyclic:
            return _shifted_chain_groups(self.layout, method, shift)
        return _layout_groups(self.layout, method, shift)

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

        # Samplers pass one level for the whole batch; the largest decides the composition.
        groups = self.groups(float(sigma.max()), self.draw_shift())
        rows = [self._rows(x, sigma, group) for group in groups]
        if self.accepts_padding and len(rows) > 1:
            outputs = self._call_padded(rows, cond)
        else:
            outputs = [self._call(r["x"], r["sigma"], r["pieces"], cond) for r in rows]

        # Compose: scatter each piece's x0 back with its weights ("windows minus overlaps", or a crossfade).
        out = torch.zeros_like(x)
        for group, x0 in zip(groups, outputs):
            coef = group.coef.to(device=x.device, dtype=x.dtype)
            pieces = x0.unflatten(0, (x.shape[0], group.positions.shape[0])).movedim(1, -2)  # [B, ..., k, width]
            out.index_add_(-1, group.positions.flatten().to(x.device), (pieces * coef).flatten(-2))
        return out

    def _rows(self, x: Tensor, sigma: Tensor, group: _Group) -> dict:
        k, width = group.positions.shape
        batch = x.shape[0]
        device = x.device
        x_rows = x[..., group.positions.to(device)].movedim(-2, 1).flatten(0, 1)  # [B * k, ..., width]
        tile = lambda t: t.to(device).repeat(batch)  # noqa: E731
        pieces = Pieces(
            sample=torch.arange(batch, device=device).repeat_interleave(k),
            kind=tile(group.kind),
            index=tile(group.index),
            start=tile(group.positions[:, 0]),
            length=torch.full((batch * k,), width, device=device),
            layout=self.layout,
            left=tile(group.left),
            right=tile(group.right),
        )
        return {"x": x_rows, "sigma": sigma.repeat_interleave(k), "pieces": pieces}

    def _call(self, x_rows: Tensor, sigma_rows: Tensor, pieces: Pieces, cond: dict) -> Tensor:
        self.calls += 1
        self.rows += x_rows.shape[0]
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
        fields = ("sample", "kind", "index", "start", "length", "left", "right")
        pieces = Pieces(
            **{f: torch.cat([getattr(r["pieces"], f) for r in rows]) for f in fields}, layout=self.layout
        )
        out = self._call(x_all, sigma_all, pieces, cond)
        sizes = [r["x"].shape[0] for r in rows]
        return [o[..., : r["x"].shape[-1]] for o, r in zip(out.split(sizes), rows)]
