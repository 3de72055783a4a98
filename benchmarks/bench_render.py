"""Stick-figure rendering speed: motion_loop.render vs an MDM-style FuncAnimation.save baseline.

The baseline mirrors MDM's plot_3d_motion (visualize/plot_script.py) on current matplotlib: one
pyplot figure, an update function that removes every line and collection and draws the plane and
the chains again, view_init each frame, saved by FuncAnimation.save with FFMpegWriter (the
imageio-ffmpeg binary via rcParams['animation.ffmpeg_path']). Both write the same 200-frame
procedural walk as a 300 x 300 H.264 MP4 (MDM's 3 x 3 inch figure at 100 dpi).

    python benchmarks/bench_render.py [--frames 200] [--repeats 3]
"""

import argparse
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np


def mdm_style_save(joints: np.ndarray, path: Path, title: str, fps: float) -> None:
    import imageio_ffmpeg
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.animation import FFMpegWriter, FuncAnimation
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    from motion_loop.render import VIEW_RADIUS
    from motion_loop.skeleton import CHAIN_COLORS, KINEMATIC_CHAIN

    matplotlib.rcParams["animation.ffmpeg_path"] = imageio_ffmpeg.get_ffmpeg_exe()
    radius = VIEW_RADIUS
    data = joints.astype(np.float64)
    data[..., 1] -= data[..., 1].min()
    mins, maxs = data.min(axis=(0, 1)), data.max(axis=(0, 1))
    trajectory = data[:, 0, [0, 2]].copy()
    data[..., 0] -= trajectory[:, None, 0]
    data[..., 2] -= trajectory[:, None, 1]

    fig = plt.figure(figsize=(3, 3), dpi=100)
    ax = fig.add_subplot(projection="3d")
    ax.set_position((0, 0, 1, 1))
    ax.set_xlim(-radius / 2, radius / 2)
    ax.set_ylim(0, radius)
    ax.set_zlim(-radius / 3, radius * 2 / 3)
    ax.set_box_aspect((1, 1, 1), zoom=1.3)  # same framing as ours (MDM: ax.dist = 7.5)
    fig.suptitle("\n".join(textwrap.wrap(title, 20)), fontsize=10)

    def update(index):
        for artist in [*ax.lines, *ax.collections]:  # MDM: ax.lines = []; ax.collections = []
            artist.remove()
        ax.view_init(elev=120, azim=-90)
        x0, z0 = mins[[0, 2]] - trajectory[index]
        x1, z1 = maxs[[0, 2]] - trajectory[index]
        plane = Poly3DCollection([[(x0, 0, z0), (x0, 0, z1), (x1, 0, z1), (x1, 0, z0)]])
        plane.set_facecolor((0.5, 0.5, 0.5, 0.5))
        ax.add_collection3d(plane)
        past = trajectory[: index + 1] - trajectory[index]
        ax.plot3D(past[:, 0], np.zeros(len(past)), past[:, 1], linewidth=1.0, color="blue")
        for chain, color in zip(KINEMATIC_CHAIN, CHAIN_COLORS):
            ax.plot3D(data[index, chain, 0], data[index, chain, 1], data[index, chain, 2],
                      linewidth=4.0, color=color)
        ax.set_axis_off()
        ax.set_xticklabels([])
        ax.set_yticklabels([])
        ax.set_zticklabels([])

    animation = FuncAnimation(fig, update, frames=len(data), interval=1000 / fps, repeat=False)
    animation.save(str(path), writer=FFMpegWriter(fps=fps))
    plt.close(fig)


def best_of(repeats: int, run) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200, help="motion length in frames")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs each; best is kept")
    args = parser.parse_args()

    import imageio_ffmpeg
    import matplotlib

    from motion_loop.render import render_frames, render_motion, synthetic_walk

    walk = synthetic_walk(args.frames, turn_rate=0.02)
    title = "a person walks forward and slowly turns left"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        counter = iter(range(10**6))

        def ours():
            render_motion(walk, tmp / f"ours{next(counter)}.mp4", title)

        def ours_frames_only():
            for _ in render_frames([walk], [title]):
                pass

        def mdm():
            mdm_style_save(walk, tmp / f"mdm{next(counter)}.mp4", title, 20.0)

        ours()  # warm-up: imports, font cache
        t_ours = best_of(args.repeats, ours)
        t_frames = best_of(args.repeats, ours_frames_only)
        t_mdm = best_of(args.repeats, mdm)
        for path in (min(tmp.glob("ours*.mp4")), min(tmp.glob("mdm*.mp4"))):
            frames = imageio_ffmpeg.read_frames(str(path))
            meta = next(frames)
            print(f"{path.name}: {sum(1 for _ in frames)} frames, {meta['size']}, {meta['codec']}")

    n = args.frames
    print(f"matplotlib {matplotlib.__version__}, {n} frames, 300x300, best of {args.repeats}")
    print(f"motion_loop.render (blit + ffmpeg pipe): {n / t_ours:7.1f} frames/s ({t_ours:.2f} s)")
    print(f"  drawing only, no encoding:              {n / t_frames:7.1f} frames/s")
    print(f"MDM-style FuncAnimation.save:            {n / t_mdm:7.1f} frames/s ({t_mdm:.2f} s)")
    print(f"speed-up: {t_mdm / t_ours:.1f}x")


if __name__ == "__main__":
    main()
