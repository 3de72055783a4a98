"""python -m sample's loop-asset hooks: root handling in run.json, closing frame, rigid joints, --smpl."""

import json

import numpy as np

from motion_loop.rigid import rigid_joints
from test_generate import cli, run_error, run_ok, tiny  # noqa: F401 (tiny is a fixture)


def test_loop_records_root_handling_and_writes_closing_frame_and_rigid_joints(tiny, tmp_path, capsys):  # noqa: F811
    out_dir = tmp_path / "loop"
    out = run_ok(cli(tiny, "--text_prompt", "a person walks forward", "--loop", "--motion_length", "3",
                     "--num_repetitions", "2", "--no-render", "--closing_frame", "--output_dir", str(out_dir)), capsys)
    run = json.loads((out_dir / "run.json").read_text())
    assert len(run["loop_root"]) == 2
    for record in run["loop_root"]:
        assert record["heading"] in ("kept", "removed") and record["why"]
        assert set(record["before"]) == {"turn_degrees", "displacement_m", "distance_m"}
        if record["heading"] == "removed":
            assert abs(record["after"]["turn_degrees"]) < 0.01
    assert "turn per cycle" in out
    assert "Frames: 61" in (out_dir / "sample00_rep00.bvh").read_text()      # 60-frame cycle + closing frame
    results = np.load(out_dir / "results.npy", allow_pickle=True).item()
    rigid = np.load(out_dir / "joints_rigid.npy")
    assert rigid.shape == results["motion"].shape == (2, 22, 3, 60)          # results.npy keeps MDM's format
    np.testing.assert_allclose(rigid[0].transpose(2, 0, 1), rigid_joints(results["motion"][0].transpose(2, 0, 1)),
                               atol=1e-5)


def test_asset_flags_fail_before_sampling(tiny, tmp_path, capsys, monkeypatch):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    common = ("--text_prompt", "a person walks forward", "--output_dir", str(tmp_path / "out"))
    assert "--loop" in run_error(cli(tiny, *common, "--closing_frame"), capsys)
    assert "in_place" in run_error(cli(tiny, *common, "--loop", "--in_place", "--loop_heading", "keep"), capsys)
    assert "prepare/download_smpl.py" in run_error(cli(tiny, *common, "--loop", "--smpl"), capsys)
    assert not (tmp_path / "out").exists()


def test_smpl_mesh_folder_not_ours_is_refused(tiny, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "out"
    (out / "sample00_rep00_obj").mkdir(parents=True)
    (out / "sample00_rep00_obj" / "frame000.obj").write_text("mine")
    model = tmp_path / "SMPL_NEUTRAL.pkl"
    model.write_bytes(b"checked for existence before sampling, read after")
    line = run_error(cli(tiny, "--text_prompt", "a person walks forward", "--loop", "--smpl", "--smpl_model", str(model),
                         "--overwrite", "--num_repetitions", "1", "--output_dir", str(out)), capsys)
    assert "sample00_rep00_obj" in line
    assert (out / "sample00_rep00_obj" / "frame000.obj").read_text() == "mine"
