"""The media stage: fetch or find the install ISO, verify its sha256, cache it; read files out of ISOs.

Cache layout (under `factory.core.paths.cache_dir()`):

    iso/<sha256>.iso            a downloaded ISO; the name appears only after its checksum matched
    iso/<sha256>.iso.part       an unfinished download (resumed with an HTTP Range request, never used as is)
    iso/<sha256>.iso.lock       filelock: one process downloads, the others wait and then reuse
    iso/hashes.json             verified sha256 of local ISOs keyed by path+size+mtime (no re-hash per build)
    remastered/<key>.iso        serial-console copies of ISOs (see remaster_for_serial)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.client import HTTPException, HTTPResponse
from pathlib import Path
from typing import Any

import filelock
import pycdlib
from pycdlib.pycdlibexception import PyCdlibException
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from factory.core import digest, paths
from factory.core.record import atomic_write_text
from factory.errors import MediaError
from factory.host import tools
from factory.spec import BootMode, Spec

# Seconds without a byte from the server before one attempt counts as failed (urllib socket timeout).
READ_TIMEOUT_S = 30.0
# Attempts per download; each resumes from what the previous one wrote to the .part file.
ATTEMPTS = 4
# Pause before attempt n is RETRY_DELAY_S * n (tests set it to 0).
RETRY_DELAY_S = 2.0
# How long a build waits for another build holding the same cache entry (downloading 4 GB, remastering).
LOCK_TIMEOUT_S = 4 * 3600.0
CHUNK = 1024 * 1024
# Bump when remaster_for_serial's edits change: the cached copies are keyed by it.
# v2: the grub.cfg inside images/efiboot.img (what UEFI CD boot really reads) is edited too.
# v3: GRUB's default is the installer entry and every kernel line gets console=; whole isolinux labels.
REMASTER_VERSION = "serial-remaster-v3"
# EL7's El Torito EFI boot image: a FAT filesystem with EFI/BOOT/{BOOTX64.EFI,grubx64.efi,grub.cfg}.
EFIBOOT_PATH = "/images/efiboot.img"
EFIBOOT_GRUB_CFG = "::EFI/BOOT/grub.cfg"
# mtools refuses FAT images whose geometry it finds odd (lorax's mkdosfs output can be); we only copy files.
_MTOOLS_ENV = {"MTOOLS_SKIP_CHECK": "1"}

_stderr = Console(stderr=True)


# True/False: draw our own rich bar or not; a callable gets (bytes done, total or None) instead.
ShowProgress = bool | Callable[[int, int | None], None]


@dataclass(frozen=True)
class MediaResult:
    iso: Path
    sha256: str
    volume_label: str
    # Where it came from: the URL, the local path, or "builtin:testbed".
    source: str
    # What the install boots when it types at the boot loader (boot.mode serial-prompt): a cached copy
    # whose isolinux/GRUB talk on the serial console (remaster_for_serial); None for the other modes.
    boot_iso: Path | None = None


def for_boot(spec: Spec, result: MediaResult) -> MediaResult:
    """`result` with the medium the spec's boot mode boots (the media stage does this, not the install)."""
    if spec.boot.mode is not BootMode.SERIAL_PROMPT:
        return result
    return dataclasses.replace(result, boot_iso=remaster_for_serial(result.iso))


def prepare(spec: Spec, *, progress: ShowProgress = True) -> MediaResult:
    """Return a verified, cached install ISO for `spec` (download, local path or the built-in testbed)."""
    media = spec.media
    if media.builtin == "testbed":
        # Imported here: the testbed pulls in Debian packaging helpers that other stages never need.
        from factory.testbed import build_testbed

        tb = build_testbed()
        return MediaResult(
            iso=tb.iso, sha256=tb.sha256, volume_label=tb.volume_label, source="builtin:testbed"
        )
    expected = media.expected_sha256(spec.source)
    if expected is None:  # the spec validator guarantees a sha256 for url/path media
        raise MediaError(f"{spec.source}: media: no sha256 given")
    if media.url is not None and not media.url.startswith("file://"):
        iso = download(media.url, expected, progress=progress)
        source = media.url
    else:
        if media.url is not None:
            local = Path(urllib.parse.unquote(urllib.parse.urlparse(media.url).path))
        else:
            found = spec.media_path()
            assert found is not None  # one of url/path/path_env/builtin is set (spec validator)
            local = found
        verify_local(local, expected)
        iso, source = local, str(local)
    label = volume_label(iso)
    if label != media.volume_label:
        # The installer finds its stage2 by this label: a mismatch fails the install much later.
        raise MediaError(
            f"{source}: volume label is {label!r}, the spec says media.volume_label {media.volume_label!r}"
        )
    return MediaResult(iso=iso, sha256=expected, volume_label=label, source=source)


# --- download -----------------------------------------------------------------------------------------


def iso_cache_dir() -> Path:
    path = paths.cache_dir() / "iso"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _locked(target: Path, what: str) -> Iterator[None]:
    lock = filelock.FileLock(str(target) + ".lock")
    try:
        lock.acquire(timeout=LOCK_TIMEOUT_S)
    except filelock.Timeout:
        raise MediaError(
            f"waited {LOCK_TIMEOUT_S:.0f} s for another build {what} {target.name} (lock {lock.lock_file})"
        ) from None
    try:
        yield
    finally:
        lock.release()


def download(url: str, sha256: str, *, progress: ShowProgress = True) -> Path:
    """Download `url` into the cache (resuming a .part), verify it, and return the cached ISO."""
    final = iso_cache_dir() / f"{sha256}.iso"
    with _locked(final, "downloading"):
        if final.is_file():  # only ever renamed into place after its checksum matched
            return final
        part = final.with_name(final.name + ".part")
        last: str = ""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                _fetch(url, part, progress=progress)
                break
            except _Permanent as exc:
                raise MediaError(f"cannot download {url}: {exc}") from None
            except (OSError, HTTPException) as exc:  # URLError, timeouts, resets, short reads
                last = _reason(exc)
                if attempt < ATTEMPTS:
                    time.sleep(RETRY_DELAY_S * attempt)
        else:
            kept = f"; {part.stat().st_size} bytes kept in {part} for a later resume" if part.exists() else ""
            raise MediaError(f"cannot download {url} after {ATTEMPTS} attempts: {last}{kept}")
        actual = digest.sha256_file(part)
        if actual != sha256:
            part.unlink()
            raise MediaError(f"{url}: sha256 mismatch: expected {sha256}, got {actual} (download deleted)")
        os.replace(part, final)
        return final


class _Permanent(Exception):
    """An answer that retrying cannot change (404, 403...)."""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__


_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def _fetch(url: str, part: Path, *, progress: ShowProgress) -> None:
    """One attempt: append to `part` from where it ends. Raises OSError/HTTPException to be retried."""
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": "image-factory"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp: HTTPResponse = urllib.request.urlopen(req, timeout=READ_TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            # The .part already holds the whole file (or more): let the checksum decide.
            return
        if exc.code in (408, 429) or exc.code >= 500:
            raise
        raise _Permanent(f"HTTP {exc.code} {exc.reason}") from None
    with resp:
        if have and resp.status == 206:
            m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != have:
                raise _Permanent(
                    f"server answered Range bytes={have}- with {resp.headers.get('Content-Range')}"
                )
            mode = "ab"
        else:
            have, mode = 0, "wb"  # the server ignored Range: start over
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        with part.open(mode) as out, _bar(url, total, have, progress) as advance:
            while chunk := resp.read(CHUNK):
                out.write(chunk)
                advance(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        got = part.stat().st_size
        if total is not None and got < total:
            # The server closed mid-way without an error: keep the .part for the next attempt.
            raise OSError(f"connection closed after {got} of {total} bytes")


@contextlib.contextmanager
def _bar(url: str, total: int | None, done: int, show: ShowProgress) -> Iterator[Any]:
    name = Path(urllib.parse.urlparse(url).path).name or url
    if callable(show):
        # The caller draws the bar (factory build shows one live display for all its stages).
        sent = [done]

        def advance(n: int) -> None:
            sent[0] += n
            show(sent[0], total)

        show(done, total)
        yield advance
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=_stderr,
        disable=not show,
        transient=True,
    ) as bar:
        task = bar.add_task(f"download {name}", total=total, completed=done)
        yield lambda n: bar.advance(task, n)


# --- local ISOs ---------------------------------------------------------------------------------------


def _hash_db() -> Path:
    return iso_cache_dir() / "hashes.json"


def _hash_key(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def verified_hashes() -> dict[str, str]:
    """The local-ISO hash cache: 'path|size|mtime_ns' -> sha256."""
    try:
        data = json.loads(_hash_db().read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def file_sha256(path: Path) -> str:
    """sha256 of a local file, remembered by path+size+mtime so a 4 GB ISO is hashed once."""
    key = _hash_key(path)
    known = verified_hashes().get(key)
    if known is not None:
        return known
    value = digest.sha256_file(path)
    db = _hash_db()
    with _locked(db, "updating"):
        data = verified_hashes()
        data[key] = value
        atomic_write_text(db, json.dumps(data, indent=1, sort_keys=True) + "\n")
    return value


def verify_local(path: Path, expected: str) -> None:
    if not path.is_file():
        raise MediaError(f"{path}: install ISO not found")
    try:
        actual = file_sha256(path)
    except PermissionError:
        raise MediaError(f"{path}: install ISO is not readable (permission denied)") from None
    if actual != expected:
        raise MediaError(f"{path}: sha256 mismatch: expected {expected}, got {actual}")


# --- reading ISOs (pycdlib: no mount, no root) ----------------------------------------------------------


@contextlib.contextmanager
def _open_iso(iso: Path) -> Iterator[pycdlib.PyCdlib]:
    cd = pycdlib.PyCdlib()
    try:
        cd.open(str(iso))
    except FileNotFoundError:
        raise MediaError(f"{iso}: ISO not found") from None
    except (PyCdlibException, OSError) as exc:
        raise MediaError(f"{iso}: not a readable ISO 9660 image: {exc}") from None
    try:
        yield cd
    finally:
        cd.close()


def _iso9660_name(path: str) -> str:
    """The plain ISO 9660 spelling of a path: upper case, files carry a ';1' version."""
    up = path.upper()
    return up if up.endswith(";1") else up + ";1"


def _candidates(cd: pycdlib.PyCdlib, path: str, *, is_dir: bool) -> list[dict[str, str]]:
    """Names to try, best first: Rock Ridge (EL media), then Joliet, then plain ISO 9660."""
    path = "/" + path.lstrip("/")
    tries: list[dict[str, str]] = []
    if cd.has_rock_ridge():
        tries.append({"rr_path": path})
    if cd.has_joliet():
        tries.append({"joliet_path": path})
    tries.append({"iso_path": path.upper() if is_dir else _iso9660_name(path)})
    if not is_dir:
        tries.append({"iso_path": path})
    return tries


def _extract(cd: pycdlib.PyCdlib, iso_path: str, out: Any) -> bool:
    for kwargs in _candidates(cd, iso_path, is_dir=False):
        try:
            cd.get_file_from_iso_fp(out, **kwargs)
            return True
        except PyCdlibException:
            out.seek(0)
            out.truncate()
    return False


def read_file(iso: Path, iso_path: str, dest: Path) -> Path:
    """Copy one file out of an ISO to `dest` (written to a temp name, then renamed)."""
    with _open_iso(iso) as cd:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                found = _extract(cd, iso_path, out)
            if found:
                os.replace(tmp, dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    if not found:
        raise MediaError(f"{iso}: no file {iso_path} in the ISO")
    return dest


def _child_name(cd: pycdlib.PyCdlib, child: Any, kind: str) -> str:
    if kind == "rr_path" and child.rock_ridge is not None:
        return str(child.rock_ridge.name().decode())
    ident: bytes = child.file_identifier()
    if kind == "joliet_path":
        return ident.decode("utf-16_be")
    return ident.decode().removesuffix(";1")


def list_dir(iso: Path, path: str) -> list[str]:
    """Names in a directory of the ISO (sorted; without '.' and '..')."""
    with _open_iso(iso) as cd:
        for kwargs in _candidates(cd, path, is_dir=True):
            kind = next(iter(kwargs))
            try:
                children = list(cd.list_children(**kwargs))
            except PyCdlibException:
                continue
            return sorted(
                _child_name(cd, c, kind)
                for c in children
                if c is not None and not (c.is_dot() or c.is_dotdot())
            )
    raise MediaError(f"{iso}: no directory {path} in the ISO")


def volume_label(iso: Path) -> str:
    """The primary volume descriptor's volume identifier (what LABEL= and inst.stage2 match)."""
    with _open_iso(iso) as cd:
        return str(cd.pvd.volume_identifier.decode(errors="replace").rstrip(" \0"))


# --- remastering for a serial console -------------------------------------------------------------------


def _parse_console(console: str) -> tuple[int, int]:
    m = re.fullmatch(r"ttyS(\d),(\d+)", console)
    if not m:
        raise MediaError(f"console {console!r}: expected ttyS<unit>,<speed> (e.g. ttyS0,115200)")
    return int(m.group(1)), int(m.group(2))


# A label is the rest of its line: isolinux allows blanks in it ("label Install CentOS 7").
_ISOLINUX_LABEL = re.compile(r"^[ \t]*label[ \t]+(\S.*?)[ \t]*$", flags=re.MULTILINE | re.IGNORECASE)
# The label the serial-prompt install types at `boot:` (EL media's installer entry).
INSTALL_LABEL = "linux"


def isolinux_labels(text: str) -> list[str]:
    """The `label` names of an isolinux.cfg in order, each whole; a name given twice is a MediaError.

    Which of two same-named entries a typed name boots is up to the syslinux version: the install would
    type `linux` without knowing which kernel line it gets, so a duplicate is refused, naming both lines.
    """
    labels: dict[str, int] = {}
    for m in _ISOLINUX_LABEL.finditer(text):
        name, line = m.group(1), text.count("\n", 0, m.start()) + 1
        # syslinux compares labels without regard to case.
        if (first := labels.get(name.lower())) is not None:
            raise MediaError(
                f"isolinux.cfg: duplicate label {name!r} on lines {first} and {line}: the boot line "
                "typed at the prompt would be ambiguous"
            )
        labels[name.lower()] = line
    return [m.group(1) for m in _ISOLINUX_LABEL.finditer(text)]


def serial_isolinux_cfg(text: str, console: str = "ttyS0,115200") -> str:
    """isolinux.cfg with a serial console and a plain `boot:` prompt that waits forever.

    `serial` must be the first directive; without `ui` (vesamenu draws only on VGA) isolinux prints its
    own prompt, which goes to the serial port too; `timeout 0` + `prompt 1` means nothing boots by itself.
    """
    unit, speed = _parse_console(console)
    labels = isolinux_labels(text)
    lowered = [label.lower() for label in labels]
    default = INSTALL_LABEL if INSTALL_LABEL in lowered else (labels[0] if labels else None)
    out = [f"serial {unit} {speed}", "prompt 1", "timeout 0"]
    if default is not None:
        out.append(f"default {default}")
    for line in text.splitlines():
        word = line.strip().split(maxsplit=1)[0].lower() if line.strip() else ""
        if word in ("serial", "prompt", "timeout", "ui", "default", "totaltimeout", "ontimeout"):
            continue
        if re.match(r"^\s*menu\s+default\b", line, flags=re.IGNORECASE):
            continue
        out.append(line)
    return "\n".join(out) + "\n"


# --- GRUB (UEFI) ---------------------------------------------------------------------------------------

# A menu entry or submenu at the start of a line: its title is the first (quoted) word after the keyword.
_GRUB_BLOCK = re.compile(r"""^\s*(menuentry|submenu)\s+(?:'([^']*)'|"((?:[^"\\]|\\.)*)"|(\S+))""")
_GRUB_LINUX = re.compile(r"^\s*(linuxefi|linux)\s")
_GRUB_INITRD = re.compile(r"^\s*(initrdefi|initrd)\s")
# The media check: lorax's "Test this media & install" entry carries it (and is EL 7.2's default).
MEDIA_CHECK_ARG = "rd.live.check"


@dataclass(frozen=True)
class GrubEntry:
    """One top-level `menuentry` of a grub.cfg: its title, GRUB's number for it and its boot lines."""

    title: str
    # GRUB numbers top-level menuentries and submenus together, from 0 (what `set default=` means).
    index: int
    # The kernel and initrd lines as written (GRUB script: typed at grub> they are parsed the same way).
    linux: str | None
    initrd: str | None


def grub_entries(text: str) -> list[GrubEntry]:
    """The top-level menu entries of a grub.cfg (entries inside a submenu are not counted)."""
    entries: list[GrubEntry] = []
    index = 0
    depth = 0
    current: dict[str, str | None] | None = None
    for line in text.splitlines():
        code = line.split("#", 1)[0] if line.lstrip().startswith("#") else line
        m = _GRUB_BLOCK.match(code)
        if m and depth == 0:
            if m.group(1) == "menuentry":
                title = next(g for g in m.groups()[1:] if g is not None)
                current = {"title": title, "linux": None, "initrd": None}
            index += 1
        if current is not None and depth == 1:
            if _GRUB_LINUX.match(code) and current["linux"] is None:
                current["linux"] = code.strip()
            elif _GRUB_INITRD.match(code) and current["initrd"] is None:
                current["initrd"] = code.strip()
        depth += code.count("{") - code.count("}")
        if depth <= 0:
            depth = 0
            if current is not None and "}" in code:
                entries.append(
                    GrubEntry(str(current["title"]), index - 1, current["linux"], current["initrd"])
                )
                current = None
    return entries


def grub_install_entry(text: str) -> GrubEntry:
    """The entry that installs without checking the media first (lorax's "Install ..."), or MediaError."""
    for entry in grub_entries(text):
        if entry.linux is not None and MEDIA_CHECK_ARG not in entry.linux.split():
            return entry
    raise MediaError(
        f"grub.cfg: no top-level menu entry boots a kernel without {MEDIA_CHECK_ARG} (the installer entry)"
    )


def serial_grub_cfg(text: str, console: str = "ttyS0,115200") -> str:
    """grub.cfg with GRUB on the serial port, the installer entry as default, a menu that waits forever
    (timeout -1), and `console=<console>` on every kernel line (so the kernel talks on the serial port)."""
    unit, speed = _parse_console(console)
    install = grub_install_entry(text)
    head = [
        f"serial --unit={unit} --speed={speed}",
        "terminal_input serial console",
        "terminal_output serial console",
        "set timeout=-1",
        # EL 7.2's `set default="1"` is "Test this media & install": a minutes-long check under TCG.
        f'set default="{install.index}"',
    ]
    body: list[str] = []
    for line in text.splitlines():
        if re.match(r"^\s*(set\s+(timeout(_style)?|default)=|serial\s|terminal_(input|output)\s)", line):
            continue
        if _GRUB_LINUX.match(line) and not re.search(rf"\sconsole={re.escape(console)}(\s|$)", line):
            body.append(f"{line.rstrip()} console={console}")
        else:
            body.append(line)
    return "\n".join(head + body) + "\n"


def grub_quote(word: str) -> str:
    """`word` as one GRUB script word: single-quoted unless plain (GRUB drops a backslash outside quotes,
    so LABEL=CentOS\\x207 needs the quotes to reach the kernel intact)."""
    if re.fullmatch(r"[A-Za-z0-9_./:=,+@%^-]+", word):
        return word
    return "'" + word.replace("'", "'\\''") + "'"


def efi_grub_cfg(iso: Path, work: Path) -> str | None:
    """The grub.cfg UEFI CD boot reads: the one inside images/efiboot.img, else EFI/BOOT/grub.cfg; None
    when the ISO has neither (BIOS-only media)."""
    try:
        img: Path | None = read_file(iso, EFIBOOT_PATH, work / "efiboot.img")
    except MediaError:
        img = None  # no EFI boot image: the tree's grub.cfg is the one left
    if img is not None:
        try:
            return _mcopy_out(iso, img)  # an unreadable FAT image is an error, not a fallback
        finally:
            img.unlink(missing_ok=True)
    try:
        cfg = read_file(iso, "/EFI/BOOT/grub.cfg", work / "grub.cfg")
    except MediaError:
        return None
    try:
        return cfg.read_text(errors="replace")
    finally:
        cfg.unlink(missing_ok=True)


def _mcopy_out(iso: Path, img: Path) -> str:
    """EFI/BOOT/grub.cfg out of a FAT image, or a MediaError saying why not."""
    got = tools.run(["mcopy", "-i", img, EFIBOOT_GRUB_CFG, "-"], env=_MTOOLS_ENV, timeout=60, check=False)
    if got.returncode != 0:
        lines = got.stderr.decode(errors="replace").strip().splitlines()
        why = re.sub(r"^\S*mcopy: ", "", lines[-1]) if lines else "mcopy failed"  # drop mcopy's own path
        if why.startswith("Cannot initialize"):  # mtools' words for "no FAT boot sector here"
            why = f"not a FAT filesystem ({why})"
        raise MediaError(f"{iso}: cannot read EFI/BOOT/grub.cfg in {EFIBOOT_PATH}: {why}")
    return got.stdout.decode(errors="replace")


def remaster_for_serial(iso: Path, *, console: str = "ttyS0,115200") -> Path:
    """A cached copy of `iso` whose boot loaders talk on the serial console and wait at their prompt.

    Edited: isolinux/isolinux.cfg (BIOS), EFI/BOOT/grub.cfg and, when present, the grub.cfg inside the
    El Torito EFI image images/efiboot.img (UEFI). The source ISO is only read.
    """
    _parse_console(console)
    source_sha = file_sha256(iso)
    key = digest.combine(REMASTER_VERSION, source_sha, console)
    out_dir = paths.cache_dir() / "remastered"
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / f"{key}.iso"
    with _locked(final, "remastering"):
        if final.is_file():
            return final
        with tempfile.TemporaryDirectory(dir=out_dir, prefix=".work-") as work_s:
            work = Path(work_s)
            with _open_iso(iso) as cd:
                joliet = cd.has_joliet()
            maps: list[str] = []
            iso_cfg = read_file(iso, "/isolinux/isolinux.cfg", work / "isolinux.cfg")
            iso_cfg.write_text(serial_isolinux_cfg(iso_cfg.read_text(errors="replace"), console))
            maps += ["-map", str(iso_cfg), "/isolinux/isolinux.cfg"]
            with contextlib.suppress(MediaError):  # BIOS-only media have no grub.cfg
                grub = read_file(iso, "/EFI/BOOT/grub.cfg", work / "grub.cfg")
                grub.write_text(serial_grub_cfg(grub.read_text(errors="replace"), console))
                maps += ["-map", str(grub), "/EFI/BOOT/grub.cfg"]
            efiboot = _serial_efiboot(iso, work, console)
            if efiboot is not None:
                maps += ["-map", str(efiboot), EFIBOOT_PATH]
            tmp = work / "new.iso"
            # `replay` re-creates the input's El Torito boot records and MBR/GPT system area as they were.
            tools.run(
                [
                    "xorriso", "-indev", iso, "-outdev", tmp,
                    *(["-joliet", "on"] if joliet else []),
                    "-boot_image", "any", "replay", *maps, "-commit",
                ],
                timeout=1800,
            )  # fmt: skip
            # An El Torito entry names a block address, not a path: check replay moved it to the new image.
            if (
                efiboot is not None
                and EFIBOOT_PATH in _eltorito_paths(iso)
                and EFIBOOT_PATH not in _eltorito_paths(tmp)
            ):
                raise MediaError(f"{iso}: the remastered copy lost its El Torito EFI image {EFIBOOT_PATH}")
            os.replace(tmp, final)
    return final


def _serial_efiboot(iso: Path, work: Path, console: str) -> Path | None:
    """A copy of the ISO's EFI boot image whose grub.cfg talks on the serial port; None if it has none.

    UEFI CD boot runs the El Torito EFI image's BOOTX64.EFI, and its grub reads the grub.cfg next to it in
    that FAT image, not EFI/BOOT/grub.cfg in the ISO tree. mtools edits the copy without mounting it.
    """
    try:
        img = read_file(iso, EFIBOOT_PATH, work / "efiboot.img")  # a private copy in the work folder
    except MediaError:
        return None  # BIOS-only media
    cfg = work / "efiboot-grub.cfg"
    cfg.write_text(serial_grub_cfg(_mcopy_out(iso, img), console))
    tools.run(["mcopy", "-o", "-i", img, cfg, EFIBOOT_GRUB_CFG], env=_MTOOLS_ENV, timeout=60)
    return img


def _eltorito_paths(iso: Path) -> set[str]:
    """ISO paths of the El Torito boot images (xorriso names the file found at each entry's block)."""
    report = tools.run(["xorriso", "-indev", iso, "-report_el_torito", "plain"], timeout=300)
    text = (report.stdout + report.stderr).decode(errors="replace")
    return set(re.findall(r"^El Torito img path :\s+\d+\s+(\S.*?)\s*$", text, flags=re.MULTILINE))


def cached_isos() -> list[tuple[Path, int]]:
    """Downloaded ISOs in the cache (each named by its verified sha256) and their sizes."""
    return sorted((p, p.stat().st_size) for p in iso_cache_dir().glob("*.iso"))
