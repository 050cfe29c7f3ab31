"""Writing outputs atomically: to a temporary sibling, then renamed into place.

A job killed half-way must never leave a file that looks complete, because Snakemake (and the
user) would take it for a finished result. The hidden temporary it leaves instead names the
host and process that wrote it; the next write of the same output removes those of processes
on this host that are gone, so a results folder does not collect them, and leaves any whose
writer may still be alive (another host's, a running process's). The temporary file is
created private (``mkstemp`` and ``mkdtemp`` use 0600 and 0700), so before the rename it gets
the mode a plain write would have given under the user's umask: a results folder in a shared
project directory stays readable by the group. A file system that refuses the write (read-only, full) stops the step
with one message naming the file; nothing is left under the output's name.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import OutputError

HOST = socket.gethostname().split(".")[0]  # names a temporary's writer, with its process id


@contextmanager
def atomic_path(path: str | os.PathLike, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` if the block succeeds.

    With ``directory=True`` the temporary path is an empty directory and the final rename
    replaces any existing directory at ``path``.
    """
    target = Path(path)
    prefix = f".{target.name}.{HOST}-{os.getpid()}."
    suffix = ".tmp" if directory else ".tmp" + target.suffix
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(target.parent, target.name, suffix)
        if directory:
            tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=target.parent))
        else:
            fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=target.parent)
            os.close(fd)
            tmp = Path(name)
    except OSError as err:
        raise OutputError(f"cannot write {target}: {_reason(err)}") from err
    try:
        yield tmp
        _share(tmp)
        if directory and target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException as err:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and not isinstance(err, FileNotFoundError):
            raise OutputError(f"cannot write {target}: {_reason(err)}") from err
        raise


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _remove_stale(folder: Path, name: str, suffix: str) -> None:
    """Remove the temporaries of output ``name`` in ``folder`` whose writer, on this host, is gone."""
    stale = re.compile(rf"\.{re.escape(name)}\.(?P<host>[^.]+)-(?P<pid>\d+)\.\w{{8}}{re.escape(suffix)}")
    for entry in folder.iterdir():
        found = stale.fullmatch(entry.name)
        if not found or found["host"] != HOST or _alive(int(found["pid"])):
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _reason(err: OSError) -> str:
    """The system's reason for a failed write (HDF5 buries it in a long message of its own)."""
    found = re.search(r"error message = '([^']+)'", str(err))
    return found.group(1) if found else (err.strerror or str(err))


def _share(path: Path) -> None:
    """Give ``path`` (and, for a folder, all in it) the modes ``open`` and ``mkdir`` would give under
    the current umask: the temporary file is private, and some writers (safetensors) make their
    files private too."""
    umask = os.umask(0)
    os.umask(umask)
    file_mode, dir_mode = 0o666 & ~umask, 0o777 & ~umask
    if not path.is_dir():
        path.chmod(file_mode)
        return
    path.chmod(dir_mode)
    for root, dirs, files in os.walk(path):
        for name in dirs:
            os.chmod(os.path.join(root, name), dir_mode)
        for name in files:
            os.chmod(os.path.join(root, name), file_mode)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, data: Any, sort_keys: bool = True) -> None:
    """Write ``data`` as indented JSON atomically; ``sort_keys=False`` where order is meaning (a
    config's stages, a manifest's rows: the report's order)."""
    write_text(path, json.dumps(data, indent=2, sort_keys=sort_keys, default=str) + "\n")


def write_h5ad(adata, path: str | os.PathLike) -> None:
    """Write an AnnData to ``path`` (gzip-compressed) atomically."""
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp, compression="gzip")


def write_tsv(table, path: str | os.PathLike) -> None:
    """Write a DataFrame to ``path`` as a tab-separated table without its index, atomically."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False)


def sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    """The sha256 of a file, read a few MB at a time (a screen file or an image of several GB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
