"""SMPL fitting through smplx (motion_loop/smpl.py) with a random SMPL-format model file.

The real SMPL files are licensed; ``write_test_model`` builds a file in their .pkl format with SMPL's
24 joints and parents, 6890 random vertices and random shape and pose blend shapes. Tolerances:

- joints a SMPL body can make (the test model's own, random pose, shape and translation) come back
  to < 1 mm: the fit is exact up to the optimiser's convergence (observed ~0.03 mm);
- our motions: SMPL's bones come from 10 shape coefficients, ours are 21 free lengths, and the test
  model's hip and collar triangles are its own, so the error is that mismatch (~1-3 cm mean): we check
  < 4 cm mean, and that the saved parameters, fed to smplx, give exactly the joints the fit reports.
"""

import numpy as np
import pytest
import torch

from motion_loop import procedural
from motion_loop.errors import UserError
from motion_loop.results import save_results
from motion_loop.smpl import (
    DOWNLOAD_HINT, axis_angle_from_matrix, fit_smpl, load_body_model, main, smpl_file, write_smpl,
    write_test_model,
)

smplx = pytest.importorskip("smplx")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("smpl")
    write_test_model(folder / "SMPL_NEUTRAL.pkl", seed=0)
    return folder


@pytest.fixture(scope="module")
def body(model_dir):
    return load_body_model(model_dir)


def smplx_joints(body, poses, trans, betas):
    """smplx's forward pass of AMASS-layout parameters: joints [T, 24, 3]."""
    frames = len(poses)
    poses, trans, betas = (torch.as_tensor(np.asarray(a, dtype=np.float64)) for a in (poses, trans, betas))
    out = body(betas=betas[None].expand(frames, -1), global_orient=poses[:, :3], body_pose=poses[:, 3:],
               transl=trans)
    return out.joints[:, :24].detach().numpy()


def test_axis_angle_round_trip():
    from smplx.lbs import batch_rodrigues

    rng = np.random.default_rng(0)
    vectors = rng.normal(0, 1.2, (500, 3))
    vectors[:3] = [[np.pi - 1e-9, 0, 0], [0, 0, 0], [1e-9, 0, 0]]       # half turn, zero, tiny
    rot = batch_rodrigues(torch.from_numpy(vectors)).numpy()
    back = batch_rodrigues(torch.from_numpy(axis_angle_from_matrix(rot))).numpy()
    np.testing.assert_allclose(back, rot, atol=1e-7)   # smplx's rodrigues adds 1e-8 to the angle


def test_fit_recovers_a_smpl_bodys_own_joints(body):
    rng = np.random.default_rng(1)
    frames = 30
    poses = rng.normal(0, 0.3, (frames, 72))
    poses[:, 66:] = 0.0
    betas, trans = rng.normal(0, 1, 10), rng.normal(0, 1, (frames, 3))
    target = smplx_joints(body, poses, trans, betas)[:, :22]
    fit = fit_smpl(target, body)
    assert fit.joint_error_m.max() < 1e-3
    np.testing.assert_allclose(smplx_joints(body, fit.poses, fit.trans, fit.betas)[:, :22], target, atol=1e-3)


def test_fit_follows_our_motion_and_saves_amass_layout(body, tmp_path):
    joints = procedural.generate("walk", 60, np.random.default_rng(0), n_captions=0).joints
    written, fit = write_smpl(tmp_path, "sample00_rep00", joints, body, fps=20.0)
    data = np.load(written["sample00_rep00_smpl.npz"])
    assert set(data.files) == {"poses", "trans", "betas", "gender", "mocap_framerate"}
    assert data["poses"].shape == (60, 72) and data["trans"].shape == (60, 3) and data["betas"].shape == (10,)
    assert str(data["gender"]) == "neutral" and float(data["mocap_framerate"]) == 20.0
    np.testing.assert_array_equal(data["poses"][:, 66:], 0.0)                # hands zero
    again = smplx_joints(body, data["poses"], data["trans"], data["betas"])[:, :22]
    error = np.linalg.norm(again - joints, axis=-1)
    np.testing.assert_allclose(error, fit.joint_error_m, atol=1e-4)          # float32 file vs the fit
    assert error.mean() < 0.04
    # the optimisation steps lower the squared error they minimise below the analytic start's
    rms = lambda e: np.sqrt((e ** 2).mean())
    assert rms(fit_smpl(joints, body, iterations=0).joint_error_m) > rms(fit.joint_error_m)
    objs = sorted((tmp_path / "sample00_rep00_obj").glob("frame*.obj"))
    assert len(objs) == 60
    lines = objs[0].read_text().splitlines()
    assert sum(line.startswith("v ") for line in lines) == 6890 and any(line.startswith("f ") for line in lines)


def test_missing_smpl_files_name_the_download_script(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="prepare/download_smpl.py"):
        smpl_file()
    joints = procedural.generate("walk", 10, np.random.default_rng(0), n_captions=0).joints
    save_results(tmp_path / "run", [joints], ["walk"], num_samples=1, videos=False)
    assert main(["--input_path", str(tmp_path / "run" / "results.npy")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and DOWNLOAD_HINT in err[0]


def test_corrupt_model_file_is_one_line(tmp_path):
    (tmp_path / "SMPL_NEUTRAL.pkl").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="not a readable SMPL model file"):
        load_body_model(tmp_path)


def test_command_on_existing_results(model_dir, tmp_path, capsys):
    rng = np.random.default_rng(0)
    motions = [procedural.generate(k, 12, rng, n_captions=0).joints for k in ("walk", "run")]
    save_results(tmp_path, motions, ["walk", "run"], num_samples=1, num_repetitions=2, videos=False)
    # one motion, named as MDM's render_mesh takes it (the video path)
    assert main(["--input_path", str(tmp_path / "sample00_rep01.mp4"), "--smpl_model", str(model_dir)]) == 0
    assert (tmp_path / "sample00_rep01_smpl.npz").is_file() and not (tmp_path / "sample00_rep00_smpl.npz").exists()
    assert len(list((tmp_path / "sample00_rep01_obj").glob("*.obj"))) == 12
    # every motion, parameters only
    assert main(["--input_path", str(tmp_path / "results.npy"), "--smpl_model", str(model_dir), "--no-meshes",
                 "--overwrite"]) == 0
    assert (tmp_path / "sample00_rep00_smpl.npz").is_file()
    assert "mm mean" in capsys.readouterr().out
