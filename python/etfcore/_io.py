"""Crash-safe file writing and checked reading, shared by every writer of etfcore.

One rule: a file under its final name is always complete. `atomic_write` writes to a
temporary file **in the destination directory** (so the final rename never crosses filesystems),
fsyncs it, renames it over the destination and fsyncs the directory; a failure or a kill at any
point leaves the previous file untouched (and at worst a hidden ``.<name>.tmp-*`` file beside it).
`append_line` appends one whole line with a single write; `read_jsonl` skips a torn
last line. Operating-system failures (full or read-only disk, permissions) become a
[`StorageError`][etfcore.StorageError] that names the path.

`write_manifest` / `verify_manifest` bind the files of one multi-file result (e.g.
one extraction): a manifest written last lists each file's size, SHA-256 and, for ``.npy`` files,
shape and dtype; readers refuse a set that no longer matches it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import shutil
import warnings
from typing import IO, Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Union

from .errors import CorruptDataError, StorageError

PathLike = Union[str, "os.PathLike[str]"]

#: The manifest of a directory of files written together (see `write_manifest`).
MANIFEST = "manifest.json"
_MANIFEST_FORMAT = "etfcore-manifest-1"


def storage_error(e: OSError, path: PathLike, action: str = "write") -> StorageError:
    """A [`StorageError`][etfcore.StorageError] naming ``path`` for an operating-system failure
    ``e``."""
    why = {
        errno.ENOSPC: "no space left on the device",
        errno.EDQUOT: "disk quota exceeded",
        errno.EROFS: "the filesystem is read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.EISDIR: "it is a directory",
        errno.ENOTDIR: "a parent is not a directory",
        errno.ENOENT: "no such file or directory",
    }.get(e.errno or 0, e.strerror or str(e))
    err = StorageError(f"cannot {action} {os.fspath(path)}: {why}")
    err.path = os.fspath(path)
    err.errno = e.errno
    return err


def fsync_dir(path: PathLike) -> None:
    """Makes a rename or a new file in directory ``path`` durable (a no-op where directories
    cannot be opened, e.g. on Windows)."""
    try:
        fd = os.open(os.fspath(path), os.O_RDONLY)
    except OSError:  # pragma: no cover - platform dependent
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def make_dirs(path: PathLike) -> str:
    """``os.makedirs(path, exist_ok=True)`` with typed errors (a file in the way, a read-only
    disk). Returns ``path`` as a string."""
    p = os.fspath(path)
    if os.path.exists(p) and not os.path.isdir(p):
        err = StorageError(f"{p} exists and is not a directory")
        err.path = p
        raise err
    try:
        os.makedirs(p, exist_ok=True)
    except OSError as e:
        raise storage_error(e, p, "create the directory") from None
    return p


def temp_path(path: PathLike) -> str:
    """A fresh, unused temporary name beside ``path`` (same directory, hidden, created empty)."""
    p = os.fspath(path)
    d, name = os.path.split(os.path.abspath(p))
    for _ in range(100):
        tmp = os.path.join(d, f".{name}.tmp-{secrets.token_hex(4)}")
        try:  # mode 0o666 less the umask, as a plain open() would create the file
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        except OSError as e:
            raise storage_error(e, p) from None
        os.close(fd)
        return tmp
    raise StorageError(f"cannot write {p}: no free temporary name in {d}")  # pragma: no cover


def commit(tmp: PathLike, path: PathLike) -> None:
    """fsyncs ``tmp``, renames it over ``path`` and fsyncs the directory (the atomic step)."""
    p = os.fspath(path)
    try:
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except OSError as e:
        discard(tmp)
        raise storage_error(e, p) from None
    fsync_dir(os.path.dirname(os.path.abspath(p)))


def discard(tmp: PathLike) -> None:
    """Removes a temporary file if it is there."""
    with contextlib.suppress(OSError):
        os.unlink(tmp)


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """``with atomic_write(path) as f: f.write(...)``: ``path`` gets the whole content or keeps
    its previous one (see the module docstring). ``mode`` is ``"wb"`` or ``"w"`` (UTF-8)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write writes with mode 'w' or 'wb', got {mode!r}")
    p = os.fspath(path)
    tmp = temp_path(p)
    try:
        kw = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
        with open(tmp, mode, **kw) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except OSError as e:
        discard(tmp)
        raise storage_error(e, p) from None
    except BaseException:
        discard(tmp)
        raise
    fsync_dir(os.path.dirname(os.path.abspath(p)))


def write_bytes(path: PathLike, data: Union[bytes, bytearray, memoryview]) -> None:
    """Writes ``data`` to ``path`` atomically."""
    with atomic_write(path, "wb") as f:
        f.write(data)


def write_text(path: PathLike, text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_write(path, "w") as f:
        f.write(text)


def save_npy(path: PathLike, array: Any) -> None:
    """``numpy.save`` to ``path`` atomically (no pickled objects)."""
    import numpy as np

    with atomic_write(path, "wb") as f:
        np.save(f, np.asarray(array), allow_pickle=False)


def save_with(path: PathLike, writer: Callable[[IO[bytes]], None]) -> None:
    """``writer(binary_file)`` writes the content of ``path``; atomically (e.g. ``torch.save``)."""
    with atomic_write(path, "wb") as f:
        writer(f)


def append_line(path: PathLike, line: str) -> None:
    """Appends ``line`` plus a newline to ``path`` with one write, then flushes and fsyncs: a
    kill leaves at worst a torn last line, which `read_jsonl` skips."""
    p = os.fspath(path)
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    try:
        fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            done = os.write(fd, data)
            while done < len(data):  # a short write (signals, pipes): finish the line
                done += os.write(fd, data[done:])
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        raise storage_error(e, p, "append to") from None


def read_jsonl(path: PathLike) -> List[Dict[str, Any]]:
    """The JSON rows of ``path``, one per line. A damaged *last* line (a write cut by a kill) is
    skipped with a warning; a damaged line elsewhere is a
    [`CorruptDataError`][etfcore.CorruptDataError]."""
    p = os.fspath(path)
    try:
        with open(p, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise storage_error(e, p, "read") from None
    lines = raw.split(b"\n")
    rows: List[Dict[str, Any]] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line.decode("utf-8"))
            if not isinstance(row, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            last = all(not rest.strip() for rest in lines[i + 1:])
            if last:
                warnings.warn(
                    f"{p}: skipped a damaged last line {i + 1} (a write cut short?)", stacklevel=2
                )
                break
            raise CorruptDataError(f"{p}: line {i + 1} is not a JSON object: {e}") from None
        rows.append(row)
    return rows


def write_jsonl(path: PathLike, rows: Sequence[Mapping[str, Any]]) -> None:
    """Rewrites ``path`` with ``rows`` atomically."""
    write_text(path, "".join(json.dumps(dict(r)) + "\n" for r in rows))


def check_free_space(directory: PathLike, nbytes: int, what: Optional[PathLike] = None) -> None:
    """Refuses ([`StorageError`][etfcore.StorageError]) to start writing ``nbytes`` into
    ``directory`` when the filesystem has less free space (a memory-mapped write to a full disk dies
    with SIGBUS)."""
    d = os.fspath(directory)
    try:
        free = shutil.disk_usage(d).free
    except OSError as e:
        raise storage_error(e, d, "inspect") from None
    if nbytes > free:
        target = os.fspath(what) if what is not None else d
        err = StorageError(
            f"cannot write {target}: not enough free space on the device ({nbytes} bytes "
            f"needed, {free} free)"
        )
        err.path = target
        err.errno = errno.ENOSPC
        raise err


# ------------------------------------------------------------------------------------ manifests
def file_digest(path: PathLike) -> str:
    """SHA-256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _npy_header(path: str) -> Optional[Dict[str, Any]]:
    import numpy as np

    try:
        with open(path, "rb") as f:
            fmt = np.lib.format
            version = fmt.read_magic(f)
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, fortran, dtype = read(f)
    except (ValueError, OSError, EOFError):
        return None
    return {"shape": list(shape), "dtype": dtype.str, "fortran_order": bool(fortran)}


def describe_file(path: PathLike) -> Dict[str, Any]:
    """What a manifest records of one file: size, SHA-256, and shape/dtype for ``.npy``."""
    p = os.fspath(path)
    entry: Dict[str, Any] = {"size": os.path.getsize(p), "sha256": file_digest(p)}
    if p.endswith(".npy"):
        header = _npy_header(p)
        if header is not None:
            entry.update(header)
    return entry


def write_manifest(
    directory: PathLike, names: Sequence[str], *, extra: Optional[Mapping[str, Any]] = None,
    manifest: str = MANIFEST,
) -> Dict[str, Any]:
    """Writes ``directory/manifest`` (atomically, last) binding the files ``names`` of one result.
    Returns what it wrote."""
    d = os.fspath(directory)
    doc: Dict[str, Any] = {
        "format": _MANIFEST_FORMAT,
        "complete": True,
        "files": {n: describe_file(os.path.join(d, n)) for n in sorted(names)},
    }
    if extra:
        doc.update(extra)
    write_text(os.path.join(d, manifest), json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return doc


def mark_incomplete(directory: PathLike, manifest: str = MANIFEST) -> None:
    """Replaces the manifest with one saying a new result is being put in place: until the
    final `write_manifest`, readers refuse the directory's files."""
    doc = {"format": _MANIFEST_FORMAT, "complete": False, "files": {}}
    write_text(os.path.join(os.fspath(directory), manifest), json.dumps(doc) + "\n")


def read_manifest(directory: PathLike, manifest: str = MANIFEST) -> Optional[Dict[str, Any]]:
    """The manifest of ``directory`` (``None`` when there is none)."""
    path = os.path.join(os.fspath(directory), manifest)
    if not os.path.exists(path):
        return None
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError) as e:
        raise CorruptDataError(f"{path} is damaged: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != _MANIFEST_FORMAT:
        raise CorruptDataError(f"{path} is not an etfcore manifest")
    return doc


def verify_manifest(path: PathLike, *, checksum: bool = True, manifest: str = MANIFEST) -> None:
    """Checks a file against the manifest of its directory. A file with no manifest beside it is
    accepted as it is (files made by hand); one whose directory's manifest is incomplete, does not
    list it, or records another size, shape, dtype or checksum raises
    [`CorruptDataError`][etfcore.CorruptDataError] naming the path."""
    p = os.fspath(path)
    d, name = os.path.split(os.path.abspath(p))
    doc = read_manifest(d, manifest)
    if doc is None:
        return
    where = os.path.join(d, manifest)
    if not doc.get("complete"):
        raise CorruptDataError(
            f"{p}: the files in {d} are incomplete (a write was interrupted; {where} is not "
            "final): write them again"
        )
    entry = (doc.get("files") or {}).get(name)
    if entry is None:
        raise CorruptDataError(
            f"{p} is not part of the set recorded in {where} (a stale or foreign file)"
        )
    try:
        size = os.path.getsize(p)
    except OSError as e:
        raise storage_error(e, p, "read") from None
    if size != entry.get("size"):
        raise CorruptDataError(
            f"{p} has {size} bytes but {where} records {entry.get('size')} (truncated or replaced)"
        )
    if "shape" in entry:
        header = _npy_header(p)
        if header is None or header["shape"] != entry["shape"] or header["dtype"] != entry["dtype"]:
            raise CorruptDataError(f"{p}: its shape/dtype differ from those recorded in {where}")
    if checksum and file_digest(p) != entry.get("sha256"):
        raise CorruptDataError(f"{p}: its checksum differs from the one recorded in {where}")


def read_bytes(path: PathLike) -> bytes:
    """A file's bytes, with a typed error naming it."""
    p = os.fspath(path)
    try:
        with open(p, "rb") as f:
            return f.read()
    except OSError as e:
        raise storage_error(e, p, "read") from None


__all__ = [
    "MANIFEST",
    "append_line",
    "atomic_write",
    "check_free_space",
    "commit",
    "describe_file",
    "discard",
    "file_digest",
    "fsync_dir",
    "make_dirs",
    "mark_incomplete",
    "read_bytes",
    "read_jsonl",
    "read_manifest",
    "save_npy",
    "save_with",
    "storage_error",
    "temp_path",
    "verify_manifest",
    "write_bytes",
    "write_jsonl",
    "write_manifest",
    "write_text",
]
