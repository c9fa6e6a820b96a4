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
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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


def _filesystem(root: str) -> tuple[pafs.FileSystem, str]:
    return _made_filesystem(root, *_endpoint())


@functools.lru_cache(maxsize=16)
def _made_filesystem(root: str, *endpoint: str | None) -> tuple[pafs.FileSystem, str]:
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

    __slots__ = ("key", "listed", "root")

    def __init__(self, root: str, key: str = "", listed: Stat | None = None):
        self.root = root.rstrip("/")  # scheme://bucket
        self.key = key.strip("/")
        #: What a listing said of this key (its last modification and size), when it came
        #: from one: :meth:`read_bytes` reuses what it read of that version, and
        #: parquet_sink's ``identity`` takes it as the file before it was read. Not part of
        #: equality, hashing or pickling.
        self.listed = listed

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
    def store(self) -> _Store:
        """How this process talks to the store (made once per root and process)."""
        return _store(self.root)

    def stat(self) -> Stat:
        return self.store.stat(self.key)

    def exists(self) -> bool:
        return self.stat().kind is not None

    def is_file(self) -> bool:
        return self.stat().kind == "file"

    def is_dir(self) -> bool:
        return self.stat().kind == "dir"

    def listing(self) -> list[Stat]:
        """Each object and prefix directly under this one ([] if none)."""
        return self.store.listing(self.key)

    def iterdir(self) -> Iterator[ObjectPath]:
        for entry in self.listing():
            yield self / entry.name

    def read_bytes(self) -> bytes:
        """The object's bytes: one GET, or none for a listed version read before (a sweep's
        small files are read more than once by one command: checked, then read)."""
        if self.listed is None or not self.listed.etag or self.listed.size > _CACHE.item_bytes:
            return self.store.get(self.key)
        version = (str(self), self.listed.etag)
        data = _CACHE.get(version)
        if data is None:
            data = self.store.get(self.key)
            _CACHE.put(version, data)
        return data

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> int:
        """One PUT to the final key: readers see the old object or the new one."""
        self.store.put(self.key, data)
        return len(data)

    def write_text(self, text: str, encoding: str = "utf-8") -> int:
        return self.write_bytes(text.encode(encoding))

    def write_through(self, write: Callable[[str], None]) -> ObjectPath:
        """``write(tmp)`` to a local temporary file, then that file as this object in one
        PUT (what :func:`sweeper.atomic.atomic_write` does for a stored key)."""
        with local_file(self) as tmp:
            write(str(tmp))
        return self

    def unlink(self, missing_ok: bool = False) -> None:
        if not missing_ok and not self.is_file():
            raise FileNotFoundError(f"no object {self}")
        self.store.delete(self.key)

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Nothing to make: a prefix exists once a key is written under it."""

    def copy_to(self, target: ObjectPath) -> None:
        self.store.copy(self.key, target.key)


class _Recent:
    """The bytes of the stored files read last, by (URI, ETag: a hash of the content, so a
    rewritten object is another entry): at most ``item_bytes`` each and ``total_bytes`` in
    all; thread-safe (parts are read by a pool)."""

    def __init__(self, item_bytes: int = 1 << 20, total_bytes: int = 64 << 20):
        import collections
        import threading

        self.item_bytes, self.total_bytes = item_bytes, total_bytes
        self._items: collections.OrderedDict = collections.OrderedDict()
        self._size, self._lock = 0, threading.Lock()

    def get(self, version: tuple) -> bytes | None:
        with self._lock:
            data = self._items.get(version)
            if data is not None:
                self._items.move_to_end(version)
            return data

    def put(self, version: tuple, data: bytes) -> None:
        with self._lock:
            if version in self._items:
                return
            self._items[version] = data
            self._size += len(data)
            while self._size > self.total_bytes:
                self._size -= len(self._items.popitem(last=False)[1])


_CACHE = _Recent()


@dataclass(frozen=True)
class Stat:
    """What a store says of a key: ``kind`` "file", "dir" (a prefix of other keys) or None
    (nothing there); a file's last modification (ns), size and ETag (where the client gives
    one: boto3 does, pyarrow does not)."""

    name: str
    kind: str | None
    mtime_ns: int = 0
    size: int = 0
    etag: str = ""


class _Store:
    """The requests an :class:`ObjectPath` needs, for keys of one bucket."""

    def get(self, key: str) -> bytes: ...
    def put(self, key: str, data: bytes) -> None: ...
    def delete(self, key: str) -> None: ...
    def stat(self, key: str) -> Stat: ...
    def listing(self, key: str) -> list[Stat]: ...
    def copy(self, key: str, target: str) -> None: ...

    def delete_many(self, keys: list[str]) -> None:
        for key in keys:
            self.delete(key)


def delete_many(paths: list[ObjectPath]) -> None:
    """Delete the objects ``paths`` (missing ones are fine), a thousand per request where the
    client can (boto3's DeleteObjects), else one by one."""
    by_root: dict[str, list[ObjectPath]] = {}
    for path in paths:
        by_root.setdefault(path.root, []).append(path)
    for root, group in by_root.items():
        _store(root).delete_many([path.key for path in group])


class _ArrowStore(_Store):
    """Through pyarrow's filesystem: any URI ``FileSystem.from_uri`` takes (gs://, s3:// with
    options in its query). A read costs a HEAD and a GET, and a delete leaves an empty
    "directory" marker behind (apache/arrow#36275)."""

    def __init__(self, root: str):
        self.fs, bucket = _filesystem(root)
        self.bucket = bucket.strip("/")

    def _path(self, key: str) -> str:
        return f"{self.bucket}/{key}" if key else self.bucket

    def get(self, key: str) -> bytes:
        with self.fs.open_input_stream(self._path(key)) as handle:
            return handle.read()

    def put(self, key: str, data: bytes) -> None:
        with self.fs.open_output_stream(self._path(key), metadata={}) as handle:
            handle.write(data)

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(self._path(key))

    def stat(self, key: str) -> Stat:
        return self._stat(self.fs.get_file_info(self._path(key)))

    def listing(self, key: str) -> list[Stat]:
        import pyarrow.fs as pafs

        selector = pafs.FileSelector(self._path(key), allow_not_found=True, recursive=False)
        return [self._stat(info) for info in self.fs.get_file_info(selector)]

    def copy(self, key: str, target: str) -> None:
        self.fs.copy_file(self._path(key), self._path(target))

    @staticmethod
    def _stat(info) -> Stat:
        import pyarrow.fs as pafs

        kind = {pafs.FileType.File: "file", pafs.FileType.Directory: "dir"}.get(info.type)
        return Stat(info.base_name, kind, info.mtime_ns or 0, info.size or 0)


class _Boto3Store(_Store):
    """Through boto3, for ``s3://`` (its endpoint and credentials from the environment): a
    read is one GET, a write one PUT, a delete one DELETE, and no directory markers. boto3's
    errors become OSError (FileNotFoundError for a missing key), as pyarrow's are."""

    def __init__(self, root: str):
        self.bucket = root.split("://", 1)[1]
        self.client = s3_client()

    def _call(self, operation: str, **arguments):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, operation)(Bucket=self.bucket, **arguments)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            text = f"s3://{self.bucket}/{arguments.get('Key', '')}: {error.get('Code')} " \
                   f"({error.get('Message') or status})"
            if status == 404 or error.get("Code") in ("NoSuchKey", "404", "NotFound"):
                raise FileNotFoundError(text) from None
            raise OSError(text) from None
        except BotoCoreError as exc:
            raise OSError(f"s3://{self.bucket}: {exc}") from None

    def get(self, key: str) -> bytes:
        return self._call("get_object", Key=key)["Body"].read()

    def put(self, key: str, data: bytes) -> None:
        self._call("put_object", Key=key, Body=data)

    def delete(self, key: str) -> None:
        self._call("delete_object", Key=key)

    def delete_many(self, keys: list[str]) -> None:
        for first in range(0, len(keys), 1000):  # S3's limit per DeleteObjects
            batch = [{"Key": key} for key in keys[first:first + 1000]]
            answer = self._call("delete_objects", Delete={"Objects": batch, "Quiet": True})
            if answer.get("Errors"):
                error = answer["Errors"][0]
                raise OSError(f"s3://{self.bucket}/{error.get('Key')}: cannot delete "
                              f"({error.get('Code')}: {error.get('Message')}), and "
                              f"{len(answer['Errors']) - 1} more")

    def stat(self, key: str) -> Stat:
        name = key.rpartition("/")[2]
        if not key:
            try:
                self._call("head_bucket")
            except FileNotFoundError:
                return Stat(name, None)
            return Stat(name, "dir")
        try:
            head = self._call("head_object", Key=key)
        except FileNotFoundError:
            below = self._call("list_objects_v2", Prefix=f"{key}/", MaxKeys=1)
            return Stat(name, "dir" if below.get("KeyCount") else None)
        return Stat(name, "file", _ns(head["LastModified"]), head["ContentLength"],
                    head.get("ETag", ""))

    def listing(self, key: str) -> list[Stat]:
        prefix = f"{key}/" if key else ""
        found, token = [], None
        while True:
            more = {"ContinuationToken": token} if token else {}
            page = self._call("list_objects_v2", Prefix=prefix, Delimiter="/", **more)
            found += [Stat(item["Key"][len(prefix):], "file", _ns(item["LastModified"]),
                           item["Size"], item.get("ETag", "")) for item in page.get("Contents", [])
                      if item["Key"] != prefix]  # a directory marker is not a file
            found += [Stat(item["Prefix"][len(prefix):].rstrip("/"), "dir")
                      for item in page.get("CommonPrefixes", [])]
            token = page.get("NextContinuationToken")
            if not token:
                return found

    def copy(self, key: str, target: str) -> None:
        self._call("copy_object", Key=target, CopySource={"Bucket": self.bucket, "Key": key})


def _ns(when) -> int:
    return int(when.timestamp() * 1e9)


def _store(root: str) -> _Store:
    """boto3 for a plain ``s3://bucket`` when it is installed, else pyarrow (other schemes, or
    a URI whose query sets pyarrow's own options); one per root and endpoint in a process."""
    return _made_store(root, *_endpoint())


def _endpoint() -> tuple[str | None, str | None]:
    """The endpoint variables: a client made for one is not reused for another."""
    return os.environ.get("AWS_ENDPOINT_URL_S3"), os.environ.get("AWS_ENDPOINT_URL")


@functools.lru_cache(maxsize=16)
def _made_store(root: str, *endpoint: str | None) -> _Store:
    if root.startswith("s3://") and "?" not in root:
        try:
            import boto3  # noqa: F401
        except ImportError:
            pass
        else:
            return _Boto3Store(root)
    return _ArrowStore(root)


def s3_client() -> Any:
    """A boto3 S3 client configured by the standard environment only: boto3 reads
    ``AWS_ENDPOINT_URL_S3`` (or ``AWS_ENDPOINT_URL``), ``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, ``AWS_DEFAULT_REGION`` and its config files.
    botocore does not read ``AWS_REGION``; it is used here when ``AWS_DEFAULT_REGION`` is unset.
    Nothing is written anywhere.

    Raises:
        SweeperInputError: boto3 is not installed.
    """
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise SweeperInputError("results on S3 need boto3: pip install 'rnn-sweeper[s3]'"
                                ) from None
    region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or None
    # Short timeouts: a heartbeat that hangs for botocore's default 60 s outlives the lease.
    return boto3.client("s3", region_name=region,
                        config=Config(connect_timeout=10, read_timeout=20,
                                      max_pool_connections=32))


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


def check_reachable(out: ObjectPath) -> None:
    """Fail fast (SweeperInputError) when the store behind ``out`` cannot be opened or its
    bucket listed: a wrong endpoint, no credentials, no such bucket."""
    import pyarrow as pa

    where = ("the endpoint and credentials come from AWS_ENDPOINT_URL_S3 (or AWS_ENDPOINT_URL), "
             "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION")
    try:
        bucket = ObjectPath(out.root).stat()
        if bucket.kind is not None:
            out.listing()
    except (pa.ArrowException, OSError) as exc:
        raise SweeperInputError(f"cannot reach {out}: {exc} ({where})") from None
    if bucket.kind is None:
        raise SweeperInputError(f"{out}: the bucket {ObjectPath(out.root)} does not exist at "
                                f"this endpoint; create it first ({where})")


def arrow_source(path: Location):
    """What pyarrow.parquet's readers take for ``path``. A stored file is fetched whole, in
    one GET, and read from memory: pyarrow's own reader would ask for its size, then its
    footer, then its columns (three requests or more), which for the small files a sweep
    writes costs more than the bytes."""
    if isinstance(path, ObjectPath):
        import pyarrow as pa

        return pa.BufferReader(path.read_bytes())
    return str(path)


def parquet_file(path: Location):
    """``pyarrow.parquet.ParquetFile`` of a local or stored file."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(arrow_source(path))


def read_table(path: Location, **options):
    """``pyarrow.parquet.read_table`` of a local or stored file."""
    import pyarrow.parquet as pq

    return pq.read_table(arrow_source(path), **options)


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
