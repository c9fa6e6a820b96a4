"""Writing a file so that a reader sees the old version or the new one, never half of one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

# Read once: os.umask can only be read by setting it, which other threads would see.
_UMASK = os.umask(0)
os.umask(_UMASK)


class WriteError(OSError):
    """A file could not be written: the disk is full (ENOSPC), the file is over the process's
    size limit (EFBIG), the directory is read-only, ... ``filename`` is the file that was
    being written and ``errno`` the system's code; the message names both.

    An OSError, so code that handles I/O failures handles it; built with OSError's own
    arguments, so it pickles (Ray ships a worker's exception to the driver)."""

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror}"


def write_error(path: str | Path, cause: OSError) -> WriteError:
    """The :class:`WriteError` for ``cause`` while writing ``path``: the system's short text
    for the errno ("No space left on device") rather than a library's wrapped one."""
    reason = os.strerror(cause.errno) if cause.errno else str(cause)
    return WriteError(cause.errno, reason, str(path))


def atomic_write(path, write: Callable[[str], None]):
    """Call ``write(tmp)`` on a hidden temporary file beside ``path``, flush it to disk, then
    rename it onto ``path`` (atomic on POSIX). On any failure the temporary file is removed
    and ``path`` keeps its previous content.

    ``path`` may also be a key in an object store (:class:`sweeper.adapters.storage.
    ObjectPath`): ``write`` then writes a local temporary file, uploaded in one PUT to the
    key (atomic there: the object is complete or absent), and removed.

    Returns:
        ``path`` as a Path (a key in an object store: as given).

    Raises:
        WriteError: an OSError on the way (disk full, file too large, no permission), with
            ``path`` in its message; errors of other kinds from ``write`` pass unchanged.
    """
    if hasattr(path, "write_through"):  # a key in an object store
        try:
            return path.write_through(write)
        except WriteError:
            raise
        except OSError as exc:
            raise write_error(path, exc) from exc
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())  # a full disk may only say so here (delayed allocation)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, path)
    except WriteError:
        raise
    except OSError as exc:
        raise write_error(path, exc) from exc
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return path

