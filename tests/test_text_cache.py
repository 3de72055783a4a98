"""The on-disk text-embedding cache (motion_loop.text_cache) and the MiniLM built only on a miss."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from motion_loop.mdm import MDMConfig
from motion_loop.text_cache import CACHE_ENV, EmbeddingCache, cache_root, package_version
from motion_loop.text_encoders import MiniLMTextEncoder, text_encoder_for

ROOT = Path(__file__).resolve().parents[1]


def test_round_trip_is_bit_exact_and_keyed_by_identity(tmp_path):
    cache = EmbeddingCache(tmp_path, {"encoder": "x", "weights": [1, 2]}, dim=4)
    value = torch.tensor([0.1, -2.5, 3.0, 1e-8])
    cache.put({"a person walks": value, "ünïcode ✓": value * 2})
    got = cache.get(["a person walks", "ünïcode ✓", "never seen"])
    assert set(got) == {"a person walks", "ünïcode ✓"}
    assert torch.equal(got["a person walks"], value) and got["a person walks"].dtype == torch.float32
    other = EmbeddingCache(tmp_path, {"encoder": "x", "weights": [1, 3]}, dim=4)  # other weights: other folder
    assert other.get(["a person walks"]) == {} and other.folder != cache.folder
    assert EmbeddingCache(tmp_path, {"encoder": "x", "weights": [1, 2]}, dim=4).get(["a person walks"])


def test_damaged_or_foreign_entries_read_as_missing(tmp_path):
    cache = EmbeddingCache(tmp_path, {"encoder": "x"}, dim=3)
    cache.put({"ok": torch.ones(3), "bad": torch.ones(3), "nan": torch.ones(3)})
    cache._path("bad").write_bytes(b"not an array")
    np.save(cache._path("nan"), np.array([np.nan, 0, 0], np.float32))
    np.save(cache._path("ok2"), np.ones(5, np.float32))                 # wrong size
    assert set(cache.get(["ok", "bad", "nan", "ok2"])) == {"ok"}
    cache.put({"bad": torch.zeros(3)})                                  # written again
    assert torch.equal(cache.get(["bad"])["bad"], torch.zeros(3))
    assert sorted(p.name for p in cache.folder.iterdir() if p.name.startswith(".")) == []  # no temp files left


def test_unwritable_folder_turns_the_cache_off_quietly(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the folder should be")
    cache = EmbeddingCache(blocker, {"encoder": "x"}, dim=2)
    cache.put({"p": torch.ones(2)})
    assert cache.writable is False and cache.get(["p"]) == {}


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    monkeypatch.setenv(CACHE_ENV, "off")
    assert cache_root() is None and EmbeddingCache.default({}, 2) is None
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "motion_loop"
    assert package_version("no_such_package_x") == "absent"


def test_package_version_is_read_without_importing(tmp_path, monkeypatch):
    (tmp_path / "fake_pkg_a").mkdir()
    (tmp_path / "fake_pkg_a" / "__init__.py").write_text('raise SystemExit("imported")\n__version__ = "1.2.3"\n')
    (tmp_path / "fake_pkg_b").mkdir()
    (tmp_path / "fake_pkg_b" / "__init__.py").write_text("from .version import __version__\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert package_version("fake_pkg_a") == "1.2.3"
    stamp = package_version("fake_pkg_b")
    assert stamp.startswith("file ")
    (tmp_path / "fake_pkg_b" / "__init__.py").write_text("from .version import __version__  # 2.0\n")
    assert package_version("fake_pkg_b") != stamp


class Loaded:  # what load_model returns, as far as text_encoder_for reads it
    path = "model.pt"
    config = MDMConfig(text_dim=384, text_encoder_type="minilm")


def test_minilm_is_built_only_for_a_prompt_not_seen_before():
    first = text_encoder_for(Loaded)
    assert isinstance(first, MiniLMTextEncoder) and "bert" not in first._modules  # nothing loaded yet
    assert first.dim == 384 and first.device == torch.device("cpu")
    walk = first.encode(["a person walks forward"])
    assert "bert" in first._modules                                     # a new prompt: built and stored
    second = text_encoder_for(Loaded)                                    # the next run
    again = second.encode(["a person walks forward", "a person walks forward"])
    assert "bert" not in second._modules                                 # read back, nothing built
    assert torch.equal(again[0], walk[0]) and torch.equal(again[1], walk[0])
    assert torch.equal(walk[0], MiniLMTextEncoder().encode(["a person walks forward"])[0])  # what the encoder gives
    both = second.encode(["a person walks forward", "a person jumps"])   # a new one: built for it alone
    assert "bert" in second._modules
    torch.testing.assert_close(both[1], MiniLMTextEncoder().encode(["a person jumps"])[0], atol=1e-6, rtol=0)


def test_minilm_identity_changes_with_its_files(tmp_path):
    import shutil

    from motion_loop.text_encoders import minilm_dir

    folder = tmp_path / "minilm"
    folder.mkdir()
    for name in MiniLMTextEncoder.FILES:
        os.symlink(minilm_dir() / name, folder / name) if name == "model.safetensors" else \
            shutil.copy(minilm_dir() / name, folder / name)
    ours = MiniLMTextEncoder(folder, lazy=True).cache_identity()
    assert ours == MiniLMTextEncoder(lazy=True).cache_identity()        # same files, same identity
    (folder / "tokenizer.json").write_text((folder / "tokenizer.json").read_text().replace("[UNK]", "[UNK2]"))
    assert MiniLMTextEncoder(folder, lazy=True).cache_identity()["tokenizer.json"] != ours["tokenizer.json"]


def test_second_run_of_the_demo_model_does_not_import_transformers(tmp_path):
    """The main command's prompt, a second time: its embedding comes from the cache; transformers
    (seconds to import) is never imported, and the motion is the same bit for bit."""
    script = ("import sys\nfrom motion_loop.generate import main\n"
              "code = main(sys.argv[2:])\nprint('transformers imported:', 'transformers' in sys.modules)\n"
              "sys.exit(code)")
    outputs = []
    for run in ("first", "second"):
        out = tmp_path / run
        done = subprocess.run([sys.executable, "-c", script, "x", "--text_prompt", "a person walks forward",
                               "--loop", "--steps", "2", "--num_repetitions", "1", "--no-render", "--no-bvh",
                               "--threads", "1", "--output_dir", str(out), "--no-progress"],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        outputs.append(done.stdout)
    assert "transformers imported: True" in outputs[0] and "transformers imported: False" in outputs[1]
    assert (tmp_path / "first" / "features.npy").read_bytes() == (tmp_path / "second" / "features.npy").read_bytes()


def test_entries_are_kept_per_torch_thread_count(tmp_path):
    """MiniLM's sums differ in the last bits between 1 and 2 CPU threads: an embedding is read back
    only under the thread count it was made with."""
    cache = EmbeddingCache(tmp_path, {"encoder": "x"}, dim=2)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        cache.put({"p": torch.ones(2)})
        torch.set_num_threads(2)
        assert cache.get(["p"]) == {}
        torch.set_num_threads(1)
        assert torch.equal(cache.get(["p"])["p"], torch.ones(2))
    finally:
        torch.set_num_threads(threads)
