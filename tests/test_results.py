import json
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from motion_loop import render
from motion_loop.errors import UserError
from motion_loop.render import synthetic_walk
from motion_loop.results import (
    atomic_output, load_results, mdm_results, results_motion, save_results, video_name,
    write_atomic,
)

SMALL = dict(figsize=(1.6, 1.6), dpi=80)  # 128 x 128 pixel videos


def motions_for(num_samples, num_repetitions, lengths=None):
    """Distinct motions in MDM order (rep * N + sample)."""
    count = num_samples * num_repetitions
    lengths = lengths or [10] * count
    return [synthetic_walk(n, turn_rate=0.01 * i) + i for i, n in enumerate(lengths)]


def frame_count(path):
    frames = imageio_ffmpeg.read_frames(str(path))
    meta = next(frames)
    return meta["size"], sum(1 for _ in frames)


def hidden_files(directory):
    return sorted(p.name for p in Path(directory).iterdir() if p.name.startswith("."))


def test_video_name_is_mdms():
    assert video_name(0, 1) == "sample00_rep01.mp4"
    assert video_name(12, 3, ".gif") == "sample12_rep03.gif"


def test_mdm_results_layout_and_order():
    motions = motions_for(2, 3, lengths=[10, 12, 8, 12, 12, 11])
    texts = [f"prompt {i}" for i in range(6)]
    results = mdm_results(motions, texts, num_samples=2, num_repetitions=3)
    assert set(results) == {"motion", "text", "lengths", "num_samples", "num_repetitions"}
    assert results["motion"].shape == (6, 22, 3, 12) and results["motion"].dtype == np.float32
    assert results["text"] == texts
    assert results["lengths"].tolist() == [10, 12, 8, 12, 12, 11]
    assert results["lengths"].dtype.kind == "i"
    assert (results["num_samples"], results["num_repetitions"]) == (2, 3)
    # Axis order joints, xyz, time: motion[i, j, :, t] is joint j of motion i at frame t.
    np.testing.assert_array_equal(results["motion"][3, 5, :, 7], motions[3][7, 5])
    for i, motion in enumerate(motions):
        np.testing.assert_array_equal(results_motion(results, i), motion)
    # Padding holds the last frame.
    np.testing.assert_array_equal(results["motion"][2, :, :, 8:],
                                  np.repeat(motions[2][-1][..., None], 4, axis=-1))


def test_mdm_results_rejects_wrong_counts_and_shapes():
    with pytest.raises(UserError, match="expected 4 motions"):
        mdm_results(motions_for(1, 3), ["a"] * 3, num_samples=2, num_repetitions=2)
    with pytest.raises(UserError, match=r"\[T, 22, 3\]"):
        mdm_results([np.zeros((5, 22, 2))], ["a"], num_samples=1, num_repetitions=1)


def test_save_results_round_trip(tmp_path):
    n, r = 2, 2
    motions = motions_for(n, r, lengths=[12, 10, 12, 12])
    texts = ["a person walks forward", "a person waves", "a person walks forward",
             "a person waves"]
    meta = {"prompts": texts[:2], "model_path": "save/model.pt", "sampler": "heun", "steps": 20,
            "seed": 10, "guidance": 2.5, "seam": {"max_joint_jump_m": np.float32(0.01)},
            "loop": {"window": 196, "overlap": 40, "windows": 3, "cyclic": True}}
    written = save_results(tmp_path / "run", motions, texts, num_samples=n, num_repetitions=r,
                           metadata=meta, **SMALL)
    out = tmp_path / "run"
    expected = {"results.npy", "results.txt", "results_len.txt", "run.json", "sample00_rep00.mp4",
                "sample00_rep01.mp4", "sample01_rep00.mp4", "sample01_rep01.mp4",
                "sample00.mp4", "sample01.mp4"}
    assert set(written) == expected
    assert {p.name for p in out.iterdir()} == expected                 # no temp files left

    # Read back the way MDM's scripts do.
    data = np.load(out / "results.npy", allow_pickle=True).item()
    assert data["motion"].shape == (4, 22, 3, 12) and data["motion"].dtype == np.float32
    assert data["text"] == texts and data["lengths"].tolist() == [12, 10, 12, 12]
    assert (data["num_samples"], data["num_repetitions"]) == (2, 2)
    index = 1 * n + 0                                                  # rep 1, sample 0
    motion = data["motion"][index].transpose(2, 0, 1)[: data["lengths"][index]]
    np.testing.assert_allclose(motion, motions[2])
    np.testing.assert_allclose(results_motion(load_results(out / "results.npy"), 1), motions[1])

    assert (out / "results.txt").read_text().split("\n") == texts
    assert (out / "results_len.txt").read_text().split("\n") == ["12", "10", "12", "12"]
    run = json.loads((out / "run.json").read_text())
    assert run["seam"]["max_joint_jump_m"] == pytest.approx(0.01)
    assert run["loop"] == meta["loop"] and run["prompts"] == texts[:2]

    assert frame_count(out / "sample01_rep00.mp4") == ((128, 128), 10)
    assert frame_count(out / "sample00.mp4") == ((256, 128), 12)     # repetitions side by side


def test_loop_videos_play_k_cycles_and_npy_keeps_one(tmp_path):
    motions = motions_for(1, 1, lengths=[20])
    save_results(tmp_path, motions, ["walk"], num_samples=1, loop_cycles=3, **SMALL)
    assert frame_count(tmp_path / "sample00_rep00.mp4")[1] == 60
    assert load_results(tmp_path / "results.npy")["motion"].shape == (1, 22, 3, 20)


def test_existing_files_are_never_overwritten_unless_asked(tmp_path):
    motions = motions_for(1, 1)
    save_results(tmp_path, motions, ["first"], num_samples=1, videos=False)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(UserError, match="already exists.*overwrite"):
        save_results(tmp_path, motions, ["second"], num_samples=1, videos=False)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    save_results(tmp_path, motions, ["second"], num_samples=1, videos=False, overwrite=True)
    assert (tmp_path / "results.txt").read_text() == "second"
    assert hidden_files(tmp_path) == []


def test_existing_video_stops_the_run_before_anything_is_written(tmp_path):
    (tmp_path / "sample00_rep00.mp4").write_bytes(b"old")
    with pytest.raises(UserError, match="sample00_rep00.mp4 already exists"):
        save_results(tmp_path, motions_for(1, 1), ["a"], num_samples=1, **SMALL)
    assert [p.name for p in tmp_path.iterdir()] == ["sample00_rep00.mp4"]


def test_without_ffmpeg_videos_are_gifs(tmp_path, monkeypatch):
    def missing():
        raise RuntimeError("no ffmpeg")

    monkeypatch.delenv(render.FFMPEG_ENV, raising=False)
    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", missing)
    written = save_results(tmp_path, motions_for(1, 2), ["a", "b"], num_samples=1,
                           num_repetitions=2, **SMALL)
    assert {"sample00_rep00.gif", "sample00_rep01.gif"} <= set(written)
    assert not any(p.suffix == ".mp4" for p in tmp_path.iterdir())


def test_bad_metadata_is_a_user_error_and_writes_nothing(tmp_path):
    with pytest.raises(UserError, match="JSON"):
        save_results(tmp_path / "run", motions_for(1, 1), ["a"], num_samples=1,
                     metadata={"model": object()}, videos=False)
    assert not (tmp_path / "run").exists()


def test_atomic_output_keeps_the_old_file_when_interrupted(tmp_path):
    path = tmp_path / "results.txt"
    path.write_text("old")

    def crash(tmp):
        tmp.write_text("half written")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, crash, overwrite=True)
    assert path.read_text() == "old" and hidden_files(tmp_path) == []


def test_atomic_output_temp_name_is_hidden_beside_the_target(tmp_path):
    with atomic_output(tmp_path / "sample00_rep00.mp4") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".sample00_rep00.mp4.")
        assert tmp.name.endswith(".tmp.mp4")
        assert not (tmp_path / "sample00_rep00.mp4").exists()          # nothing final yet
        tmp.write_bytes(b"done")
    assert (tmp_path / "sample00_rep00.mp4").read_bytes() == b"done"
    assert hidden_files(tmp_path) == []


def test_missing_directory_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        write_atomic(tmp_path / "nope" / "results.txt", lambda tmp: tmp.write_text("x"))


def test_load_results_reads_plain_results_without_unpickling_code(tmp_path):
    import os

    results = mdm_results([synthetic_walk(6)], ["walk"], 1, 1)
    np.save(tmp_path / "results.npy", results, allow_pickle=True)
    loaded = load_results(tmp_path / "results.npy")
    np.testing.assert_array_equal(loaded["motion"], results["motion"])
    assert loaded["text"] == ["walk"] and loaded["num_samples"] == 1

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    np.save(tmp_path / "evil.npy", np.array({"motion": Payload()}, dtype=object), allow_pickle=True)
    with pytest.raises(UserError, match="names posix.system.*trusted=True"):
        load_results(tmp_path / "evil.npy")
    assert not (tmp_path / "pwned").exists()
    np.save(tmp_path / "plain.npy", np.zeros(3))
    with pytest.raises(UserError, match="not MDM's results dict"):
        load_results(tmp_path / "plain.npy")
    assert "trusted" in load_results.__doc__ and "arbitrary code" in load_results.__doc__
