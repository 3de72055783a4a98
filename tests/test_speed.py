from pathlib import Path

import pytest
import torch

from motion_loop.speed import busy_cores, default_threads, free_cores, resolve_dtype, set_threads


def test_free_cores_follow_the_load():
    assert free_cores(2, 0.1) == 2
    assert free_cores(2, 0.8) == 1  # one core's worth of other work
    assert free_cores(2, 9.0) == 1  # never below one
    assert free_cores(16, 3.4) == 13
    assert free_cores(4, 0.0) == 4


def test_default_threads_never_exceed_torchs_own_choice():
    assert 1 <= default_threads(64, 0.0) <= torch.get_num_threads()
    assert default_threads(64, 1000.0) == 1


def test_set_threads_explicit_and_invalid():
    before = torch.get_num_threads()
    try:
        assert set_threads(1) == 1 and torch.get_num_threads() == 1
        with pytest.raises(ValueError):
            set_threads(0)
    finally:
        torch.set_num_threads(before)


def test_resolve_dtype():
    assert resolve_dtype("bf16", torch.device("cpu")) == ("bf16", torch.bfloat16)
    assert resolve_dtype("auto", torch.device("cpu"), Path("/nonexistent/cpuinfo")) == ("fp32", torch.float32)
    assert resolve_dtype("auto", torch.device("cuda"))[0] in ("fp32", "bf16")
    with pytest.raises(ValueError):
        resolve_dtype("fp8", torch.device("cpu"))


def test_fill_canvas_keeps_the_windows_starts_and_grows_the_overlaps():
    from motion_loop.collage import Layout
    from motion_loop.speed import fill_canvas

    six = fill_canvas(Layout(90, 30, 2, cyclic=True), 196)  # a 6 s loop
    assert (six.window, six.overlap, six.n_windows, six.length) == (110, 50, 2, 120)
    ten = fill_canvas(Layout(150, 50, 2, cyclic=True), 196)  # 10 s: stride 100, 5/6 of it
    assert (ten.window, ten.overlap, ten.length) == (184, 84, 200)
    tight = fill_canvas(Layout(150, 50, 2, cyclic=True), 160)  # the canvas caps the window
    assert (tight.window, tight.overlap) == (160, 60)
    chain = fill_canvas(Layout(150, 50, 3, cyclic=False), 196)
    assert chain.length == Layout(150, 50, 3).length + (chain.overlap - 50) and chain.stride == 100


def test_a_loop_that_fits_the_canvas_can_be_one_window_closing_on_itself():
    from motion_loop.collage import Layout
    from motion_loop.speed import fill_canvas, one_window_cycle

    six = one_window_cycle(Layout(90, 30, 2, cyclic=True), 196)  # a 6 s loop: 120 frames + 76 wrapped
    assert (six.window, six.overlap, six.n_windows, six.cyclic, six.length) == (196, 76, 1, True, 120)
    three = one_window_cycle(Layout(45, 15, 2, cyclic=True), 196)  # overlap 5/6 of the loop at most
    assert (three.window, three.overlap, three.n_windows, three.length) == (110, 50, 1, 60)
    # one window would overlap 56 frames, less than the 59 of two windows on the canvas
    assert one_window_cycle(fill_canvas(Layout(105, 35, 2, cyclic=True), 196), 196) is None
    # --num_windows 1 (choose_layout's window of 1.5 loops), grown on the canvas: the same one window
    assert fill_canvas(Layout(180, 60, 1, cyclic=True), 196) == six
    assert one_window_cycle(Layout(150, 50, 2, cyclic=True), 196) is None  # 10 s: longer than the canvas
    assert one_window_cycle(Layout(150, 50, 3), 196) is None  # chains keep their windows


def test_canvas_layout_wraps_one_window_where_it_fits_and_grows_overlaps_elsewhere():
    from motion_loop.collage import Layout
    from motion_loop.speed import canvas_layout, fill_canvas, one_window_cycle

    six = Layout(90, 30, 2, cyclic=True)
    assert canvas_layout(six, 196) == one_window_cycle(six, 196) == Layout(196, 76, 1, cyclic=True)
    assert canvas_layout(six, 196, one_window=False) == fill_canvas(six, 196) == Layout(110, 50, 2, cyclic=True)
    ten = Layout(150, 50, 2, cyclic=True)  # 10 s: longer than the canvas
    assert canvas_layout(ten, 196) == fill_canvas(ten, 196)
    chain = Layout(150, 50, 3)
    assert canvas_layout(chain, 196) == fill_canvas(chain, 196)


def test_busy_cores_read_the_kernels_counters(tmp_path):
    stat = tmp_path / "stat"
    # a fake /proc/stat whose counters move while busy_cores sleeps: 3 of 4 ticks busy on 2 cores
    lines = iter(["cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n", "cpu  130 0 60 810 50 0 0 0 0 0\n"])

    class MovingStat(type(stat)):
        def read_text(self, *args, **kwargs):
            return next(lines)

    assert busy_cores(0.0, cpu_count=2, stat=MovingStat(stat)) == pytest.approx(2 * 40 / 50)
    assert busy_cores(0.0, cpu_count=2, stat=tmp_path / "missing") is None
    stat.write_text("garbage\n")
    assert busy_cores(0.0, cpu_count=2, stat=stat) is None


def test_busy_cores_see_a_busy_thread():
    import threading

    if busy_cores(0.01) is None:
        pytest.skip("no /proc/stat on this system (not Linux)")
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            pass

    worker = threading.Thread(target=spin)
    worker.start()
    try:
        busy = busy_cores(0.3)  # at least one core's worth: the spinning thread (and anything else running)
    finally:
        stop.set()
        worker.join()
    assert busy > 0.8


def test_auto_dtype_is_mixed_on_cpus_with_native_bf16(tmp_path):
    from motion_loop.speed import native_bf16

    with_bf16, without = tmp_path / "with", tmp_path / "without"
    with_bf16.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n")
    without.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n")
    assert native_bf16(with_bf16) and not native_bf16(without) and not native_bf16(tmp_path / "missing")
    assert resolve_dtype("auto", torch.device("cpu"), with_bf16) == ("mixed", torch.float32)
    assert resolve_dtype("auto", torch.device("cpu"), without) == ("fp32", torch.float32)
    assert resolve_dtype("fp32", torch.device("cpu"), with_bf16) == ("fp32", torch.float32)  # asked for: kept
    assert resolve_dtype("auto", torch.device("cuda"), with_bf16)[0] == "fp32"  # a CPU flag says nothing of a GPU
