"""Loop assets as animation tools play them: the wrap of BVH files before and after root handling and
the closing frame, the rigid skeleton, and the SMPL fit error (issue 16).

    python benchmarks/bench_loop_assets.py                  # walk, run, jumping jacks x seeds 0 1 2, demo model

For each prompt and seed it samples one 6 s loop with the bundled demo model (``python -m sample``,
``--loop_heading keep`` so results.npy is the loop as the model made it, feet locked), then writes
BVH files the old way (heading as it is, no closing frame) and the new way (``loop_root`` auto, with
and without ``--closing_frame``), and reads each back with the PyPI ``bvh`` parser (not our code).

The wrap, as tools that loop over the closed key range play a file of F frames (Blender's Cycles
modifier, Unity's Loop Time, Unreal's looping): frames 0 .. F-2, then frame 0 again at time F-1. So
the wrap step is frame F-2 -> frame 0; with a closing frame that is the real last step of the cycle,
without one the tool drops frame F-1 (the body skips a frame and snaps by the cycle's turn).
- heading jump: |yaw(0) - yaw(F-2)| of the root, degrees, against the median |yaw step| of the file;
- pose jump: joints relative to the root in the root's heading frame (so heading is not counted
  twice), mean over joints of |pose(0) - pose(F-2)|, divided by the median per-frame step;
- in place (``--in_place`` files, root x,z held at 0): the heading jump, which before this change
  stayed in.
The seam report (jerk ratio, seam / interior) of the loop is shown before and after root handling.
SMPL: ``fit_smpl`` on each motion with the random SMPL-format test model file (the real SMPL files are
licensed), error of smplx's joints 0-21 against ours in mm.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from motion_loop.sampling import DEFAULT_STEPS  # noqa: E402 (after the path)

PROMPTS = {"walk": "a person walks forward", "run": "a person runs forward",
           "jumping jacks": "a person does jumping jacks"}


def read_bvh(text: str):
    """Root yaw [F] (radians), root position [F, 3] and joint positions [F, J, 3] of a BVH text, via the
    PyPI ``bvh`` parser (hierarchy, channels, values) and forward kinematics from the BVH convention."""
    from bvh import Bvh

    from motion_loop.export import matrices_from_euler

    mocap = Bvh(text)
    names = mocap.get_joints_names()
    frames = mocap.nframes
    world, positions = {}, {}
    for name in names:                                   # parents come before children in the file
        channels = mocap.joint_channels(name)
        values = np.array(mocap.frames_joint_channels(name, channels))
        rotations = [c for c in channels if c.endswith("rotation")]
        order = "".join(c[0] for c in rotations)
        local = matrices_from_euler(np.radians(values[:, [channels.index(c) for c in rotations]]), order)
        offset = np.array(mocap.joint_offset(name))
        parent = mocap.joint_parent(name)
        if parent is None:
            position = offset + values[:, [channels.index(c) for c in ("Xposition", "Yposition", "Zposition")]]
            world[name] = local
        else:
            position = positions[parent.name] + world[parent.name] @ offset
            world[name] = world[parent.name] @ local
        positions[name] = position
    forward = world[names[0]] @ np.array([0.0, 0.0, 1.0])
    yaw = np.arctan2(forward[:, 0], forward[:, 2])
    joints = np.stack([positions[n] for n in names], 1)
    assert joints.shape[0] == frames
    return yaw, joints[:, 0], joints


def _wrap(angle):
    return (angle + np.pi) % (2 * np.pi) - np.pi


def wrap_numbers(text: str) -> dict:
    """Heading and pose jump at the wrap of a BVH file played over its closed key range (module docs)."""
    from motion_loop.humanml import rotate_y

    yaw, root, joints = read_bvh(text)
    last = len(yaw) - 2                                  # frame F-2 is followed by frame 0
    yaw_steps = np.abs(_wrap(np.diff(yaw[: last + 1])))
    pose = rotate_y(joints - root[:, None], -yaw[:, None])
    pose_steps = np.linalg.norm(np.diff(pose[: last + 1], axis=0), axis=-1).mean(-1)
    out = {"frames": len(yaw),
           "heading_jump_deg": float(np.degrees(abs(_wrap(yaw[0] - yaw[last])))),
           "median_heading_step_deg": float(np.degrees(np.median(yaw_steps))),
           "p95_heading_step_deg": float(np.degrees(np.percentile(yaw_steps, 95))),
           "p95_pose_step_ratio": float(np.percentile(pose_steps, 95) / np.median(pose_steps)),
           "pose_jump_ratio": float(np.linalg.norm(pose[0] - pose[last], axis=-1).mean() / np.median(pose_steps))}
    return out


def sample_loop(prompt: str, seed: int, out_dir: Path, steps: int, seconds: float) -> np.ndarray:
    from motion_loop.generate import main as sample_main
    from motion_loop.results import load_results, results_motion

    code = sample_main(["--text_prompt", prompt, "--loop", "--seed", str(seed), "--num_repetitions", "1",
                        "--motion_length", str(seconds), "--steps", str(steps), "--no-render", "--no-bvh",
                        "--loop_heading", "keep", "--no-progress", "--output_dir", str(out_dir)])
    if code != 0:
        raise SystemExit(f"sampling {prompt!r} seed {seed} failed")
    return results_motion(load_results(out_dir / "results.npy"), 0).astype(np.float64)


def evaluate(joints: np.ndarray, body) -> dict:
    from motion_loop.export import bvh_text
    from motion_loop.loop_root import handle_loop_root
    from motion_loop.metrics import loop_seam_report
    from motion_loop.rigid import bone_lengths, rigid_joints
    from motion_loop.smpl import fit_smpl

    after, record = handle_loop_root(joints)
    in_place, _ = handle_loop_root(joints, in_place=True)
    files = {
        "before": bvh_text(joints, loop=True),
        "before, closing frame": bvh_text(joints, loop=True, closing_frame=True),
        "after": bvh_text(after, loop=True),
        "after, closing frame": bvh_text(after, loop=True, closing_frame=True),
    }
    wraps = {name: wrap_numbers(text) for name, text in files.items()}
    in_place_wraps = {"before": wrap_numbers(bvh_text(joints, loop=True, in_place=True)),
                      "after, closing frame": wrap_numbers(bvh_text(in_place, loop=True, in_place=True,
                                                                    closing_frame=True))}
    rigid = rigid_joints(after)
    _, _, bvh_joints = read_bvh(files["after"])
    from motion_loop.export import HIERARCHY_ORDER

    order = np.argsort(HIERARCHY_ORDER)                   # file order -> our joint order
    started = time.perf_counter()
    fit = fit_smpl(after, body)
    fit_s = time.perf_counter() - started
    return {
        "loop_root": record,
        "wrap": wraps,
        "in_place": in_place_wraps,
        "seam_jerk_ratio": {"before": loop_seam_report(joints).jerk_ratio, "after": loop_seam_report(after).jerk_ratio},
        "bone_length_range_cm": float(100 * np.ptp(bone_lengths(after), axis=0).max()),
        "rigid_bvh_error_mm": float(1000 * np.linalg.norm(bvh_joints[:, order] - rigid, axis=-1).max()),
        "smpl_error_mm": {"mean": float(1000 * fit.joint_error_m.mean()), "max": float(1000 * fit.joint_error_m.max()),
                          "per_joint_mean": (1000 * fit.joint_error_m.mean(0)).tolist(),
                          "per_joint_max": (1000 * fit.joint_error_m.max(0)).tolist(), "seconds": fit_s},
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kinds", nargs="+", default=list(PROMPTS), choices=list(PROMPTS), help="motions (default all)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds (default 0 1 2)")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                   help=f"sampler steps (default {DEFAULT_STEPS}, python -m sample's)")
    p.add_argument("--seconds", type=float, default=6.0, help="loop period in seconds (default 6)")
    p.add_argument("--json", type=Path, default=None, help="also write every number here")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from motion_loop.skeleton import JOINT_NAMES
    from motion_loop.smpl import load_body_model, write_test_model

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        body = load_body_model(write_test_model(Path(tmp) / "SMPL_NEUTRAL.pkl", seed=0))
        for kind in args.kinds:
            for seed in args.seeds:
                joints = sample_loop(PROMPTS[kind], seed, Path(tmp) / f"{kind}_{seed}", args.steps, args.seconds)
                runs.append({"kind": kind, "seed": seed, **evaluate(joints, body)})
    print(f"load: {os.getloadavg()[0]:.1f} (1-min load average, 2 cores)")
    print("\nWrap as closed-range loopers play a BVH (frame F-2 -> frame 0): heading jump in degrees "
          "(median / 95th percentile per-frame step of the file in brackets), pose jump / median pose step "
          "(95th percentile step / median in brackets)")
    print("| motion | seed | turn per cycle | root | heading jump: before | after | after + closing frame "
          "| pose jump: before | after | after + closing frame | in place heading jump: before | after + closing frame "
          "| seam jerk ratio before / after |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        w, ip = r["wrap"], r["in_place"]
        print(f"| {r['kind']} | {r['seed']} | {r['loop_root']['before']['turn_degrees']:+.1f} deg "
              f"| {r['loop_root']['heading']} "
              f"| {w['before']['heading_jump_deg']:.2f} ({w['before']['median_heading_step_deg']:.2f} / {w['before']['p95_heading_step_deg']:.2f}) "
              f"| {w['after']['heading_jump_deg']:.2f} ({w['after']['median_heading_step_deg']:.2f} / {w['after']['p95_heading_step_deg']:.2f}) "
              f"| {w['after, closing frame']['heading_jump_deg']:.2f} ({w['after, closing frame']['median_heading_step_deg']:.2f} / {w['after, closing frame']['p95_heading_step_deg']:.2f}) "
              f"| {w['before']['pose_jump_ratio']:.2f} | {w['after']['pose_jump_ratio']:.2f} "
              f"| {w['after, closing frame']['pose_jump_ratio']:.2f} ({w['after, closing frame']['p95_pose_step_ratio']:.2f}) "
              f"| {ip['before']['heading_jump_deg']:.2f} | {ip['after, closing frame']['heading_jump_deg']:.2f} "
              f"| {r['seam_jerk_ratio']['before']:.2f} / {r['seam_jerk_ratio']['after']:.2f} |")
    print("\nRigid skeleton and SMPL fit (random SMPL-format test model, smplx joints 0-21 vs ours)")
    print("| motion | seed | bone length range in results.npy | BVH FK vs joints_rigid (max) "
          "| SMPL error mean | SMPL error max | fit time |")
    print("|---|---|---|---|---|---|---|")
    for r in runs:
        s = r["smpl_error_mm"]
        print(f"| {r['kind']} | {r['seed']} | {r['bone_length_range_cm']:.1f} cm | {r['rigid_bvh_error_mm']:.4f} mm "
              f"| {s['mean']:.1f} mm | {s['max']:.1f} mm | {s['seconds']:.1f} s |")
    per_joint_mean = np.mean([r["smpl_error_mm"]["per_joint_mean"] for r in runs], 0)
    per_joint_max = np.max([r["smpl_error_mm"]["per_joint_max"] for r in runs], 0)
    print("\nSMPL error per joint over all motions (mm, mean / max): " + ", ".join(
        f"{name} {m:.0f}/{x:.0f}" for name, m, x in zip(JOINT_NAMES, per_joint_mean, per_joint_max)))
    if args.json:
        args.json.write_text(json.dumps({"runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
