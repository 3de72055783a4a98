"""Download the official MDM checkpoints (Google Drive, via gdown) into save/.

Each checkpoint is a zip that unpacks to save/<model>/ with args.json and model*.pt; the zip is
verified, unpacked, checked and removed.

    python prepare/download_mdm.py                      # save/humanml_trans_enc_512/
    python prepare/download_mdm.py --model humanml_trans_dec_512_bert-50steps
    python prepare/download_mdm.py --model all

`--model` takes the release name of MDM's README or the folder name. Every text-to-motion release
(Google Drive ids from the official README, GuyTevet/motion-diffusion-model):

| release (README)                    | folder under save/            | Drive file id                      |
|-------------------------------------|-------------------------------|------------------------------------|
| humanml-encoder-512                 | humanml_trans_enc_512         | 1PE0PK8e5a5j-7-Xhs5YET5U5pGh0c821  |
| humanml-encoder-512-50steps         | humanml_enc_512_50steps       | 1cfadR1eZ116TIdXK7qDX1RugAerEiJXr  |
| humanml_trans_dec_512_bert-50steps  | humanml_trans_dec_512_bert    | 1z5IW5Qa9u9UdkckKylkcSXCwIYgLPhIC  |
| humanml-decoder-512                 | humanml_trans_dec_512         | 1q3soLadvVh7kJuJPd2cegMNY2xVuVudj  |
| humanml-decoder-with-emb-512        | humanml_trans_dec_emb_512     | 1GnsW0K3UjuOkNkAWmjrGIUmeDDZrmPE5  |
| kit-encoder-512                     | kit_trans_enc_512             | 1SHCRcE0es31vkJMLGf9dyLe7YsWj7pNL  |

The DistilBERT model needs DistilBERT's files too (prepare/download_distilbert.py), KIT models
KIT-ML's Mean/Std (prepare/download_kit_stats.py). The folder names of the three 2022 decoder/KIT
zips follow the official naming (arch_dataset_latent); if a zip unpacks to another single folder,
it is installed under the name above.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):  # run as `python prepare/download_mdm.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prepare._download import TIMEOUT_S, DownloadError, add_common_arguments, check_folder, install_drive_zip, run_main

DEFAULT_DEST = Path("save")


@dataclass(frozen=True)
class Checkpoint:
    """An official MDM release: the folder it unpacks to and its Google Drive file."""

    name: str  # folder under save/
    drive_id: str
    release: str  # the name MDM's README gives it


CHECKPOINTS = {c.name: c for c in (
    Checkpoint("humanml_trans_enc_512", "1PE0PK8e5a5j-7-Xhs5YET5U5pGh0c821", "humanml-encoder-512"),
    Checkpoint("humanml_enc_512_50steps", "1cfadR1eZ116TIdXK7qDX1RugAerEiJXr", "humanml-encoder-512-50steps"),
    Checkpoint("humanml_trans_dec_512_bert", "1z5IW5Qa9u9UdkckKylkcSXCwIYgLPhIC", "humanml_trans_dec_512_bert-50steps"),
    Checkpoint("humanml_trans_dec_512", "1q3soLadvVh7kJuJPd2cegMNY2xVuVudj", "humanml-decoder-512"),
    Checkpoint("humanml_trans_dec_emb_512", "1GnsW0K3UjuOkNkAWmjrGIUmeDDZrmPE5", "humanml-decoder-with-emb-512"),
    Checkpoint("kit_trans_enc_512", "1SHCRcE0es31vkJMLGf9dyLe7YsWj7pNL", "kit-encoder-512"),
)}
RELEASES = {c.release: c.name for c in CHECKPOINTS.values()}  # README name -> folder name
DEFAULT_MODEL = "humanml_trans_enc_512"


def check_checkpoint_folder(folder: Path) -> str | None:
    """None when `folder` holds an args.json that parses as a JSON object and a non-empty model*.pt."""
    problem = check_folder(folder, ("args.json", "model*.pt"))
    if problem is not None:
        return problem
    try:
        args = json.loads((folder / "args.json").read_text())
    except (ValueError, OSError):
        return "has an args.json that is not valid JSON"
    return None if isinstance(args, dict) else "has an args.json that is not a JSON object"


def download_mdm(model: str = DEFAULT_MODEL, dest: Path = DEFAULT_DEST, *, url: str | None = None,
                 force: bool = False, timeout: float = TIMEOUT_S) -> str:
    """Install checkpoint `model` (folder or release name) as `dest/<folder>/`; `url` replaces its Google
    Drive link. Returns a status line."""
    model = RELEASES.get(model, model)
    if model not in CHECKPOINTS:
        raise DownloadError(f"unknown model {model!r}: choose one of {', '.join(RELEASES)}")
    checkpoint = CHECKPOINTS[model]
    status = install_drive_zip(Path(dest) / checkpoint.name, checkpoint.drive_id, check_checkpoint_folder,
                               f"MDM checkpoint {checkpoint.release}", url=url, force=force, timeout=timeout)
    return f"MDM {checkpoint.name}: {status}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=[*RELEASES, *CHECKPOINTS, "all"], default=DEFAULT_MODEL, metavar="NAME",
                        help=f"which checkpoint to download (release name: {', '.join(RELEASES)}; or its folder "
                             f"name), or all of them (default {DEFAULT_MODEL})")
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST,
                        help=f"folder that receives the checkpoint folder <model>/ (default {DEFAULT_DEST})")
    parser.add_argument("--url", default=None,
                        help="download the zip from this URL instead of its Google Drive link (one model only)")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    if args.url is not None and args.model == "all":
        parser.error("--url names one zip: use it with one --model, not all")
    models = list(CHECKPOINTS) if args.model == "all" else [args.model]
    return run_main([lambda m=m: download_mdm(m, args.dest, url=args.url, force=args.force, timeout=args.timeout)
                     for m in models])


if __name__ == "__main__":
    sys.exit(main())
