import pytest
import torch

from motion_loop.baselines import (
    METHODS,
    ReplacementDenoiser,
    outpainting_masks,
    sample_independent,
    sample_outpainting,
)
from motion_loop.collage import Layout
from motion_loop.diffusion import MDMDenoiser
from motion_loop.mdm import MDM, MDMConfig
from motion_loop.sampling import sample_heun


def tiny_denoiser(seed=0) -> MDMDenoiser:
    torch.manual_seed(seed)
    model = MDM(MDMConfig(latent_dim=32, layers=1, ff_size=48, num_heads=4, diffusion_steps=50)).eval()
    return MDMDenoiser(model, canvas_frames=None)


class Recorder:
    """A denoiser that records its inputs and returns a fixed function of them."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, sigma, **cond):
        self.calls.append({"x": x.clone(), "sigma": sigma, "cond": cond})
        return 0.5 * x + 0.1

    def round_sigma(self, sigma):
        return sigma


# --- the replacement denoiser -----------------------------------------------------------------------


def test_replacement_feeds_known_frames_noised_and_returns_them_clean():
    inner = Recorder()
    known = torch.randn(2, 3, 1, 8)
    mask = torch.zeros(8, dtype=torch.bool)
    mask[:3] = True
    den = ReplacementDenoiser(inner, known, mask, torch.Generator().manual_seed(7))
    x = torch.randn(2, 3, 1, 8)
    sigma = torch.tensor([0.5, 2.0])
    out = den(x, sigma, text_embed="c")

    eps = torch.randn(2, 3, 1, 8, generator=torch.Generator().manual_seed(7))  # the wrapper's draw
    seen = inner.calls[0]["x"]
    torch.testing.assert_close(seen[..., 3:], x[..., 3:], atol=0, rtol=0)  # unknown frames untouched
    torch.testing.assert_close(seen[..., :3], known[..., :3] + sigma.view(2, 1, 1, 1) * eps[..., :3])
    assert inner.calls[0]["cond"] == {"text_embed": "c"} and inner.calls[0]["sigma"] is sigma
    # unknown frames: the inner prediction given the noised context; known frames: the known values
    torch.testing.assert_close(out[..., 3:], 0.5 * x[..., 3:] + 0.1, atol=0, rtol=0)
    torch.testing.assert_close(out[..., :3], known[..., :3], atol=0, rtol=0)
    # a fresh draw at each call (q(x_sigma | x0) sampled again), and a scalar sigma works too
    den(x, torch.tensor(2.0))
    assert not torch.equal(inner.calls[1]["x"][..., :3], seen[..., :3])
    assert den.round_sigma == inner.round_sigma  # samplers snap levels as the inner model does


def test_replacement_context_reaches_the_unknown_frames():
    # A real model attends over all frames: changing only the known values changes the prediction
    # on unknown frames (the known frames condition them), and known frames come back exactly.
    inner = tiny_denoiser()
    mask = torch.arange(12) < 4
    x = torch.randn(1, 263, 1, 12)
    sigma = torch.tensor([1.0])
    outs = []
    for seed in (0, 1):
        known = torch.randn(1, 263, 1, 12, generator=torch.Generator().manual_seed(seed))
        den = ReplacementDenoiser(inner, known, mask, torch.Generator().manual_seed(3))
        with torch.no_grad():
            outs.append(den(x, sigma, text_embed=torch.ones(1, 512)))
        torch.testing.assert_close(outs[-1][..., :4], known[..., :4], atol=0, rtol=0)
    assert (outs[0][..., 4:] - outs[1][..., 4:]).abs().max() > 1e-3


def test_replacement_sampling_ends_on_the_known_frames():
    inner = tiny_denoiser()
    g = torch.Generator().manual_seed(0)
    known = torch.randn(2, 263, 1, 16, generator=g)
    mask = (torch.arange(16) < 5) | (torch.arange(16) >= 13)
    den = ReplacementDenoiser(inner, known, mask, g)
    sigmas = inner.sigmas(6)
    x = sigmas[0].float() * torch.randn(2, 263, 1, 16, generator=g)
    out = sample_heun(den, x, sigmas, cond={"text_embed": torch.randn(2, 512, generator=g)}, s_churn=5.0, generator=g)
    torch.testing.assert_close(out[..., mask], known[..., mask], atol=1e-5, rtol=1e-5)
    assert torch.isfinite(out).all() and (out[..., ~mask] - known[..., ~mask]).abs().mean() > 0.1


def test_replacement_checks_its_inputs():
    with pytest.raises(ValueError, match="bool"):
        ReplacementDenoiser(Recorder(), torch.zeros(1, 2, 5), torch.zeros(5))
    with pytest.raises(ValueError, match="broadcast"):
        ReplacementDenoiser(Recorder(), torch.zeros(1, 2, 5), torch.zeros(4, dtype=torch.bool))
    den = ReplacementDenoiser(Recorder(), torch.zeros(1, 2, 5), torch.zeros(5, dtype=torch.bool))
    with pytest.raises(ValueError, match="shape"):
        den(torch.zeros(1, 2, 6), torch.tensor(1.0))


# --- sequential outpainting ---------------------------------------------------------------------------


def test_outpainting_masks_follow_the_layout():
    cycle = outpainting_masks(Layout(10, 3, 4, cyclic=True))
    assert [m.nonzero().flatten().tolist() for m in cycle] == [[], [0, 1, 2], [0, 1, 2], [0, 1, 2, 7, 8, 9]]
    chain = outpainting_masks(Layout(10, 3, 3, cyclic=False))
    assert [m.nonzero().flatten().tolist() for m in chain] == [[], [0, 1, 2], [0, 1, 2]]


@pytest.mark.parametrize("cyclic", [True, False])
def test_outpainting_samples_window_by_window_over_the_layout(cyclic):
    inner = tiny_denoiser()
    calls = []
    recording = lambda x, sigma, **cond: calls.append(x.shape[-1]) or inner(x, sigma, **cond)  # noqa: E731
    recording.round_sigma = inner.round_sigma
    layout = Layout(window=10, overlap=3, n_windows=4, cyclic=cyclic)
    sigmas = inner.sigmas(3)
    snapshots = []
    g = torch.Generator().manual_seed(0)
    out = sample_outpainting(recording, layout, (2, 263, 1), sigmas, cond={"text_embed": torch.randn(2, 512)},
                             generator=g, callback=lambda i, seq: snapshots.append(seq.clone()))
    evaluations = 2 * (len(sigmas) - 1) - 1
    assert out.shape == (2, 263, 1, layout.length) and torch.isfinite(out).all()
    assert calls == [layout.window] * (layout.n_windows * evaluations)  # n sequential window samplings
    made = torch.zeros(layout.length, dtype=torch.bool)
    for i, snap in enumerate(snapshots):
        index = layout.window_index[i]
        # frames made by earlier windows are kept exactly; this window fills the rest of its frames
        torch.testing.assert_close(snap[..., made], snapshots[i - 1][..., made] if i else snap[..., made], atol=0, rtol=0)
        made[index] = True
        assert (snap[..., ~made] == 0).all()
    assert made.all()
    if cyclic:  # the last window ends on the first window's start: the loop is closed there
        torch.testing.assert_close(out[..., layout.window_index[-1][-layout.overlap:]], snapshots[0][..., :layout.overlap],
                                   atol=0, rtol=0)


# --- independent samples and the common interface ----------------------------------------------------


def test_independent_wrap_is_one_plain_sample_of_the_loop_length():
    inner = tiny_denoiser()
    layout = Layout(window=10, overlap=3, n_windows=3, cyclic=True)
    sigmas = inner.sigmas(3)
    text = torch.randn(2, 512)
    out = sample_independent(inner, layout, (2, 263, 1), sigmas, cond={"text_embed": text},
                             generator=torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(4)
    x = sigmas[0].float() * torch.randn(2, 263, 1, 21, generator=g)
    expected = sample_heun(inner, x, sigmas, cond={"text_embed": text}, generator=g)
    assert out.shape == (2, 263, 1, layout.length)
    torch.testing.assert_close(out, expected, atol=0, rtol=0)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_makes_a_loop_of_the_layout_length(method):
    inner = tiny_denoiser()
    layout = Layout(window=10, overlap=3, n_windows=3, cyclic=True)
    out = METHODS[method](inner, layout, (1, 263, 1), inner.sigmas(2), cond={"text_embed": torch.randn(1, 512)},
                          s_churn=1.0, generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 263, 1, 21) and torch.isfinite(out).all()
