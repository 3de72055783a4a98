"""benchmarks/bench_loop_assets.py runs end to end (tiny settings) and reads its BVH files back."""

import json
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_bench_loop_assets_smoke(tmp_path):
    out = tmp_path / "runs.json"
    done = subprocess.run([sys.executable, str(BENCHMARKS / "bench_loop_assets.py"), "--kinds", "walk", "--seeds", "0",
                           "--steps", "2", "--seconds", "2", "--json", str(out)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    (run,) = json.loads(out.read_text())["runs"]
    wrap = run["wrap"]
    # the PyPI parser read every file: one cycle of 40 frames, one more with the closing frame
    assert wrap["after"]["frames"] == 40 and wrap["after, closing frame"]["frames"] == 41
    assert run["rigid_bvh_error_mm"] < 1.0
    assert run["smpl_error_mm"]["mean"] > 0 and "| walk | 0 |" in done.stdout
