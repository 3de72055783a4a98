import pytest
import torch

from motion_loop.collage import METHODS, OVERLAP, WINDOW, CollageDenoiser, Layout, _shifted_chain_groups, fade_weights
from motion_loop.sampling import karras_sigmas, sample_heun

RHO = 0.9


def ar1_denoiser(rho: float = RHO):
    """Exact denoiser of a stationary Gaussian AR(1) piece of any length (unit variance):
    D(x, sigma) = S (S + sigma^2 I)^-1 x with S_ij = rho^|i-j|."""

    def denoiser(x, sigma, pieces=None):
        n = x.shape[-1]
        pos = torch.arange(n, dtype=torch.float64)
        cov = rho ** (pos[:, None] - pos[None]).abs()
        out = torch.empty_like(x)
        for s in sigma.unique():
            gain = cov @ torch.linalg.inv(cov + float(s) ** 2 * torch.eye(n, dtype=torch.float64))
            rows = sigma == s
            out[rows] = (x[rows].double() @ gain.T).to(x.dtype)
        return out

    return denoiser


def sample_collage(layout, method, n_samples=3000, steps=60, seed=0):
    den = CollageDenoiser(ar1_denoiser(), layout, method, generator=torch.Generator().manual_seed(seed + 1))
    g = torch.Generator().manual_seed(seed)
    x = 80.0 * torch.randn(n_samples, 1, layout.length, generator=g, dtype=torch.float64)
    out = sample_heun(den, x, karras_sigmas(steps, 0.002, 80.0), s_churn=10.0, generator=g)
    return out[:, 0], den


def adjacent_stats(samples, cyclic):
    var = samples.var(0)
    nxt = torch.roll(samples, -1, dims=1)
    corr = ((samples - samples.mean(0)) * (nxt - nxt.mean(0))).mean(0) / (samples.std(0) * nxt.std(0))
    return var, (corr if cyclic else corr[:-1])


@pytest.mark.parametrize("cyclic", [False, True])
def test_condind_reproduces_ar1_statistics_everywhere(cyclic):
    layout = Layout(window=16, overlap=5, n_windows=5, cyclic=cyclic)
    samples, den = sample_collage(layout, "condind")
    var, corr = adjacent_stats(samples, cyclic)
    assert var.min() >= 0.9 and var.max() <= 1.1, var
    # every adjacent pair, window boundaries and (cycle) the wrap-around pair (L-1, 0) included
    assert (corr - RHO).abs().max() <= 0.1, corr
    assert len(corr) == layout.length - (0 if cyclic else 1)
    assert den.calls == 2 * (2 * 60 - 1)  # windows and overlaps: one call each per evaluation


@pytest.mark.parametrize("cyclic", [False, True])
def test_seamless_reproduces_ar1_statistics_everywhere(cyclic):
    # The default: condind above the switch level, shifted crossfades below; as exact as condind.
    layout = Layout(window=16, overlap=5, n_windows=5, cyclic=cyclic)
    samples, den = sample_collage(layout, "seamless")
    var, corr = adjacent_stats(samples, cyclic)
    assert var.min() >= 0.92 and var.max() <= 1.08, var
    assert (corr - RHO).abs().max() <= 0.02, corr  # every adjacent pair, the wrap included
    assert len(corr) == layout.length - (0 if cyclic else 1)
    # a cycle costs fewer rows than condind (no overlap rows at or below the switch level); a
    # shifted chain has one window more, so about as many
    _, exact = sample_collage(layout, "condind", n_samples=10, steps=60)
    assert den.rows / 3000 < (1.0 if cyclic else 1.1) * exact.rows / 10


@pytest.mark.parametrize("cyclic", [False, True])
def test_avg_is_worse_at_window_boundaries(cyclic):
    layout = Layout(window=16, overlap=5, n_windows=5, cyclic=cyclic)
    condind, _ = sample_collage(layout, "condind", seed=1)
    avg, _ = sample_collage(layout, "avg", seed=1)
    var_c, corr_c = adjacent_stats(condind, cyclic)
    var_a, corr_a = adjacent_stats(avg, cyclic)
    # averaging two windows shrinks the variance inside overlaps
    assert (var_a - 1).abs().max() > 2 * (var_c - 1).abs().max()
    assert var_a.min() < 0.9


def test_chain_layout_tiles_the_sequence():
    layout = Layout(window=10, overlap=3, n_windows=4)
    assert layout.length == 4 * 7 + 3
    wi, oi = layout.window_index, layout.overlap_index
    assert wi.shape == (4, 10) and oi.shape == (3, 3)
    assert wi[0].tolist() == list(range(10)) and wi[-1].tolist() == list(range(21, 31))
    assert torch.unique(wi).tolist() == list(range(layout.length))
    for j in range(3):  # overlap j is exactly the end of window j and the start of window j+1
        assert oi[j].tolist() == wi[j, -3:].tolist() == wi[j + 1, :3].tolist()
    assert layout.coverage().tolist() == [1] * 7 + [2] * 3 + [1] * 4 + [2] * 3 + [1] * 4 + [2] * 3 + [1] * 7


def test_cycle_layout_wraps_around():
    layout = Layout(window=10, overlap=4, n_windows=3, cyclic=True)
    assert layout.length == 18
    wi, oi = layout.window_index, layout.overlap_index
    assert oi.shape == (3, 4)
    assert wi[2].tolist() == [12, 13, 14, 15, 16, 17, 0, 1, 2, 3]
    assert oi[2].tolist() == [0, 1, 2, 3] == wi[0, :4].tolist()  # the seam: window 2 meets window 0
    assert torch.all(layout.coverage() >= 1)
    assert layout.coverage().sum() == 3 * 10


@pytest.mark.parametrize("method", ["condind", "seamless"])
def test_one_window_cycle_reproduces_ar1_statistics_everywhere(method):
    # One window longer than the loop, closing on itself: its last 9 frames are its first 9. For
    # Markov data the factor graph window / overlap is still exact: the wrap pair (L-1, 0) too.
    # (A loop of 55 frames, as the five-window cycle above: a ring much shorter than the AR(1)'s
    # memory would have a larger variance.)
    layout = Layout(window=64, overlap=9, n_windows=1, cyclic=True)
    samples, den = sample_collage(layout, method)
    var, corr = adjacent_stats(samples, cyclic=True)
    assert var.min() >= 0.9 and var.max() <= 1.1, var
    assert (corr - RHO).abs().max() <= 0.1, corr
    assert len(corr) == layout.length == 55
    # condind: 1 window + 1 overlap row per sample and evaluation, half of a two-window cycle
    if method == "condind":
        assert den.rows == 3000 * 2 * (2 * 60 - 1)


def test_one_window_cycle_layout():
    layout = Layout(window=10, overlap=4, n_windows=1, cyclic=True)
    assert layout.length == 6 and layout.n_overlaps == 1
    assert layout.window_index[0].tolist() == [0, 1, 2, 3, 4, 5, 0, 1, 2, 3]
    assert layout.overlap_index[0].tolist() == [0, 1, 2, 3]  # the window's two ends
    assert layout.coverage().tolist() == [2, 2, 2, 2, 1, 1]
    for method in ("condind", "avg", "crossfade"):
        w_coef, o_coef = layout.coefficients(method)
        total = torch.zeros(layout.length, dtype=torch.float64)
        total.index_add_(0, layout.window_index.flatten(), w_coef.flatten().double())
        total.index_add_(0, layout.overlap_index.flatten(), o_coef.flatten().double())
        torch.testing.assert_close(total, torch.ones_like(total))
    for method in METHODS:  # a frame-wise denoiser composes to itself, whatever the shift
        den = CollageDenoiser(lambda x, sigma, pieces: 0.5 * x, layout, method)
        x = torch.randn(2, 3, layout.length, dtype=torch.float64)
        torch.testing.assert_close(den(x, torch.tensor(3.0)), 0.5 * x)


@pytest.mark.parametrize("cyclic", [False, True])
@pytest.mark.parametrize("method", ["condind", "avg", "crossfade"])
@pytest.mark.parametrize("window,overlap,n", [(16, 8, 3), (16, 1, 4), (9, 4, 2), (20, 7, 5)])
def test_coefficients_sum_to_one(cyclic, method, window, overlap, n):
    if cyclic and n * (window - overlap) <= window:
        pytest.skip("not a valid cycle")
    layout = Layout(window, overlap, n, cyclic)
    w_coef, o_coef = layout.coefficients(method)
    total = torch.zeros(layout.length, dtype=torch.float64)
    total.index_add_(0, layout.window_index.flatten(), w_coef.flatten().double())
    total.index_add_(0, layout.overlap_index.flatten(), o_coef.flatten().double())
    torch.testing.assert_close(total, torch.ones_like(total))


@pytest.mark.parametrize("method", ["condind", "crossfade"])
@pytest.mark.parametrize("window,overlap,n", [(16, 8, 3), (16, 1, 4), (9, 4, 2), (20, 7, 5)])
def test_shifted_chain_weights_sum_to_one(method, window, overlap, n):
    layout = Layout(window, overlap, n)
    for shift in range(1, layout.stride):
        total = torch.zeros(layout.length, dtype=torch.float64)
        for group in _shifted_chain_groups(layout, method, shift):
            assert group.positions.min() >= 0 and group.positions.max() < layout.length
            assert group.index.max() < n and group.left.max() < n and group.right.max() < n
            total.index_add_(0, group.positions.flatten(), group.coef.flatten().double())
        torch.testing.assert_close(total, torch.ones_like(total))


def test_crossfade_is_smooth_and_favours_the_window_interior():
    w = fade_weights(30, 10, True, True)
    assert w[0] < 0.01 and w[-1] < 0.01 and torch.all(w[10:20] == 1)
    assert torch.all(torch.diff(w[:11]) > 0)  # rises monotonically over the overlap
    torch.testing.assert_close(w[:10] + w[-10:], torch.ones(10, dtype=torch.float64))  # in + out = 1


@pytest.mark.parametrize("cyclic", [False, True])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("sigma", [0.1, 3.0])
def test_identity_inner_denoiser_gives_identity(method, cyclic, sigma):
    layout = Layout(12, 5, 4, cyclic=cyclic)
    den = CollageDenoiser(lambda x, sigma, pieces: x, layout, method)
    x = torch.randn(3, 2, 1, layout.length)
    for _ in range(6):  # several random shifts
        torch.testing.assert_close(den(x, torch.full((3,), sigma)), x)


@pytest.mark.parametrize("cyclic", [False, True])
def test_seamless_shifts_pieces_and_switches_composition(cyclic):
    layout = Layout(10, 3, 4, cyclic=cyclic)
    seen = []

    def inner(x, sigma, pieces):
        seen.append(pieces)
        # each row's first frame is its start position: the rows are the right (shifted) slices
        torch.testing.assert_close(x[:, 0, 0], pieces.start.to(x.dtype))
        return x

    den = CollageDenoiser(inner, layout, "seamless", generator=torch.Generator().manual_seed(3))
    x = torch.arange(layout.length, dtype=torch.float32).repeat(2, 1)[:, None, :]
    starts = set()
    for _ in range(12):
        seen.clear()
        den(x, torch.tensor(0.1))  # at or below the switch: windows only
        assert all(bool((p.kind == WINDOW).all()) for p in seen)
        starts.add(int(seen[0].start[seen[0].index == 1][0]))
    assert len(starts) > 2  # the layout moves between evaluations
    seen.clear()
    den(x, torch.tensor(5.0))  # above it: windows and overlaps (condind)
    assert any(bool((p.kind == OVERLAP).any()) for p in seen)
    for p in seen:
        left, right = p.neighbours()
        assert left.max() < layout.n_windows and right.max() < layout.n_windows



@pytest.mark.parametrize("cyclic", [False, True])
def test_max_shift_bounds_the_random_moves(cyclic):
    # Segments: seamless moves its layout by at most max_shift frames, so a window keeps to its segment.
    layout = Layout(16, 6, 4, cyclic=cyclic)
    starts = []

    def inner(x, sigma, pieces):
        starts.extend(pieces.start[(pieces.index == 1) & (pieces.kind == WINDOW)].tolist())
        return x

    den = CollageDenoiser(inner, layout, "seamless", max_shift=3, generator=torch.Generator().manual_seed(0))
    x = torch.zeros(1, 1, layout.length)
    for _ in range(60):
        den(x, torch.tensor(0.1))
    moves = {layout.stride - s for s in starts}  # window 1 starts at the stride, moved back in a chain
    assert moves == ({-3, -2, -1, 0, 1, 2, 3} if cyclic else {0, 1, 2, 3}), moves
    fixed = CollageDenoiser(inner, layout, "seamless", max_shift=0)
    starts.clear()
    for _ in range(5):
        fixed(x, torch.tensor(0.1))
    assert set(starts) == {layout.stride}
    with pytest.raises(ValueError, match="max_shift"):
        CollageDenoiser(inner, layout, "seamless", max_shift=layout.stride)


@pytest.mark.parametrize("cyclic", [False, True])
def test_seamless_with_small_shifts_reproduces_ar1_statistics(cyclic):
    layout = Layout(window=16, overlap=5, n_windows=5, cyclic=cyclic)
    den = CollageDenoiser(ar1_denoiser(), layout, "seamless", max_shift=2, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(0)
    x = 80.0 * torch.randn(3000, 1, layout.length, generator=g, dtype=torch.float64)
    samples = sample_heun(den, x, karras_sigmas(60, 0.002, 80.0), s_churn=10.0, generator=g)[:, 0]
    var, corr = adjacent_stats(samples, cyclic)
    assert var.min() >= 0.92 and var.max() <= 1.08, var
    assert (corr - RHO).abs().max() <= 0.02, corr


def test_seamless_is_reproducible_with_its_generator():
    layout = Layout(16, 5, 4, cyclic=True)
    x = torch.randn(2, 1, layout.length, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    run = lambda seed: CollageDenoiser(ar1_denoiser(), layout, "seamless",  # noqa: E731
                                       generator=torch.Generator().manual_seed(seed))(x, torch.tensor(0.2))
    torch.testing.assert_close(run(5), run(5))
    assert not torch.allclose(run(5), run(6))


def test_pieces_tell_the_inner_denoiser_which_row_is_which():
    layout = Layout(8, 3, 3, cyclic=True)
    seen = []

    def inner(x, sigma, pieces):
        seen.append(pieces)
        # each row's value = its start position, so the rows must be the right slices
        torch.testing.assert_close(x[:, 0, 0], pieces.start.to(x.dtype) + 100 * pieces.sample.to(x.dtype))
        return x

    x = torch.arange(layout.length, dtype=torch.float32).repeat(2, 1)[:, None, :] + 100 * torch.arange(2.0)[:, None, None]
    CollageDenoiser(inner, layout)(x, torch.tensor(1.0))
    windows, overlaps = seen
    assert windows.kind.tolist() == [WINDOW] * 6 and overlaps.kind.tolist() == [OVERLAP] * 6
    assert windows.sample.tolist() == [0, 0, 0, 1, 1, 1]
    assert windows.index.tolist() == [0, 1, 2] * 2
    assert overlaps.length.tolist() == [3] * 6
    left, right = overlaps.neighbours()
    assert left.tolist() == [0, 1, 2] * 2 and right.tolist() == [1, 2, 0] * 2


def test_padded_inner_gets_one_call_per_evaluation_and_same_result():
    layout = Layout(16, 6, 4, cyclic=True)
    plain = ar1_denoiser()

    class Padded:
        accepts_padding = True

        def __call__(self, x, sigma, pieces):
            out = torch.zeros_like(x)
            for n in pieces.length.unique().tolist():
                rows = pieces.length == n
                out[rows, ..., :n] = plain(x[rows, ..., :n], sigma[rows])
            return out

    x = torch.randn(5, 1, layout.length, dtype=torch.float64)
    sigma = torch.full((5,), 0.7, dtype=torch.float64)
    padded = CollageDenoiser(Padded(), layout)
    separate = CollageDenoiser(plain, layout)
    torch.testing.assert_close(padded(x, sigma), separate(x, sigma))
    assert padded.calls == 1 and separate.calls == 2


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(window=10, overlap=6, n_windows=3),  # overlap > w/2
        dict(window=10, overlap=0, n_windows=3),
        dict(window=0, overlap=0, n_windows=3),
        dict(window=10, overlap=2, n_windows=0),
        dict(window=10, overlap=-1, n_windows=2),
        dict(window=10, overlap=6, n_windows=1, cyclic=True),  # one window closing on itself: overlap > w/2
        dict(window=10, overlap=5, n_windows=2, cyclic=True),  # windows as long as the loop
    ],
)
def test_bad_layouts_raise_value_error(kwargs):
    with pytest.raises(ValueError, match="overlap|window"):
        Layout(**kwargs)


def test_shape_mismatch_and_bad_method_raise_value_error():
    layout = Layout(10, 3, 3)
    den = CollageDenoiser(lambda x, sigma, pieces: x, layout)
    with pytest.raises(ValueError, match="shape"):
        den(torch.zeros(2, 1, layout.length + 1), torch.ones(2))
    with pytest.raises(ValueError, match="sigma"):
        den(torch.zeros(2, 1, layout.length), torch.ones(3))
    with pytest.raises(ValueError, match="method"):
        CollageDenoiser(lambda x, sigma, pieces: x, layout, "sum")


def test_layout_for_length():
    assert Layout.for_length(120, 60, 20, cyclic=True) == Layout(60, 20, 3, True)
    assert Layout.for_length(140, 60, 20, cyclic=False) == Layout(60, 20, 3, False)
    with pytest.raises(ValueError, match="multiple of 40"):
        Layout.for_length(130, 60, 20, cyclic=True)


def test_runs_in_other_dtypes_and_keeps_them():
    layout = Layout(8, 2, 3, cyclic=True)
    den = CollageDenoiser(lambda x, sigma, pieces: 0.5 * x, layout)
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        x = torch.randn(2, 1, layout.length).to(dtype)
        out = den(x, torch.ones(2))
        assert out.dtype == dtype
        torch.testing.assert_close(out, 0.5 * x)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_runs_on_cuda():
    layout = Layout(8, 2, 3, cyclic=True)
    den = CollageDenoiser(lambda x, sigma, pieces: 0.5 * x, layout)
    x = torch.randn(2, 1, layout.length, device="cuda")
    torch.testing.assert_close(den(x, torch.ones(2, device="cuda")), 0.5 * x)


def test_layout_rejects_non_integers_and_inner_must_return_a_tensor():
    import numpy as np

    for bad in ({"window": 40.5, "overlap": 10, "n_windows": 3}, {"window": 40, "overlap": "10", "n_windows": 3},
                {"window": 40, "overlap": 10, "n_windows": True}):
        with pytest.raises(ValueError, match="must be an integer"):
            Layout(**bad)
    assert Layout(np.int64(40), np.int32(10), 3).window == 40  # numpy integers are integers
    layout = Layout(8, 2, 3, cyclic=True)
    collage = CollageDenoiser(lambda x, sigma, **kw: x.numpy(), layout)
    with pytest.raises(TypeError, match="inner denoiser must return a tensor .* got ndarray"):
        collage(torch.zeros(1, 2, layout.length), torch.tensor(1.0))
