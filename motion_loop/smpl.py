"""SMPL bodies for our joints through ``smplx``: AMASS-layout parameters and meshes.

    python -m motion_loop.smpl --input_path save/.../results.npy     # every motion of a run
    python -m motion_loop.smpl --input_path save/.../sample00_rep01.mp4   # one, as MDM's render_mesh

Our joints are SMPL's body joints 0-21 (HumanML3D keeps them, y up, facing +z, which is also SMPL's
own rest frame). ``fit_smpl`` finds SMPL parameters whose joints follow them:

1. Shape: the rest joints are linear in the shape coefficients, J(b) = J_reg (v_template +
   shapedirs b). ``betas`` are fitted so SMPL's 21 bone lengths match the motion's median bone
   lengths (Gauss-Newton via L-BFGS, a small ridge keeps b near the mean body).
2. Pose, analytically: with SMPL's rest bones as the skeleton, the same inverse kinematics as the
   BVH export (``export.fit_rotations``: Kabsch for the pelvis and chest, minimal swings elsewhere)
   gives every joint's local rotation; ``trans`` = our root - J_0(b), since SMPL turns the body
   about the rest pelvis J_0.
3. A few L-BFGS steps on poses, ``trans`` and ``betas`` together over the joints' squared error,
   through smplx's own joint kinematics (``lbs.batch_rigid_transform``), which spread what bone
   lengths cannot match over the chain instead of leaving it at the ends.

What is not observed stays at rest: the wrists' and head's own rotations (no child joint to aim
at), the hands (joints 22, 23: zero, as AMASS's SMPL-H poses without fingers). SMPL's bone lengths
come from 10 shape coefficients, ours are 21 free numbers, so the fit is exact only for a skeleton
SMPL can make (a SMPL body's own joints come back to < 1 mm); otherwise the residual is the
bone-length mismatch (see benchmarks/RESULTS.md).

Output per motion (AMASS's npz keys): ``poses`` [T, 72] axis-angle (global orient, 21 body joints,
2 hands), ``trans`` [T, 3], ``betas`` [10], ``gender``, ``mocap_framerate``; y up as HumanML3D's joints
(AMASS's own files are z up: rotate by -90 degrees about x to compare). With ``meshes`` one OBJ per
frame in ``<name>_obj/frame###.obj``, as MDM's render_mesh writes them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import pickle
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from motion_loop.errors import UserError, run_cli
from motion_loop.skeleton import FPS, NUM_JOINTS, PARENTS

SMPL_DIR = Path("body_models/smpl")
SMPL_FILES = {"neutral": "SMPL_NEUTRAL.pkl", "male": "SMPL_MALE.pkl", "female": "SMPL_FEMALE.pkl"}
SMPL_PARENTS = PARENTS + (20, 21)        # SMPL's 24 joints: ours, then the hands on the wrists
NUM_BETAS = 10
BETA_RIDGE = 1e-6                        # m^2 per unit^2: keeps unobservable shape directions at 0
DOWNLOAD_HINT = "python prepare/download_smpl.py"


# ----------------------------------------------------------------------------------------------
# The body model


def smpl_file(path: str | Path | None = None, gender: str = "neutral") -> Path:
    """The SMPL model file (a .pkl or .npz, or a folder holding SMPL_<GENDER>.pkl), or a one-line
    UserError naming prepare/download_smpl.py."""
    if gender not in SMPL_FILES:
        raise UserError(f"unknown SMPL gender {gender!r}: choose one of {', '.join(SMPL_FILES)}")
    path = Path(path) if path is not None else SMPL_DIR
    if path.is_dir():
        path = path / SMPL_FILES[gender]
    if not path.is_file():
        raise UserError(f"SMPL model file {path} not found: run {DOWNLOAD_HINT} (licensed SMPL files, "
                        "smpl.is.tue.mpg.de) or pass --smpl_model PATH")
    return path


def load_body_model(path: str | Path | None = None, gender: str = "neutral"):
    """smplx's SMPL body model from ``path`` (see ``smpl_file``), float64 on the CPU."""
    path = smpl_file(path, gender)
    try:
        import smplx
    except ImportError:
        raise UserError("the smplx package is missing: pip install smplx==0.1.28 chumpy-fixed==0.71") from None
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a warning about 10 betas on every load
            model = smplx.SMPL(model_path=str(path), gender=gender, num_betas=NUM_BETAS, dtype=torch.float64)
    except ModuleNotFoundError as err:
        if "chumpy" in str(err):
            raise UserError(f"{path} stores chumpy arrays: pip install chumpy-fixed==0.71") from None
        raise
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, AttributeError, OSError) as err:
        raise UserError(f"{path} is not a readable SMPL model file ({type(err).__name__}): download it "
                        f"again with {DOWNLOAD_HINT} --force") from None
    if model.J_regressor.shape[0] != 24:
        raise UserError(f"{path} has {model.J_regressor.shape[0]} joints, SMPL has 24: pass an SMPL (not "
                        "SMPL-H/SMPL-X) model file")
    return model


def rest_joints(model, betas: torch.Tensor) -> torch.Tensor:
    """SMPL's rest joints [..., 24, 3] for shape coefficients ``betas`` [..., B]."""
    from smplx.lbs import blend_shapes, vertices2joints

    shaped = model.v_template + blend_shapes(betas.reshape(-1, betas.shape[-1]), model.shapedirs)
    return vertices2joints(model.J_regressor, shaped).reshape(betas.shape[:-1] + (24, 3))


# ----------------------------------------------------------------------------------------------
# Rotations


def axis_angle_from_matrix(rot: np.ndarray) -> np.ndarray:
    """Axis-angle vectors [..., 3] of rotations [..., 3, 3] (angle in [0, pi]), via the quaternion."""
    rot = np.asarray(rot, dtype=np.float64)
    m = rot.reshape(-1, 3, 3)
    trace = np.trace(m, axis1=1, axis2=2)
    # Shepperd: take the largest of 4w^2, 4x^2, 4y^2, 4z^2 as the pivot (no division by ~0).
    pivots = np.stack([trace, m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]], -1)
    best = pivots.argmax(-1)
    q = np.empty((len(m), 4))
    for k in range(4):
        sel = best == k
        r = m[sel]
        if k == 0:
            s = 2 * np.sqrt(1 + trace[sel])
            q[sel] = np.stack([s / 4, (r[:, 2, 1] - r[:, 1, 2]) / s, (r[:, 0, 2] - r[:, 2, 0]) / s,
                               (r[:, 1, 0] - r[:, 0, 1]) / s], -1)
        else:
            i, j, l = k - 1, k % 3, (k + 1) % 3
            s = 2 * np.sqrt(np.maximum(1 + r[:, i, i] - r[:, j, j] - r[:, l, l], 1e-300))
            comp = np.empty((len(r), 4))
            comp[:, 0] = (r[:, l, j] - r[:, j, l]) / s
            comp[:, 1 + i] = s / 4
            comp[:, 1 + j] = (r[:, j, i] + r[:, i, j]) / s
            comp[:, 1 + l] = (r[:, l, i] + r[:, i, l]) / s
            q[sel] = comp
    q *= np.where(q[:, :1] < 0, -1.0, 1.0)             # w >= 0: angle in [0, pi]
    vec = q[:, 1:]
    norm = np.linalg.norm(vec, axis=-1, keepdims=True)
    angle = 2 * np.arctan2(norm, q[:, :1])
    scale = np.where(norm > 1e-12, angle / np.maximum(norm, 1e-300), 2.0)  # small angles: 2 sin(a/2) ~ a
    return (vec * scale).reshape(rot.shape[:-2] + (3,))


# ----------------------------------------------------------------------------------------------
# Fitting


@dataclass
class SMPLFit:
    """SMPL parameters of one motion (AMASS's layout) and how far its joints are from ours."""

    poses: np.ndarray          # [T, 72] axis-angle, joints 22, 23 (hands) zero
    trans: np.ndarray          # [T, 3]
    betas: np.ndarray          # [10]
    gender: str
    mocap_framerate: float
    joint_error_m: np.ndarray  # [T, 22] distance of smplx's joints 0-21 from ours

    def amass(self) -> dict:
        return {"poses": self.poses.astype(np.float32), "trans": self.trans.astype(np.float32),
                "betas": self.betas.astype(np.float32), "gender": np.array(self.gender),
                "mocap_framerate": np.array(self.mocap_framerate)}


def _fit_betas(model, lengths: np.ndarray, iterations: int = 50) -> torch.Tensor:
    parents = torch.tensor(PARENTS[1:])
    target = torch.as_tensor(lengths[1:], dtype=torch.float64)
    betas = torch.zeros(NUM_BETAS, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([betas], max_iter=iterations, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        joints = rest_joints(model, betas)[:NUM_JOINTS]
        bones = torch.linalg.norm(joints[1:] - joints[parents], dim=-1)
        loss = ((bones - target) ** 2).sum() + BETA_RIDGE * (betas ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return betas.detach()


def _posed_joints(model, betas, rotations, trans):
    """Joints [T, 24, 3] of rotations [T, 24, 3, 3] with smplx's kinematics (no vertices)."""
    from smplx.lbs import batch_rigid_transform

    rest = rest_joints(model, betas).expand(len(rotations), 24, 3)
    posed, _ = batch_rigid_transform(rotations, rest, model.parents, dtype=rotations.dtype)
    return posed + trans[:, None]


def fit_smpl(joints, model, *, gender: str = "neutral", fps: float = FPS, iterations: int = 30) -> SMPLFit:
    """SMPL parameters whose joints 0-21 follow ``joints`` [T, 22, 3] (module docs)."""
    from smplx.lbs import batch_rodrigues

    from motion_loop.export import check_joints, fit_rotations

    joints = np.ascontiguousarray(check_joints(joints))
    frames = len(joints)
    lengths = np.median(np.linalg.norm(joints[:, 1:] - joints[:, list(PARENTS[1:])], axis=-1), axis=0)
    betas = _fit_betas(model, np.concatenate([[0.0], lengths]))
    rest = rest_joints(model, betas).numpy()
    offsets = np.zeros((NUM_JOINTS, 3))
    offsets[1:] = rest[1:NUM_JOINTS] - rest[list(PARENTS[1:])]
    local = fit_rotations(joints, offsets)                              # [T, 22, 3, 3]

    pose = torch.zeros(frames, 24, 3, dtype=torch.float64)
    pose[:, :NUM_JOINTS] = torch.from_numpy(axis_angle_from_matrix(local))
    trans = torch.from_numpy(joints[:, 0] - rest[0])
    target = torch.from_numpy(joints)
    body = torch.zeros(24, 1, dtype=torch.float64)
    body[:NUM_JOINTS] = 1.0                                             # hands stay at zero
    if iterations > 0:
        params = [pose.requires_grad_(), trans.requires_grad_(), betas.requires_grad_()]
        opt = torch.optim.LBFGS(params, max_iter=iterations, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            rot = batch_rodrigues((pose * body).reshape(-1, 3)).reshape(frames, 24, 3, 3)
            posed = _posed_joints(model, betas, rot, trans)[:, :NUM_JOINTS]
            loss = ((posed - target) ** 2).sum(-1).mean() + BETA_RIDGE * (betas ** 2).sum() / frames
            loss.backward()
            return loss

        opt.step(closure)
    pose, trans, betas = (pose * body).detach(), trans.detach(), betas.detach()
    with torch.no_grad():
        out = model(betas=betas[None].expand(frames, -1), global_orient=pose[:, 0],
                    body_pose=pose[:, 1:].reshape(frames, 69), transl=trans, return_verts=False)
    error = np.linalg.norm(out.joints[:, :NUM_JOINTS].numpy() - joints, axis=-1)
    return SMPLFit(poses=pose.reshape(frames, 72).numpy(), trans=trans.numpy(), betas=betas.numpy(),
                   gender=gender, mocap_framerate=float(fps), joint_error_m=error)


def smpl_vertices(model, fit: SMPLFit) -> np.ndarray:
    """Mesh vertices [T, V, 3] of a fit, through smplx's forward pass."""
    frames = len(fit.poses)
    pose = torch.from_numpy(fit.poses.astype(np.float64))
    with torch.no_grad():
        out = model(betas=torch.from_numpy(fit.betas.astype(np.float64))[None].expand(frames, -1),
                    global_orient=pose[:, :3], body_pose=pose[:, 3:], transl=torch.from_numpy(fit.trans.astype(np.float64)))
    return out.vertices.numpy()


# ----------------------------------------------------------------------------------------------
# Files


def _obj_text(vertices: np.ndarray, faces: np.ndarray) -> str:
    lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices]
    lines += [f"f {a} {b} {c}" for a, b, c in np.asarray(faces, dtype=np.int64) + 1]
    return "\n".join(lines) + "\n"


def write_smpl(output_dir: str | Path, name: str, joints, model, *, gender: str = "neutral", fps: float = FPS,
               meshes: bool = True, overwrite: bool = False) -> tuple[dict[str, Path], SMPLFit]:
    """Fit one motion and write ``<name>_smpl.npz`` (AMASS keys) and, with ``meshes``,
    ``<name>_obj/frame###.obj``. Returns (name -> path written, the fit)."""
    from motion_loop.results import write_atomic

    output_dir = Path(output_dir)
    folder = output_dir / f"{name}_obj"
    if meshes and not overwrite and folder.exists():
        raise UserError(f"{folder} already exists; pass --overwrite or choose another output directory")
    fit = fit_smpl(joints, model, gender=gender, fps=fps)
    written = {}
    npz = f"{name}_smpl.npz"

    def save_npz(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **fit.amass())

    written[npz] = write_atomic(output_dir / npz, save_npz, overwrite=overwrite)
    if meshes:
        folder.mkdir(exist_ok=True)
        faces = model.faces
        for t, verts in enumerate(smpl_vertices(model, fit)):
            path = folder / f"frame{t:03d}.obj"
            write_atomic(path, lambda tmp, v=verts: tmp.write_text(_obj_text(v, faces)), overwrite=overwrite)
        written[folder.name] = folder
    return written, fit


# ----------------------------------------------------------------------------------------------
# A random SMPL-format model file (tests and benchmarks: the real files are licensed)


def write_test_model(path: str | Path, seed: int = 0, proportions: float = 0.08) -> Path:
    """A model file in SMPL's .pkl format (plain numpy, no chumpy, so no licence): SMPL's 24 joints and
    parents, its 6890 vertices (smplx picks extra joints by SMPL vertex index) placed at random around
    the rest joints (vertex i belongs to joint i mod 24; a joint's regressor row averages its vertices,
    which are skinned to it), random shape blend shapes (a few cm per unit, mostly moving whole
    clusters, so betas change bone lengths) and pose blend shapes (about 1 mm), triangles within each
    cluster.

    The rest joints are a human T-pose on HumanML3D's bone lengths with each bone scaled by a random
    factor within +-``proportions`` (8%), so fitting our motions has a real bone-length mismatch to absorb.
    """
    from motion_loop.export import TPOSE_DIRECTIONS
    from motion_loop.skeleton import BONE_LENGTHS

    rng = np.random.default_rng(seed)
    # the pelvis's and chest's children point as in HumanML3D's (SMPL's) joints, measured with
    # export.rest_offsets on a real HumanML3D motion; the limbs as in the BVH's T-pose
    directions = {1: (0.55, -0.8, -0.2), 2: (-0.6, -0.8, -0.2), 3: (0.02, 1, 0), 12: (-0.03, 1, 0),
                  13: (0.5, 0.87, -0.1), 14: (-0.55, 0.83, -0.1), 22: (1, 0, 0), 23: (-1, 0, 0)}
    directions.update(TPOSE_DIRECTIONS)
    lengths = list(BONE_LENGTHS) + [0.08, 0.08]
    joints = np.zeros((24, 3))
    joints[0] = (0.0, 0.9, 0.0)
    for j in range(1, 24):
        d = np.asarray(directions[j], dtype=np.float64)
        scale = 1 + rng.uniform(-proportions, proportions)
        joints[j] = joints[SMPL_PARENTS[j]] + d / np.linalg.norm(d) * lengths[j] * scale
    count = 6890
    owner = np.arange(count) % 24
    offsets = rng.normal(0, 0.03, (count, 3))
    for j in range(24):                                      # each cluster's mean is its joint
        offsets[owner == j] -= offsets[owner == j].mean(0)
    v_template = joints[owner] + offsets
    regressor = np.zeros((24, count))
    regressor[owner, np.arange(count)] = 1.0 / np.bincount(owner)[owner]
    shapedirs = rng.normal(0, 0.015, (24, 3, NUM_BETAS))[owner] + rng.normal(0, 0.002, (count, 3, NUM_BETAS))
    posedirs = rng.normal(0, 0.001, (count, 3, 207)).astype(np.float32)
    weights = np.zeros((count, 24))
    weights[np.arange(count), owner] = 1.0
    faces = np.concatenate([np.stack([c[:-2], c[1:-1], c[2:]], -1)
                            for c in (np.flatnonzero(owner == j) for j in range(24))])
    kintree = np.array([[2 ** 32 - 1] + list(SMPL_PARENTS[1:]), list(range(24))], dtype=np.int64)
    data = {"v_template": v_template, "shapedirs": shapedirs, "posedirs": posedirs, "J_regressor": regressor,
            "weights": weights, "kintree_table": kintree, "f": faces.astype(np.int64),
            "J": joints, "bs_type": "lrotmin", "bs_style": "lbs"}
    path = Path(path)
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=2)
    return path


# ----------------------------------------------------------------------------------------------
# Command line: an existing results.npy (MDM's or ours)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m motion_loop.smpl", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input_path", type=Path, required=True,
                   help="a results.npy (every motion), or a sample##_rep##.mp4 beside one (that motion, as "
                        "MDM's visualize.render_mesh)")
    p.add_argument("--smpl_model", type=Path, default=None,
                   help=f"SMPL model file or folder (default {SMPL_DIR}, from {DOWNLOAD_HINT})")
    p.add_argument("--gender", choices=tuple(SMPL_FILES), default="neutral", help="SMPL model (default neutral)")
    p.add_argument("--meshes", action=argparse.BooleanOptionalAction, default=True,
                   help="also write one OBJ mesh per frame (default on)")
    p.add_argument("--fps", type=float, default=FPS, help=f"frame rate of the motions (default {FPS:g})")
    p.add_argument("--overwrite", action=argparse.BooleanOptionalAction, default=False,
                   help="replace files of the same names")
    return p


def _select(path: Path) -> tuple[Path, list[int] | None, dict]:
    from motion_loop.results import load_results

    match = re.fullmatch(r"sample(\d+)_rep(\d+)\.mp4", path.name)
    results_path = path.parent / "results.npy" if match else path
    if not results_path.is_file():
        raise UserError(f"{results_path} not found: pass a results.npy or a sample##_rep##.mp4 beside one")
    try:
        results = load_results(results_path)
        motion, n = results["motion"], int(results["num_samples"])
    except Exception as err:  # a pickle of anything: say what it is not
        raise UserError(f"{results_path} is not an MDM results.npy ({type(err).__name__}): pass the file "
                        "python -m sample writes") from None
    if match:
        index = int(match.group(2)) * n + int(match.group(1))
        if index >= len(motion):
            raise UserError(f"{path.name} is not in {results_path} ({len(motion)} motions)")
        return results_path, [index], results
    return results_path, None, results


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run():
        from motion_loop.results import results_motion, video_name

        results_path, indices, results = _select(args.input_path)
        model = load_body_model(args.smpl_model, args.gender)
        n = int(results["num_samples"])
        for index in indices if indices is not None else range(len(results["motion"])):
            name = video_name(index % n, index // n, "")
            motion = results_motion(results, index)
            if motion.shape[1] != NUM_JOINTS:
                raise UserError(f"{results_path} holds {motion.shape[1]}-joint motions: SMPL fitting needs "
                                f"HumanML3D's {NUM_JOINTS} joints")
            written, fit = write_smpl(results_path.parent, name, motion, model, gender=args.gender, fps=args.fps,
                                      meshes=args.meshes, overwrite=args.overwrite)
            err = fit.joint_error_m * 1000
            print(f"{name}: {', '.join(written)} (joint error {err.mean():.1f} mm mean, {err.max():.1f} mm max)")
        return 0

    return run_cli(run, interrupted="files already moved into place are complete, nothing else was written")


if __name__ == "__main__":
    sys.exit(main())
