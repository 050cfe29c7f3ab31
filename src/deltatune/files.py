"""Writing outputs atomically: to a temporary sibling, then renamed into place.

A job killed half-way must never leave a file that looks complete, because Snakemake (and the
user) would take it for a finished result; the hidden temporary it leaves instead is removed
when the output is next written, so a results folder does not collect them. The temporary
file is created private (``mkstemp``
and ``mkdtemp`` use 0600 and 0700), so before the rename it gets the mode a plain write would
have given under the user's umask: a results folder in a shared project directory stays
readable by the group. A file system that refuses the write (read-only, full) stops the step
with one message naming the file; nothing is left under the output's name.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import OutputError


@contextmanager
def atomic_path(path: str | os.PathLike, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` if the block succeeds.

    With ``directory=True`` the temporary path is an empty directory and the final rename
    replaces any existing directory at ``path``.
    """
    target = Path(path)
    prefix = f".{target.name}."
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(target.parent, prefix, ".tmp" + ("" if directory else target.suffix))
        if directory:
            tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=target.parent))
        else:
            fd, name = tempfile.mkstemp(prefix=prefix, suffix=".tmp" + target.suffix, dir=target.parent)
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


def _remove_stale(folder: Path, prefix: str, suffix: str) -> None:
    """Remove the temporaries a killed write of the same output left in ``folder``."""
    for stale in folder.glob(f"{glob.escape(prefix)}*{glob.escape(suffix)}"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


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


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON atomically."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def write_h5ad(adata, path: str | os.PathLike) -> None:
    """Write an AnnData to ``path`` (gzip-compressed) atomically."""
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp, compression="gzip")


def write_tsv(table, path: str | os.PathLike) -> None:
    """Write a DataFrame to ``path`` as a tab-separated table without its index, atomically."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
