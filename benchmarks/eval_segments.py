"""Several actions in one loop or chain: DiffCollage with a prompt per segment against sequential
outpainting with the segment prompts and independent segments joined by a linear blend, and against
single-prompt loops of the same layouts, on one model, the same prompts, seeds and EDM settings.

Sequences of 2-4 actions drawn from the demo model's motion kinds (one training caption each,
consecutive actions differ, and in a loop the last differs from the first), every segment
--segment_seconds long. For every sequence x method: the per-segment kind accuracy (the held-out
classifier of motion_loop.evaluation on each segment's frames) and, at every transition (in a loop
the seam, where the last segment leads into the first, is one), FlowMDM's PJ and AUJ over
--transition_window frames centred on it and the jerk there against the motion's median.
Boundary conditioning (what the frames two segments share are conditioned on) is compared here too.

    OMP_NUM_THREADS=1 python benchmarks/eval_segments.py            # 24 sequences, loops and chains, the CLI's sampler
    python benchmarks/eval_segments.py --per_count 1 --steps 2 --methods "collage average"   # smoke run
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from motion_loop.baselines import sample_blended_segments, sample_outpainting
from motion_loop.collage import OVERLAP, CollageDenoiser, Layout, Pieces, fade_weights
from motion_loop.diffusion import DEFAULT_GUIDANCE_INTERVAL, MDMDenoiser
from motion_loop.generate import DEMO_MODEL, choose_layout, decode, load_stats
from motion_loop.mdm import load_model
from motion_loop.metrics import _next_repetition, jerk_profile, peak_and_area
from motion_loop.sampling import DEFAULT_SAMPLER, DEFAULT_STEPS, ODE_SAMPLERS, run_sampler
from motion_loop.segments import (DEFAULT_SPLIT_SIGMA, HybridSegmentCollage, SegmentDenoiser, place_segments,
                                  segment_layout, segment_max_shift)

from eval_loops import PROMPTS, load_classifier, prompt_encoder  # benchmarks/ is on the path

METHODS = ["collage average", "collage uncond", "collage left", "collage right", "collage seamless",
           "collage crossfade", "late linear", "late fade", "late split", "hybrid split", "hybrid shared", "hybrid fade",
           "bridge", "outpainting", "blend", "single prompt", "single prompt seamless", "each prompt seamless"]
# "collage seamless": the segment collage (condind at high noise, windows crossfaded at low noise, the
# layout moved at random by at most --max_shift frames, so a window never leaves its segment but for its
# overlaps); "collage crossfade": the same without moving the layout. Both condition boundary overlaps
# on the unconditional model.
# motion_loop.segments.HybridSegmentCollage, switching at --hybrid_sigma: "late ...": collage seamless above
# it, every segment's windows on their own at and below it ("late linear", the CLI's default with several
# actions: boundary overlaps copied, one copy per window, faded linearly; "late fade": a smootherstep fade;
# "late split": a cut at the boundary); "hybrid ...": the other way round, windows on their own first
# ("hybrid shared": without copies, each half of a boundary overlap from its own segment's window).
# "bridge": independent segments joined by inpainted transition windows (BridgedSegments below).
DEFAULT_METHODS = ["collage seamless", "collage uncond", "outpainting", "blend", "single prompt", "single prompt seamless"]
# "single prompt ...": the sequence's first prompt for every segment (loops only); "each prompt seamless":
# a seamless single-prompt loop (or chain) of every prompt of the sequence in turn (the same actions as the
# sequence, each on its own), measured at the sequence's transition frames: what a transition is compared with.


class BridgedSegments(HybridSegmentCollage):
    """Independent segments joined by generated transitions ("bridges"): every segment's windows are
    denoised on their own at every noise level (as :class:`HybridSegmentCollage` above its switch,
    boundary overlaps copied), and a bridge row per boundary, conditioned on the unconditional model,
    sees ``context`` frames of each neighbouring segment around its own ``2 * half`` frames centred
    on the boundary and denoises those (kept in the state as a third copy). The cores never see a
    bridge, so each keeps the speed and pose of its action (the blend baseline's accuracy); the
    bridge inpaints a transition between them. :meth:`merge` crossfades each bridge in along a
    smootherstep over its first and last ``half - 1`` frames (the two frames at the boundary are the bridge's).
    Measured and not adopted: the bridges leave jerkier transitions than the linear blend (RESULTS.md).
    """

    def __init__(self, inner: SegmentDenoiser, layout: Layout, half: int | None = None, context: int | None = None):
        super().__init__(inner, None, layout, 0.0, late=False, copies=True, fade=None)
        o, s = layout.overlap, layout.stride
        # Default: a bridge as long as an overlap either side of the boundary, never more than a
        # quarter of a stride (the segment between two bridges keeps at least half its frames).
        self.half = max(1, min(o if half is None else half, s // 4))
        self.context = max(1, self.half if context is None else context)
        if not layout.cyclic:  # a chain's bridges stay inside the sequence
            centres = (torch.arange(layout.n_overlaps) + 1) * s + o // 2
            room = int(torch.minimum(centres, layout.length - centres).min()) if layout.n_overlaps else self.half * 2
            self.half = min(self.half, room // 2)
            self.context = max(0, min(self.context, room - self.half))

    @property
    def state_length(self) -> int:
        lay = self.layout
        return lay.length + lay.n_overlaps * (lay.overlap + 2 * self.half)

    def _bridge_slice(self, j: int) -> slice:
        lay = self.layout
        first = lay.length + lay.n_overlaps * lay.overlap + j * 2 * self.half
        return slice(first, first + 2 * self.half)

    def zone(self, j: int, extra: int = 0) -> Tensor:
        """Positions of bridge j's frames (``extra`` more each side), modulo the length."""
        lay = self.layout
        centre = (j + 1) * lay.stride + lay.overlap // 2
        return torch.arange(centre - self.half - extra, centre + self.half + extra) % lay.length

    def weights(self) -> Tensor:
        """The bridge's weight on each of its frames ``[2 * half]``: a smootherstep in and out."""
        return fade_weights(2 * self.half, max(1, self.half - 1), True, True).float()  # exactly 1 either side of the boundary

    def expand(self, x: Tensor) -> Tensor:
        copies = super().expand(x)
        zones = torch.cat([self.zone(j) for j in range(self.layout.n_overlaps)]) if self.layout.n_overlaps else \
            torch.zeros(0, dtype=torch.long)
        return torch.cat([copies, x[..., zones.to(x.device)]], dim=-1)

    def _cores(self, state: Tensor, frame_segment: Tensor) -> Tensor:
        """The merged cores: each frame from its own segment's window copy."""
        lay = self.layout
        return super().merge(state[..., : lay.length + lay.n_overlaps * lay.overlap], frame_segment)

    def merge(self, state: Tensor, frame_segment: Tensor) -> Tensor:
        x = self._cores(state, frame_segment)
        weight = self.weights().to(x.device, x.dtype)
        for b, j in self.boundaries(frame_segment).nonzero().tolist():
            zone = self.zone(j).to(x.device)
            x[b, ..., zone] = (1 - weight) * x[b, ..., zone] + weight * state[b, ..., self._bridge_slice(j)]
        return x

    def __call__(self, x: Tensor, sigma: Tensor, *, segment_embed: Tensor, frame_segment: Tensor) -> Tensor:
        sigma, cond = self._start_call(x, sigma, segment_embed, frame_segment)
        lay = self.layout
        head = lay.length + lay.n_overlaps * lay.overlap
        out = torch.zeros_like(x)
        out[..., :head] = self._independent(x[..., :head], sigma, cond)
        # Bridges: the cores' frames as context around each bridge's own copy. Their rows are
        # overlap pieces centred on the boundary, so SegmentDenoiser conditions them as it does
        # boundary overlaps (the unconditional model by default).
        boundary = self.boundaries(frame_segment).nonzero()  # [k, 2]
        if len(boundary):
            cores = self._cores(x, frame_segment)
            c, h = self.context, self.half
            rows = []
            for b, j in boundary.tolist():
                row = cores[b, ..., self.zone(j, c).to(x.device)].clone()
                row[..., c: c + 2 * h] = x[b, ..., self._bridge_slice(j)]
                rows.append(row)
            width = 2 * (h + c)
            pieces = Pieces(
                sample=boundary[:, 0].to(x.device), kind=torch.full((len(boundary),), OVERLAP, device=x.device),
                index=boundary[:, 1].to(x.device),
                start=torch.stack([self.zone(j, c)[0] for j in boundary[:, 1].tolist()]).to(x.device),
                length=torch.full((len(boundary),), width, device=x.device), layout=lay)
            x0 = self.inner(torch.stack(rows), sigma[pieces.sample], pieces=pieces, **cond)
            for r, (b, j) in enumerate(boundary.tolist()):
                out[b, ..., self._bridge_slice(j)] = x0[r, ..., c: c + 2 * h]
        return out


def draw_sequences(n_actions: int, count: int, rng: np.random.Generator, kinds: list[str]) -> list[list[str]]:
    """``count`` sequences of ``n_actions`` kinds: neighbours differ, also last vs first (loops)."""
    out = []
    while len(out) < count:
        seq = [str(rng.choice(kinds))]
        while len(seq) < n_actions:
            k = str(rng.choice(kinds))
            if k != seq[-1] and (len(seq) < n_actions - 1 or k != seq[0]):
                seq.append(k)
        out.append(seq)
    return out


def jerk_per_stencil(joints: np.ndarray) -> np.ndarray:
    """Joint-averaged jerk norm per 4-frame stencil (as loop_seam_report), ``[T-3]``."""
    return np.linalg.norm(np.diff(joints, n=3, axis=0), axis=-1).mean(axis=-1)


def jerk_curves(joints: np.ndarray, cyclic: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per stencil (frames k .. k+3): the joint-averaged jerk (:func:`jerk_per_stencil`) and FlowMDM's
    jerk profile (:func:`motion_loop.metrics.jerk_profile`); a loop over three cycles (the transitions
    of the middle one are measured: see :func:`transition_metrics`)."""
    if cyclic:
        second = _next_repetition(joints)
        joints = np.concatenate([joints, second, _next_repetition(second)])
    return jerk_per_stencil(joints), jerk_profile(joints)


def transition_metrics(joints: np.ndarray, taus: list[int], cyclic: bool, window: int) -> dict:
    """PJ, AUJ (window centred on each transition) and jerk at the transitions / median jerk."""
    return curve_metrics(jerk_curves(joints, cyclic), len(joints), taus, cyclic, window)


def curve_metrics(curves: tuple[np.ndarray, np.ndarray], length: int, taus: list[int], cyclic: bool,
                  window: int) -> dict:
    """:func:`transition_metrics` from the :func:`jerk_curves` of a motion of ``length`` frames (or
    curves spliced from several motions)."""
    stencil, profile = curves
    taus = [t + length for t in taus] if cyclic else taus  # the middle cycle's
    median = float(np.median(stencil))
    # Stencils k .. k+3 that cross frame tau: k = tau-3 .. tau-1; their largest.
    at = [float(stencil[t - 3:t].max()) for t in taus]
    return {**peak_and_area(profile, taus, window), "transition_jerk_ratio": float(np.mean(at) / median),
            "transition_jerk": float(np.mean(at)), "median_jerk": median}


def spliced_curves(motions: list[np.ndarray], spans: list[tuple[int, int]], cyclic: bool) -> tuple[np.ndarray, np.ndarray]:
    """The jerk curves each action has on its own at the sequence's frames: motion k (a one-prompt motion
    of segment k's action) gives the stencils whose frames lie in segment k's span (a stencil belongs to
    the segment of its second frame). A transition measured on these has no transition of its own."""
    curves = [jerk_curves(m, cyclic) for m in motions]
    length = len(motions[0])
    owner = np.zeros(length, dtype=int)
    for k, (a, b) in enumerate(spans):
        owner[a:b] = k
    n = len(curves[0][0])
    own = owner[(np.arange(n) + 1) % length]
    pick = lambda i: np.choose(own, [c[i] for c in curves])  # noqa: E731
    return pick(0), pick(1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model_path", type=Path, default=DEMO_MODEL, help=f"MDM checkpoint (default {DEMO_MODEL})")
    p.add_argument("--stats_dir", type=Path, default=None, help="Mean.npy/Std.npy folder (default: beside the checkpoint)")
    p.add_argument("--random_text", action=argparse.BooleanOptionalAction, default=False,
                   help="a fixed random embedding per prompt instead of the model's text encoder (smoke runs only)")
    p.add_argument("--per_count", type=int, default=8, help="sequences of each length 2, 3, 4 (default 8: 24 in all)")
    p.add_argument("--counts", type=int, nargs="+", default=[2, 3, 4], help="actions per sequence (default 2 3 4)")
    p.add_argument("--segment_seconds", type=float, default=2.0, help="seconds per segment (default 2)")
    p.add_argument("--sampler", choices=ODE_SAMPLERS, default=DEFAULT_SAMPLER,
                   help=f"sampler of every row (default {DEFAULT_SAMPLER}, python -m sample's)")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"sampler steps (default {DEFAULT_STEPS}, the CLI's)")
    p.add_argument("--guidance", type=float, default=2.5, help="classifier-free guidance scale (default 2.5)")
    p.add_argument("--guidance_interval", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                   help="guide only at noise levels in [LO, HI], conditional only elsewhere, in every row (default: as "
                        "python -m sample, every level for several actions and "
                        f"{DEFAULT_GUIDANCE_INTERVAL[0]:g} inf for the single-prompt rows)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0; sequences drawn with seed + 1000)")
    p.add_argument("--shapes", nargs="+", default=["loop", "chain"], choices=["loop", "chain"], help="loops, chains")
    p.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, choices=METHODS,
                   help=f"which rows to run (default: {', '.join(DEFAULT_METHODS)})")
    p.add_argument("--chain_methods", nargs="+", default=DEFAULT_METHODS[:4], choices=METHODS,
                   help="rows run for chains (default: the CLI's collage, condind and the baselines)")
    p.add_argument("--transition_window", type=int, default=40,
                   help="frames centred on a transition for PJ and AUJ (default 40: FlowMDM uses 60 on HumanML3D; "
                        "2 s segments leave 20 on each side)")
    p.add_argument("--window", type=int, default=None, help="window frames (default: the CLI's choice for segments)")
    p.add_argument("--overlap", type=int, default=None, help="overlap frames (default: the CLI's choice for segments)")
    p.add_argument("--segment_guidance", type=float, default=None,
                   help="guidance scale of the collage's segment rows (default: --guidance)")
    p.add_argument("--max_shift", type=int, default=None,
                   help="collage seamless: largest random move of the layout (default: the CLI's, half the overlap in a loop, 0 in a chain)")
    p.add_argument("--switch_sigma", type=float, default=None,
                   help="collage seamless / crossfade: noise level at and below which windows are crossfaded "
                        "(default: the segment collage's)")
    p.add_argument("--hybrid_sigma", type=float, default=DEFAULT_SPLIT_SIGMA,
                   help="late / hybrid methods: the noise level where the collage and the independent windows take "
                        f"over from each other (default {DEFAULT_SPLIT_SIGMA}, the CLI's)")
    p.add_argument("--hybrid_pull", type=float, default=0.0,
                   help="hybrid / late with a fade: how far (0-1) both copies of a boundary overlap move toward their "
                        "crossfade at every independent evaluation (default 0: not at all)")
    p.add_argument("--bridge_half", type=int, default=None,
                   help="bridge: frames of a bridge either side of its boundary (default: the overlap, at most a quarter stride)")
    p.add_argument("--bridge_context", type=int, default=None,
                   help="bridge: frames of each neighbouring segment a bridge sees (default: --bridge_half)")
    p.add_argument("--bridge_boundary", choices=("uncond", "left", "right", "average"), default="uncond",
                   help="bridge: what a bridge row is conditioned on (default uncond)")
    p.add_argument("--velocity_fusion", action=argparse.BooleanOptionalAction, default=True,
                   help="decode positions from the position and velocity features together, as python -m sample "
                        "does (default: yes)")
    p.add_argument("--json", type=Path, default=None, help="also write every run's metrics to this JSON file")
    args = p.parse_args()

    torch.set_num_threads(1)
    device = torch.device("cpu")
    loaded = load_model(args.model_path, device)
    config = loaded.config
    normalizer, _ = load_stats(args.stats_dir, args.model_path)
    fps = 20.0
    kinds = list(PROMPTS)
    rng = np.random.default_rng(args.seed + 1000)
    groups = {n: draw_sequences(n, args.per_count, rng, kinds) for n in args.counts}
    encode = prompt_encoder(loaded, device, args.random_text)
    base = MDMDenoiser(loaded.model, guidance_scale=args.guidance, guidance_interval=args.guidance_interval)
    single = MDMDenoiser(loaded.model, guidance_scale=args.guidance,  # the single-prompt rows ("each prompt", ...)
                         guidance_interval=args.guidance_interval or DEFAULT_GUIDANCE_INTERVAL)
    sigmas = base.sigmas(args.steps)
    classify = load_classifier()
    seg_frames = round(args.segment_seconds * fps)
    where = args.guidance_interval or f"every level; single-prompt rows {list(single.guidance_interval)}"
    print(f"model {args.model_path}; {sum(len(g) for g in groups.values())} sequences ({args.per_count} each of "
          f"{args.counts} actions), {seg_frames} frames per segment; {len(sigmas) - 1} {args.sampler} steps, guidance "
          f"{args.guidance} (sigma in {where}); torch {torch.__version__}, 1 thread, {platform.processor() or platform.machine()}; "
          f"load average {' '.join(f'{x:.1f}' for x in __import__('os').getloadavg())}", flush=True)

    results: dict[str, list[dict]] = {}
    for shape_name in args.shapes:
        cyclic = shape_name == "loop"
        methods = args.methods if cyclic else [m for m in args.chain_methods if m in args.methods
                                               and not m.startswith("single prompt")]
        for n_actions, sequences in groups.items():
            frames = n_actions * seg_frames
            durations = [seg_frames] * n_actions
            layout = segment_layout(frames, [durations], config.max_frames, cyclic, choose_layout,
                                    window=args.window, overlap=args.overlap)
            plan = place_segments([PROMPTS[k] for k in sequences[0]], durations, layout, layout.length if cyclic else frames)
            b = len(sequences)
            seg_embed = torch.stack([encode([PROMPTS[k] for k in seq]) for seq in sequences])  # [B, S, D]
            frame_segment = torch.tensor([plan.frame_segment] * b)
            window_segment = [k for k, r in enumerate(plan.windows) for _ in r]
            shape = (b, config.n_feats, 1)
            for method in methods:
                generator = torch.Generator().manual_seed(args.seed)
                started = time.perf_counter()
                with torch.inference_mode():
                    x = sigmas[0].float() * torch.randn((*shape, layout.length), generator=generator)
                    own = None  # "each prompt": one loop per prompt of the sequence, [(k, x0), ...]
                    if method == "each prompt seamless":
                        denoiser = CollageDenoiser(single, layout, "seamless", generator=torch.Generator().manual_seed(args.seed + 1))
                        own = [(k, run_sampler(args.sampler, denoiser, x, sigmas, cond={"text_embed": seg_embed[:, k]}))
                               for k in range(n_actions)]
                    elif method.startswith("collage"):
                        mode = method.split()[1]
                        seamless = mode in ("seamless", "crossfade")
                        max_shift = 0 if mode == "crossfade" else \
                            (segment_max_shift(layout) if args.max_shift is None else args.max_shift)
                        denoiser = CollageDenoiser(
                            SegmentDenoiser(base, "uncond" if seamless else mode, guidance=args.segment_guidance),
                            layout, "seamless" if seamless else "condind", max_shift=max_shift if seamless else None,
                            generator=torch.Generator().manual_seed(args.seed + 1),
                            **({} if args.switch_sigma is None else {"switch_sigma": args.switch_sigma}))
                        x0 = run_sampler(args.sampler, denoiser, x, sigmas,
                                         cond={"segment_embed": seg_embed, "frame_segment": frame_segment})
                    elif method == "bridge":
                        denoiser = BridgedSegments(SegmentDenoiser(base, args.bridge_boundary, guidance=args.segment_guidance),
                                                   layout, args.bridge_half, args.bridge_context)
                        state = run_sampler(args.sampler, denoiser, denoiser.expand(x), sigmas,
                                            cond={"segment_embed": seg_embed, "frame_segment": frame_segment})
                        x0 = denoiser.merge(state, frame_segment)
                    elif method.startswith(("hybrid", "late")):
                        segment_rows = SegmentDenoiser(base, "uncond", guidance=args.segment_guidance)
                        collage = CollageDenoiser(
                            segment_rows, layout, "seamless",
                            max_shift=segment_max_shift(layout) if args.max_shift is None else args.max_shift,
                            generator=torch.Generator().manual_seed(args.seed + 1),
                            **({} if args.switch_sigma is None else {"switch_sigma": args.switch_sigma}))
                        variant = method.split()[1]
                        denoiser = HybridSegmentCollage(
                            segment_rows, collage, layout, args.hybrid_sigma, late=method.startswith("late"),
                            copies=variant != "shared", fade={"fade": "smooth", "linear": "linear"}.get(variant),
                            pull=args.hybrid_pull)
                        state = run_sampler(args.sampler, denoiser, denoiser.expand(x), sigmas,
                                            cond={"segment_embed": seg_embed, "frame_segment": frame_segment})
                        x0 = denoiser.merge(state, frame_segment)
                    elif method.startswith("single prompt"):  # every segment gets the first segment's prompt
                        composition = "seamless" if method.endswith("seamless") else "condind"
                        denoiser = CollageDenoiser(single, layout, composition, generator=torch.Generator().manual_seed(args.seed + 1))
                        x0 = run_sampler(args.sampler, denoiser, x, sigmas, cond={"text_embed": seg_embed[:, 0]})
                    elif method == "outpainting":
                        x0 = sample_outpainting(base, layout, shape, sigmas, generator=generator, sampler=args.sampler,
                                                window_cond=lambda i: {"text_embed": seg_embed[:, window_segment[i]]})
                    else:  # blend: segments' bounds in the sampled sequence, blended over one overlap
                        starts = [r.start * layout.stride + layout.overlap // 2 for r in plan.windows] if cyclic else \
                            [0] + [r.start * layout.stride + layout.overlap // 2 for r in plan.windows[1:]]
                        bounds = starts + [starts[0] + layout.length if cyclic else layout.length]
                        x0 = sample_blended_segments(base, bounds, layout.length, layout.overlap, shape, sigmas,
                                                     segment_cond=lambda k: {"text_embed": seg_embed[:, k]},
                                                     cyclic=cyclic, generator=generator, sampler=args.sampler)
                seconds = time.perf_counter() - started
                taus = [a for a, _ in plan.spans[1:]] + ([0] if cyclic else [])
                margin = layout.overlap // 2
                per_action = []  # "each prompt": every action's motions, for the spliced reference
                for k, x0 in own if own is not None else [(None, x0)]:
                    x0 = x0.roll(-plan.shift, dims=-1) if cyclic else x0[..., :frames]
                    _, joints = decode(x0, normalizer, velocity_fusion=args.velocity_fusion, cyclic=cyclic)
                    per_action.append(joints)
                    for seq, motion in zip(sequences, joints):
                        row = {"shape": shape_name, "n_actions": n_actions, "kinds": seq,
                               "seconds_per_motion": seconds / b / (len(own) if own else 1),
                               **transition_metrics(motion, taus, cyclic, args.transition_window)}
                        if classify is not None:
                            predicted = classify([motion[a:bb] for a, bb in plan.spans])
                            prompted = k if k is not None else 0 if method.startswith("single prompt") else None
                            expected = seq if prompted is None else [seq[prompted]] * len(seq)
                            row["expected_kinds"] = expected
                            row["segment_kinds"] = list(predicted)
                            row["segment_accuracy"] = float(np.mean([p_ == e for p_, e in zip(predicted, expected)]))
                            # Each segment's core: its frames less half an overlap at each transition
                            # (the frames it shares with a neighbour); reported beside, not instead.
                            core = classify([motion[a + (margin if cyclic or j > 0 else 0):
                                                    bb - (margin if cyclic or j < len(seq) - 1 else 0)]
                                             for j, (a, bb) in enumerate(plan.spans)])
                            row["core_kinds"] = list(core)
                            row["core_accuracy"] = float(np.mean([p_ == e for p_, e in zip(core, expected)]))
                        results.setdefault(f"{shape_name}: {method}", []).append(row)
                if own is not None:  # "each prompt spliced": each action's own jerk in its segment's frames
                    for i, seq in enumerate(sequences):
                        curves = spliced_curves([motions[i] for motions in per_action], plan.spans, cyclic)
                        results.setdefault(f"{shape_name}: each prompt spliced", []).append(
                            {"shape": shape_name, "n_actions": n_actions, "kinds": seq,
                             **curve_metrics(curves, len(per_action[0][i]), taus, cyclic, args.transition_window)})
                print(f"  {shape_name} {n_actions} actions, {method}: {seconds / b:.2f} s per motion; layout "
                      f"{layout.n_windows} x {layout.window} overlap {layout.overlap}", flush=True)
        print_table(results, shape_name)
    if args.json is not None:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}))
        print(f"metrics: {args.json}")


def print_table(results: dict, shape_name: str) -> None:
    print(f"\n{shape_name}s (mean over sequences; transition metrics mean over sequences of the mean over "
          f"their transitions; median in brackets):\n")
    print("| method | segment kind accuracy | core accuracy | transition jerk / median jerk | transition jerk, median jerk "
          "(mm/frame³) | PJ (m/frame³) | AUJ (m/frame³) | s / motion |")
    print("|---|---|---|---|---|---|---|---|")
    for label, rows in results.items():
        if not label.startswith(shape_name):
            continue

        def cell(key, fmt, median=True):
            values = [r[key] for r in rows if key in r]
            if not values:
                return "n/a"
            return f"{np.mean(values):{fmt}}" + (f" [{np.median(values):{fmt}}]" if median else "")

        print(f"| {label.split(': ')[1]} | {cell('segment_accuracy', '.3f')} | {cell('core_accuracy', '.3f')} | "
              f"{cell('transition_jerk_ratio', '.2f')} | {1e3 * np.mean([r['transition_jerk'] for r in rows]):.2f}, "
              f"{1e3 * np.mean([r['median_jerk'] for r in rows]):.2f} | "
              f"{cell('peak_jerk', '.3f')} | {cell('auj', '.2f')} | {cell('seconds_per_motion', '.2f', median=False)} |")
    print("\nsegments right per kind (whole segment):")
    for label, rows in results.items():
        if label.startswith(shape_name) and rows and "segment_kinds" in rows[0]:
            right: dict[str, list[int]] = {}
            for r in rows:
                for e, p_ in zip(r["expected_kinds"], r["segment_kinds"]):
                    right.setdefault(e, []).append(int(e == p_))
            print(f"  {label.split(': ')[1]}: " + ", ".join(f"{k} {sum(v)}/{len(v)}" for k, v in sorted(right.items())))
    print(flush=True)


if __name__ == "__main__":
    main()
