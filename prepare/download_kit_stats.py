"""Download KIT-ML's feature statistics Mean.npy and Std.npy (251 features) into dataset/KIT-ML/.

KIT models (kit_trans_enc_512) read and write features normalized by these, as MDM does from
dataset/KIT-ML/. They come from the KIT-ML Google Drive folder that the HumanML3D README links
(id 1MnixfyGfujSP-4t8w_2QvjtTVpEKr97t): the folder is listed with gdown and only these two small
files are fetched (not the dataset's archives). Each is checked to load as float32 (251,), finite,
with a positive Std. No published checksum exists for them, so none is checked.

    python prepare/download_kit_stats.py
    python prepare/download_kit_stats.py --url https://my.mirror/KIT-ML   # BASE/Mean.npy, BASE/Std.npy
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):  # run as `python prepare/download_kit_stats.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prepare._download import (
    GDOWN_PIN, TIMEOUT_S, DownloadError, add_common_arguments, drive_url, install_file, probe, run_main,
)

DEFAULT_DEST = Path("dataset/KIT-ML")
DRIVE_FOLDER_ID = "1MnixfyGfujSP-4t8w_2QvjtTVpEKr97t"
FOLDER_URL = f"https://drive.google.com/drive/folders/{DRIVE_FOLDER_ID}"
NAMES = ("Mean.npy", "Std.npy")
FEATURE_DIM = 251


def check_kit_stats_file(path: Path, name: str = "Mean.npy") -> str | None:
    """None when ``path`` loads as a finite float32 array of shape (251,) (a positive one for Std.npy)."""
    import numpy as np

    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError):
        return "does not load as a .npy array"
    if array.dtype != np.float32 or array.shape != (FEATURE_DIM,):
        return f"holds {array.dtype} {tuple(array.shape)}, expected float32 ({FEATURE_DIM},)"
    if not np.all(np.isfinite(array)):
        return "contains NaN or infinite values"
    if name == "Std.npy" and np.any(array <= 0):
        return "has zero or negative entries"
    return None


def drive_folder_files(folder_id: str = DRIVE_FOLDER_ID, timeout: float = TIMEOUT_S) -> dict[str, str]:
    """Name -> Google Drive file id of the files at the top of a shared Drive folder (gdown's listing)."""
    try:
        import gdown
    except ImportError:
        raise DownloadError(f"gdown is not installed (pip install {GDOWN_PIN})") from None
    url = f"https://drive.google.com/drive/folders/{folder_id}"
    probe(url, timeout)  # fail fast offline
    try:
        entries = gdown.download_folder(id=folder_id, skip_download=True, quiet=True, use_cookies=False,
                                        timeout=timeout)
    except Exception as error:  # gdown raises requests' and its own types; all mean "no listing"
        raise DownloadError(f"gdown could not list {url} ({type(error).__name__}: {error})") from None
    return {Path(entry.path).name: entry.id for entry in entries or [] if "/" not in entry.path.strip("/")}


def download_kit_stats(dest: Path = DEFAULT_DEST, *, mirrors: Sequence[str] | None = None, force: bool = False,
                       timeout: float = TIMEOUT_S) -> list[str]:
    """Fetch Mean.npy and Std.npy into ``dest``: from ``<mirror>/<name>`` when mirrors are given, else
    from the KIT-ML Drive folder. One status line per file; DownloadError at the first failure."""
    dest = Path(dest)
    advice = f"download Mean.npy and Std.npy by hand from {FOLDER_URL} into {dest}/"
    todo = [name for name in NAMES if force or not (dest / name).is_file()]
    ids = drive_folder_files(timeout=timeout) if todo and not mirrors else {}
    lines = []
    for name in NAMES:
        if mirrors:
            urls = [f"{mirror.rstrip('/')}/{name}" for mirror in mirrors]
        elif name in ids:
            urls = [drive_url(ids[name])]
        elif name in todo:
            raise DownloadError(f"the KIT-ML folder {FOLDER_URL} has no {name} at its top; {advice}")
        else:
            urls = [FOLDER_URL]  # already present: install_file only checks it
        status = install_file(dest / name, urls, lambda path, name=name: check_kit_stats_file(path, name),
                              f"KIT-ML {name}", force=force, timeout=timeout, advice=advice)
        lines.append(f"KIT-ML {name}: {status}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST,
                        help=f"folder that receives Mean.npy and Std.npy (default {DEFAULT_DEST})")
    parser.add_argument("--url", action="append", metavar="BASE_URL",
                        help="base URL the files are fetched from as BASE_URL/Mean.npy; repeat for several "
                             "mirrors, tried in order (default: the KIT-ML Google Drive folder)")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    return run_main([lambda: download_kit_stats(args.dest, mirrors=args.url, force=args.force,
                                                timeout=args.timeout)])


if __name__ == "__main__":
    sys.exit(main())
