"""Where a sweep's results live: a local directory (a :class:`pathlib.Path`), or a prefix in an
object store (:class:`ObjectPath`, for ``s3://bucket/prefix``, ``gs://…`` or any URI that
``pyarrow.fs.FileSystem.from_uri`` resolves).

:class:`ObjectPath` has the part of :class:`pathlib.Path` the results code uses (``/``,
``name``, ``exists``, ``read_text``, ``unlink``, ...), so the code reads and writes both kinds
alike; what differs is said where it differs:

* **Writes.** An object is written with one PUT straight to its final key (an object store
  has no rename, and a single upload is atomic: the object is complete or absent), where a
  local file goes through a temporary name and a rename (:func:`sweeper.atomic.atomic_write`
  does either).
* **Locks.** There is no flock: ``run`` and ``aggregate`` hold an object written with
  conditional requests instead (:mod:`.object_lock`); readers take no lock and read again
  when a compaction deleted a file under them (:func:`retry_vanished`).
* **Credentials and endpoint** come from the standard environment only (``AWS_ENDPOINT_URL_S3``
  or ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``,
  ...), read by pyarrow in each process: a path pickles as its URI alone, so nothing secret
  travels to Ray's workers, into a part's metadata or into MLflow. A URI that carries
  credentials itself (``s3://KEY:SECRET@bucket``) is refused.
"""

from __future__ import annotations

import contextlib
import functools
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import SweeperInputError

if TYPE_CHECKING:
    import pyarrow.fs as pafs

#: A URI with a scheme (``s3://``, ``gs://``, ``file://``), as opposed to a path.
URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
#: How many times a reader lists and reads again after a file vanished under it.
READ_ATTEMPTS = 4
T = TypeVar("T")


@functools.lru_cache(maxsize=16)
def _filesystem(root: str) -> tuple[pafs.FileSystem, str]:
    """pyarrow's filesystem for ``root`` (``scheme://bucket``) and the path of the bucket in
    it, made once per process. ``FileSystem.from_uri`` reads the endpoint from
    ``AWS_ENDPOINT_URL_S3`` (a bare ``S3FileSystem()`` would not).

    On S3, ``allow_delayed_open`` makes a small object one PUT: without it pyarrow writes
    every object as a multipart upload (create, upload a part, complete: three requests)."""
    import pyarrow as pa
    import pyarrow.fs as pafs

    if root.startswith("s3://") and "allow_delayed_open" not in root:
        root += ("&" if "?" in root else "?") + "allow_delayed_open=true"
    try:
        return pafs.FileSystem.from_uri(root)
    except (pa.ArrowException, ValueError, OSError) as exc:
        raise SweeperInputError(f"cannot open {root}: {exc}") from None


class ObjectPath:
    """A key, or a prefix of keys, in an object store: ``s3://bucket/sweeps/x/points``.

    Directories do not exist in an object store: ``mkdir`` does nothing, and a prefix "is" a
    directory when some key lies under it. Equal, hashed and ordered by URI; pickled as the
    URI (the filesystem is opened again, from the environment, where it is unpickled).
    """

    __slots__ = ("key", "root")

    def __init__(self, root: str, key: str = ""):
        self.root = root.rstrip("/")  # scheme://bucket
        self.key = key.strip("/")

    @classmethod
    def from_uri(cls, uri: str) -> ObjectPath:
        scheme, rest = uri.split("://", 1)
        bucket, _, key = rest.partition("/")
        if "@" in bucket:
            raise SweeperInputError(
                f"got {redact(uri)!r}: credentials in the URI would be stored in the sweep "
                "record and in MLflow; give them in the environment (AWS_ACCESS_KEY_ID, "
                "AWS_SECRET_ACCESS_KEY) and the URI without them")
        if not bucket:
            raise SweeperInputError(f"got {uri!r}: no bucket; expected {scheme}://BUCKET/PREFIX")
        query = ""
        if "?" in key:
            key, query = key.split("?", 1)
        return cls(f"{scheme}://{bucket}" + (f"?{query}" if query else ""), key)

    # -- path algebra -------------------------------------------------------------------
    @property
    def scheme(self) -> str:
        return self.root.split("://", 1)[0]

    @property
    def name(self) -> str:
        return self.key.rpartition("/")[2]

    @property
    def suffix(self) -> str:
        return Path(self.name).suffix

    @property
    def stem(self) -> str:
        return Path(self.name).stem

    @property
    def parent(self) -> ObjectPath:
        return ObjectPath(self.root, self.key.rpartition("/")[0])

    def __truediv__(self, other: str | Path) -> ObjectPath:
        tail = str(other).strip("/")
        return ObjectPath(self.root, f"{self.key}/{tail}" if self.key else tail)

    def with_name(self, name: str) -> ObjectPath:
        return self.parent / name

    def resolve(self) -> ObjectPath:
        return self

    absolute = resolve

    def as_uri(self) -> str:
        return str(self)

    def __str__(self) -> str:
        base, _, query = self.root.partition("?")
        return (f"{base}/{self.key}" if self.key else base) + (f"?{query}" if query else "")

    def __repr__(self) -> str:
        return f"ObjectPath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectPath) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    def __lt__(self, other: ObjectPath) -> bool:
        return str(self) < str(other)

    def __reduce__(self):
        return ObjectPath, (self.root, self.key)

    # -- the store ----------------------------------------------------------------------
    @property
    def filesystem(self) -> pafs.FileSystem:
        return _filesystem(self.root)[0]

    @property
    def path(self) -> str:
        """The path of this key in :attr:`filesystem` (``bucket/key``)."""
        bucket = _filesystem(self.root)[1].strip("/")
        return f"{bucket}/{self.key}" if self.key else bucket

    def info(self):
        return self.filesystem.get_file_info(self.path)

    def exists(self) -> bool:
        import pyarrow.fs as pafs

        return self.info().type != pafs.FileType.NotFound

    def is_file(self) -> bool:
        import pyarrow.fs as pafs

        return self.info().type == pafs.FileType.File

    def is_dir(self) -> bool:
        import pyarrow.fs as pafs

        return self.info().type == pafs.FileType.Directory

    def listing(self) -> list:
        """pyarrow FileInfo of each object and prefix directly under this one ([] if none)."""
        import pyarrow.fs as pafs

        selector = pafs.FileSelector(self.path, allow_not_found=True, recursive=False)
        return self.filesystem.get_file_info(selector)

    def iterdir(self) -> Iterator[ObjectPath]:
        for info in self.listing():
            yield self / info.base_name

    def read_bytes(self) -> bytes:
        with self.filesystem.open_input_stream(self.path) as handle:
            return handle.read()

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> int:
        """One upload to the final key: readers see the old object or the new one."""
        with self.filesystem.open_output_stream(self.path, metadata={}) as handle:
            handle.write(data)
        return len(data)

    def write_text(self, text: str, encoding: str = "utf-8") -> int:
        return self.write_bytes(text.encode(encoding))

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            self.filesystem.delete_file(self.path)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Nothing to make: a prefix exists once a key is written under it."""

    def copy_to(self, target: ObjectPath) -> None:
        self.filesystem.copy_file(self.path, target.path)


#: Where results go: a local directory or a prefix in an object store.
Location = Path | ObjectPath


def redact(uri: str) -> str:
    """``uri`` with any credentials before ``@`` replaced by ``***``."""
    return re.sub(r"(://)[^/@]*@", r"\1***@", uri)


def location(out: str | Path | ObjectPath) -> Location:
    """A results location from what the user gave: an object-store URI becomes an
    :class:`ObjectPath`, ``file://`` and a plain path a :class:`~pathlib.Path`.

    Raises:
        SweeperInputError: a URI with credentials in it, or without a bucket.
    """
    if isinstance(out, (Path, ObjectPath)):
        return out
    text = str(out)
    if not URI.match(text):
        return Path(text)
    if text.lower().startswith("file://"):
        from urllib.parse import unquote, urlparse

        return Path(unquote(urlparse(text).path))
    return ObjectPath.from_uri(text)


def is_remote(path: Any) -> bool:
    return isinstance(path, ObjectPath)


def check_reachable(out: ObjectPath) -> None:
    """Fail fast (SweeperInputError) when the store behind ``out`` cannot be opened or its
    bucket listed: a wrong endpoint, no credentials, no such bucket."""
    import pyarrow as pa
    import pyarrow.fs as pafs

    where = ("the endpoint and credentials come from AWS_ENDPOINT_URL_S3 (or AWS_ENDPOINT_URL), "
             "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION")
    try:
        bucket = ObjectPath(out.root).info()
        out.listing()
    except (pa.ArrowException, OSError) as exc:
        raise SweeperInputError(f"cannot reach {out}: {exc} ({where})") from None
    if bucket.type == pafs.FileType.NotFound:
        raise SweeperInputError(f"{out}: the bucket {ObjectPath(out.root)} does not exist at "
                                f"this endpoint; create it first ({where})")


def arrow_source(path: Location) -> tuple[str, pafs.FileSystem | None]:
    """``(path, filesystem)`` as pyarrow.parquet's readers take them."""
    if isinstance(path, ObjectPath):
        return path.path, path.filesystem
    return str(path), None


def parquet_file(path: Location):
    """``pyarrow.parquet.ParquetFile`` of a local or stored file."""
    import pyarrow.parquet as pq

    source, filesystem = arrow_source(path)
    return pq.ParquetFile(source, filesystem=filesystem)


def read_table(path: Location, **options):
    """``pyarrow.parquet.read_table`` of a local or stored file."""
    import pyarrow.parquet as pq

    source, filesystem = arrow_source(path)
    return pq.read_table(source, filesystem=filesystem, **options)


@contextlib.contextmanager
def local_file(target: Location) -> Iterator[Path]:
    """A local path to write ``target`` through: ``target`` itself when it is local, else a
    file in a temporary directory, uploaded to ``target`` (one PUT) when the block ends
    without an error. For writers that only take a local path (matplotlib)."""
    if not isinstance(target, ObjectPath):
        yield target
        return
    folder = Path(tempfile.mkdtemp(prefix="sweeper-upload-"))
    try:
        tmp = folder / target.name
        yield tmp
        target.write_bytes(tmp.read_bytes())
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def local_copies(paths: list[Location]) -> Iterator[list[Path]]:
    """Local paths of ``paths`` (for uploads to MLflow): stored files are downloaded into a
    temporary directory, kept for the block, under their own names."""
    folder = None
    try:
        copies = []
        for path in paths:
            if isinstance(path, ObjectPath):
                folder = folder or Path(tempfile.mkdtemp(prefix="sweeper-download-"))
                copy = folder / path.name
                copy.write_bytes(path.read_bytes())
                copies.append(copy)
            else:
                copies.append(Path(path))
        yield copies
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def retry_vanished(read: Callable[[], T], where: Location, attempts: int = READ_ATTEMPTS) -> T:
    """``read()``, done again when a file it listed has gone before it read it. Locally a
    shared flock keeps compaction out while a reader lists and reads; an object store has
    none, so a reader that raced a compaction (which writes the new file before it deletes
    the old ones) lists again and finds the new file. Local readers are called once."""
    if not isinstance(where, ObjectPath):
        return read()
    for attempt in range(attempts):
        try:
            return read()
        except FileNotFoundError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")
