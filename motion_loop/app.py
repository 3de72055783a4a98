"""``python -m motion_loop.app``: a local web page to type an action, watch the loop and download it.

    python -m motion_loop.app                      # http://127.0.0.1:7860, this machine only
    python -m motion_loop.app --host 0.0.0.0       # listen on the network too (no public link)

Gradio, the usual front end of the field's demos, serves the page. The model and its text encoder
are loaded once at start; each request runs exactly ``python -m sample``'s pipeline
(``generate.run``) with the CLI's defaults and checks, one request at a time in a queue, and writes
a folder named as ``python -m sample`` names it under ``--output_root``. Nothing phones home:
Gradio's analytics and version check are off, its fonts are local, and there is no share link
unless ``--share`` asks for one.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

from motion_loop import generate
from motion_loop.errors import UserError, run_cli

# Gradio and the Hugging Face hub read these at import: no telemetry, no version check, no hub calls.
OFFLINE_ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1",
               "GRADIO_SSR_MODE": "False"}
MIN_SECONDS, MAX_APP_SECONDS = 1.0, 60.0  # the page's slider; the CLI's checks still apply to what it sends
# Files offered for download, in this order; anything else a run writes whose name matches DOWNLOAD_EXTRA
# (the SMPL parameters of issue 16, e.g. sample00_rep00_smpl.npz) is offered after them.
DOWNLOADS = (".bvh", "results.npy", "features.npy", "run.json")
DOWNLOAD_EXTRA = ("smpl",)
EXAMPLES = ("a person walks forward", "a person runs forwards quickly", "a person does jumping jacks",
            "a person marches in place", "a person waves goodbye with both hands", "a person walks in a circle",
            "a person performs full squats with their hands behind their head")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, as python -m sample
        self.exit(2, f"error: {message} (see python -m motion_loop.app --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m motion_loop.app", description=__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for the whole network)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--share", action=argparse.BooleanOptionalAction, default=False,
                   help="also make a public gradio.live link through Gradio's tunnel (default off; needs internet)")
    p.add_argument("--output_root", type=Path, default=Path("outputs/app"),
                   help="each request writes a folder here, named as python -m sample names it (default outputs/app)")
    p.add_argument("--model_path", type=Path, default=None,
                   help=f"MDM checkpoint (default: {generate.OFFICIAL_MODEL} when present, else the bundled demo model)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or N (default: cuda when available, else cpu)")
    p.add_argument("--clip_weights", type=Path, default=None, help="CLIP ViT-B-32.pt for CLIP models")
    p.add_argument("--stats_dir", type=Path, default=None, help="folder with HumanML3D Mean.npy/Std.npy")
    p.add_argument("--caption_bank", action=argparse.BooleanOptionalAction, default=True,
                   help="the demo model reads each prompt as its closest training caption (default on)")
    return p


# ----------------------------------------------------------------------------------------------
# One request: the page's values -> python -m sample's arguments -> its outputs


@dataclass
class Outcome:
    folder: Path
    video: str | None
    report: str
    files: list[str]
    log: str


class Demo:
    """The loaded model and what each request from the page runs."""

    def __init__(self, options: argparse.Namespace):
        self.options = options
        self.defaults = generate.build_parser().parse_args([])
        self.cache: dict = {}
        self.output_root = options.output_root.resolve()

    def load(self) -> str:
        """Load the model and its text encoder once (startup); a word on which model it is."""
        args = self.sample_args()
        device = generate.resolve_device(args.device)
        model_path, why = generate.resolve_model_path(args.model_path)
        loaded = generate.cached_model(self.cache, model_path, device, args)
        generate.load_stats(args.stats_dir, model_path, loaded.config.dataset)  # missing Mean/Std: fail now
        generate.cached_text_encoder(self.cache, loaded, model_path, device, args)
        return f"{model_path.parent.name}/{model_path.name} ({why.split(' (')[0]}) on {device}"

    def sample_args(self, **values) -> argparse.Namespace:
        """``python -m sample``'s arguments: its defaults, the server's model flags, the page's values."""
        args = argparse.Namespace(**vars(self.defaults))
        for name in ("model_path", "device", "clip_weights", "stats_dir", "caption_bank"):
            setattr(args, name, getattr(self.options, name))
        for name, value in values.items():
            setattr(args, name, value)
        return args

    def request(self, prompt, seconds, loop, seed, steps, guidance, repetitions=1) -> Outcome:
        """Sample and write one request; a :class:`UserError` names what to change."""
        args = self.sample_args(
            text_prompt=prompt if prompt is not None else "",
            motion_length=_number("length", seconds), loop=bool(loop),
            seed=_whole("seed", seed), steps=_whole("steps", steps),
            guidance_param=_number("guidance", guidance), num_repetitions=_whole("samples", repetitions),
            progress=True)
        generate.read_prompts(args)  # the CLI's checks, before a folder is named after the prompt
        generate.check_numbers(args)
        args.output_dir = self.fresh_folder(args)
        log = io.StringIO()
        with contextlib.redirect_stdout(_Tee(log, sys.stdout)):
            result = generate.run(args, self.cache)
        return Outcome(result["output_dir"], self.video(result), report(result["metadata"]),
                       downloads(result["written"]), log.getvalue())

    def fresh_folder(self, args) -> Path:
        """``python -m sample``'s folder name under --output_root, numbered when taken (nothing is overwritten)."""
        model_path, _ = generate.resolve_model_path(args.model_path)  # as run() resolves it (run.json says why)
        name = generate.default_output_dir(model_path, args.seed, args.text_prompt).name
        out, k = self.output_root / name, 2
        while out.exists():
            out, k = self.output_root / f"{name}_{k}", k + 1
        return out

    @staticmethod
    def video(result: dict) -> str | None:
        written = result["written"]
        for name in ("sample00.mp4", "sample00_rep00.mp4", "sample00_rep00.gif"):  # the side-by-side one first
            if name in written:
                return str(written[name])
        return None


def _number(name: str, value) -> float:
    if value is None or isinstance(value, str) and not value.strip():
        raise UserError(f"{name} is empty: enter a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be a number, got {value!r}") from None


def _whole(name: str, value) -> int:
    number = _number(name, value)
    if not math.isfinite(number) or number != int(number):
        raise UserError(f"{name} must be a whole number, got {value}")
    return int(number)


class _Tee(io.TextIOBase):
    def __init__(self, *streams):
        self.streams = streams

    def write(self, text):
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self):
        for stream in self.streams:
            stream.flush()


def downloads(written: dict) -> list[str]:
    """The files the page offers, BVH first; SMPL parameters too once a run writes them."""
    names = [n for suffix in DOWNLOADS for n in sorted(written) if n.endswith(suffix)]
    names += [n for n in sorted(written) if n not in names and any(tag in n.lower() for tag in DOWNLOAD_EXTRA)]
    return [str(written[n]) for n in names]


def report(meta: dict) -> str:
    """The run in a few lines of Markdown: what the model read, the layout, the seam report."""
    lines = []
    if meta.get("read_as"):
        lines.append(f"The demo model read the prompt as its training caption *\"{meta['read_as'][0]}\"*.")
    layout = meta.get("layout")
    kind = "loop" if meta["loop"] else "motion"
    shape = (f", {layout['n_windows']} windows of {layout['window']} frames overlapping by {layout['overlap']}"
             if layout else "")
    lines.append(f"{meta['frames'] / meta['fps']:.2f} s {kind} ({meta['frames']} frames{shape}), "
                 f"{meta['steps']} {generate.SAMPLER_TITLES.get(meta['sampler'], meta['sampler'])} steps, "
                 f"guidance {meta['guidance_param']}, "
                 f"seed {meta['seed']}: sampled in {meta['sampling_seconds']:.1f} s.")
    seams = meta.get("seam_reports")
    if seams:
        lines += ["", "**Seam report** (the loop's seam against its interior; 1 = invisible, a clip simply "
                      "wrapped around scores 10 to 1000)", "",
                  "| sample | velocity | acceleration | jerk |", "|---|---|---|---|"]
        lines += [f"| {i} | {s['velocity_ratio']:.2f} | {s['acceleration_ratio']:.2f} | {s['jerk_ratio']:.2f} |"
                  for i, s in enumerate(seams)]
    else:
        lines.append("Not a loop: no seam report (switch *Loop* on for one).")
    skating = meta.get("foot_skating_ratio")
    if skating:
        lines.append(f"\nFoot skating ratio {skating['model']:.3f} as sampled, {skating['locked']:.3f} with the feet locked.")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# The page


def build_page(demo: Demo, loaded: str):
    import gradio as gr

    d = demo.defaults
    with gr.Blocks(title="motion_loop: text to looping motion", analytics_enabled=False) as page:
        gr.Markdown("# motion_loop\nType what the person does; watch a seamless loop; download it "
                    f"(BVH, MDM's results.npy). Model: `{loaded}`.")
        with gr.Row():
            with gr.Column(scale=1):
                prompt = gr.Textbox(label="Prompt", value="a person walks forward", lines=2, elem_id="prompt")
                seconds = gr.Slider(MIN_SECONDS, MAX_APP_SECONDS, value=d.motion_length, step=0.5,
                                    label="Length (s; a loop's period)", elem_id="length")
                loop = gr.Checkbox(value=True, label="Loop", elem_id="loop")
                with gr.Row():
                    seed = gr.Number(value=d.seed, precision=0, label="Seed", elem_id="seed")
                    steps = gr.Number(value=d.steps, precision=0, label="Steps", elem_id="steps")
                with gr.Row():
                    guidance = gr.Number(value=d.guidance_param, label="Guidance", elem_id="guidance")
                    repetitions = gr.Number(value=1, precision=0, label="Samples (side by side)",
                                            elem_id="repetitions")
                go = gr.Button("Generate", variant="primary", elem_id="generate")
                gr.Examples([[e] for e in EXAMPLES], [prompt], label="Try")
                status = gr.Markdown("", elem_id="status")
                log = gr.Textbox(label="Log", lines=6, max_lines=12, interactive=False, elem_id="log")
            with gr.Column(scale=1):
                video = gr.Video(label="Loop", autoplay=True, loop=True, interactive=False, height=420, elem_id="video")
                seam = gr.Markdown("", elem_id="report")
                files = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="downloads")

        def on_generate(prompt, seconds, loop, seed, steps, guidance, repetitions, progress=gr.Progress(track_tqdm=True)):
            progress(0, desc="queued")
            try:
                out = demo.request(prompt, seconds, loop, seed, steps, guidance, repetitions)
            except UserError as err:
                return None, "", None, "", f"**error:** {err}"
            except Exception as err:  # the page gets one line, the server's log the traceback
                traceback.print_exc()
                return None, "", None, "", f"**error:** the run failed ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); the server's log has the details"
            folder = out.folder.relative_to(Path.cwd()) if out.folder.is_relative_to(Path.cwd()) else out.folder
            return out.video, out.report, out.files, out.log, f"done: wrote `{folder}`"

        go.click(on_generate, [prompt, seconds, loop, seed, steps, guidance, repetitions],
                 [video, seam, files, log, status], concurrency_limit=1, concurrency_id="model",
                 show_progress_on=[video])  # the bar (sampling steps, then rendering) where the loop will play
    return page


def main(argv: list[str] | None = None) -> int:
    options = build_parser().parse_args(argv)

    def job():
        os.environ.update(OFFLINE_ENV)
        try:
            import gradio
        except ImportError:
            raise UserError("the web demo needs Gradio: pip install -r requirements.txt") from None
        demo = Demo(options)
        loaded = demo.load()
        print(f"model: {loaded}")
        demo.output_root.mkdir(parents=True, exist_ok=True)
        page = build_page(demo, loaded)
        page.queue(default_concurrency_limit=1)  # one request at a time; the others wait in the queue
        try:
            page.launch(server_name=options.host, server_port=options.port, share=options.share,
                        allowed_paths=[str(demo.output_root)], show_error=False, inbrowser=False,
                        ssr_mode=False, mcp_server=False, pwa=False, run_history=False, theme=gradio.themes.Default())
        except OSError as err:
            raise UserError(f"cannot listen on {options.host}:{options.port} (the port is taken or the address is not "
                            f"this machine's): pass another --port or --host") from None

    return run_cli(job, interrupted="stopped the web demo; finished requests are complete in --output_root")


if __name__ == "__main__":
    raise SystemExit(main())
