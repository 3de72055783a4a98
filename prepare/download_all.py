"""Download everything sampling needs: the MDM checkpoint humanml_trans_enc_512, HumanML3D Mean/Std, CLIP ViT-B/32.

Each download runs even when an earlier one failed; one status line each, exit code 2 if any failed.
SMPL files and GloVe are optional (prepare/download_smpl.py, prepare/download_glove.py).

    python prepare/download_all.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence, TextIO

if __package__ in (None, ""):  # run as `python prepare/download_all.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prepare._download import EXIT_FAILURE, TIMEOUT_S, DownloadError, add_common_arguments, one_line
from prepare.download_clip import download_clip
from prepare.download_humanml_stats import download_humanml_stats
from prepare.download_mdm import download_mdm

Step = Callable[[], "str | Sequence[str]"]


def sampling_steps(force: bool = False, timeout: float = TIMEOUT_S) -> list[tuple[str, Step]]:
    """The downloads sampling needs, as (name, step) pairs with the default destinations."""
    return [
        ("MDM humanml_trans_enc_512", lambda: download_mdm("humanml_trans_enc_512", force=force, timeout=timeout)),
        ("HumanML3D Mean/Std", lambda: download_humanml_stats(force=force, timeout=timeout)),
        ("CLIP ViT-B/32", lambda: download_clip(force=force, timeout=timeout)),
    ]


def run_all(steps: Sequence[tuple[str, Step]], out: TextIO | None = None) -> int:
    """Run every step, even after a failure; print `ok: <status>` or `FAILED: <name>: <why>` for each.

    Returns 0 when all succeeded, else EXIT_FAILURE.
    """
    out = out if out is not None else sys.stdout
    failed = 0
    for name, step in steps:
        try:
            status = step()
        except DownloadError as error:
            failed += 1
            print(f"FAILED: {name}: {error}", file=out, flush=True)
            continue
        except Exception as error:  # a bug in one step must not stop the others; its type is named
            failed += 1
            print(f"FAILED: {name}: {type(error).__name__}: {one_line(error)}", file=out, flush=True)
            continue
        print(f"ok: {'; '.join([status] if isinstance(status, str) else status)}", file=out, flush=True)
    return EXIT_FAILURE if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    return run_all(sampling_steps(force=args.force, timeout=args.timeout))


if __name__ == "__main__":
    sys.exit(main())
