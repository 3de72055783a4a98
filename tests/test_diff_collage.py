"""The seed README's usage example, run as written apart from the import line."""

import pytest
import torch

import motion_loop.diff_collage as dc


def gaussian_eps_fn(mean=0.25, std=0.5):
    """eps of the exact denoiser of i.i.d. N(mean, std^2) pixels."""

    def eps_fn(xs, scalar_t, enable_grad):
        x0 = mean + std**2 / (std**2 + scalar_t**2) * (xs - mean)
        return (xs - x0) / scalar_t

    return eps_fn


def test(eps_fn, s_churn=10.0):  # the seed README's function, verbatim
    n_step = 40 # sampling step
    overlap_size = 32 # how much overlap
    num_img = 11 # how many square images
    batch_size = 5
    ts_order = 5 # sampling timestamp schedule
    img_shape = (3, 64, 64) # image shape

    # sampling with conditional independence assumption
    worker = dc.condind_long.CondIndLong(img_shape, eps_fn, num_img, overlap_size=overlap_size)
    sample = dc.sampling(
        x = worker.generate_xT(batch_size),
        noise_fn = worker.noise,
        rev_ts = worker.rev_ts(n_step, ts_order),
        x0_pred_fn = worker.x0_fn,
        s_churn = s_churn,
        is_traj = False # return sampling traj or not
    )

    # sampling with average noise method
    worker = dc.AvgLong(img_shape, eps_fn, num_img, overlap_size=overlap_size)
    sample = dc.sampling(
        x = worker.generate_xT(batch_size),
        noise_fn = worker.noise,
        rev_ts = worker.rev_ts(n_step, ts_order),
        x0_pred_fn = worker.x0_fn,
        s_churn = s_churn,
        is_traj = False # return sampling traj or not
    )
test.__test__ = False  # the seed names it `test`; it is called below, not collected


def test_seed_readme_example_runs_on_cpu():
    test(gaussian_eps_fn())


@pytest.mark.parametrize("worker_cls", [dc.CondIndLong, dc.AvgLong, dc.CondIndCircle, dc.AvgCircle])
def test_workers_sample_the_right_shape_and_statistics(worker_cls):
    torch.manual_seed(0)
    worker = worker_cls((2, 4, 16), gaussian_eps_fn(), 5, overlap_size=6, device="cpu")
    cyclic = worker_cls in (dc.CondIndCircle, dc.AvgCircle)
    length = 5 * 10 + (0 if cyclic else 6)
    xT = worker.generate_xT(64)
    assert xT.shape == (64, 2, 4, length) and xT.device.type == "cpu"
    sample = dc.sampling(x=xT, noise_fn=worker.noise, rev_ts=worker.rev_ts(40, 5), x0_pred_fn=worker.x0_fn,
                         s_churn=10.0, is_tqdm=False)
    assert sample.shape == xT.shape
    # i.i.d. pixels: both composition methods recover the mean; condind also the variance
    assert sample.mean().item() == pytest.approx(0.25, abs=0.02)
    if worker_cls in (dc.CondIndLong, dc.CondIndCircle):
        assert sample.std().item() == pytest.approx(0.5, abs=0.03)


def test_trajectory_records_x_T_and_every_step():
    worker = dc.CondIndCircle((1, 1, 8), gaussian_eps_fn(), 3, overlap_size=2, device="cpu")
    xT = worker.generate_xT(2)
    traj, losses = dc.sampling(x=xT, noise_fn=worker.noise, rev_ts=worker.rev_ts(10, 5), x0_pred_fn=worker.x0_fn,
                               is_traj=True, is_tqdm=False)
    assert len(traj["xt"]) == 11
    torch.testing.assert_close(traj["xt"][0], xT)
    assert len(traj["x0"]) == 2 * 10
    assert losses == {}


def test_x0_clipping_is_opt_in():
    big_eps = lambda xs, t, g: -torch.ones_like(xs) * 10  # noqa: E731  (x0 = x + 10 t)
    plain = dc.CondIndLong((1, 1, 8), big_eps, 2, overlap_size=4, device="cpu")
    clipped = dc.CondIndLong((1, 1, 8), big_eps, 2, overlap_size=4, device="cpu", clip_x0=True)
    x = torch.zeros(1, 1, 1, 12)
    assert plain.x0_fn(x, torch.tensor(1.0))[0].max() == pytest.approx(10.0)
    assert clipped.x0_fn(x, torch.tensor(1.0))[0].max() == pytest.approx(1.0)


def test_seed_api_rejects_bad_overlap():
    with pytest.raises(ValueError, match="overlap"):
        dc.CondIndLong((3, 8, 8), gaussian_eps_fn(), 4, overlap_size=5)
