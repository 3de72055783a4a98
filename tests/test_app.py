"""The web demo (``python -m motion_loop.app``): its requests, and the real page in headless Chromium."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from motion_loop import app
from motion_loop.errors import UserError
from test_generate import tiny  # noqa: F401  (the tiny CLIP-conditioned MDM and CLIP weights)

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def options(tiny, tmp_path, *extra):
    return app.build_parser().parse_args(["--model_path", str(tiny["model"]), "--clip_weights", str(tiny["clip"]),
                                          "--output_root", str(tmp_path / "out"), *extra])


@pytest.fixture
def demo(tiny, tmp_path):
    demo = app.Demo(options(tiny, tmp_path))
    demo.load()
    return demo


def test_listens_on_this_machine_only_and_shares_nothing_by_default():
    args = app.build_parser().parse_args([])
    assert (args.host, args.port, args.share) == ("127.0.0.1", 7860, False)
    assert app.build_parser().parse_args(["--host", "0.0.0.0", "--share"]).share is True


def test_a_bad_flag_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit:
        app.main(["--port", "seventy"])
    assert exit.value.code == 2
    assert capsys.readouterr().err == ("error: argument --port: invalid int value: 'seventy' "
                                       "(see python -m motion_loop.app --help)\n")


def test_request_writes_a_loop_with_its_report_and_downloads(demo, tmp_path):
    out = demo.request("a person walks forward", 2.0, True, 10, 3, 2.5)
    folder = tmp_path / "out" / "samples_ckpt_000000007_seed10_a_person_walks_forward"
    assert Path(out.video) == folder / "sample00_rep00.mp4"
    names = [Path(f).name for f in out.files]
    assert names == ["sample00_rep00.bvh", "results.npy", "features.npy", "run.json"]
    assert all(Path(f).parent == folder for f in out.files)
    run = json.loads((folder / "run.json").read_text())
    # python -m sample's defaults for everything the page does not set
    assert (run["steps"], run["seed"], run["guidance_param"], run["loop"], run["frames"]) == (3, 10, 2.5, True, 40)
    assert run["foot_lock"] is True and run["layout"]["collage"] == "seamless"
    assert run["sampler"] == "dpmpp_3m" and run["s_churn"] is None  # the CLI's default sampler, deterministic
    jerk = run["seam_reports"][0]["jerk_ratio"]
    assert "Seam report" in out.report and f"{jerk:.2f}" in out.report
    assert "sampling 1 motion(s)" in out.log
    # a second identical request gets a new folder, the first is left as it was
    before = (folder / "results.npy").read_bytes()
    again = demo.request("a person walks forward", 2.0, True, 10, 3, 2.5, 2)
    assert Path(again.video) == folder.with_name(folder.name + "_2") / "sample00.mp4"  # two samples side by side
    assert (folder / "results.npy").read_bytes() == before
    assert "Not a loop" in demo.request("a person jumps", 1.5, False, 1, 2, 1.0).report


@pytest.mark.parametrize("values, message", [
    (("  ", 2.0, True, 10, 3, 2.5), "the text prompt is empty"),
    (("walk", 0.5, True, 10, 3, 2.5), "loop is too short"),
    (("walk", float("nan"), True, 10, 3, 2.5), "--motion_length must be a positive number"),
    (("walk", 2.0, True, 10, 0, 2.5), "--steps must be a positive integer"),
    (("walk", 2.0, True, 10, 2.5, 2.5), "steps must be a whole number"),
    (("walk", 2.0, True, None, 3, 2.5), "seed is empty"),
    (("walk", 2.0, True, 10, 3, -1.0), "--guidance_param must be >= 0"),
])
def test_bad_input_gets_the_clis_message_and_writes_nothing(demo, tmp_path, values, message):
    with pytest.raises(UserError, match=re.escape(message)):
        demo.request(*values)
    assert not list((tmp_path / "out").glob("*/*"))


def test_one_request_at_a_time_per_model(demo):
    page = app.build_page(demo, "tiny")
    runs = [fn for fn in page.fns.values() if fn.fn is not None and fn.name == "on_generate"]
    assert len(runs) == 1 and runs[0].concurrency_limit == 1 and runs[0].concurrency_id == "model"
    assert runs[0].queue is not False  # the page's queue holds the others


def test_an_internal_failure_is_one_line_in_the_page_not_a_traceback(demo, monkeypatch, capsys):
    def boom(args, cache=None):
        raise RuntimeError("out of memory\n  at some frame")

    monkeypatch.setattr(app.generate, "run", boom)
    page = app.build_page(demo, "tiny")
    on_generate = next(fn.fn for fn in page.fns.values() if fn.name == "on_generate")
    video, report, files, log, status = on_generate("a person walks forward", 2.0, True, 10, 3, 2.5, 1,
                                                    progress=lambda *a, **k: None)
    assert (video, files) == (None, None)
    assert status.startswith("**error:** the run failed (RuntimeError: out of memory)") and "\n" not in status
    assert "Traceback" in capsys.readouterr().err  # the details go to the server's log


def test_smpl_parameters_are_offered_when_a_run_writes_them():
    written = {n: Path("/o") / n for n in ("run.json", "sample00_rep00_smpl.npz", "results.npy", "sample00_rep00.bvh",
                                           "sample00_rep00.mp4", "results.txt")}
    assert [p.name for p in map(Path, app.downloads(written))] == [
        "sample00_rep00.bvh", "results.npy", "run.json", "sample00_rep00_smpl.npz"]


def test_missing_model_is_one_line_before_anything_starts(tmp_path, capsys):
    assert app.main(["--model_path", str(tmp_path / "nope.pt"), "--output_root", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "nope.pt" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_taken_port_is_one_line(tiny, tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["--model_path", str(tiny["model"]), "--clip_weights", str(tiny["clip"]),
                "--output_root", str(tmp_path / "out"), "--port", str(port)]
        assert app.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: cannot listen on 127.0.0.1:{port} (the port is taken or the address is not this machine's): " \
                  "pass another --port or --host"


# ----------------------------------------------------------------------------------------------
# The page in a real browser


@pytest.fixture
def browser():
    """Headless Chromium from the Debian packages (never a downloaded browser), with a fresh profile."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        pytest.skip(f"no browser: {', '.join(missing)} missing (apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -r requirements.txt)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", "--window-size=1400,1000", "--autoplay-policy=no-user-gesture-required"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(condition, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def server(tiny, tmp_path):
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    log = open(tmp_path / "server.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "motion_loop.app", "--port", str(port),
                             "--model_path", str(tiny["model"]), "--clip_weights", str(tiny["clip"]),
                             "--output_root", str(tmp_path / "out")],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"

    def up():
        assert proc.poll() is None, (tmp_path / "server.log").read_text()
        try:
            return urllib.request.urlopen(url, timeout=2).status == 200
        except OSError:
            return False

    try:
        _wait(up, 120, f"the app at {url}")
        yield url, tmp_path / "out"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_page_plays_the_loop_and_serves_the_downloads(browser, server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    url, out = server
    driver = browser
    driver.get(url)
    find = lambda css: _wait(lambda: driver.find_elements(By.CSS_SELECTOR, css), 30, css)[0]  # noqa: E731

    def fill(css, text):
        box = find(css)
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(Keys.DELETE, text, Keys.TAB)

    fill("#prompt textarea", "a person walks forward")
    fill("#length input[type=number]", "2")
    fill("#steps input", "3")
    find("#generate").click()
    video_state = """const v = document.querySelector('#video video');
        return v && {src: v.currentSrc, duration: v.duration, error: v.error && v.error.code, ready: v.readyState,
                     autoplay: v.autoplay, loop: v.loop, t: v.currentTime};"""
    state = _wait(lambda: (s := driver.execute_script(video_state)) and s["ready"] >= 1 and s, 60, "the video")
    assert state["error"] is None and state["autoplay"] and state["loop"]
    assert state["duration"] == pytest.approx(3 * 2.0, abs=0.1)  # three cycles of the 2 s loop
    # it plays by itself: the clock advances (and wraps round at the end)
    _wait(lambda: driver.execute_script(video_state)["t"] > 0.2, 15, "the video to play")
    assert driver.execute_script(video_state)["error"] is None
    report = find("#report").text
    assert "Seam report" in report and "jerk" in report
    assert find("#status").text.startswith("done: wrote") and find("#status").text.endswith("walks_forward")

    folder = out / "samples_ckpt_000000007_seed10_a_person_walks_forward"
    links = _wait(lambda: {Path(a.get_attribute("href")).name: a.get_attribute("href")
                           for a in driver.find_elements(By.CSS_SELECTOR, "#downloads a[href]")}, 10, "links")
    assert {"sample00_rep00.bvh", "results.npy", "run.json"} <= set(links), links
    for name in ("sample00_rep00.bvh", "results.npy", "run.json"):
        with urllib.request.urlopen(links[name], timeout=10) as response:
            assert response.read() == (folder / name).read_bytes(), name
    motion = np.load(folder / "results.npy", allow_pickle=True).item()["motion"]
    assert motion.shape == (1, 22, 3, 40)

    # everything the page loaded came from this server: nothing phoned home
    loaded = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded and all(u.startswith(url) or u.startswith(("data:", "blob:")) for u in loaded), loaded
    if os.environ.get("MOTION_LOOP_APP_SCREENSHOT"):
        driver.save_screenshot(os.environ["MOTION_LOOP_APP_SCREENSHOT"])

    # bad input: the CLI's one-line message in the page, no traceback, nothing written
    fill("#prompt textarea", " ")
    find("#generate").click()
    _wait(lambda: "error" in find("#status").text, 30, "the error message")
    assert find("#status").text == "error: the text prompt is empty: describe the motion, e.g. --text_prompt \"a person walks forward\""
    assert "Traceback" not in driver.page_source
    assert len(list(out.iterdir())) == 1
