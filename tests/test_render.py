import logging
import os
import stat

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from conftest import shared_path
from motion_loop import render
from motion_loop.errors import UserError
from motion_loop.humanml import facing_angle, rotate_y
from motion_loop.render import (
    FFmpegError, render_frames, render_motion, render_motions, synthetic_walk, tile_loop,
)
from motion_loop.skeleton import CHAIN_COLORS

SMALL = dict(figsize=(1.6, 1.6), dpi=80)  # 128 x 128 pixels: fast


def read_mp4(path):
    frames = imageio_ffmpeg.read_frames(str(path))
    meta = next(frames)
    width, height = meta["size"]
    video = np.stack([np.frombuffer(f, np.uint8).reshape(height, width, 3) for f in frames])
    return meta, video


def read_gif(path):
    with Image.open(path) as im:
        frames = []
        for i in range(im.n_frames):
            im.seek(i)
            frames.append(np.asarray(im.convert("RGB")))
        return im.info, np.stack(frames)


def leftovers(directory, keep):
    return sorted(p.name for p in directory.iterdir() if p.name not in keep)


# ---------------------------------------------------------------------------------------------
# tile_loop


def test_synthetic_walk_keeps_bone_lengths_and_is_periodic_in_pose():
    walk = synthetic_walk(40, gait_period=20, turn_rate=0.05)
    bones = np.linalg.norm(walk[:, 1:] - walk[:, render.PARENTS[1:]], axis=-1)
    np.testing.assert_allclose(bones, np.broadcast_to(render.BONE_LENGTHS[1:], bones.shape),
                               atol=1e-5)
    local = walk - walk[:, :1] * np.array([1, 0, 1])
    local = np.stack([rotate_y(f, -h) for f, h in zip(local, facing_angle(walk))])
    np.testing.assert_allclose(local[20], local[0], atol=1e-5)
    assert np.abs(local[5] - local[0]).max() > 0.1


def test_tile_loop_in_place_repeats_the_cycle_exactly():
    walk = synthetic_walk(20, turn_rate=0.02)
    tiled = tile_loop(walk, 3, in_place=True)
    assert tiled.shape == (60, 22, 3) and tiled.dtype == walk.dtype
    np.testing.assert_array_equal(tiled[:, 0, [0, 2]], 0)
    np.testing.assert_array_equal(tiled[20:40], tiled[:20])
    np.testing.assert_array_equal(tiled[40:], tiled[:20])
    np.testing.assert_allclose(tiled[:20, :, 1], walk[:, :, 1])          # height untouched
    np.testing.assert_allclose(facing_angle(tiled[:20]), facing_angle(walk), atol=1e-6)  # heading kept


def test_tile_loop_straight_walk_continues_like_a_longer_walk():
    period, cycles = 20, 4
    tiled = tile_loop(synthetic_walk(period, speed=0.07), cycles)
    np.testing.assert_allclose(tiled, synthetic_walk(period * cycles, speed=0.07), atol=2e-5)


def test_tile_loop_turning_walk_keeps_turning():
    period, cycles = 40, 3
    tiled = tile_loop(synthetic_walk(period, turn_rate=0.04), cycles)
    # Same motion generated in one go: the circle continues across both seams.
    np.testing.assert_allclose(tiled, synthetic_walk(period * cycles, turn_rate=0.04), atol=1e-4)
    steps = np.linalg.norm(np.diff(tiled[:, 0, [0, 2]], axis=0), axis=-1)
    np.testing.assert_allclose(steps, steps[0], rtol=1e-3)  # no jump or stall at the seams


def test_tile_loop_is_equivariant_to_where_the_loop_starts():
    walk = synthetic_walk(40, turn_rate=-0.03)
    moved = rotate_y(walk, 1.1) + np.array([2.0, 0.0, -0.5])
    np.testing.assert_allclose(tile_loop(moved, 3),
                               rotate_y(tile_loop(walk, 3), 1.1) + np.array([2.0, 0.0, -0.5]),
                               atol=1e-4)


def test_tile_loop_one_cycle_is_the_input():
    walk = synthetic_walk(30, turn_rate=0.1)
    np.testing.assert_array_equal(tile_loop(walk, 1), walk)


@pytest.mark.parametrize("cycles", [0, -2, 1.5, True, "3"])
def test_tile_loop_rejects_bad_cycles(cycles):
    with pytest.raises(UserError, match="cycles"):
        tile_loop(synthetic_walk(10), cycles)


def test_tile_loop_rejects_bad_shape():
    with pytest.raises(UserError, match=r"\[T, 22, 3\]"):
        tile_loop(np.zeros((10, 20, 3)), 2)


# ---------------------------------------------------------------------------------------------
# Frames


def mplot3d_frame(walk, index, figsize, dpi, title):
    """Frame ``index`` drawn the slow, reference way: mplot3d's own artists (Poly3DCollection,
    Line3D) on the panel's 3D axes, one full draw of the figure."""
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    canvas, panels = render._build_figure([walk], [title], figsize, dpi, render.VIEW_RADIUS)
    panel = panels[0]
    ax = panel.ax
    ax.computed_zorder = False                                           # plane, trail, body: in that order
    (x0, z0) = np.maximum(panel.plane_lo - panel.trajectory[index], -panel.radius)
    (x1, z1) = np.minimum(panel.plane_hi - panel.trajectory[index], panel.radius)
    ax.add_collection3d(Poly3DCollection([[(x0, 0, z0), (x0, 0, z1), (x1, 0, z1), (x1, 0, z0)]],
                                         facecolor=render.PLANE_COLOR, zorder=1))
    past = panel.trajectory[: index + 1] - panel.trajectory[index]
    ax.plot(past[:, 0], np.zeros(len(past)), past[:, 1], linewidth=1.0, color=render.TRAJECTORY_COLOR, zorder=2)
    pose = panel.data[index]
    for chain, colour in zip(render.kinematic_chain(22), CHAIN_COLORS):
        ax.plot(pose[list(chain), 0], pose[list(chain), 1], pose[list(chain), 2], linewidth=render.LINE_WIDTH,
                color=colour, zorder=3)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def test_frames_are_even_sized_and_the_same_pixels_as_mplot3d_artists():
    walk = synthetic_walk(40, turn_rate=0.05)                            # turns: the trail leaves the view
    frames = [f.copy() for f in render_frames([walk], ["a walk"], figsize=(1.55, 1.55), dpi=100)]
    assert len(frames) == 40 and frames[0].shape == (154, 154, 3)  # 155 px cropped to even
    for index in (0, 7, 39):
        np.testing.assert_array_equal(frames[index], mplot3d_frame(walk, index, (1.55, 1.55), 100, "a walk")[:154, :154])
    big = next(render_frames([walk], ["a walk"]))                        # the videos' size
    np.testing.assert_array_equal(big, mplot3d_frame(walk, 0, (3, 3), 100, "a walk"))


def test_bones_are_drawn_where_the_joints_project():
    walk = synthetic_walk(10)
    frame = next(render_frames([walk], figsize=(3, 3), dpi=100))
    canvas, panels = render._build_figure([walk], [""], (3, 3), 100, render.VIEW_RADIUS)
    canvas.draw()
    panel = panels[0]
    panel.prepare(canvas.get_renderer())
    pixels = panel.affine.transform(panel.pose_xy[0])                   # [22, 2], origin bottom left
    height = frame.shape[0]
    for chain, colour in zip(render.kinematic_chain(22), CHAIN_COLORS):
        rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
        for a, b in zip(chain[:-1], chain[1:]):                          # the middle of every bone
            x, y = (pixels[a] + pixels[b]) / 2
            row, col = int(round(height - y)), int(round(x))
            patch = frame[row - 1: row + 2, col - 1: col + 2].reshape(-1, 3).astype(int)
            assert np.abs(patch - rgb).sum(-1).min() < 40, (colour, a, b)
    white = frame[5:15, 5:15]                                            # a corner: nothing drawn there
    assert (white == 255).all()


def colour_rows_cols(frame, colour):
    rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
    ys, xs = np.nonzero(np.abs(frame.astype(int) - rgb).sum(-1) < 12)
    assert len(ys) > 10, f"colour {colour} not drawn"
    return ys.mean(), xs.mean()


def test_figure_is_upright_facing_the_viewer_in_mdm_colours():
    # Frame 0 of the walk faces +z, toward MDM's camera: head up, its right side on screen left.
    frame = next(render_frames([synthetic_walk(20)], figsize=(3, 3), dpi=100))
    right_leg, left_leg, spine, right_arm, left_arm = (colour_rows_cols(frame, c)
                                                       for c in CHAIN_COLORS)
    assert spine[0] < right_leg[0] and spine[0] < left_leg[0]        # spine/head above legs
    assert right_leg[1] < left_leg[1] and right_arm[1] < left_arm[1]
    grey = np.abs(frame.astype(int) - 191).max(-1) <= 2               # 50% grey on white
    assert grey.mean() > 0.02                                          # ground plane visible


def test_grid_of_motions_lasts_the_longest():
    frames = list(f.copy() for f in render_frames([synthetic_walk(5), synthetic_walk(9)],
                                                   ["a", "b"], **SMALL))
    assert len(frames) == 9 and frames[0].shape == (128, 256, 3)
    # The first panel holds its last frame; the second keeps moving.
    np.testing.assert_array_equal(frames[8][:, :128], frames[4][:, :128])
    assert not np.array_equal(frames[8][:, 128:], frames[4][:, 128:])


def test_render_frames_rejects_bad_input():
    with pytest.raises(UserError, match="no motion"):
        render_frames([])
    with pytest.raises(UserError, match="NaN"):
        render_frames([np.full((3, 22, 3), np.nan)])


# ---------------------------------------------------------------------------------------------
# Files


def test_mp4_round_trip(tmp_path):
    walk = synthetic_walk(24, turn_rate=0.05)
    out = render_motion(walk, tmp_path / "walk.mp4", "a person walks in a circle", **SMALL)
    assert out == tmp_path / "walk.mp4"
    meta, video = read_mp4(out)
    assert video.shape == (24, 128, 128, 3)
    assert meta["fps"] == 20 and meta["codec"] == "h264" and meta["pix_fmt"].startswith("yuv420p")
    assert np.abs(video[0].astype(int) - video[12]).max() > 100        # frames differ
    data = out.read_bytes()
    assert 0 < data.find(b"moov") < data.find(b"mdat")                # +faststart: index first
    assert leftovers(tmp_path, {"walk.mp4"}) == []


def test_gif_round_trip(tmp_path):
    walk = synthetic_walk(24)
    out = render_motion(walk, tmp_path / "walk.gif", "walk", **SMALL)
    info, video = read_gif(out)
    assert video.shape == (24, 128, 128, 3) and info["duration"] == 50 and info["loop"] == 0
    assert np.abs(video[0].astype(int) - video[12]).max() > 100
    assert leftovers(tmp_path, {"walk.gif"}) == []


def test_looped_video_has_exactly_k_periods(tmp_path):
    period, cycles = 20, 3
    loop = synthetic_walk(period, turn_rate=0.05)
    _, video = read_mp4(render_motion(tile_loop(loop, cycles), tmp_path / "loop.mp4", **SMALL))
    assert len(video) == period * cycles
    # In place, frame P of the video is frame 0 again (raw frames, before lossy encoding).
    frames = [f.copy() for f in render_frames([tile_loop(loop, cycles, in_place=True)], **SMALL)]
    assert len(frames) == period * cycles
    np.testing.assert_array_equal(frames[period], frames[0])
    np.testing.assert_array_equal(frames[2 * period + 3], frames[3])
    assert not np.array_equal(frames[period - 1], frames[0])


def test_without_ffmpeg_writes_a_gif_and_warns_once(tmp_path, monkeypatch, caplog):
    def missing():
        raise RuntimeError("no ffmpeg")

    monkeypatch.delenv(render.FFMPEG_ENV, raising=False)
    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", missing)
    monkeypatch.setattr(render, "_warned_no_ffmpeg", False)
    assert render.find_ffmpeg() is None
    with caplog.at_level(logging.WARNING, logger=render.__name__):
        first = render_motion(synthetic_walk(6), tmp_path / "a.mp4", **SMALL)
        second = render_motion(synthetic_walk(6), tmp_path / "b.mp4", **SMALL)
    assert (first, second) == (tmp_path / "a.gif", tmp_path / "b.gif")
    assert read_gif(first)[1].shape == (6, 128, 128, 3)
    warnings = [r for r in caplog.records if "no ffmpeg" in r.getMessage()]
    assert len(warnings) == 1 and "\n" not in warnings[0].getMessage()
    assert leftovers(tmp_path, {"a.gif", "b.gif"}) == []


def fake_ffmpeg(tmp_path, script):
    exe = tmp_path / "bin" / "ffmpeg"
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\n" + script)
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return exe


def test_ffmpeg_failure_raises_with_its_stderr_and_leaves_no_file(tmp_path, monkeypatch):
    exe = fake_ffmpeg(tmp_path, "cat > /dev/null\necho 'Unknown encoder libx264' >&2\nexit 3\n")
    monkeypatch.setenv(render.FFMPEG_ENV, str(exe))                   # the env var is honoured
    with pytest.raises(FFmpegError, match="code 3.*Unknown encoder libx264"):
        render_motion(synthetic_walk(8), tmp_path / "out.mp4", **SMALL)
    assert leftovers(tmp_path, {"bin"}) == []


def test_ffmpeg_dying_early_is_an_error_too(tmp_path):
    exe = fake_ffmpeg(tmp_path, "echo 'Invalid argument' >&2\nexit 1\n")  # reads nothing
    with pytest.raises(FFmpegError, match="Invalid argument"):
        render_motion(synthetic_walk(40), tmp_path / "out.mp4", ffmpeg=exe, **SMALL)
    assert leftovers(tmp_path, {"bin"}) == []


def test_missing_configured_ffmpeg_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setenv(render.FFMPEG_ENV, str(tmp_path / "nope"))
    with pytest.raises(UserError, match="MOTION_LOOP_FFMPEG"):
        render_motion(synthetic_walk(4), tmp_path / "out.mp4", **SMALL)


def test_existing_video_is_kept_unless_overwrite(tmp_path):
    path = tmp_path / "walk.mp4"
    path.write_bytes(b"precious")
    with pytest.raises(UserError, match="already exists"):
        render_motion(synthetic_walk(6), path, **SMALL)
    assert path.read_bytes() == b"precious"
    render_motion(synthetic_walk(6), path, overwrite=True, **SMALL)
    assert read_mp4(path)[1].shape[0] == 6
    assert leftovers(tmp_path, {"walk.mp4"}) == []
    assert stat.S_IMODE(os.stat(path).st_mode) & 0o044                  # not a private 0600 file


def test_interrupted_render_leaves_nothing(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        yield np.zeros((128, 128, 3), np.uint8)
        raise KeyboardInterrupt

    monkeypatch.setattr(render, "render_frames", boom)
    with pytest.raises(KeyboardInterrupt):
        render_motions([synthetic_walk(6)], tmp_path / "walk.mp4", **SMALL)
    assert leftovers(tmp_path, set()) == []


def test_progress_bar_counts_frames(tmp_path, capsys):
    render_motion(synthetic_walk(7), tmp_path / "walk.mp4", progress=True, **SMALL)
    assert "7/7" in capsys.readouterr().err


def test_real_motion_renders(tmp_path):
    joints = np.load(shared_path("humanml3d", "new_joints_012314.npy"))
    clip = joints[::10]                                                # 17 frames, whole serve
    _, video = read_mp4(render_motion(clip, tmp_path / "serve.mp4", "a tennis serve", **SMALL))
    assert video.shape == (len(clip), 128, 128, 3)


@pytest.mark.parametrize("name", ["walk.avi", "walk", "walk.png", "walk.mp4.txt"])
def test_render_refuses_names_that_are_not_mp4_or_gif(tmp_path, name):
    with pytest.raises(UserError, match=r"name the video \.mp4"):
        render_motion(synthetic_walk(4), tmp_path / name)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# Several videos in one pass (a run's repetitions and MDM's side-by-side sample##.mp4)


def test_render_videos_writes_each_motion_and_the_side_by_side_from_the_same_frames(tmp_path):
    walks = [synthetic_walk(16, turn_rate=0.05), synthetic_walk(16, speed=0.03), synthetic_walk(10)]
    paths = [tmp_path / f"rep{k}.mp4" for k in range(3)]
    out = render.render_videos(walks, paths, ["a", "b", "c"], combined=tmp_path / "all.mp4", **SMALL)
    assert out == [*paths, tmp_path / "all.mp4"]
    singles = [read_mp4(p)[1] for p in paths]
    assert [len(v) for v in singles] == [16, 16, 10] and singles[0].shape[1:] == (128, 128, 3)
    for walk, title, video in zip(walks, "abc", singles):            # each is render_motion's video
        raw = np.stack([f.copy() for f in render_frames([walk], [title], **SMALL)])
        assert np.abs(video.astype(int) - raw).mean() < 1.5              # H.264 (lossy) of the same frames
    _, side = read_mp4(tmp_path / "all.mp4")
    assert side.shape == (16, 128, 384, 3)                              # the longest; three panels wide
    raw = [np.stack([f.copy() for f in render_frames([w], [t], **SMALL)]) for w, t in zip(walks, "abc")]
    raw[2] = np.concatenate([raw[2], np.repeat(raw[2][-1:], 6, axis=0)])  # the short one holds its last frame
    assert np.abs(side.astype(int) - np.concatenate(raw, axis=2)).mean() < 1.5
    assert leftovers(tmp_path, {p.name for p in out}) == []


def test_render_videos_without_the_side_by_side(tmp_path):
    out = render.render_videos([synthetic_walk(6)], [tmp_path / "one.mp4"], **SMALL)
    assert out == [tmp_path / "one.mp4"] and read_mp4(out[0])[1].shape == (6, 128, 128, 3)


def test_render_videos_failure_and_interruption_leave_nothing(tmp_path, monkeypatch):
    exe = fake_ffmpeg(tmp_path, "cat > /dev/null\necho 'Unknown encoder libx264' >&2\nexit 3\n")
    with pytest.raises(FFmpegError, match="code 3.*Unknown encoder libx264"):
        render.render_videos([synthetic_walk(8)] * 2, [tmp_path / "a.mp4", tmp_path / "b.mp4"],
                             combined=tmp_path / "ab.mp4", ffmpeg=exe, **SMALL)
    assert leftovers(tmp_path, {"bin"}) == []

    def boom(*args, **kwargs):
        yield np.zeros((128, 128, 4), np.uint8)
        raise KeyboardInterrupt

    monkeypatch.setattr(render, "render_frames", boom)
    with pytest.raises(KeyboardInterrupt):
        render.render_videos([synthetic_walk(8)] * 2, [tmp_path / "a.mp4", tmp_path / "b.mp4"],
                             combined=tmp_path / "ab.mp4", **SMALL)
    assert leftovers(tmp_path, {"bin"}) == []


def test_render_videos_refuses_an_existing_file_before_any_work(tmp_path):
    (tmp_path / "all.mp4").write_bytes(b"precious")
    with pytest.raises(UserError, match="already exists"):
        render.render_videos([synthetic_walk(6)] * 2, [tmp_path / "a.mp4", tmp_path / "b.mp4"],
                             combined=tmp_path / "all.mp4", **SMALL)
    assert leftovers(tmp_path, {"all.mp4"}) == [] and (tmp_path / "all.mp4").read_bytes() == b"precious"
    with pytest.raises(UserError, match="one .mp4 path per motion"):
        render.render_videos([synthetic_walk(6)] * 2, [tmp_path / "a.mp4"], **SMALL)
    with pytest.raises(UserError, match=r"writes \.mp4"):
        render.render_videos([synthetic_walk(6)], [tmp_path / "a.gif"], **SMALL)
