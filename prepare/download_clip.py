"""Download the CLIP ViT-B/32 weights into CLIP's cache (~/.cache/clip/ViT-B-32.pt), sha256-verified.

`clip.load("ViT-B/32")` looks for the file there and then needs no network. The expected sha256
is the path component before the file name in the official URL.

    python prepare/download_clip.py
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Sequence
from urllib.parse import urlsplit

if __package__ in (None, ""):  # run as `python prepare/download_clip.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prepare._download import TIMEOUT_S, DownloadError, add_common_arguments, check_digest, install_file, run_main

CLIP_URL = ("https://openaipublic.azureedge.net/clip/models/"
            "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt")


def default_clip_dir() -> Path:
    """The folder `clip.load` downloads to and reads from by default."""
    return Path("~/.cache/clip").expanduser()


def sha256_from_url(url: str) -> str:
    """The sha256 that CLIP's URLs carry as the folder of the file: .../<sha256>/<name>.pt."""
    parts = urlsplit(url).path.rstrip("/").split("/")
    if len(parts) < 2 or not re.fullmatch(r"[0-9a-fA-F]{64}", parts[-2]):
        raise DownloadError(f"{url} does not have the form .../<sha256>/<file>, so the download cannot be "
                            "verified: give a URL of that form")
    return parts[-2].lower()


def download_clip(dest: Path | None = None, *, url: str = CLIP_URL, force: bool = False,
                  timeout: float = TIMEOUT_S) -> str:
    """Fetch `url` into `dest` (default ~/.cache/clip) under its own file name; returns a status line."""
    sha256 = sha256_from_url(url)
    target = Path(dest if dest is not None else default_clip_dir()) / urlsplit(url).path.rsplit("/", 1)[-1]
    status = install_file(target, [url], lambda path: check_digest(path, "sha256", sha256),
                          "CLIP ViT-B/32 weights", force=force, timeout=timeout)
    return f"CLIP ViT-B/32: {status}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, default=None,
                        help=f"folder that receives ViT-B-32.pt (default {default_clip_dir()}, where clip.load "
                             "looks)")
    parser.add_argument("--url", default=CLIP_URL,
                        help="URL of the weights, of the form .../<sha256>/ViT-B-32.pt (default: OpenAI's)")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    return run_main([lambda: download_clip(args.dest, url=args.url, force=args.force, timeout=args.timeout)])


if __name__ == "__main__":
    sys.exit(main())
