import math

import pytest
import torch
from conftest import shared_path

from motion_loop.collage import OVERLAP, WINDOW, CollageDenoiser, Layout
from motion_loop.diffusion import (
    MDMDenoiser,
    alphas_cumprod_for,
    cosine_alphas_cumprod,
    ddpm_sample,
    vp_model_fn,
    vp_to_edm_sigmas,
)
from motion_loop.mdm import MDM, MDMConfig, TextTokens, load_model
from motion_loop.sampling import sample_heun

CHECKPOINT = "model000000100.pt"


def fixture_model(name="tiny_trans_enc"):
    return load_model(shared_path("mdm_reference", name, CHECKPOINT)).model


def tiny_model(seed=0, **overrides) -> MDM:
    torch.manual_seed(seed)
    fields = dict(latent_dim=32, layers=1, ff_size=48, num_heads=4)
    return MDM(MDMConfig(**{**fields, **overrides})).eval()


class ForwardLog:
    """Records every forward call of a model: (x, timesteps, y)."""

    def __init__(self, model):
        self.calls = []
        model.register_forward_pre_hook(lambda module, args: self.calls.append(args))


# --- schedule ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_steps", [1000, 50])
def test_cosine_schedule_matches_official(n_steps):
    reference = torch.load(shared_path("mdm_reference", "cosine_alphas_cumprod.pt"), weights_only=True)[n_steps]
    ours = cosine_alphas_cumprod(n_steps)
    assert ours.dtype == torch.float64
    torch.testing.assert_close(ours, reference, atol=0, rtol=0)


def test_edm_sigmas_of_the_schedules():
    s1000 = vp_to_edm_sigmas(cosine_alphas_cumprod(1000))
    assert s1000[0].item() == pytest.approx(0.0064254, rel=1e-4)
    assert s1000[998].item() == pytest.approx(641.66, rel=1e-4)
    assert s1000[999].item() == pytest.approx(20291.2, rel=1e-4)
    s50 = vp_to_edm_sigmas(cosine_alphas_cumprod(50))
    assert s50[0].item() == pytest.approx(0.041840, rel=1e-4) and s50[-1].item() == pytest.approx(1014.72, rel=1e-4)
    assert (s50.diff() > 0).all()
    config = MDMConfig(latent_dim=32, layers=1, diffusion_steps=50)
    torch.testing.assert_close(alphas_cumprod_for(config), cosine_alphas_cumprod(50), atol=0, rtol=0)


# --- the official DDPM sampler ---------------------------------------------------------------------


def test_cpu_generator_gives_the_global_stream():
    generator = torch.Generator().manual_seed(1234)
    ours = [torch.randn(2, 263, 1, 40, generator=generator) for _ in range(3)]
    torch.manual_seed(1234)
    first = torch.randn(2, 263, 1, 40)
    theirs = [first, torch.randn_like(first), torch.randn_like(first)]
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)


@pytest.mark.parametrize("batch_guidance", [False, True])
def test_ddpm_reproduces_the_official_trace(batch_guidance):
    trace = torch.load(shared_path("mdm_reference", "ddpm50_cfg_trace.pt"), weights_only=True)
    model = fixture_model()
    denoiser = MDMDenoiser(
        model,
        guidance_scale=trace["guidance_param"],
        alphas_cumprod=cosine_alphas_cumprod(trace["diffusion_steps"]),
        batch_guidance=batch_guidance,
        canvas_frames=None,  # MDM runs the 40 frames as they are
    )
    generator = torch.Generator().manual_seed(trace["torch_manual_seed"])
    sample = denoiser.ddpm_sample(trace["shape"], trace["text_embed"][0], generator=generator)
    torch.testing.assert_close(sample, trace["sample"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("batch_guidance", [True, False])
def test_ddpm_sampler_reproduces_the_official_bert_decoder_trace(batch_guidance):
    """MDM+DistilBERT (trans_dec, mask_frames, model_avg): 50 official ancestral steps with CFG 2.5."""
    trace = torch.load(shared_path("mdm_reference", "ddpm50_cfg_trace_trans_dec_bert.pt"), weights_only=True)
    loaded = load_model(shared_path("mdm_reference", "tiny_trans_dec_bert", "model000000100.pt"))
    enc_text, text_mask = trace["text_embed"]
    tokens = TextTokens(enc_text.permute(1, 0, 2), text_mask)  # batch-first, True on padding
    denoiser = MDMDenoiser(loaded.model, guidance_scale=trace["guidance_param"], batch_guidance=batch_guidance)
    assert denoiser.canvas_frames is None and len(denoiser.alphas_cumprod) == trace["diffusion_steps"]
    generator = torch.Generator().manual_seed(trace["torch_manual_seed"])
    lengths = trace["mask"].reshape(len(tokens), -1).sum(dim=1)
    sample = denoiser.ddpm_sample(trace["shape"], tokens, lengths=lengths, generator=generator)
    torch.testing.assert_close(sample, trace["sample"], atol=1e-5, rtol=0)


def test_ddpm_last_step_returns_the_model_prediction():
    # At t = 0: abar_prev = 1, so c1 = 1, c2 = 0 and no noise: the sample is the last x0 exactly.
    alphas_cumprod = cosine_alphas_cumprod(20)
    steps = []

    def model_fn(x, t):
        steps.append(int(t[0]))
        return torch.full_like(x, 0.25) + t[:, None, None] * 0.01

    out = ddpm_sample(model_fn, (3, 5, 7), alphas_cumprod, generator=torch.Generator().manual_seed(0))
    assert steps == list(range(19, -1, -1))
    torch.testing.assert_close(out, torch.full((3, 5, 7), 0.25), atol=1e-6, rtol=0)


def test_ddpm_runs_any_edm_denoiser_through_the_vp_change_of_variables():
    model = tiny_model()
    denoiser = MDMDenoiser(model, canvas_frames=None)
    text = torch.randn(2, 512)
    x_t, t = torch.randn(2, 263, 1, 10), torch.tensor([10, 900])
    with torch.no_grad():
        direct = denoiser.ddpm_model_fn(text)(x_t, t)
        via_edm = vp_model_fn(denoiser, denoiser.alphas_cumprod, text_embed=text)(x_t, t)
    torch.testing.assert_close(via_edm, direct, atol=1e-5, rtol=0)


# --- the EDM adapter ----------------------------------------------------------------------------------


def test_discrete_levels_and_rounding():
    denoiser = MDMDenoiser(tiny_model())
    levels = vp_to_edm_sigmas(cosine_alphas_cumprod(1000))
    assert denoiser.sigma_min == levels[0].item() and denoiser.sigma_max == levels[-1].item()
    torch.testing.assert_close(denoiser.sigma_to_t(levels), torch.arange(1000))
    # nearest in log sigma: just below the geometric mean of two levels rounds down, just above up
    mid = (levels[500] * levels[501]).sqrt()
    assert denoiser.round_sigma(mid * 0.999).item() == levels[500].item()
    assert denoiser.round_sigma(mid * 1.001).item() == levels[501].item()
    # outside the range: clamped to the ends; dtype and device follow the input
    assert denoiser.round_sigma(torch.tensor(1e-6, dtype=torch.float64)).item() == levels[0].item()
    assert denoiser.round_sigma(torch.tensor(1e9, dtype=torch.float32)).dtype == torch.float32
    assert denoiser.round_sigma(1e9).item() == levels[-1].item()


@pytest.mark.parametrize("steps", [1000, 50])
def test_sampler_schedule_is_karras_snapped_to_levels(steps):
    model = tiny_model(diffusion_steps=steps)
    denoiser = MDMDenoiser(model)
    levels = denoiser.discrete_sigmas
    sigmas = denoiser.sigmas(40)
    assert sigmas[-1] == 0 and (sigmas.diff() < 0).all()
    assert all(bool((levels == s).any()) for s in sigmas[:-1])
    assert sigmas[0] == denoiser.round_sigma(torch.tensor(80.0, dtype=torch.float64)) and sigmas[-2] == levels[0]
    if steps == 1000:
        assert len(sigmas) == 41
    else:  # 50 levels cannot give 40 distinct Karras steps near sigma_min
        assert len(sigmas) < 41
    assert denoiser.sigmas(10, sigma_max=1e6)[0] == levels[-1]


@pytest.mark.parametrize("name", ["tiny_trans_enc", "tiny_trans_enc_maskframes_ema"])
def test_edm_call_reproduces_official_guided_output(name):
    io = torch.load(shared_path("mdm_reference", name, "forward_io.pt"), weights_only=True)
    denoiser = MDMDenoiser(fixture_model(name), canvas_frames=None)
    for case in ("T60_full", "T40_padded"):
        c = io[case]
        t = c["timesteps"]
        sigma = denoiser.discrete_sigmas[t].float()
        x_edm = c["x"] * (1 + sigma.double() ** 2).sqrt().float()[:, None, None, None]
        lengths = c["mask"].sum(-1).flatten()
        with torch.no_grad():
            out = denoiser(x_edm, sigma, text_embed=c["text_embed"][0], lengths=lengths)
        valid = c["mask"].expand_as(out)
        torch.testing.assert_close(out[valid], c["out_cfg_2.5"][valid], atol=1e-5, rtol=0)
        assert (out[~valid] == 0).all()  # padded frames carry the training padding, 0


def test_guidance_is_one_batched_forward_and_skipped_at_scale_one():
    model = tiny_model()
    x, sigma, text = torch.randn(3, 263, 1, 12), torch.full((3,), 2.0), torch.randn(3, 512)
    log = ForwardLog(model)
    with torch.no_grad():
        guided = MDMDenoiser(model, canvas_frames=None)(x, sigma, text_embed=text)
        assert len(log.calls) == 1 and log.calls[0][0].shape[0] == 6
        two_calls = MDMDenoiser(model, canvas_frames=None, batch_guidance=False)(x, sigma, text_embed=text)
        assert len(log.calls) == 3
        plain = MDMDenoiser(model, guidance_scale=1.0, canvas_frames=None)(x, sigma, text_embed=text)
        assert len(log.calls) == 4 and log.calls[-1][0].shape[0] == 3
    torch.testing.assert_close(guided, two_calls, atol=1e-5, rtol=0)
    # closed form of CFG from the two branches
    den = MDMDenoiser(model, canvas_frames=None)
    t = den.sigma_to_t(sigma)
    x_vp = x / (1 + den.discrete_sigmas[t].float() ** 2).sqrt()[:, None, None, None]
    with torch.no_grad():
        cond = model(x_vp, t, {"text_embed": text})
        uncond = model(x_vp, t, {"text_embed": text, "uncond": True})
    torch.testing.assert_close(plain, cond, atol=1e-5, rtol=0)
    torch.testing.assert_close(guided, uncond + 2.5 * (cond - uncond), atol=1e-5, rtol=0)



def test_guidance_interval_guides_inside_and_halves_the_rows_outside():
    model = tiny_model()
    x, text = torch.randn(3, 263, 1, 12), torch.randn(3, 512)
    interval = MDMDenoiser(model, canvas_frames=None, guidance_interval=(0.3, 5.0))
    guided = MDMDenoiser(model, canvas_frames=None)
    plain = MDMDenoiser(model, canvas_frames=None, guidance_scale=1.0)
    log = ForwardLog(model)
    with torch.no_grad():
        for level, reference in ((2.0, guided), (0.1, plain), (20.0, plain)):
            sigma = torch.full((3,), level)
            out = interval(x, sigma, text_embed=text)
            assert log.calls[-1][0].shape[0] == (6 if reference is guided else 3)  # cond + uncond rows only inside
            torch.testing.assert_close(out, reference(x, sigma, text_embed=text), atol=1e-5, rtol=0)
        mixed = interval(x, torch.tensor([2.0, 0.1, 2.0]), text_embed=text)  # rows at other levels: each its own
        torch.testing.assert_close(mixed[1], plain(x[1:2], torch.tensor([0.1]), text_embed=text[1:2])[0],
                                   atol=1e-5, rtol=0)
        torch.testing.assert_close(mixed[0], guided(x[:1], torch.tensor([2.0]), text_embed=text[:1])[0],
                                   atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="guidance_interval"):
        MDMDenoiser(model, guidance_interval=(5.0, 0.3))


def test_ddpm_sampler_follows_the_guidance_interval():
    # MDM's own sampler: guided x0 at steps whose sigma is inside the interval, the conditional model alone outside.
    model = tiny_model()
    interval = MDMDenoiser(model, canvas_frames=None, guidance_interval=(2.0, math.inf))
    guided = MDMDenoiser(model, canvas_frames=None)
    plain = MDMDenoiser(model, canvas_frames=None, guidance_scale=1.0)
    x, text = torch.randn(2, 263, 1, 12), torch.randn(2, 512)
    with torch.no_grad():
        for t, reference in ((int(interval.sigma_to_t(5.0)), guided), (int(interval.sigma_to_t(0.5)), plain)):
            steps = torch.full((2,), t)
            torch.testing.assert_close(interval.ddpm_model_fn(text)(x, steps), reference.ddpm_model_fn(text)(x, steps),
                                       atol=1e-5, rtol=0)
        low = torch.full((2,), int(interval.sigma_to_t(0.5)))
        assert not torch.allclose(guided.ddpm_model_fn(text)(x, low), plain.ddpm_model_fn(text)(x, low), atol=1e-4)


def test_per_row_guidance_scales_each_row_and_packs():
    # guidance [R] (segments' rows): each row as a denoiser with that scale alone would give it.
    model = tiny_model(mask_frames=True)
    g = torch.Generator().manual_seed(1)
    x, text = torch.randn(3, 263, 1, 16, generator=g), torch.randn(3, 512, generator=g)
    sigma = torch.full((3,), 2.0)
    scales = torch.tensor([1.0, 2.5, 4.0])
    with torch.no_grad():
        per_row = MDMDenoiser(model)(x, sigma, text_embed=text, guidance=scales)
        packed = MDMDenoiser(model)(x, sigma, text_embed=text, lengths=torch.tensor([16, 10, 16]), guidance=scales)
        for r, s in enumerate(scales.tolist()):
            alone = MDMDenoiser(model, guidance_scale=s)
            torch.testing.assert_close(per_row[r], alone(x[r:r + 1], sigma[r:r + 1], text_embed=text[r:r + 1])[0],
                                       atol=1e-5, rtol=0)
            short = alone(x[r:r + 1, ..., :10], sigma[r:r + 1], text_embed=text[r:r + 1])[0]
            if r == 1:  # the 10-frame row went through its own packed call with its own scale
                torch.testing.assert_close(packed[r, ..., :10], short, atol=1e-5, rtol=0)
    assert not torch.allclose(per_row[0], per_row[2])


def test_mask_frames_rows_are_independent_of_their_padding():
    model = tiny_model(mask_frames=True)
    denoiser = MDMDenoiser(model)
    assert denoiser.canvas_frames is None
    x, text = torch.randn(2, 263, 1, 30), torch.randn(2, 512)
    sigma = denoiser.round_sigma(torch.tensor([1.5, 1.5]))
    with torch.no_grad():
        padded = denoiser(x, sigma, text_embed=text, lengths=torch.tensor([30, 18]))
        alone = denoiser(x[1:, ..., :18], sigma[1:], text_embed=text[1:])
    torch.testing.assert_close(padded[1, ..., :18], alone[0], atol=1e-5, rtol=0)
    assert (padded[1, ..., 18:] == 0).all()


def test_original_checkpoint_sees_short_rows_on_a_padding_canvas():
    model = tiny_model()  # mask_frames False, like humanml_trans_enc_512
    denoiser = MDMDenoiser(model)
    assert denoiser.canvas_frames == 196
    log = ForwardLog(model)
    g = torch.Generator().manual_seed(0)
    x, text = torch.randn(2, 263, 1, 40, generator=g), torch.randn(2, 512, generator=g)
    sigma = denoiser.round_sigma(torch.tensor([3.0, 3.0]))
    lengths = torch.tensor([40, 25])
    with torch.no_grad():
        out = denoiser(x, sigma, text_embed=text, lengths=lengths)
        again = denoiser(x, sigma, text_embed=text, lengths=lengths)
        no_canvas = MDMDenoiser(model, canvas_frames=None)(x, sigma, text_embed=text, lengths=lengths)
    assert out.shape == x.shape and torch.isfinite(out).all()
    torch.testing.assert_close(out, again, atol=0, rtol=0)  # deterministic fill
    assert (out[1, ..., 25:] == 0).all()
    assert (out[0] - no_canvas[0]).abs().max() > 1e-4  # the canvas path changed what the model saw
    # the model saw 196 frames: valid frames scaled to VP, the rest training padding at step t
    seen = log.calls[0][0]
    assert seen.shape == (4, 263, 1, 196)  # both guidance branches
    t = denoiser.sigma_to_t(sigma)
    c_in = denoiser.alphas_cumprod[t].sqrt().float()
    torch.testing.assert_close(seen[1, ..., :25], x[1, ..., :25] * c_in[1], atol=1e-6, rtol=0)
    eps = denoiser.padding_noise((263, 1), 196)
    noise_std = (1 - denoiser.alphas_cumprod[t]).sqrt().float()
    torch.testing.assert_close(seen[1, ..., 25:], noise_std[1] * eps[..., 25:], atol=1e-6, rtol=0)
    torch.testing.assert_close(seen[0, ..., 40:], noise_std[0] * eps[..., 40:], atol=1e-6, rtol=0)


def test_full_length_rows_skip_the_canvas():
    model = tiny_model()
    log = ForwardLog(model)
    x, text = torch.randn(2, 263, 1, 196), torch.randn(2, 512)
    sigma = torch.full((2,), 5.0)
    with torch.no_grad():
        out = MDMDenoiser(model)(x, sigma, text_embed=text)
        direct = MDMDenoiser(model, canvas_frames=None)(x, sigma, text_embed=text)
    torch.testing.assert_close(out, direct, atol=0, rtol=0)
    assert all(call[0].shape[-1] == 196 for call in log.calls)


# --- DiffCollage ----------------------------------------------------------------------------------------


def test_collage_loop_samples_end_to_end_on_the_fixture_model():
    model = fixture_model()
    inner = MDMDenoiser(model)
    layout = Layout(window=40, overlap=10, n_windows=4, cyclic=True)
    collage = CollageDenoiser(inner, layout)
    log = ForwardLog(model)
    sigmas = collage.sigmas(4)  # forwarded to the MDM adapter
    g = torch.Generator().manual_seed(0)
    x = sigmas[0].float() * torch.randn(2, 263, 1, layout.length, generator=g)
    out = sample_heun(collage, x, sigmas, cond={"text_embed": torch.randn(2, 512, generator=g)},
                      s_churn=5.0, generator=g)
    evaluations = 2 * (len(sigmas) - 1) - 1  # Heun, last step Euler to 0
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert collage.calls == evaluations and len(log.calls) == evaluations
    # every call: 2 samples x (4 windows + 4 overlaps), both guidance branches, on the 196 canvas
    assert all(call[0].shape == (32, 263, 1, 196) for call in log.calls)


def test_per_window_prompts_route_to_their_rows():
    model = tiny_model()
    log = ForwardLog(model)
    layout = Layout(window=12, overlap=4, n_windows=4, cyclic=True)
    collage = CollageDenoiser(MDMDenoiser(model, canvas_frames=None), layout)
    walk, run, jump = torch.randn(3, 512)
    text = torch.stack([torch.stack([walk, walk, run, jump]), torch.stack([jump, jump, jump, jump])])  # [2, 4, 512]
    x = torch.randn(2, 263, 1, layout.length)
    with torch.no_grad():
        collage(x, torch.full((2,), 1.0), text_embed=text)
    assert len(log.calls) == 1
    _, _, y = log.calls[0]
    rows = 2 * (4 + 4)
    cond_text, cond_uncond = y["text_embed"][:rows], y["uncond"][:rows]
    assert y["uncond"][rows:].all()  # the unconditional branch
    # rows: windows of sample 0, windows of sample 1, overlaps of sample 0, overlaps of sample 1
    kinds = [WINDOW] * 8 + [OVERLAP] * 8
    samples = [0] * 4 + [1] * 4 + [0] * 4 + [1] * 4
    index = list(range(4)) * 4
    for row, (kind, b, i) in enumerate(zip(kinds, samples, index)):
        if kind == WINDOW:
            expected, conditional = text[b, i], True
        else:  # overlap i is shared by windows i and i + 1 (mod 4)
            left, right = text[b, i], text[b, (i + 1) % 4]
            conditional = bool(torch.equal(left, right))
            expected = left
        assert bool(cond_uncond[row]) == (not conditional), row
        if conditional:
            torch.testing.assert_close(cond_text[row], expected, atol=0, rtol=0)
    # sample 0: overlap 0 (walk|walk) conditional; 1 (walk|run), 2 (run|jump), 3 (jump|walk) not
    assert cond_uncond[8:12].tolist() == [False, True, True, True]
    assert not cond_uncond[12:16].any()


def test_text_embed_shapes_are_checked():
    denoiser = MDMDenoiser(tiny_model(), canvas_frames=None)
    x, sigma = torch.randn(2, 263, 1, 8), torch.ones(2)
    with pytest.raises(ValueError, match="needs pieces"):
        denoiser(x, sigma, text_embed=torch.randn(2, 3, 512))
    with pytest.raises(ValueError, match="3 rows for 2 samples"):
        denoiser(x, sigma, text_embed=torch.randn(3, 512))
    with torch.no_grad():
        uncond = denoiser(x, sigma, text_embed=None)
    assert uncond.shape == x.shape and not math.isnan(uncond.sum().item())


def test_mask_frames_collage_packs_pieces_into_calls_of_their_own_length():
    model = tiny_model(mask_frames=True)
    layout = Layout(window=24, overlap=8, n_windows=3, cyclic=True)
    packed, padded = (CollageDenoiser(MDMDenoiser(model, pack=pack), layout) for pack in (True, False))
    log = ForwardLog(model)
    g = torch.Generator().manual_seed(0)
    x, text = torch.randn(2, 263, 1, layout.length, generator=g), torch.randn(2, 512, generator=g)
    sigma = packed.inner.round_sigma(torch.tensor([2.0, 0.3]))
    with torch.no_grad():
        out = packed(x, sigma, text_embed=text)
        widths = [call[0].shape for call in log.calls]
        reference = padded(x, sigma, text_embed=text)
    # windows (2 samples x 3, both guidance branches) at 24 frames, overlaps at 8: no padded frames
    assert widths == [(12, 263, 1, 8), (12, 263, 1, 24)]
    assert log.calls[2][0].shape == (24, 263, 1, 24)  # the padded path: one call of 24-frame rows
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=1e-5)


def test_bf16_model_keeps_float32_state_and_stays_close():
    model = tiny_model(mask_frames=True)
    g = torch.Generator().manual_seed(1)
    x, text = torch.randn(2, 263, 1, 20, generator=g), torch.randn(2, 512, generator=g)
    sigma = torch.tensor([1.0, 1.0])
    with torch.no_grad():
        full = MDMDenoiser(model)(x, sigma, text_embed=text)
        half = MDMDenoiser(tiny_model(mask_frames=True).to(torch.bfloat16))(x, sigma, text_embed=text)
    assert half.dtype == torch.float32
    assert (half - full).abs().max() < 0.1 * full.abs().max() and not torch.equal(half, full)


@pytest.mark.parametrize("packed", [False, True])
def test_coarse_model_runs_the_calls_above_its_level_only(packed):
    model, coarse = tiny_model(mask_frames=True), tiny_model(mask_frames=True).to(torch.bfloat16)
    mixed = MDMDenoiser(model, coarse_model=coarse, coarse_above=2.0)
    fine_only, coarse_only = MDMDenoiser(model), MDMDenoiser(coarse)
    g = torch.Generator().manual_seed(2)
    x, text = torch.randn(2, 263, 1, 20, generator=g), torch.randn(2, 512, generator=g)
    lengths = torch.tensor([20, 12]) if packed else None  # rows of two widths go through _packed
    with torch.no_grad():
        for sigma, expected in ((torch.tensor([5.0, 3.0]), coarse_only), (torch.tensor([2.0, 0.5]), fine_only),
                                (torch.tensor([5.0, 1.0]), fine_only)):  # a call with any level at or below: fp32
            out = mixed(x, sigma, text_embed=text, lengths=lengths)
            torch.testing.assert_close(out, expected(x, sigma, text_embed=text, lengths=lengths), atol=0, rtol=0)
            assert out.dtype == torch.float32
        high = torch.tensor([5.0, 3.0])
        assert not torch.equal(mixed(x, high, text_embed=text, lengths=lengths),
                               fine_only(x, high, text_embed=text, lengths=lengths))  # the check above can fail
        # MDM's own ddpm sampler chooses the same way, by the steps' levels
        for sigma, expected in ((high, coarse_only), (torch.tensor([2.0, 0.5]), fine_only)):
            t = mixed.sigma_to_t(sigma)
            torch.testing.assert_close(mixed.ddpm_model_fn(text, lengths)(x, t),
                                       expected.ddpm_model_fn(text, lengths)(x, t), atol=0, rtol=0)
