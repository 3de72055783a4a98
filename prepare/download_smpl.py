"""Download the SMPL body model files MDM uses (Google Drive, via gdown) into body_models/smpl/.

Optional: only SMPL mesh fitting needs them (SMPL_NEUTRAL.pkl and helpers); sampling and the
stick-figure videos do not. The SMPL model itself is under the SMPL licence (smpl.is.tue.mpg.de).

    python prepare/download_smpl.py
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):  # run as `python prepare/download_smpl.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prepare._download import TIMEOUT_S, check_folder, drive_folder_main, install_drive_zip

DEFAULT_DEST = Path("body_models/smpl")
DRIVE_ID = "1INYlGA76ak_cKGzvpOV2Pe6RkYTlXTW2"
REQUIRED = ("SMPL_NEUTRAL.pkl",)


def download_smpl(dest: Path = DEFAULT_DEST, *, url: str | None = None, force: bool = False,
                  timeout: float = TIMEOUT_S) -> str:
    """Install the SMPL files as the folder `dest`; `url` replaces the Google Drive link. Returns a status line."""
    status = install_drive_zip(Path(dest), DRIVE_ID, lambda folder: check_folder(folder, REQUIRED), "the SMPL files",
                               url=url, force=force, timeout=timeout)
    return f"SMPL files: {status}"


def main(argv: Sequence[str] | None = None) -> int:
    return drive_folder_main(argv, __doc__, download_smpl, DEFAULT_DEST,
                             "folder that receives SMPL_NEUTRAL.pkl and the other files")


if __name__ == "__main__":
    sys.exit(main())
