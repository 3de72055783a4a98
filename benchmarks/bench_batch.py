"""Motion libraries on Ray: motions per minute of python -m motion_loop.batch with 1 and 2 local workers.

40 prompts (the demo model's kinds of motion in varied words) x 1 repetition of a 6 s loop with the
bundled demo model and the defaults of python -m sample (its sampler and steps, foot locking, MP4 and BVH
written): what a studio's run does. One local Ray serves every run; each run starts its own workers,
which load the model, and that start-up is counted (end to end) and also left out (after the first
worker is ready). Each run writes a fresh library in a temporary folder.

    python benchmarks/bench_batch.py [--workers 1 2] [--prompts 40] [--steps 30] [--no-render]

Other flags go to python -m motion_loop.batch as they are (e.g. --model_path, --gpus_per_worker).

On a machine shared with other work the numbers move with the load: the load average is printed
before and after each run.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from motion_loop.sampling import DEFAULT_STEPS  # noqa: E402 (after the path)

PROMPTS = [
    "a person walks forward", "someone walks slowly", "a man strolls ahead", "a woman walks briskly forward",
    "a person runs forward", "someone jogs", "a man sprints ahead", "a person runs in place",
    "a person marches in place", "a soldier marches", "someone marches with high knees",
    "a person jumps in place", "someone hops up and down", "a man jumps forward",
    "a person does jumping jacks", "someone does star jumps",
    "a person waves with the right hand", "someone waves hello", "a woman waves both arms",
    "a person does squats", "someone squats down and stands up", "a man does deep knee bends",
    "a person kicks with the right leg", "someone kicks forward", "a fighter kicks",
    "a person punches forward", "a boxer throws punches", "someone punches with both fists",
    "a person steps to the side", "someone side steps to the left", "a man shuffles sideways",
    "a person circles the arms", "someone does arm circles",
    "a person walks in a circle", "someone walks around in a circle", "a man jogs in a circle",
    "a person turns around", "someone turns to the left", "a woman spins around", "a person turns in place",
]


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to time (default 1 2)")
    p.add_argument("--prompts", type=int, default=40, help=f"prompts, at most {len(PROMPTS)} (default 40)")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                   help=f"sampler steps (default {DEFAULT_STEPS}, python -m sample's)")
    p.add_argument("--motion_length", type=float, default=6.0, help="loop period in seconds (default 6)")
    p.add_argument("--batch_size", type=int, default=8, help="motions per worker call (default 8)")
    p.add_argument("--render", action=argparse.BooleanOptionalAction, default=True, help="write MP4s (default on)")
    args, passed_on = p.parse_known_args(argv)

    import ray

    from motion_loop import batch

    started_ray = not ray.is_initialized()
    if started_ray:
        t = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR", log_to_driver=False,
                 object_store_memory=256 * 1024**2, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
        print(f"local Ray started in {time.perf_counter() - t:.1f} s ({os.cpu_count()} CPUs)")
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench_batch_") as tmp:
            prompts = Path(tmp) / "prompts.txt"
            prompts.write_text("\n".join(PROMPTS[: args.prompts]) + "\n")
            for workers in args.workers:
                cli = ["--input_text", str(prompts), "--output_dir", str(Path(tmp) / f"library_{workers}"),
                       "--loop", "--motion_length", str(args.motion_length), "--num_repetitions", "1",
                       "--steps", str(args.steps), "--batch_size", str(args.batch_size), "--num_workers", str(workers),
                       "--no-progress", "--render" if args.render else "--no-render"]
                cli += passed_on
                load_before = os.getloadavg()[0]
                result = batch.run(batch.build_parser().parse_args(cli))
                load_after = os.getloadavg()[0]
                made, seconds = len(result["made"]), result["seconds"]
                startup = min(w["ready_seconds"] for w in result["workers"])
                rows.append({"workers": workers, "motions": made, "seconds": seconds, "startup": startup,
                             "per_minute": made / seconds * 60, "after_startup": made / (seconds - startup) * 60,
                             "load": (load_before, load_after)})
    finally:
        if started_ray:
            ray.shutdown()

    render = "MP4 + BVH" if args.render else "no video"
    print(f"\n{args.prompts} prompts x 1, {args.motion_length:g} s loops, {args.steps} sampler steps, batches of "
          f"{args.batch_size}, {render}")
    print("| workers | motions | seconds | motions/min | first worker ready (s) | motions/min after start-up | load avg before/after |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['workers']} | {r['motions']} | {r['seconds']:.1f} | {r['per_minute']:.1f} | {r['startup']:.1f} "
              f"| {r['after_startup']:.1f} | {r['load'][0]:.1f} / {r['load'][1]:.1f} |")
    if len(rows) > 1:
        print(f"speed-up of {rows[-1]['workers']} workers over {rows[0]['workers']}: "
              f"{rows[-1]['per_minute'] / rows[0]['per_minute']:.2f}x end to end, "
              f"{rows[-1]['after_startup'] / rows[0]['after_startup']:.2f}x after start-up")
    return rows


if __name__ == "__main__":
    main()
