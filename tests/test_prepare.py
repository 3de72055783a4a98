"""prepare/ download scripts against a local HTTP server (no real network), and environment.yml."""

import functools
import hashlib
import http.server
import io
import json
import re
import socket
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # prepare/ is run from the checkout, not installed
    sys.path.insert(0, str(ROOT))

from conftest import shared_path  # noqa: E402
from prepare._download import DownloadError, gdown_download, install_zip  # noqa: E402
from prepare.download_all import run_all  # noqa: E402
from prepare.download_clip import download_clip  # noqa: E402
from prepare.download_humanml_stats import download_humanml_stats  # noqa: E402
from prepare.download_mdm import check_checkpoint_folder, download_mdm  # noqa: E402


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class LocalServer:
    """http.server on 127.0.0.1 in a thread, serving the files of one folder."""

    def __init__(self, root: Path):
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        if self.thread.is_alive():
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join()


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    server = LocalServer(root)
    yield root, server
    server.stop()


@pytest.fixture
def closed_url():
    """A URL on 127.0.0.1 whose port nothing listens on (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.fixture
def fake_stats(served):
    """A fake Mean/Std pair served at <url>/stats/, and the md5s that match it."""
    root, server = served
    (root / "stats").mkdir()
    rng = np.random.default_rng(0)
    digests = {}
    for name in ("Mean.npy", "Std.npy"):
        data = npy_bytes(rng.standard_normal(263).astype(np.float32))
        (root / "stats" / name).write_bytes(data)
        digests[name] = md5(data)
    return f"{server.url}/stats", digests, root / "stats", server


def assert_one_line(message: str):
    assert message and "\n" not in message and "Traceback" not in message


def hidden_leftovers(folder: Path) -> list:
    return [p.name for p in folder.rglob(".*")] if folder.exists() else []


# ---------------------------------------------------------------------------------------------
# HumanML3D statistics


def test_stats_download_writes_verified_files(tmp_path, fake_stats):
    url, digests, source, _ = fake_stats
    dest = tmp_path / "dataset" / "HumanML3D"
    lines = download_humanml_stats(dest, mirrors=[url], md5=digests)
    assert len(lines) == 2 and all("downloaded" in line for line in lines)
    for name in digests:
        assert (dest / name).read_bytes() == (source / name).read_bytes()
        assert np.load(dest / name).shape == (263,)
    assert sorted(p.name for p in dest.iterdir()) == ["Mean.npy", "Std.npy"]


def test_stats_fall_back_to_the_second_mirror(tmp_path, fake_stats, closed_url):
    url, digests, _, _ = fake_stats
    lines = download_humanml_stats(tmp_path, mirrors=[closed_url, url], md5=digests)
    assert all("downloaded" in line for line in lines)
    assert (tmp_path / "Std.npy").is_file()


def test_stats_checksum_mismatch_fails_in_one_line_and_leaves_no_file(tmp_path, fake_stats):
    url, digests, _, _ = fake_stats
    dest = tmp_path / "dataset" / "HumanML3D"
    wrong = dict(digests, **{"Mean.npy": "0" * 32})
    with pytest.raises(DownloadError) as info:
        download_humanml_stats(dest, mirrors=[url], md5=wrong)
    message = str(info.value)
    assert_one_line(message)
    assert "md5" in message and digests["Mean.npy"] in message and "0" * 32 in message
    assert not (tmp_path / "dataset").exists()  # the folders it created are removed with the temporary file


def test_stats_wrong_array_is_rejected_even_with_matching_md5(tmp_path, served):
    root, server = served
    data = npy_bytes(np.zeros(263, dtype=np.float64))
    (root / "Mean.npy").write_bytes(data)
    with pytest.raises(DownloadError, match=r"float64 \(263,\), expected float32 \(263,\)"):
        download_humanml_stats(tmp_path, mirrors=[server.url], md5={"Mean.npy": md5(data)})
    assert not (tmp_path / "Mean.npy").exists()


def test_stats_present_files_are_left_alone_without_network(tmp_path, fake_stats):
    url, digests, _, server = fake_stats
    download_humanml_stats(tmp_path, mirrors=[url], md5=digests)
    before = {name: ((tmp_path / name).stat().st_mtime_ns, (tmp_path / name).read_bytes()) for name in digests}
    server.stop()  # any request now fails
    lines = download_humanml_stats(tmp_path, mirrors=[url], md5=digests)
    assert all("already present" in line for line in lines)
    after = {name: ((tmp_path / name).stat().st_mtime_ns, (tmp_path / name).read_bytes()) for name in digests}
    assert after == before


def test_stats_do_not_overwrite_a_different_file_without_force(tmp_path, fake_stats):
    url, digests, source, _ = fake_stats
    mine = tmp_path / "Mean.npy"
    mine.write_bytes(b"my own file")
    with pytest.raises(DownloadError, match="--force") as info:
        download_humanml_stats(tmp_path, mirrors=[url], md5=digests)
    assert_one_line(str(info.value))
    assert mine.read_bytes() == b"my own file"

    lines = download_humanml_stats(tmp_path, mirrors=[url], md5=digests, force=True)
    assert "Mean.npy.old" in lines[0]
    assert mine.read_bytes() == (source / "Mean.npy").read_bytes()
    assert (tmp_path / "Mean.npy.old").read_bytes() == b"my own file"


def test_real_stats_verify_against_the_official_md5(tmp_path, served):
    root, server = served
    for name in ("Mean.npy", "Std.npy"):
        (root / name).write_bytes(shared_path("humanml3d", name).read_bytes())
    lines = download_humanml_stats(tmp_path, mirrors=[server.url])  # default md5s
    assert all("downloaded" in line for line in lines)
    assert np.load(tmp_path / "Std.npy").dtype == np.float32


# ---------------------------------------------------------------------------------------------
# CLIP


def test_clip_download_is_sha256_verified(tmp_path, served):
    root, server = served
    data = b"not really a TorchScript archive" * 100
    sha = hashlib.sha256(data).hexdigest()
    (root / sha).mkdir()
    (root / sha / "ViT-B-32.pt").write_bytes(data)
    status = download_clip(tmp_path / "clip", url=f"{server.url}/{sha}/ViT-B-32.pt")
    assert "downloaded" in status
    assert (tmp_path / "clip" / "ViT-B-32.pt").read_bytes() == data

    server.stop()
    assert "already present" in download_clip(tmp_path / "clip", url=f"{server.url}/{sha}/ViT-B-32.pt")


def test_clip_checksum_mismatch_leaves_no_file(tmp_path, served):
    root, server = served
    sha = "ab" * 32
    (root / sha).mkdir()
    (root / sha / "ViT-B-32.pt").write_bytes(b"tampered")
    with pytest.raises(DownloadError, match="sha256") as info:
        download_clip(tmp_path / "clip", url=f"{server.url}/{sha}/ViT-B-32.pt")
    assert_one_line(str(info.value))
    assert not (tmp_path / "clip").exists()


# ---------------------------------------------------------------------------------------------
# MDM zips


def make_zip(path: Path, files: dict) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


CHECKPOINT_FILES = {
    "humanml_trans_enc_512/args.json": json.dumps({"arch": "trans_enc", "latent_dim": 512}),
    "humanml_trans_enc_512/model000200000.pt": b"\x00weights" * 64,
}


def copy_download(zip_path: Path):
    return lambda out: out.write_bytes(zip_path.read_bytes())


def test_mdm_zip_is_unpacked_verified_and_removed(tmp_path):
    source = make_zip(tmp_path / "release.zip", {**CHECKPOINT_FILES, "__MACOSX/._args.json": b"junk"})
    save = tmp_path / "save"
    status = install_zip(save / "humanml_trans_enc_512", copy_download(source), check_checkpoint_folder,
                         "MDM checkpoint", "https://example.invalid/zip")
    assert "downloaded" in status
    folder = save / "humanml_trans_enc_512"
    assert sorted(p.name for p in folder.iterdir()) == ["args.json", "model000200000.pt"]
    assert [p.name for p in save.iterdir()] == ["humanml_trans_enc_512"]  # no zip, no temporary folder
    assert check_checkpoint_folder(folder) is None


def test_mdm_download_through_gdown_from_a_local_server(tmp_path, served):
    pytest.importorskip("gdown")
    root, server = served
    make_zip(root / "humanml_trans_enc_512.zip", CHECKPOINT_FILES)
    save = tmp_path / "save"
    status = download_mdm("humanml_trans_enc_512", save, url=f"{server.url}/humanml_trans_enc_512.zip")
    assert "downloaded" in status
    assert (save / "humanml_trans_enc_512" / "model000200000.pt").read_bytes() == b"\x00weights" * 64
    assert [p.name for p in save.iterdir()] == ["humanml_trans_enc_512"]

    server.stop()
    assert "already present" in download_mdm("humanml_trans_enc_512", save, url=f"{server.url}/x.zip")


def test_flat_zip_without_a_top_folder_is_accepted(tmp_path):
    flat = {name.split("/", 1)[1]: data for name, data in CHECKPOINT_FILES.items()}
    source = make_zip(tmp_path / "flat.zip", flat)
    dest = tmp_path / "save" / "humanml_enc_512_50steps"
    install_zip(dest, copy_download(source), check_checkpoint_folder, "MDM checkpoint", "https://example.invalid")
    assert check_checkpoint_folder(dest) is None


@pytest.mark.parametrize("files, expected", [
    ({"humanml_trans_enc_512/args.json": "{}"}, "has no model\\*.pt"),
    ({"humanml_trans_enc_512/args.json": "{oops", "humanml_trans_enc_512/model1.pt": b"w"}, "not valid JSON"),
    ({"../escape.txt": b"x", "args.json": "{}", "model1.pt": b"w"}, "unsafe path"),
])
def test_bad_zips_fail_in_one_line_and_install_nothing(tmp_path, files, expected):
    source = make_zip(tmp_path / "bad.zip", files)
    save = tmp_path / "save"
    with pytest.raises(DownloadError, match=expected) as info:
        install_zip(save / "humanml_trans_enc_512", copy_download(source), check_checkpoint_folder,
                    "MDM checkpoint", "https://example.invalid/zip")
    assert_one_line(str(info.value))
    assert "by hand from https://example.invalid/zip" in str(info.value)
    assert not save.exists() and not (tmp_path / "escape.txt").exists()


def test_a_web_page_instead_of_a_zip_is_reported(tmp_path):
    page = tmp_path / "quota.html"
    page.write_text("<html><body>Google Drive - Quota exceeded</body></html>")
    with pytest.raises(DownloadError, match="not a zip archive"):
        install_zip(tmp_path / "save" / "m", copy_download(page), check_checkpoint_folder, "MDM checkpoint", "u")
    assert not (tmp_path / "save").exists()


def test_force_adds_the_release_files_and_keeps_the_users_own(tmp_path):
    source = make_zip(tmp_path / "release.zip", CHECKPOINT_FILES)
    folder = tmp_path / "save" / "humanml_trans_enc_512"
    (folder / "samples_00").mkdir(parents=True)
    (folder / "samples_00" / "results.npy").write_bytes(b"my samples")
    (folder / "args.json").write_text('{"edited": true}')

    with pytest.raises(DownloadError, match="has no model\\*.pt.*--force"):  # incomplete: left alone
        install_zip(folder, copy_download(source), check_checkpoint_folder, "MDM checkpoint", "u")
    assert (folder / "args.json").read_text() == '{"edited": true}'

    status = install_zip(folder, copy_download(source), check_checkpoint_folder, "MDM checkpoint", "u", force=True)
    assert "args.json.old" in status
    assert (folder / "samples_00" / "results.npy").read_bytes() == b"my samples"
    assert (folder / "args.json.old").read_text() == '{"edited": true}'
    assert json.loads((folder / "args.json").read_text())["arch"] == "trans_enc"
    assert check_checkpoint_folder(folder) is None
    assert hidden_leftovers(tmp_path / "save") == []


def test_missing_gdown_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "gdown", None)  # makes `import gdown` raise ImportError
    with pytest.raises(DownloadError, match=r"pip install gdown==\d"):
        gdown_download("https://example.invalid/x.zip", tmp_path / "x.zip")


# ---------------------------------------------------------------------------------------------
# Scripts, offline


def run_script(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "prepare" / name), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("script, args", [
    ("download_humanml_stats.py", ["--url", "{url}"]),
    ("download_kit_stats.py", ["--url", "{url}"]),
    ("download_distilbert.py", ["--url", "{url}"]),
    ("download_clip.py", ["--url", "{url}/" + "0" * 64 + "/ViT-B-32.pt"]),
    ("download_mdm.py", ["--url", "{url}/humanml_trans_enc_512.zip"]),
    ("download_smpl.py", ["--url", "{url}/smpl.zip"]),
])
def test_unreachable_host_fails_with_one_line_and_exit_code_2(tmp_path, closed_url, script, args):
    if script in ("download_mdm.py", "download_smpl.py"):
        pytest.importorskip("gdown")
    dest = tmp_path / "dest"
    result = run_script(script, *[a.format(url=closed_url) for a in args], "--dest", str(dest), "--timeout", "5",
                        cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert_one_line(result.stderr.strip())
    host = closed_url.removeprefix("http://")
    assert re.match(rf"error: could not reach {re.escape(host)} \(offline\? .*\): download .* by hand from ",
                    result.stderr), result.stderr
    assert not dest.exists()


def test_present_files_need_no_network_when_run_as_a_script(tmp_path, closed_url):
    dest = tmp_path / "stats"
    dest.mkdir()
    for name in ("Mean.npy", "Std.npy"):
        (dest / name).write_bytes(shared_path("humanml3d", name).read_bytes())
    result = run_script("download_humanml_stats.py", "--url", closed_url, "--dest", str(dest), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("already present") == 2


def test_download_all_keeps_going_and_reports_each_step():
    def offline():
        raise DownloadError("could not reach example.invalid (offline? no DNS): download it by hand")

    def bug():
        raise KeyError("boom")

    out = io.StringIO()
    code = run_all([("first", offline), ("second", lambda: "second: already present (x)"), ("third", bug),
                    ("fourth", lambda: ["a: downloaded", "b: downloaded"])], out=out)
    assert code == 2
    assert out.getvalue().splitlines() == [
        "FAILED: first: could not reach example.invalid (offline? no DNS): download it by hand",
        "ok: second: already present (x)",
        "FAILED: third: KeyError: 'boom'",
        "ok: a: downloaded; b: downloaded",
    ]
    assert run_all([("only", lambda: "only: already present")], out=io.StringIO()) == 0


# ---------------------------------------------------------------------------------------------
# environment.yml


def requirement_pins(text: str) -> list:
    return [line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip()]


def environment_pip_pins(text: str) -> list:
    """The entries of the `- pip:` list in a conda environment file (a small indentation-aware parser)."""
    pins, pip_indent = [], None
    for line in text.splitlines():
        content = line.split("#", 1)[0].rstrip()
        if not content.strip():
            continue
        indent = len(content) - len(content.lstrip())
        if content.strip() == "- pip:":
            pip_indent = indent
        elif pip_indent is not None and indent > pip_indent and content.strip().startswith("- "):
            pins.append(content.strip()[2:].strip())
        elif pip_indent is not None and indent <= pip_indent:
            pip_indent = None
    return pins


def test_environment_yml_pins_match_requirements():
    env = (ROOT / "environment.yml").read_text()
    assert re.search(r"^name:\s*motion_loop\s*$", env, re.M)
    assert re.search(r"^\s+- python=3\.11\s*$", env, re.M)
    assert re.search(r"^\s+- pip\s*$", env, re.M)
    pins = environment_pip_pins(env)
    assert pins == requirement_pins((ROOT / "requirements.txt").read_text())
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[^=\s]+", pin) for pin in pins), pins


@pytest.mark.parametrize("timeout", ["-1", "nan", "0", "inf", "soon"])
def test_timeout_must_be_a_positive_number_of_seconds(served, timeout):
    _, server = served
    done = subprocess.run([sys.executable, "prepare/download_humanml_stats.py", "--url", server.url,
                           "--timeout", timeout], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and "argument --timeout" in done.stderr and "Traceback" not in done.stderr


def test_unexpected_failures_are_one_line(tmp_path, capsys):
    from prepare._download import run_main

    def bug():
        raise RuntimeError("the server sent\nsomething odd")

    assert run_main([bug]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: RuntimeError: the server sent something odd")
    done = subprocess.run([sys.executable, "prepare/download_mdm.py", "--dest", str(tmp_path), "--url", "notaurl"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and "unknown url type" in done.stderr and "Traceback" not in done.stderr


# ---------------------------------------------------------------------------------------------
# Every MDM text-to-motion release, KIT-ML statistics, DistilBERT

from prepare import download_kit_stats as kit_stats  # noqa: E402
from prepare.download_distilbert import download_distilbert  # noqa: E402
from prepare.download_mdm import CHECKPOINTS, RELEASES  # noqa: E402


def test_every_text_to_motion_release_has_its_drive_id():
    assert set(RELEASES) == {"humanml-encoder-512", "humanml-encoder-512-50steps", "humanml-decoder-512",
                             "humanml-decoder-with-emb-512", "humanml_trans_dec_512_bert-50steps", "kit-encoder-512"}
    assert RELEASES["humanml_trans_dec_512_bert-50steps"] == "humanml_trans_dec_512_bert"
    assert len({c.drive_id for c in CHECKPOINTS.values()}) == len(CHECKPOINTS)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{33}", c.drive_id) for c in CHECKPOINTS.values())


def test_mdm_release_name_installs_its_folder(tmp_path, served):
    pytest.importorskip("gdown")
    root, server = served
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("humanml_trans_dec_512_bert/args.json", json.dumps({"arch": "trans_dec"}))
        archive.writestr("humanml_trans_dec_512_bert/model000600000.pt", b"weights")
    (root / "bert.zip").write_bytes(buffer.getvalue())
    status = download_mdm("humanml_trans_dec_512_bert-50steps", tmp_path / "save", url=f"{server.url}/bert.zip")
    assert "humanml_trans_dec_512_bert" in status
    assert (tmp_path / "save" / "humanml_trans_dec_512_bert" / "model000600000.pt").is_file()
    with pytest.raises(DownloadError, match="unknown model 'humanml-gru'.*kit-encoder-512"):
        download_mdm("humanml-gru", tmp_path / "save")


def kit_stats_bytes(std_value=0.5, shape=(251,)):
    return (npy_bytes(np.linspace(-1, 1, shape[0]).astype(np.float32)),
            npy_bytes(np.full(shape, std_value, dtype=np.float32)))


def test_kit_stats_from_a_mirror_are_checked(tmp_path, served):
    root, server = served
    mean, std = kit_stats_bytes()
    (root / "Mean.npy").write_bytes(mean)
    (root / "Std.npy").write_bytes(std)
    lines = kit_stats.download_kit_stats(tmp_path / "KIT-ML", mirrors=[server.url])
    assert [line.split(":")[0] for line in lines] == ["KIT-ML Mean.npy", "KIT-ML Std.npy"]
    assert np.load(tmp_path / "KIT-ML" / "Std.npy").shape == (251,)
    # HumanML3D's 263-feature files are refused, and nothing is left behind
    (root / "Mean.npy").write_bytes(npy_bytes(np.zeros(263, dtype=np.float32)))
    with pytest.raises(DownloadError, match=r"expected float32 \(251,\)"):
        kit_stats.download_kit_stats(tmp_path / "other", mirrors=[server.url])
    assert not (tmp_path / "other").exists()


def test_kit_stats_are_listed_in_the_drive_folder_and_fetched_alone(tmp_path, served, monkeypatch):
    """Without a mirror the KIT-ML Drive folder is listed (gdown) and only Mean/Std are fetched."""
    root, server = served
    mean, std = kit_stats_bytes()
    (root / "mean-id").write_bytes(mean)
    (root / "std-id").write_bytes(std)

    class Entry:
        def __init__(self, id, path):
            self.id, self.path = id, path

    listed = [Entry("mean-id", "Mean.npy"), Entry("std-id", "Std.npy"), Entry("big", "new_joints.rar"),
              Entry("nested", "texts/Mean.npy")]
    monkeypatch.setattr(kit_stats, "probe", lambda url, timeout: None)
    monkeypatch.setattr(kit_stats, "drive_url", lambda file_id: f"{server.url}/{file_id}")
    gdown = pytest.importorskip("gdown")
    monkeypatch.setattr(gdown, "download_folder", lambda **kwargs: listed if kwargs["skip_download"] else None)
    assert kit_stats.drive_folder_files() == {"Mean.npy": "mean-id", "Std.npy": "std-id", "new_joints.rar": "big"}
    lines = kit_stats.download_kit_stats(tmp_path / "KIT-ML")
    assert all("downloaded" in line for line in lines)
    assert sorted(p.name for p in (tmp_path / "KIT-ML").iterdir()) == ["Mean.npy", "Std.npy"]


def distilbert_files(root: Path, layers: int = 6) -> None:
    from safetensors.torch import save_file
    import torch

    (root / "config.json").write_text(json.dumps({"model_type": "distilbert", "dim": 768}))
    (root / "tokenizer_config.json").write_text("{}")
    (root / "tokenizer.json").write_text("{}")
    (root / "vocab.txt").write_text("\n".join(f"w{i}" for i in range(30522)) + "\n")
    save_file({f"transformer.layer.{layers - 1}.output_layer_norm.weight": torch.ones(2)},
              str(root / "model.safetensors"))


def test_distilbert_files_are_fetched_and_checked(tmp_path, served):
    root, server = served
    distilbert_files(root)
    lines = download_distilbert(tmp_path / "bert", base_url=server.url)
    assert len(lines) == 5 and all("downloaded" in line for line in lines)
    assert all("already present" in line for line in download_distilbert(tmp_path / "bert", base_url=server.url))
    distilbert_files(root, layers=4)  # a smaller model's weights are refused
    with pytest.raises(DownloadError, match="not a 6-layer DistilBERT"):
        download_distilbert(tmp_path / "bert2", base_url=server.url)
