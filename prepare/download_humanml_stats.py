"""Download HumanML3D's feature statistics Mean.npy and Std.npy into dataset/HumanML3D/.

They come from the HumanML3D repository (two URL forms of the same files are tried in turn) and
are verified by md5 and by loading as float32 arrays of shape (263,).

    python prepare/download_humanml_stats.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Mapping, Sequence

if __package__ in (None, ""):  # run as `python prepare/download_humanml_stats.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prepare._download import TIMEOUT_S, add_common_arguments, check_digest, install_file, run_main

DEFAULT_DEST = Path("dataset/HumanML3D")
MIRRORS = (
    "https://github.com/EricGuo5513/HumanML3D/raw/main/HumanML3D",
    "https://raw.githubusercontent.com/EricGuo5513/HumanML3D/main/HumanML3D",
)
MD5 = {"Mean.npy": "e79220c8e67f1772dd24ff6ff05bc69d", "Std.npy": "9d8408ba0272bb40d673b51de1e24f14"}
FEATURE_DIM = 263


def check_stats_file(path: Path, md5: str) -> str | None:
    """None when `path` has the md5 `md5` and loads as a float32 array of shape (263,), else the problem."""
    problem = check_digest(path, "md5", md5)
    if problem is not None:
        return problem
    import numpy as np

    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError):
        return "does not load as a .npy array"
    if array.dtype != np.float32 or array.shape != (FEATURE_DIM,):
        return f"holds {array.dtype} {tuple(array.shape)}, expected float32 ({FEATURE_DIM},)"
    return None


def download_humanml_stats(dest: Path = DEFAULT_DEST, *, mirrors: Sequence[str] = MIRRORS,
                           md5: Mapping[str, str] = MD5, force: bool = False,
                           timeout: float = TIMEOUT_S) -> list[str]:
    """Fetch each file named in `md5` (Mean.npy, Std.npy) from `<mirror>/<name>` into `dest`.

    Returns one status line per file; raises DownloadError at the first file that fails.
    """
    lines = []
    advice = (f"download HumanML3D {' and '.join(md5)} by hand from {mirrors[0].rstrip('/')}/ into "
              f"{Path(dest)}/" if mirrors else None)
    for name, digest in md5.items():
        status = install_file(Path(dest) / name, [f"{mirror.rstrip('/')}/{name}" for mirror in mirrors],
                              lambda path, digest=digest: check_stats_file(path, digest),
                              f"HumanML3D {name}", force=force, timeout=timeout, advice=advice)
        lines.append(f"HumanML3D {name}: {status}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST,
                        help=f"folder that receives Mean.npy and Std.npy (default {DEFAULT_DEST})")
    parser.add_argument("--url", action="append", metavar="BASE_URL",
                        help="base URL the files are fetched from as BASE_URL/Mean.npy; repeat for several "
                             "mirrors, tried in order (default: the HumanML3D GitHub repository, two URL forms)")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    return run_main([lambda: download_humanml_stats(args.dest, mirrors=args.url or MIRRORS, force=args.force,
                                                    timeout=args.timeout)])


if __name__ == "__main__":
    sys.exit(main())
