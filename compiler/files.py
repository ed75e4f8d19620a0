"""Writing the user's files: whole or not at all, and an OSError as a clean error naming the path.

- `write_text(path, text, what)` (and `write_bytes(path, data, what)`) writes a temporary file
  beside `path` and renames it over `path` (`os.replace`) unless Ctrl-C was pressed; the
  temporary file is removed in `finally`, so an error or Ctrl-C leaves the old file or none.
  `path` must not be a directory and its directory must exist.
- `make_dirs(path)` makes a directory and its missing parents and returns the ones it made,
  outermost first, so that a failed command can remove them (`remove_dirs`).
- `check_dir(path, what)` refuses an existing path that is not a directory.
- `os_error(what, path, e)` is the EdgecError for an OSError on `path` or on the way to it: a
  read-only or full file system, a file where a directory should be.

`what` is how the user named the path ("opt -o", "--dump-ir"); every message starts with it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from . import interrupt
from .errors import EdgecError, InputError


def os_error(what: str, path: Path, e: OSError) -> EdgecError:
    blocker = next((p for p in reversed(path.parents) if p.exists() and not p.is_dir()), None)
    reason = f"{blocker} is a file, not a directory" if blocker is not None else e.strerror or str(e)
    return EdgecError(f"{what} {path}: cannot write it ({reason})")


def check_dir(path: Path, what: str) -> None:
    if path.exists() and not path.is_dir():
        raise EdgecError(f"{what} {path} is a file, not a directory; name a directory")


def make_dirs(path: Path) -> list[Path]:
    missing = [p for p in [*reversed(path.parents), path] if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        remove_dirs(missing)
        raise
    return missing


def remove_dirs(made: list[Path]) -> None:
    """Remove the directories `make_dirs` made (innermost first), where they are still empty."""
    with interrupt.deferred():
        for d in reversed(made):
            try:
                d.rmdir()
            except OSError:
                pass


def write_text(path: Path, text: str, what: str) -> None:
    _write(path, text, "w", what)


def write_bytes(path: Path, data: bytes, what: str) -> None:
    _write(path, data, "wb", what)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write(path: Path, content: str | bytes, mode: str, what: str) -> None:
    if path.is_dir():
        raise EdgecError(f"{what} {path} is a directory; name a file")
    if not path.parent.is_dir():
        raise EdgecError(f"{what} {path}: the directory {path.parent} does not exist; create it first")
    tmp = None
    try:
        with interrupt.deferred():  # a Ctrl-C here is raised once `tmp` names the file it made
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, mode) as f:
            f.write(content)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; a user's output follows the umask
        interrupt.check()
        os.replace(tmp, path)
    except OSError as e:
        raise os_error(what, path, e) from None
    finally:
        if tmp is not None:
            with interrupt.deferred():
                Path(tmp).unlink(missing_ok=True)


def read_npz(path: Path, what: str) -> dict:
    """{name: array} of a `.npz` file (never unpickling); `what` names the file for the message
    ("--inputs", "calibration file"): InputError when it cannot be read."""
    import zipfile

    import numpy as np
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise InputError(f"{what} {path}: cannot read it as a .npz file ({e})") from None
