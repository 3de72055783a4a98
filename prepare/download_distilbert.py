"""Download DistilBERT (distilbert-base-uncased) for MDM+DistilBERT checkpoints into deps/distilbert-base-uncased/.

The official humanml_trans_dec_512_bert model encodes prompts with this frozen model
(`text_encoder_type bert`); motion_loop runs it through transformers from these local files and
never contacts the Hugging Face hub while sampling. Each file is checked after download
(the model's weights load as DistilBERT's, the vocabulary has 30522 entries).

    python prepare/download_distilbert.py
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):  # run as `python prepare/download_distilbert.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prepare._download import TIMEOUT_S, add_common_arguments, install_file, run_main

DEFAULT_DEST = Path("deps/distilbert-base-uncased")
HUB_URL = "https://huggingface.co/distilbert/distilbert-base-uncased/resolve/main"
VOCAB_SIZE = 30522
# The last layer's keys: present only in a complete 6-layer DistilBERT.
LAST_LAYER_KEY = "transformer.layer.5.output_layer_norm.weight"


def _check_json(path: Path, key: str | None = None, value: str | None = None) -> str | None:
    try:
        data = json.loads(path.read_text())
    except (ValueError, OSError, UnicodeDecodeError):
        return "is not valid JSON"
    if key is not None and data.get(key) != value:
        return f"is not DistilBERT's ({key} is {data.get(key)!r}, expected {value!r})"
    return None


def _check_vocab(path: Path) -> str | None:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return "is not a text file"
    return None if len(lines) == VOCAB_SIZE else f"has {len(lines)} entries, expected {VOCAB_SIZE}"


def _check_weights(path: Path) -> str | None:
    try:
        from safetensors import safe_open

        with safe_open(str(path), "pt") as weights:
            keys = set(weights.keys())
    except Exception as error:  # any failure to parse means a damaged download
        return f"does not load as safetensors ({type(error).__name__})"
    keys = {k.removeprefix("distilbert.") for k in keys}
    return None if LAST_LAYER_KEY in keys else f"lacks {LAST_LAYER_KEY!r} (not a 6-layer DistilBERT)"


CHECKS = {
    "config.json": lambda p: _check_json(p, "model_type", "distilbert"),
    "tokenizer_config.json": _check_json,
    "tokenizer.json": _check_json,
    "vocab.txt": _check_vocab,
    "model.safetensors": _check_weights,
}


def download_distilbert(dest: Path = DEFAULT_DEST, *, base_url: str = HUB_URL, force: bool = False,
                        timeout: float = TIMEOUT_S) -> list[str]:
    """Fetch each of :data:`CHECKS`' files from ``<base_url>/<name>`` into ``dest``; one status line each."""
    lines = []
    for name, check in CHECKS.items():
        status = install_file(Path(dest) / name, [f"{base_url.rstrip('/')}/{name}"], check, f"DistilBERT {name}",
                              force=force, timeout=timeout)
        lines.append(f"DistilBERT {name}: {status}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST,
                        help=f"folder that receives the model files (default {DEFAULT_DEST})")
    parser.add_argument("--url", default=HUB_URL,
                        help="base URL the files are fetched from as URL/config.json ... (default: the Hugging Face hub)")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    return run_main([lambda: download_distilbert(args.dest, base_url=args.url, force=args.force,
                                                 timeout=args.timeout)])


if __name__ == "__main__":
    sys.exit(main())
