"""Stick-figure videos of HumanML3D joint positions, in MDM's look, and looped playback.

Input everywhere: joint positions in metres, ``[T, 22, 3]``, y up (HumanML3D), 20 fps.

The look follows MDM's ``plot_3d_motion`` (kinematic chains in MDM's colours, line width 4,
view elev=120 azim=-90, a grey ground square that moves with the root, the motion drawn
root-centred in x,z so the camera follows the root, the title on top), plus the root's past
trajectory on the ground. Unlike MDM it draws the static figure once, then strokes each frame's
ground, trail and chains straight into the Agg canvas with the camera of the 3D axes (the pixels
mplot3d's artists would draw, without their per-frame cost), and pipes the raw frames to ffmpeg
(H.264, yuv420p, +faststart); a run's repetitions and their side-by-side video are written in one
pass (:func:`render_videos`). Without ffmpeg it writes a GIF (Pillow) and says so once.
"""

from __future__ import annotations

import itertools
import logging
import os
import subprocess
import tempfile
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from motion_loop.errors import UserError
from motion_loop.humanml import facing_angle
from motion_loop.procedural.body import rot_x, rot_y
from motion_loop.results import atomic_output
from motion_loop.skeleton import (
    BONE_LENGTHS, CHAIN_COLORS, FPS, KIT_NUM_JOINTS, NUM_JOINTS, PARENTS, kinematic_chain,
)

log = logging.getLogger(__name__)

FFMPEG_ENV = "MOTION_LOOP_FFMPEG"
VIDEO_SUFFIXES = (".mp4", ".gif")
# MDM scales HumanML3D by 1.3 and uses radius 3 for its axis limits; the same view in metres.
VIEW_RADIUS = 3.0 / 1.3
LINE_WIDTH = 4.0
PLANE_COLOR = (0.5, 0.5, 0.5, 0.5)
TRAJECTORY_COLOR = "blue"
TITLE_CHARS_PER_LINE = 20  # MDM wraps titles at 20 characters (fits a 3-inch panel at size 10)
TITLE_MAX_LINES = 3
# x264's fastest preset: ~5x faster than the default (medium) on our stick figures, at a higher PSNR
# (52.9 against 48.3 dB on a side-by-side loop video) for ~4-5x the bytes (2 MB for three 18 s panels)
X264_PRESET = "ultrafast"

_warned_no_ffmpeg = False


class FFmpegError(RuntimeError):
    """ffmpeg failed while encoding; the message carries the tail of its stderr."""


# ----------------------------------------------------------------------------------------------
# Looped playback


def _check_joints(joints: np.ndarray, name: str = "joints") -> np.ndarray:
    joints = np.asarray(joints)
    if joints.ndim != 3 or joints.shape[1:] not in ((NUM_JOINTS, 3), (KIT_NUM_JOINTS, 3)) or joints.shape[0] < 1:
        raise UserError(f"{name} must be joint positions [T, {NUM_JOINTS}, 3] with T >= 1, got "
                        f"shape {tuple(joints.shape)}; pass HumanML3D joints (frames, joints, xyz)")
    if not np.all(np.isfinite(joints)):
        raise UserError(f"{name} contain NaN or inf values; check the decoded motion")
    return joints


def _wrap(angle: np.ndarray) -> np.ndarray:
    return (angle + np.pi) % (2 * np.pi) - np.pi


def cycle_transform(joints: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rigid map from one cycle of a loop ``[P, 22, 3]`` (P >= 2) to the next, as (R, r_0, r_P):
    T(X) = (X - r_0) @ R.T + r_P (see `tile_loop`)."""
    joints = np.asarray(joints, dtype=np.float64)
    theta = facing_angle(joints)
    d_theta = _wrap(np.diff(theta))                              # [P-1]
    d_theta_close = 0.5 * (d_theta[-1] + d_theta[0])
    turn = d_theta.sum() + d_theta_close                         # heading change over one cycle

    root = joints[:, 0].copy()
    root[:, 1] = 0.0
    steps = np.diff(root, axis=0)                                # [P-1, 3], world frame
    local = np.einsum("tij,tj->ti", rot_y(-theta[:-1]), steps)  # steps in each frame's heading
    step_close = rot_y(theta[-1]) @ (0.5 * (local[-1] + local[0]))
    root_end = root[-1] + step_close                             # root at the virtual frame P
    return rot_y(turn), root[0], root_end


def tile_loop(joints: np.ndarray, cycles: int, in_place: bool = False) -> np.ndarray:
    """Play a loop of period P = len(joints) ``cycles`` times back to back: [cycles * P, 22, 3].

    Frame P of the result is frame 0 of the loop again (no duplicated or dropped frame).

    in_place: the root's x,z is held at the origin (heading kept), so every cycle is identical.

    Otherwise the trajectory advances: a loop closes in root-relative pose, so cycle c+1 is cycle c
    moved rigidly by the cycle's end-to-start transform T(X) = R_y(dtheta) (X - r_0) + r_P, where
    r_0 is the root at frame 0 and r_P, dtheta are the root position and total heading change at
    the virtual frame P. In a DiffCollage loop that closing step is the last frame's root velocity;
    with joint positions only we estimate it as the velocity at the seam: the mean of the two
    neighbouring steps (P-2 -> P-1 and 0 -> 1), taken in the body's heading frame (like HumanML3D's
    root velocity features) for both the x,z step and the heading step. That is exact for walking
    at constant speed along a straight line or a circle, so a turning walk keeps turning.
    """
    joints = _check_joints(joints)
    if isinstance(cycles, bool) or int(cycles) != cycles or cycles < 1:
        raise UserError(f"cycles must be a positive integer, got {cycles!r}; pass e.g. cycles=3")
    cycles = int(cycles)
    period = len(joints)
    work = joints.astype(np.float64)
    if in_place:
        work[..., [0, 2]] -= work[:, :1, [0, 2]]
        return np.tile(work, (cycles, 1, 1)).astype(joints.dtype, copy=False)
    if period < 2:
        raise UserError("an advancing loop needs at least 2 frames to estimate its root velocity; "
                        "pass in_place=True or a longer loop")

    rot, origin, end = cycle_transform(work)
    out = [work]
    for _ in range(cycles - 1):
        out.append((out[-1] - origin) @ rot.T + end)
    return np.concatenate(out).astype(joints.dtype, copy=False)


# ----------------------------------------------------------------------------------------------
# A procedural walker for tests, benchmarks and demos (no data needed)


def synthetic_walk(num_frames: int, *, gait_period: int = 20, speed: float = 0.06,
                   turn_rate: float = 0.0) -> np.ndarray:
    """A stick figure walking forward (+z at frame 0) on HumanML3D's bone lengths: [T, 22, 3].

    Legs and arms swing sinusoidally with ``gait_period`` frames; the root advances ``speed``
    metres per frame and turns ``turn_rate`` radians per frame (a circle when non-zero), so any
    multiple of ``gait_period`` frames is an exact loop in root-relative pose.
    """
    # Rest directions of each bone (joint relative to its parent), facing +z, left is +x.
    rest = np.array([
        [0, 0, 0], [1, -0.6, 0], [-1, -0.6, 0], [0, 1, 0], [0, -1, 0], [0, -1, 0], [0, 1, 0],
        [0, -1, 0], [0, -1, 0], [0, 1, 0], [0, -0.3, 1], [0, -0.3, 1], [0, 1, 0.1], [1, 0.6, 0],
        [-1, 0.6, 0], [0, 1, 0.2], [1, 0, 0], [-1, 0, 0], [0.1, -1, 0], [-0.1, -1, 0],
        [0, -1, 0.2], [0, -1, 0.2],
    ], dtype=np.float64)
    norm = np.linalg.norm(rest, axis=1, keepdims=True)
    bones = rest / np.where(norm > 0, norm, 1) * np.asarray(BONE_LENGTHS)[:, None]

    t = np.arange(num_frames, dtype=np.float64)
    phase = 2 * np.pi * t / gait_period
    swing = 0.45 * np.sin(phase)
    bend = lambda p: 0.6 * np.clip(np.sin(p), 0, None)  # noqa: E731  knee flexes in swing phase
    pitch = np.zeros((num_frames, NUM_JOINTS))                 # rotation about x at each joint
    pitch[:, 1], pitch[:, 2] = -swing, swing                   # hips (negative: leg forward)
    pitch[:, 4], pitch[:, 5] = bend(phase), bend(phase + np.pi)  # knees
    pitch[:, 16], pitch[:, 17] = 0.6 * swing, -0.6 * swing     # shoulders, opposite to legs
    pitch[:, 18], pitch[:, 19] = -0.3, -0.3                    # elbows slightly bent
    rx = rot_x(pitch)                                          # [T, J, 3, 3]

    theta = turn_rate * t
    if turn_rate == 0:
        root_xz = np.stack([np.zeros_like(t), speed * t], -1)
    else:
        radius = speed / turn_rate
        root_xz = np.stack([radius * (1 - np.cos(theta)), radius * np.sin(theta)], -1)
    height = 0.92 + 0.015 * np.cos(2 * phase)                # pelvis bobs twice per gait cycle

    world = np.empty((num_frames, NUM_JOINTS, 3, 3))
    joints = np.empty((num_frames, NUM_JOINTS, 3))
    world[:, 0] = rot_y(theta) @ rx[:, 0]
    joints[:, 0] = np.stack([root_xz[:, 0], height, root_xz[:, 1]], -1)
    for j in range(1, NUM_JOINTS):
        p = PARENTS[j]
        joints[:, j] = joints[:, p] + world[:, p] @ bones[j]
        world[:, j] = world[:, p] @ rx[:, j]
    return joints.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Drawing


def _wrap_title(title: str, chars_per_line: int) -> str:
    return "\n".join(textwrap.wrap(title, chars_per_line, max_lines=TITLE_MAX_LINES,
                                   placeholder=" ..."))


def project(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Screen coordinates ``[..., 2]`` (the 3D axes' 2D data space) of ``points [..., 3]`` under
    an mplot3d perspective ``matrix [4, 4]``, NaN where mplot3d drops a point (outside the view
    volume: |x|, |y| > 1 or behind the camera), which breaks a line there as Line3D does."""
    homogeneous = np.concatenate([points, np.ones((*points.shape[:-1], 1))], axis=-1)
    w = homogeneous @ matrix.T
    xyz = w[..., :3] / w[..., 3:]
    seen = (np.abs(xyz[..., 0]) <= 1) & (np.abs(xyz[..., 1]) <= 1) & (xyz[..., 2] <= 0)
    return np.where(seen[..., None], xyz[..., :2], np.nan)


class _Panel:
    """One stick figure on one 3D axes.

    The axes (limits, box aspect, view) fixes the camera; after the figure's first draw each frame
    is stroked straight into the Agg canvas: every frame's joints are projected at once with the
    axes' matrix, and the ground, trail and chains are drawn as mplot3d's Poly3DCollection and
    Line3D would draw them (same projection and clipping, same line and fill styles, so the same
    pixels; tests/test_render.py compares) without their per-frame artist machinery (~4x faster).
    """

    def __init__(self, fig, rect, joints: np.ndarray, radius: float):
        data = joints.astype(np.float64)                 # copy
        data[..., 1] -= data[..., 1].min()               # lowest point touches the ground
        lo, hi = data.min(axis=(0, 1)), data.max(axis=(0, 1))
        self.trajectory = data[:, 0, [0, 2]].copy()
        data[..., 0] -= self.trajectory[:, None, 0]      # root-centred: the camera follows the root
        data[..., 2] -= self.trajectory[:, None, 1]
        self.data = data
        self.plane_lo, self.plane_hi = lo[[0, 2]], hi[[0, 2]]
        self.radius = radius

        ax = fig.add_axes(rect, projection="3d")
        ax.set_xlim(-radius / 2, radius / 2)
        ax.set_ylim(0, radius)
        ax.set_zlim(-radius / 3, radius * 2 / 3)
        ax.set_box_aspect((1, 1, 1), zoom=1.3)
        ax.view_init(elev=120, azim=-90)
        ax.set_proj_type("persp")                        # what project() clips for
        ax.set_axis_off()
        self.ax = ax
        self.matrix = None                               # set by prepare(), after the first draw

    def prepare(self, renderer) -> None:
        """Take the camera from the drawn axes and set up the strokes: the plane under the trail
        under the body (seen from above, the floor never hides the body), MDM's colours."""
        from matplotlib.colors import to_rgba
        from matplotlib.path import Path

        self.path = Path
        self.matrix = np.asarray(self.ax.get_proj())
        self.affine = self.ax.transData.frozen()         # the axes' 2D data space to pixels
        self.pose_xy = project(self.matrix, self.data)   # [T, J, 2], every frame at once
        self.chains = [list(chain) for chain in kinematic_chain(self.data.shape[1])]

        def stroke(width, color):
            gc = renderer.new_gc()                       # Line2D.draw's settings for a solid line
            gc.set_clip_rectangle(self.ax.bbox)
            gc.set_antialiased(True)
            gc.set_linewidth(width)
            gc.set_joinstyle("round")
            gc.set_capstyle("projecting")
            gc.set_foreground(to_rgba(color), isRGBA=True)
            return gc

        self.gc_trail = stroke(1.0, TRAJECTORY_COLOR)
        self.gc_chains = [stroke(LINE_WIDTH, color) for color in CHAIN_COLORS]
        self.gc_plane = stroke(0.0, PLANE_COLOR)          # a fill without an edge
        self.plane_rgba = to_rgba(PLANE_COLOR)

    def draw(self, renderer, index: int) -> None:
        Path = self.path
        index = min(index, len(self.data) - 1)           # shorter panels hold their last frame
        # The ground under the whole motion, clipped to the view: vertices far outside it would
        # cross the camera plane in perspective and turn the polygon inside out.
        (x0, z0) = np.maximum(self.plane_lo - self.trajectory[index], -self.radius)
        (x1, z1) = np.minimum(self.plane_hi - self.trajectory[index], self.radius)
        corners = project(self.matrix, np.array([(x0, 0, z0), (x0, 0, z1), (x1, 0, z1), (x1, 0, z0), (x0, 0, z0)]))
        closed = [Path.MOVETO, Path.LINETO, Path.LINETO, Path.LINETO, Path.CLOSEPOLY]
        renderer.draw_path(self.gc_plane, Path(corners, closed), self.affine, self.plane_rgba)
        past = self.trajectory[: index + 1] - self.trajectory[index]
        trail = project(self.matrix, np.stack([past[:, 0], np.zeros(len(past)), past[:, 1]], axis=-1))
        renderer.draw_path(self.gc_trail, Path(trail), self.affine)
        pose = self.pose_xy[index]
        for gc, chain in zip(self.gc_chains, self.chains):
            renderer.draw_path(gc, Path(pose[chain]), self.affine)


def title_at(schedule: Sequence[tuple[int, str]], frame: int, period: int | None = None) -> str:
    """The caption of ``frame`` from a schedule of ``(first frame, text)`` (a loop's frames repeat
    every ``period``)."""
    frame = frame % period if period else frame
    text = schedule[0][1]
    for start, caption in schedule:
        if frame >= start:
            text = caption
    return text


def _build_figure(motions: Sequence[np.ndarray], titles: Sequence,
                  figsize: tuple[float, float], dpi: float, radius: float, title_period: int | None = None):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if len(motions) == 0:
        raise UserError("no motion to render; pass at least one [T, 22, 3] array")
    motions = [_check_joints(m, f"motion {i}") for i, m in enumerate(motions)]
    titles = list(titles) + [""] * (len(motions) - len(titles))
    n = len(motions)
    fig = Figure(figsize=(figsize[0] * n, figsize[1]), dpi=dpi)
    canvas = FigureCanvasAgg(fig)                        # Agg, no pyplot: no global state
    chars = max(8, round(TITLE_CHARS_PER_LINE * figsize[0] / 3.0))
    panels = []
    for i, (motion, title) in enumerate(zip(motions, titles)):
        panel = _Panel(fig, (i / n, 0, 1 / n, 1), motion, radius)
        panels.append(panel)
        if isinstance(title, (list, tuple)):  # a caption per segment, changing with the segment
            panel.caption = fig.text((i + 0.5) / n, 0.98, "", ha="center", va="top", fontsize=10, animated=True)
            panel.schedule = [(int(a), _wrap_title(str(t), chars)) for a, t in title]
            panel.period = title_period
        elif title:
            fig.text((i + 0.5) / n, 0.98, _wrap_title(title, chars), ha="center", va="top",
                     fontsize=10)
    return canvas, panels


def render_frames(motions: Sequence[np.ndarray], titles: Sequence = (), *,
                  figsize: tuple[float, float] = (3.0, 3.0), dpi: float = 100,
                  radius: float = VIEW_RADIUS, title_period: int | None = None,
                  rgba: bool = False) -> Iterator[np.ndarray]:
    """Yield RGB frames [H, W, 3] uint8 (H, W even) of motions drawn side by side.

    Each motion is [T_i, 22, 3]; the video lasts max T_i frames (shorter ones hold their last
    frame). A title is a string, or a schedule ``[(first frame, text), ...]`` (one caption per
    segment; frames repeat every ``title_period`` for a tiled loop). ``figsize`` is one panel's size in inches (MDM: 3 x 3 at 100 dpi). The yielded array
    is a view into a reused buffer: copy it to keep it. ``rgba``: yield the canvas's RGBA pixels
    [H, W, 4] (opaque; contiguous when the canvas is even-sized: ffmpeg takes them without a copy).
    Bad input raises here, not when iterating.
    """
    canvas, panels = _build_figure(motions, titles, figsize, dpi, radius, title_period)
    return _blit_frames(canvas, panels, 4 if rgba else 3)


def _blit_frames(canvas, panels: list[_Panel], channels: int = 3) -> Iterator[np.ndarray]:
    canvas.draw()                                        # everything static, once
    background = canvas.copy_from_bbox(canvas.figure.bbox)
    renderer = canvas.get_renderer()
    for panel in panels:
        panel.prepare(renderer)
    width, height = canvas.get_width_height()
    even_h, even_w = height - height % 2, width - width % 2  # yuv420p needs even sizes
    frame = np.asarray(canvas.buffer_rgba())[:even_h, :even_w, :channels]
    for index in range(max(len(panel.data) for panel in panels)):
        canvas.restore_region(background)
        for panel in panels:
            panel.draw(renderer, index)
            caption = getattr(panel, "caption", None)
            if caption is not None:
                caption.set_text(title_at(panel.schedule, index, panel.period))
                canvas.figure.draw_artist(caption)
        yield frame


# ----------------------------------------------------------------------------------------------
# Encoding


def find_ffmpeg(ffmpeg: str | os.PathLike | None = None) -> str | None:
    """The ffmpeg to use: ``ffmpeg`` if given, else $MOTION_LOOP_FFMPEG, else imageio-ffmpeg's
    bundled binary; None when there is none (callers then write a GIF)."""
    configured = ffmpeg if ffmpeg is not None else os.environ.get(FFMPEG_ENV) or None
    if configured is not None:
        path = Path(configured).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            source = "ffmpeg argument" if ffmpeg is not None else f"${FFMPEG_ENV}"
            raise UserError(f"{source} {str(configured)!r} is not an executable file; "
                            f"point it at an ffmpeg binary or leave it unset")
        return str(path)
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return None


class _FFmpegWriter:
    """One ffmpeg process turning raw RGB frames written to its stdin into H.264 MP4 at ``tmp``."""

    def __init__(self, ffmpeg: str, tmp: Path, first: np.ndarray, fps: float, threads: int | None = None):
        """``first``: a frame [H, W, 3] (RGB) or [H, W, 4] (RGBA, alpha ignored), for the size.
        ``threads``: x264's threads (default: its own choice, by the cores)."""
        self.ffmpeg, self.tmp = ffmpeg, tmp
        height, width, channels = first.shape
        cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", {3: "rgb24", 4: "rgba"}[channels], "-s", f"{width}x{height}",
               "-framerate", f"{fps:g}", "-i", "pipe:0",
               "-an", "-c:v", "libx264", "-preset", X264_PRESET, *(["-threads", str(threads)] if threads else []),
               "-pix_fmt", "yuv420p",
               "-movflags", "+faststart", "-f", "mp4", str(tmp)]
        self.stderr = tempfile.TemporaryFile()           # a file, not a pipe: no deadlock
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self.stderr)
        self.broken = False
        _grow_pipe(self.proc.stdin)

    def write(self, frame: np.ndarray) -> None:
        if self.broken:
            return
        try:
            self.proc.stdin.write(np.ascontiguousarray(frame).data)
        except BrokenPipeError:                          # ffmpeg died: its stderr says why
            self.broken = True

    def close(self) -> None:
        """Wait for ffmpeg to finish the file; FFmpegError with its stderr if it failed."""
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            self.broken = True
        code = self.proc.wait()
        self.stderr.seek(0)
        tail = self.stderr.read()[-2000:].decode(errors="replace").strip()
        self.stderr.close()
        if code != 0 or self.broken:
            raise FFmpegError(f"ffmpeg ({self.ffmpeg}) exited with code {code} while writing "
                              f"{self.tmp.name}: {tail or 'no error output'}")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.stderr.close()


def _grow_pipe(pipe, size: int = 1 << 20) -> None:
    """Let the pipe to ffmpeg hold a few frames (Linux; 64 KiB otherwise), so drawing goes on while
    the encoder works instead of waiting for it frame by frame."""
    try:
        import fcntl

        fcntl.fcntl(pipe.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), size)
    except (ImportError, OSError):
        pass


def _encode_mp4(frames: Iterator[np.ndarray], tmp: Path, fps: float, ffmpeg: str,
                progress) -> int:
    """Stream frames to ffmpeg writing H.264 MP4 at ``tmp``; returns the number of frames."""
    first = next(frames)
    writer = _FFmpegWriter(ffmpeg, tmp, first, fps)
    count = 0
    try:
        for frame in itertools.chain([first], frames):
            writer.write(frame)
            if writer.broken:
                break
            count += 1
            progress.update()
    except BaseException:
        writer.kill()
        raise
    writer.close()
    return count


def _encode_gif(frames: Iterator[np.ndarray], tmp: Path, fps: float, progress) -> int:
    from PIL import Image

    images = []
    for frame in frames:
        images.append(Image.fromarray(frame.copy()))
        progress.update()
    # GIF delays are whole centiseconds; Pillow merges identical consecutive frames (a still
    # figure) into one longer frame, so playback timing is kept either way.
    images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                   duration=1000.0 / fps, loop=0)
    return len(images)


def render_motions(motions: Sequence[np.ndarray], path: str | os.PathLike,
                   titles: Sequence = (), *, fps: float = FPS, title_period: int | None = None,
                   figsize: tuple[float, float] = (3.0, 3.0), dpi: float = 100,
                   radius: float = VIEW_RADIUS, ffmpeg: str | os.PathLike | None = None,
                   overwrite: bool = False, progress: bool = False) -> Path:
    """Render motions side by side to ``path`` and return the path actually written.

    ``.gif`` writes a GIF; ``.mp4`` (any other name is refused) writes H.264 MP4 with ffmpeg (see
    :func:`find_ffmpeg`), or, when no ffmpeg exists, a GIF next to it (``path`` with suffix .gif)
    with a one-time warning. The file appears atomically (temp name, then os.replace); an existing
    file is kept unless ``overwrite``. Raises FFmpegError (with ffmpeg's stderr) on failure.
    """
    global _warned_no_ffmpeg
    from tqdm.auto import tqdm

    path = Path(path)
    if not (np.isfinite(fps) and fps > 0):
        raise UserError(f"fps must be positive, got {fps}; HumanML3D uses {FPS:g}")
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise UserError(f"cannot render to {path.name}: name the video .mp4 (H.264) or .gif")
    exe = None
    if path.suffix.lower() != ".gif":
        exe = find_ffmpeg(ffmpeg)
        if exe is None:
            path = path.with_suffix(".gif")
            if not _warned_no_ffmpeg:
                log.warning("no ffmpeg found (install imageio-ffmpeg or set %s): writing GIF "
                            "videos instead of MP4", FFMPEG_ENV)
                _warned_no_ffmpeg = True
    frames = render_frames(motions, titles, figsize=figsize, dpi=dpi, radius=radius, title_period=title_period,
                           rgba=exe is not None)
    total = max(len(m) for m in motions)
    with atomic_output(path, overwrite=overwrite) as tmp, \
            tqdm(total=total, desc=path.name, unit="frame", disable=not progress) as bar:
        if exe is None:
            _encode_gif(frames, tmp, fps, bar)
        else:
            _encode_mp4(frames, tmp, fps, exe, bar)
    return path


def render_motion(joints: np.ndarray, path: str | os.PathLike, title="",
                  **options) -> Path:
    """Render one motion [T, 22, 3] to ``path``; options as in :func:`render_motions`."""
    return render_motions([joints], path, [title], **options)


def render_videos(motions: Sequence[np.ndarray], paths: Sequence[str | os.PathLike], titles: Sequence = (), *,
                  combined: str | os.PathLike | None = None, fps: float = FPS,
                  title_periods: Sequence[int | None] | None = None, figsize: tuple[float, float] = (3.0, 3.0),
                  dpi: float = 100, radius: float = VIEW_RADIUS, ffmpeg: str | os.PathLike | None = None,
                  overwrite: bool = False, progress: bool = False) -> list[Path]:
    """Render each motion to its own MP4 (``paths``) and, with ``combined``, all of them side by
    side to one more MP4 (MDM's ``sample##.mp4``), in one pass: every frame is drawn once and fed
    to one ffmpeg per video while it is drawn; a side-by-side frame is the panels' frames put
    together (the layout of an ffmpeg hstack of the videos, without decoding and encoding them again).
    A shorter motion holds its last frame in the side-by-side video.

    Needs ffmpeg (MP4 only). Every file appears atomically; nothing is left behind on failure.
    Returns the paths written, ``combined`` last.
    """
    from contextlib import ExitStack

    from tqdm.auto import tqdm

    paths = [Path(p) for p in paths]
    if len(paths) != len(motions) or not motions:
        raise UserError(f"render_videos needs one .mp4 path per motion, got {len(paths)} for {len(motions)}")
    outputs = paths + ([Path(combined)] if combined is not None else [])
    for path in outputs:
        if path.suffix.lower() != ".mp4":
            raise UserError(f"cannot render to {path.name}: render_videos writes .mp4 (H.264) videos")
    if not (np.isfinite(fps) and fps > 0):
        raise UserError(f"fps must be positive, got {fps}; HumanML3D uses {FPS:g}")
    exe = find_ffmpeg(ffmpeg)
    if exe is None:
        raise UserError(f"MP4 videos need ffmpeg; install imageio-ffmpeg or set {FFMPEG_ENV}")
    titles = list(titles) + [""] * (len(motions) - len(titles))
    periods = list(title_periods) if title_periods is not None else [None] * len(motions)
    streams = [render_frames([m], [t], figsize=figsize, dpi=dpi, radius=radius, title_period=period, rgba=True)
               for m, t, period in zip(motions, titles, periods)]
    lengths = [len(m) for m in motions]
    threads = 1 if len(outputs) > 1 else None  # the encoders run side by side: one thread each wastes least
    with ExitStack() as stack:
        tmps = [stack.enter_context(atomic_output(path, overwrite=overwrite)) for path in outputs]
        bar = stack.enter_context(tqdm(total=max(lengths), desc=(Path(combined) if combined else paths[0]).name,
                                       unit="frame", disable=not progress))
        writers: list[_FFmpegWriter] = []
        try:
            last = [None] * len(streams)
            for index in range(max(lengths)):
                for k, stream in enumerate(streams):
                    if index < lengths[k]:
                        last[k] = next(stream)
                        if index == 0:
                            writers.append(_FFmpegWriter(exe, tmps[k], last[k], fps, threads))
                        writers[k].write(last[k])
                if combined is not None:
                    side = np.concatenate(last, axis=1)
                    if index == 0:
                        writers.append(_FFmpegWriter(exe, tmps[-1], side, fps, threads))
                    writers[-1].write(side)
                if any(w.broken for w in writers):
                    break
                bar.update()
        except BaseException:
            for writer in writers:
                writer.kill()
            raise
        failures = []
        for writer in writers:                           # every ffmpeg waited for, the first failure raised
            try:
                writer.close()
            except FFmpegError as err:
                failures.append(err)
        if failures:
            raise failures[0]
    return outputs
