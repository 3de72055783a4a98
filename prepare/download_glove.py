"""Download the GloVe word vectors of the HumanML3D evaluators (Google Drive, via gdown) into glove/.

Only the evaluation models use them (our_vab_data.npy, our_vab_words.pkl, our_vab_idx.pkl);
sampling does not.

    python prepare/download_glove.py
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):  # run as `python prepare/download_glove.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prepare._download import TIMEOUT_S, check_folder, drive_folder_main, install_drive_zip

DEFAULT_DEST = Path("glove")
DRIVE_ID = "1cmXKUT31pqd7_XpJAiWEo1K81TMYHA5n"
REQUIRED = ("our_vab_data.npy", "our_vab_words.pkl", "our_vab_idx.pkl")


def download_glove(dest: Path = DEFAULT_DEST, *, url: str | None = None, force: bool = False,
                   timeout: float = TIMEOUT_S) -> str:
    """Install the GloVe files as the folder `dest`; `url` replaces the Google Drive link. Returns a status line."""
    status = install_drive_zip(Path(dest), DRIVE_ID, lambda folder: check_folder(folder, REQUIRED), "GloVe",
                               url=url, force=force, timeout=timeout)
    return f"GloVe: {status}"


def main(argv: Sequence[str] | None = None) -> int:
    return drive_folder_main(argv, __doc__, download_glove, DEFAULT_DEST, "folder that receives the our_vab_* files")


if __name__ == "__main__":
    sys.exit(main())
