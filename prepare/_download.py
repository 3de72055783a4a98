"""Shared logic of the prepare/ scripts: verified, atomic, idempotent downloads that fail fast offline.

Every download goes to a hidden temporary name in the destination folder and is moved into place
(one rename) only after it passed its check, so a file or folder under its real name is always
complete. A present and valid target is left alone. Replacing (--force) keeps any differing file
of the user's as `<name>.old`. Failures raise `DownloadError` with a one-line message naming what
to do; the scripts print it and exit 2.
"""

from __future__ import annotations

import filecmp
import hashlib
import http.client
import inspect
import os
import secrets
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath
from typing import Callable, Sequence
from urllib.parse import urlsplit

TIMEOUT_S = 10.0  # connection timeout: offline fails in seconds, not minutes
READ_TIMEOUT_S = 60.0  # a stalled transfer gives up after this long without a byte
EXIT_FAILURE = 2
GDOWN_PIN = "gdown==6.5.1"
_CHUNK = 1 << 20

# A check returns None for a good file or folder, else what is wrong with it ("has no args.json").
Check = Callable[[Path], "str | None"]


class DownloadError(Exception):
    """A failed download the user can act on; the message is one line."""

    def __init__(self, message: str):
        super().__init__(one_line(message))


class Unreachable(DownloadError):
    """The host never answered (no network, DNS failure, refused or timed-out connection)."""

    def __init__(self, url: str, reason: str):
        self.url, self.host, self.reason = url, urlsplit(url).netloc, reason
        super().__init__(f"could not reach {self.host} ({reason})")


def one_line(text: object, limit: int = 600) -> str:
    """Collapse whitespace (tracebacks, HTML, multi-line library errors) into one short line."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _reason(error: BaseException) -> str:
    reason = getattr(error, "reason", error)  # URLError wraps the socket error
    if isinstance(reason, BaseException):
        return one_line(getattr(reason, "strerror", None) or reason or type(reason).__name__, 120)
    return one_line(reason, 120)


def offline_error(errors: Sequence[Unreachable], advice: str) -> DownloadError:
    """The one-line message for 'no host answered': which hosts, then `advice` (how to get it by hand)."""
    hosts = " or ".join(dict.fromkeys(e.host for e in errors))
    reasons = "; ".join(dict.fromkeys(e.reason for e in errors))
    return DownloadError(f"could not reach {hosts} (offline? {reasons}): {advice}")


# ---------------------------------------------------------------------------------------------
# Network


def probe(url: str, timeout: float = TIMEOUT_S) -> None:
    """Raise Unreachable unless the host of `url` answers an HTTP request within `timeout` seconds.

    Any HTTP answer counts (a 404 or 405 still proves the network works); used before gdown,
    whose own connection handling may retry or wait much longer.
    """
    try:
        request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "motion_loop-prepare"})
        urllib.request.urlopen(request, timeout=timeout).close()
    except urllib.error.HTTPError:
        pass
    except ValueError as error:  # not a URL urllib can fetch ("unknown url type")
        raise DownloadError(f"cannot download {url!r} ({error}): give an http(s) URL") from None
    except (OSError, http.client.HTTPException) as error:  # URLError, refused, DNS failure, timeout
        raise Unreachable(url, _reason(error)) from None


def fetch_url(url: str, out: Path, timeout: float = TIMEOUT_S, desc: str | None = None) -> None:
    """Stream `url` into the file `out` (overwritten); Unreachable or DownloadError on failure."""
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "motion_loop-prepare"})
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        raise DownloadError(f"{url} answered HTTP {error.code} {error.reason}") from None
    except ValueError as error:  # not a URL urllib can fetch ("unknown url type")
        raise DownloadError(f"cannot download {url!r} ({error}): give an http(s) URL") from None
    except (OSError, http.client.HTTPException) as error:
        raise Unreachable(url, _reason(error)) from None
    from tqdm import tqdm

    total, written = response.length, 0
    print(f"downloading {desc or url} from {url}", file=sys.stderr)
    with response, open(out, "wb") as file, tqdm(total=total, unit="B", unit_scale=True, disable=None,
                                                  file=sys.stderr, leave=False) as bar:
        while True:
            try:
                chunk = response.read(_CHUNK)
            except (OSError, http.client.HTTPException) as error:
                raise DownloadError(f"the download from {url} broke off ({_reason(error)})") from None
            if not chunk:
                break
            try:
                file.write(chunk)
            except OSError as error:
                raise DownloadError(f"could not write {out} ({_reason(error)})") from None
            written += len(chunk)
            bar.update(len(chunk))
    if total is not None and written != total:
        raise DownloadError(f"the download from {url} ended early ({written} of {total} bytes)")


def drive_url(file_id: str) -> str:
    """The URL gdown downloads a Google Drive file from."""
    return f"https://drive.google.com/uc?id={file_id}"


def drive_view_url(file_id: str) -> str:
    """The Google Drive page a person downloads the same file from by hand."""
    return f"https://drive.google.com/file/d/{file_id}/view"


def gdown_download(url: str, out: Path, timeout: float = TIMEOUT_S) -> None:
    """Download `url` (a Google Drive link, or any URL) into `out` with gdown, failing fast offline."""
    try:
        import gdown
    except ImportError:
        raise DownloadError(f"gdown is not installed (pip install {GDOWN_PIN})") from None
    probe(url, timeout)  # gdown itself would wait and print a traceback-like error
    options = {"quiet": False, "use_cookies": False}
    if "timeout" in inspect.signature(gdown.download).parameters:  # gdown >= 6
        options["timeout"] = (timeout, READ_TIMEOUT_S)
    try:
        result = gdown.download(url=url, output=str(out), **options)
    except Exception as error:  # gdown raises requests' and its own types; all mean "no file"
        raise DownloadError(f"gdown could not download {url} ({type(error).__name__}: {error})") from None
    if result is None or not Path(out).is_file():
        raise DownloadError(f"gdown could not download {url}")


# ---------------------------------------------------------------------------------------------
# Files


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file (md5, sha256, ...), read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_digest(path: Path, algorithm: str, expected: str) -> str | None:
    """None when the file's digest is `expected`, else the mismatch in words."""
    got = file_digest(path, algorithm)
    return None if got == expected.lower() else f"has {algorithm} {got}, expected {expected}"


def check_folder(folder: Path, patterns: Sequence[str]) -> str | None:
    """None when `folder` holds a non-empty file matching each glob pattern, else what is missing."""
    if not folder.is_dir():
        return "is not a folder"
    for pattern in patterns:
        files = [p for p in folder.glob(pattern) if p.is_file()]
        if not files:
            return f"has no {pattern}"
        if all(p.stat().st_size == 0 for p in files):
            return f"has only an empty {files[0].name}"
    return None


def _make_dirs(folder: Path) -> list[Path]:
    """mkdir -p, returning the folders it created (outermost first) so a failure can remove them."""
    missing = [p for p in [folder, *folder.parents] if not p.exists()][::-1]
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def _remove_if_empty(folders: Sequence[Path]) -> None:
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            return


def _old_name(path: Path) -> Path:
    candidate, n = path.with_name(path.name + ".old"), 1
    while candidate.exists():
        candidate, n = path.with_name(f"{path.name}.old{n}"), n + 1
    return candidate


def put_in_place(src: Path, dest: Path) -> Path | None:
    """Move the file `src` to `dest`; a differing file already at `dest` is kept as `<dest>.old`.

    Returns where the old file went, or None when there was none (or it was identical).
    """
    old = None
    if dest.exists() and not filecmp.cmp(src, dest, shallow=False):
        old = _old_name(dest)
        os.replace(dest, old)
    os.replace(src, dest)
    return old


def _kept_note(kept: Sequence[Path]) -> str:
    if not kept:
        return ""
    return f"; your previous {'file is' if len(kept) == 1 else 'files are'} kept as {', '.join(map(str, kept))}"


# ---------------------------------------------------------------------------------------------
# Installers


def install_file(dest: Path, urls: Sequence[str], check: Check, what: str, *, force: bool = False,
                 timeout: float = TIMEOUT_S, advice: str | None = None) -> str:
    """Make `dest` a file that passes `check`, downloading it from the first of `urls` that works.

    `advice` ends the failure messages (default: download `what` by hand from the first URL).
    Returns a status phrase ("already present (...)" or "downloaded (...)"); raises DownloadError.
    """
    dest = Path(dest)
    if not urls:
        raise DownloadError(f"no URL given for {what}")
    if dest.is_dir():
        raise DownloadError(f"{dest} is a folder, but {what} goes there: move it away")
    if dest.exists() and not force:
        problem = check(dest)
        if problem is None:
            return f"already present ({dest})"
        raise DownloadError(f"{dest} exists but {problem}: move it away, or rerun with --force to replace it "
                            f"(your file is then kept as {dest.name}.old)")
    advice = advice or f"download {what} by hand from {urls[0]} into {dest.parent}/"
    created = _make_dirs(dest.parent)
    # A hidden, unique name (not mkstemp: its 0600 mode would stick to the installed file).
    tmp = dest.parent / f".{dest.name}.{os.getpid()}-{secrets.token_hex(4)}.part"
    unreachable: list[Unreachable] = []
    failures: list[str] = []
    try:
        for url in urls:
            try:
                fetch_url(url, tmp, timeout, desc=what)
            except Unreachable as error:
                unreachable.append(error)
                continue
            except DownloadError as error:
                failures.append(str(error))
                continue
            problem = check(tmp)
            if problem is not None:
                failures.append(f"the file from {url} {problem}")
                continue
            old = put_in_place(tmp, dest)
            return f"downloaded ({dest}){_kept_note([old] if old else [])}"
    finally:
        tmp.unlink(missing_ok=True)
        _remove_if_empty(created)
    if failures:
        raise DownloadError(f"could not get {what}: {'; '.join(failures)}; {advice}")
    raise offline_error(unreachable, advice)


def _unpack(archive: Path, into: Path, what: str) -> None:
    if not zipfile.is_zipfile(archive):
        raise DownloadError(f"the download of {what} is not a zip archive "
                            "(Google Drive may have sent a quota or sign-in page instead)")
    try:
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                parts = PurePosixPath(name.replace("\\", "/")).parts
                if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
                    raise DownloadError(f"the zip of {what} holds an unsafe path {name!r}")
            bad = zf.testzip()
            if bad is not None:
                raise DownloadError(f"the zip of {what} is corrupt (bad CRC for {bad})")
            zf.extractall(into)
    except (zipfile.BadZipFile, EOFError) as error:
        raise DownloadError(f"the zip of {what} is corrupt ({error})") from None
    shutil.rmtree(into / "__MACOSX", ignore_errors=True)


def _zip_root(unpacked: Path, name: str) -> Path:
    """The folder inside an unpacked zip that becomes the target: `name/`, the only folder, or the top."""
    if (unpacked / name).is_dir():
        return unpacked / name
    entries = list(unpacked.iterdir())
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return unpacked


def install_zip(dest: Path, download: Callable[[Path], None], check: Check, what: str, url: str, *,
                force: bool = False) -> str:
    """Make `dest` a folder that passes `check`, from a zip that `download(path)` writes to `path`.

    The zip is checked (a real zip, CRCs, safe paths) and unpacked in a hidden temporary folder
    next to `dest`; its folder is verified with `check` and renamed to `dest`, and the zip removed.
    With `force` and an existing `dest`, the zip's files replace their namesakes in `dest`
    (differing ones kept as `.old`) and other files are left alone. `url` is where a person gets
    the zip by hand (named in error messages). Returns a status phrase; raises DownloadError.
    """
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise DownloadError(f"{dest} is a file, but the {what} folder goes there: move it away")
    if dest.exists() and not force:
        problem = check(dest)
        if problem is None:
            return f"already present ({dest})"
        raise DownloadError(f"{dest} exists but {problem}: move it away, or rerun with --force to add the "
                            "downloaded files to it")
    by_hand = f"download {what} by hand from {url} and unzip it into {dest.parent}/ (it makes {dest.name}/)"
    created = _make_dirs(dest.parent)
    work = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.download-"))
    try:
        archive = work / f"{dest.name}.zip"
        try:
            download(archive)
        except Unreachable as error:
            raise offline_error([error], by_hand) from None
        except DownloadError as error:
            raise DownloadError(f"{error}: {by_hand}") from None
        try:
            _unpack(archive, work / "unpacked", what)
        except DownloadError as error:
            raise DownloadError(f"{error}: {by_hand}") from None
        root = _zip_root(work / "unpacked", dest.name)
        problem = check(root)
        if problem is not None:
            raise DownloadError(f"the downloaded zip of {what} {problem}: {by_hand}")
        if not dest.exists():
            os.replace(root, dest)  # one rename: the folder appears complete or not at all
            return f"downloaded ({dest})"
        kept = []
        for src in sorted(p for p in root.rglob("*") if p.is_file()):
            target = dest / src.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            old = put_in_place(src, target)
            if old is not None:
                kept.append(old)
        return f"downloaded again ({dest}){_kept_note(kept)}"
    finally:
        shutil.rmtree(work, ignore_errors=True)
        _remove_if_empty(created)


def install_drive_zip(dest: Path, file_id: str, check: Check, what: str, *, url: str | None = None,
                      force: bool = False, timeout: float = TIMEOUT_S) -> str:
    """`install_zip` for a Google Drive file fetched with gdown (`url` overrides the Drive link)."""
    source = url or drive_url(file_id)
    return install_zip(dest, lambda archive: gdown_download(source, archive, timeout), check, what,
                       url or drive_view_url(file_id), force=force)


# ---------------------------------------------------------------------------------------------
# Script plumbing


def positive_seconds(text: str) -> float:
    """argparse type of --timeout: a positive, finite number of seconds."""
    import argparse
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def add_common_arguments(parser, timeout: float = TIMEOUT_S) -> None:
    """--force and --timeout, shared by every script."""
    parser.add_argument("--force", action="store_true",
                        help="download again even when a valid copy is present (your differing files are kept "
                             "as <name>.old)")
    parser.add_argument("--timeout", type=positive_seconds, default=timeout,
                        help=f"seconds to wait for a server to answer before giving up (default {timeout:g})")


def run_main(steps: Sequence[Callable[[], "str | Sequence[str]"]]) -> int:
    """Run a script's steps in order, printing each one's status line(s) as it finishes.

    At the first DownloadError, print its one-line message and return EXIT_FAILURE; else 0.
    """
    for step in steps:
        try:
            status = step()
        except DownloadError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_FAILURE
        except KeyboardInterrupt:
            print("interrupted: finished files are in place; temporary downloads were removed", file=sys.stderr)
            return 130
        except Exception as error:  # whatever a server's answer provokes: one line, never a traceback
            print(f"error: {type(error).__name__}: {one_line(error)} (a bug or an unexpected answer from the "
                  "server; please report it)", file=sys.stderr)
            return EXIT_FAILURE
        for line in [status] if isinstance(status, str) else status:
            print(line, flush=True)
    return 0


def drive_folder_main(argv: Sequence[str] | None, doc: str, download: Callable[..., str], dest: Path,
                      dest_help: str) -> int:
    """The command line of a script that installs one Google Drive zip as a folder:
    ``--dest``, ``--url`` and the common flags, then ``download(dest, url=, force=, timeout=)``."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, default=dest, help=f"{dest_help} (default {dest})")
    parser.add_argument("--url", default=None, help="download the zip from this URL instead of its Google Drive link")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    return run_main([lambda: download(args.dest, url=args.url, force=args.force, timeout=args.timeout)])
