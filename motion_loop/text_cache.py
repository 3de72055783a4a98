"""Text embeddings kept on disk between runs, so a prompt seen before needs no text encoder.

Loading a frozen text encoder costs more than everything else a small model does before it samples
(MiniLM on transformers' BertModel: ~4 s to import and build on a 2-core CPU, against ~0.05 s to
read an embedding back). A :class:`EmbeddingCache` keeps each prompt's embedding as the encoder
made it (float32, bit for bit), in a folder named after everything the numbers depend on: the
encoder's kind and settings, its files (contents of the small ones, size and modification time of
the weights), the versions of the code that runs it, the device type and torch's CPU thread count
(which changes the last bits of a CPU encoder's sums). Another file, version or
device is another folder, so a stale embedding is never read.

    $MOTION_LOOP_CACHE          the cache folder (default $XDG_CACHE_HOME/motion_loop, else
                                ~/.cache/motion_loop); "off" turns the cache off

Entries are written atomically (a temporary name, then os.replace), so runs in parallel can share
the folder; a damaged entry reads as missing and is written again; a folder that cannot be written
is skipped (the run goes on without the cache). Deleting the folder is always safe.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

CACHE_ENV = "MOTION_LOOP_CACHE"
FOLDER = "text_embeddings"


def cache_root() -> Path | None:
    """The cache folder, or None when $MOTION_LOOP_CACHE is "off"."""
    configured = os.environ.get(CACHE_ENV, "").strip()
    if configured.lower() in ("off", "0", "false", "no"):
        return None
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(base) if base else Path.home() / ".cache") / "motion_loop"


def file_digest(path: Path) -> str:
    """sha256 of a (small) file's contents."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def file_stamp(path: Path) -> list[int]:
    """Size and modification time of a (large) file: what changes when it is replaced."""
    stat = Path(path).stat()
    return [stat.st_size, stat.st_mtime_ns]


def package_version(name: str) -> str:
    """A package's ``__version__`` read from its ``__init__.py`` without importing it (importing
    transformers is what the cache avoids; importlib.metadata scans every installed package)."""
    import importlib.util
    import re

    try:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin:
            return "absent"
        origin = Path(spec.origin)
        text = origin.read_text(errors="replace")
    except (ImportError, OSError, ValueError):
        return "absent"
    found = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", text, re.M)
    # no literal version: the file's size and time, which a reinstall changes
    return found.group(1) if found else "file " + ":".join(map(str, file_stamp(origin)))


class EmbeddingCache:
    """Embeddings ``[dim]`` float32 of prompts under one encoder ``identity`` (a JSON-able dict)."""

    def __init__(self, root: str | os.PathLike, identity: dict, dim: int):
        self.identity = {**identity, "torch": torch.__version__, "dim": int(dim)}
        self.root = Path(root)
        self.dim = int(dim)
        self.writable = True

    @property
    def folder(self) -> Path:
        """The identity's folder. It includes torch's CPU thread count of the moment: a CPU
        encoder's float sums split differently over 1 and 2 threads, so its embeddings (and the
        motions made from them) differ in the last bits; an entry is only ever read back under the
        thread count it was made with, so a run gives what the encoder would give it."""
        identity = {**self.identity, "cpu_threads": torch.get_num_threads()}
        key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]
        return self.root / FOLDER / key

    @classmethod
    def default(cls, identity: dict, dim: int) -> "EmbeddingCache | None":
        """The cache in :func:`cache_root` (None when turned off)."""
        root = cache_root()
        return None if root is None else cls(root, identity, dim)

    def _path(self, prompt: str) -> Path:
        return self.folder / (hashlib.sha256(prompt.encode("utf-8", "surrogatepass")).hexdigest()[:32] + ".npy")

    def get(self, prompts: list[str]) -> dict[str, Tensor]:
        """The cached embeddings among ``prompts`` (missing and unreadable ones left out)."""
        found = {}
        for prompt in prompts:
            try:
                value = np.load(self._path(prompt), allow_pickle=False)
            except (OSError, ValueError, EOFError):
                continue
            if value.shape == (self.dim,) and value.dtype == np.float32 and np.isfinite(value).all():
                found[prompt] = torch.from_numpy(value)
        return found

    def put(self, embeddings: dict[str, Tensor]) -> None:
        """Store embeddings; a folder that cannot be written turns the cache off for this run."""
        if not self.writable:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            if not (self.folder / "identity.json").is_file():
                identity = {**self.identity, "cpu_threads": torch.get_num_threads()}
                self._write(self.folder / "identity.json",
                            lambda f: f.write(json.dumps(identity, indent=1, sort_keys=True).encode()))
            for prompt, value in embeddings.items():
                array = value.detach().to("cpu", torch.float32).numpy()
                if array.shape == (self.dim,) and np.isfinite(array).all():
                    self._write(self._path(prompt), lambda f: np.save(f, array, allow_pickle=False))
        except OSError:
            self.writable = False

    def _write(self, path: Path, write) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
