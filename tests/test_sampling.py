import math

import pytest
import torch

from motion_loop.sampling import karras_sigmas, rev_ts, sample_euler, sample_heun


def gaussian_denoiser(mean: float, std: float):
    """Exact denoiser of N(mean, std^2) data: E[x0 | x0 + sigma*eps = x]."""

    def denoiser(x, sigma):
        s2 = sigma.view(-1, *([1] * (x.ndim - 1))) ** 2
        return mean + std**2 / (std**2 + s2) * (x - mean)

    return denoiser


def test_karras_sigmas_endpoints_and_order():
    sigmas = karras_sigmas(10, 0.002, 80.0, 7.0)
    assert sigmas.shape == (11,)
    assert sigmas[0].item() == pytest.approx(80.0)
    assert sigmas[-2].item() == pytest.approx(0.002)
    assert sigmas[-1].item() == 0
    assert torch.all(sigmas[1:] < sigmas[:-1])
    assert karras_sigmas(10, append_zero=False).shape == (10,)


def test_rev_ts_is_the_seed_formula():
    ts = rev_ts(40, 5)
    expected = torch.linspace(80.0 ** (1 / 5), 1e-3 ** (1 / 5), 41, dtype=torch.float64) ** 5
    torch.testing.assert_close(ts, expected)


@pytest.mark.parametrize("bad", [dict(n_steps=0), dict(n_steps=5, sigma_min=-1.0), dict(n_steps=5, sigma_min=2.0, sigma_max=1.0)])
def test_karras_sigmas_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        karras_sigmas(**bad)


@pytest.mark.parametrize("s_churn", [0.0, 40.0])
def test_heun_samples_a_gaussian(s_churn):
    g = torch.Generator().manual_seed(0)
    sigmas = karras_sigmas(64, 0.002, 80.0)
    x = 80.0 * torch.randn(20000, 1, generator=g, dtype=torch.float64)
    # s_noise = 1 makes churn exact; EDM's 1.003 deliberately over-noises a little.
    out = sample_heun(gaussian_denoiser(1.5, 0.5), x, sigmas, s_churn=s_churn, s_noise=1.0, generator=g)
    assert out.mean().item() == pytest.approx(1.5, abs=0.02)
    assert out.std().item() == pytest.approx(0.5, abs=0.02)


def test_heun_is_second_order_on_the_probability_flow_ode():
    # For Gaussian data the ODE solution is affine in x_T: x(0) = mean + (x_T - mean) * std / sqrt(std^2 + smax^2).
    x = 80.0 * torch.linspace(-3, 3, 101, dtype=torch.float64)[:, None]
    exact = 1.5 + (x - 1.5) * 0.5 / (0.25 + 80.0**2) ** 0.5
    errors = [
        (sample_heun(gaussian_denoiser(1.5, 0.5), x, karras_sigmas(n, 0.002, 80.0)) - exact).abs().max().item()
        for n in (32, 64, 128)
    ]
    assert errors[2] < 2e-3
    assert errors[0] / errors[1] > 3.5 and errors[1] / errors[2] > 3.5  # error ~ 1/n^2


def test_euler_samples_a_gaussian_roughly():
    g = torch.Generator().manual_seed(0)
    sigmas = karras_sigmas(200, 0.002, 80.0)
    x = 80.0 * torch.randn(20000, 1, generator=g, dtype=torch.float64)
    out = sample_euler(gaussian_denoiser(-1.0, 2.0), x, sigmas)
    assert out.mean().item() == pytest.approx(-1.0, abs=0.05)
    assert out.std().item() == pytest.approx(2.0, abs=0.05)


def test_heun_randomness_comes_only_from_the_generator():
    sigmas = karras_sigmas(10, 0.002, 80.0)
    x = torch.ones(4, 3)
    den = gaussian_denoiser(0.0, 1.0)
    a = sample_heun(den, x, sigmas, s_churn=20.0, generator=torch.Generator().manual_seed(5))
    torch.manual_seed(123)  # the global RNG must not matter
    b = sample_heun(den, x, sigmas, s_churn=20.0, generator=torch.Generator().manual_seed(5))
    c = sample_heun(den, x, sigmas, s_churn=20.0, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_heun_call_count_and_churn_window():
    calls, sigma_hats = [], []

    def den(x, sigma):
        calls.append(sigma[0].item())
        return torch.zeros_like(x)

    sigmas = karras_sigmas(10, 0.01, 80.0)  # ends in 0: last step has no correction
    sample_heun(den, torch.zeros(2, 2), sigmas, s_churn=10.0, s_tmin=0.05, s_tmax=50.0,
                generator=torch.Generator().manual_seed(0),
                callback=lambda info: sigma_hats.append((info["sigma"].item(), info["sigma_hat"].item())))
    assert len(calls) == 2 * 10 - 1
    gamma = min(10.0 / 10, math.sqrt(2) - 1)
    for t, t_hat in sigma_hats:
        expected = t * (1 + gamma) if 0.05 <= t <= 50.0 else t
        assert t_hat == pytest.approx(expected)


def test_heun_uses_round_sigma_of_the_denoiser():
    levels = torch.tensor([0.5, 1.0, 2.0, 4.0, 8.0], dtype=torch.float64)
    seen = []

    class Discrete:
        def round_sigma(self, sigma):
            return levels[(levels.log() - sigma.log()).abs().argmin()]

        def __call__(self, x, sigma):
            seen.append(sigma[0].item())
            return torch.zeros_like(x)

    sigmas = torch.tensor([8.0, 4.0, 2.0, 1.0, 0.5, 0.0], dtype=torch.float64)
    sample_heun(Discrete(), torch.zeros(1, 1), sigmas, s_churn=4.0, s_tmax=10.0,
                generator=torch.Generator().manual_seed(0))
    assert set(seen) <= set(levels.tolist())


def test_sampler_keeps_dtype_and_device():
    x = torch.randn(3, 4, dtype=torch.float32)
    out = sample_heun(gaussian_denoiser(0.0, 1.0), x, karras_sigmas(4), s_churn=5.0,
                      generator=torch.Generator().manual_seed(0))
    assert out.dtype == torch.float32 and out.device == x.device


def test_dpmpp_2m_is_second_order_and_one_call_per_step():
    from motion_loop.sampling import evaluations, sample_dpmpp_2m

    x = 80.0 * torch.linspace(-3, 3, 101, dtype=torch.float64)[:, None]
    exact = 1.5 + (x - 1.5) * 0.5 / (0.25 + 80.0**2) ** 0.5
    calls = []
    inner = gaussian_denoiser(1.5, 0.5)

    def counted(x, sigma):
        calls.append(1)
        return inner(x, sigma)

    errors, euler = [], []
    for n in (16, 32, 64):
        calls.clear()
        sigmas = karras_sigmas(n, 0.002, 80.0)
        errors.append((sample_dpmpp_2m(counted, x, sigmas) - exact).abs().max().item())
        assert len(calls) == n == evaluations("dpmpp_2m", sigmas)
        euler.append((sample_euler(inner, x, sigmas) - exact).abs().max().item())
    # second order: doubling the steps cuts the error ~4x; far below first-order Euler at equal calls
    assert errors[1] < errors[0] / 3 and errors[2] < errors[1] / 3
    assert errors[2] < euler[2] / 10
    assert evaluations("heun", karras_sigmas(8)) == 15


def test_dpmpp_2m_samples_a_gaussian():
    from motion_loop.sampling import sample_dpmpp_2m

    g = torch.Generator().manual_seed(0)
    x = 80.0 * torch.randn(20000, 1, generator=g, dtype=torch.float64)
    out = sample_dpmpp_2m(gaussian_denoiser(1.5, 0.5), x, karras_sigmas(32, 0.002, 80.0))
    assert out.mean().item() == pytest.approx(1.5, abs=0.02)
    assert out.std().item() == pytest.approx(0.5, abs=0.02)


def test_exponential_weights_integrate_polynomials_exactly():
    from motion_loop.sampling import exponential_weights

    h = 0.7
    u = torch.linspace(0, h, 200001, dtype=torch.float64)
    kernel = torch.exp(-(h - u))
    for nodes in ([0.0], [0.0, -0.5], [0.0, -0.4, -1.1], [h, 0.0, -0.4]):
        for degree in range(len(nodes)):  # D(u) = u^degree: exact for degrees below the node count
            weights = exponential_weights(h, nodes)
            by_weights = sum(w * x**degree for w, x in zip(weights, nodes))
            by_quadrature = torch.trapezoid(kernel * u**degree, u).item()
            assert by_weights == pytest.approx(by_quadrature, rel=1e-8, abs=1e-12)
    assert exponential_weights(h, [0.0]) == pytest.approx([1 - math.exp(-h)])  # DPM-Solver++(1)


@pytest.mark.parametrize("sampler,min_gain", [("dpmpp_3m", 6.0), ("unipc", 6.0)])
def test_higher_order_multistep_samplers_on_the_exact_gaussian_ode(sampler, min_gain):
    from motion_loop.sampling import SAMPLERS, evaluations, sample_dpmpp_2m

    x = 80.0 * torch.linspace(-3, 3, 101, dtype=torch.float64)[:, None]
    exact = 1.5 + (x - 1.5) * 0.5 / (0.25 + 80.0**2) ** 0.5
    inner = gaussian_denoiser(1.5, 0.5)
    calls = []

    def counted(x, sigma):
        calls.append(1)
        return inner(x, sigma)

    errors = []
    for n in (32, 64):
        calls.clear()
        sigmas = karras_sigmas(n, 0.002, 80.0)
        errors.append((SAMPLERS[sampler](counted, x, sigmas) - exact).abs().max().item())
        assert len(calls) == n == evaluations(sampler, sigmas)  # one model call per step
    # third order: doubling the steps cuts the error ~8x (second-order DPM-Solver++(2M): ~4x), and
    # at 64 steps it is well below DPM-Solver++(2M)'s
    assert errors[1] < errors[0] / min_gain
    two_m = (sample_dpmpp_2m(inner, x, karras_sigmas(64, 0.002, 80.0)) - exact).abs().max().item()
    assert errors[1] < two_m / 5


@pytest.mark.parametrize("sampler", ["dpmpp_3m", "unipc"])
def test_higher_order_multistep_samplers_sample_a_gaussian(sampler):
    from motion_loop.sampling import SAMPLERS

    g = torch.Generator().manual_seed(0)
    x = 80.0 * torch.randn(20000, 1, generator=g, dtype=torch.float64)
    out = SAMPLERS[sampler](gaussian_denoiser(1.5, 0.5), x, karras_sigmas(24, 0.002, 80.0))
    assert out.mean().item() == pytest.approx(1.5, abs=0.02)
    assert out.std().item() == pytest.approx(0.5, abs=0.02)
    with pytest.raises(ValueError, match="order"):
        from motion_loop.sampling import sample_multistep

        sample_multistep(gaussian_denoiser(0.0, 1.0), x[:2], karras_sigmas(4), order=4)


@pytest.mark.parametrize("sampler", ["heun", "euler", "dpmpp_2m", "dpmpp_3m", "unipc"])
def test_evaluation_sigmas_are_the_levels_the_sampler_calls(sampler):
    from motion_loop.sampling import SAMPLERS, evaluation_sigmas, evaluations

    seen = []

    def recording(x, sigma):
        seen.append(float(sigma[0]))
        return 0.5 * x

    sigmas = karras_sigmas(7, 0.002, 80.0)
    SAMPLERS[sampler](recording, torch.randn(2, 3, dtype=torch.float64), sigmas)
    assert evaluation_sigmas(sampler, sigmas) == pytest.approx(seen)
    assert evaluations(sampler, sigmas) == len(seen)


def test_run_sampler_dispatches_by_the_cli_names():
    from motion_loop.sampling import run_sampler, sample_dpmpp_3m

    sigmas = karras_sigmas(6, 0.002, 80.0)
    x = 80.0 * torch.randn(4, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    denoiser = gaussian_denoiser(1.0, 0.5)
    heun = sample_heun(denoiser, x, sigmas, s_churn=5.0, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(run_sampler("edm", denoiser, x, sigmas, s_churn=5.0,
                                           generator=torch.Generator().manual_seed(2)), heun)
    torch.testing.assert_close(run_sampler("dpmpp_3m", denoiser, x, sigmas), sample_dpmpp_3m(denoiser, x, sigmas))
    with pytest.raises(ValueError, match="churn"):
        run_sampler("dpmpp_3m", denoiser, x, sigmas, s_churn=5.0)
    with pytest.raises(ValueError, match="unknown sampler"):
        run_sampler("rk45", denoiser, x, sigmas)
