"""sweeper.adapters.storage against a real S3 API (moto's server on 127.0.0.1): the
path-like ObjectPath behaves the same through both ways a process talks to the store, boto3
(a plain s3:// URI) and pyarrow's filesystem (a URI with pyarrow's options in its query),
and each costs the requests it should."""

from __future__ import annotations

import pickle

import pytest
from s3 import keys, moto_server, new_bucket, s3_env

from sweeper.adapters.storage import ObjectPath, location, read_table, retry_vanished
from sweeper.atomic import atomic_write
from sweeper.errors import SweeperInputError


@pytest.fixture(scope="module")
def s3():
    with moto_server() as endpoint, s3_env(endpoint):
        yield endpoint


@pytest.fixture(params=["boto3", "pyarrow"])
def root(request, s3) -> tuple[str, str, str]:
    """(URI of a fresh prefix, bucket, which client serves it)."""
    bucket = new_bucket(s3)
    if request.param == "boto3":
        return f"s3://{bucket}/sweep", bucket, "boto3"
    host = s3.split("://", 1)[1]
    return f"s3://{bucket}/sweep?scheme=http&endpoint_override={host}", bucket, "pyarrow"


def _under(uri: str, *parts: str) -> ObjectPath:
    path = location(uri)
    for part in parts:
        path = path / part
    return path


def test_an_object_path_reads_writes_lists_and_deletes(root, s3):
    uri, bucket, client = root
    out = location(uri)
    assert type(out.store).__name__ == {"boto3": "_Boto3Store", "pyarrow": "_ArrowStore"}[client]
    assert not out.exists() and out.listing() == []
    part = out / "points" / "part-a.parquet"
    assert part.write_bytes(b"12345") == 5
    assert part.read_bytes() == b"12345" and part.is_file() and not part.is_dir()
    assert out.is_dir() and (out / "points").is_dir()
    stat = part.stat()
    assert stat.kind == "file" and stat.size == 5 and stat.mtime_ns > 0
    (out / "sweep.json").write_text('{"a": 1}')
    assert sorted((e.name, e.kind) for e in out.listing()) == [("points", "dir"),
                                                               ("sweep.json", "file")]
    assert [p.name for p in (out / "points").iterdir()] == ["part-a.parquet"]
    part.copy_to(out / "points" / ".corrupt" / "part-a.parquet.1")
    assert (out / "points" / ".corrupt" / "part-a.parquet.1").read_bytes() == b"12345"
    part.unlink()
    part.unlink(missing_ok=True)
    with pytest.raises(FileNotFoundError):
        part.unlink()
    with pytest.raises(FileNotFoundError):
        part.read_bytes()
    assert not part.exists()
    stored = keys(s3, bucket, "sweep/")
    # boto3 deletes the key alone; pyarrow leaves an empty "directory" marker behind.
    marker = ["sweep/points/"] if client == "pyarrow" else []
    assert stored == sorted(["sweep/points/.corrupt/part-a.parquet.1", "sweep/sweep.json",
                             *marker])


def test_an_object_path_pickles_as_its_uri_and_keeps_its_name(root):
    uri, _, _ = root
    path = _under(uri, "points", "part-x.parquet")
    again = pickle.loads(pickle.dumps(path))
    assert again == path and hash(again) == hash(path) and str(again) == str(path)
    assert path.name == "part-x.parquet" and path.suffix == ".parquet"
    assert path.stem == "part-x" and path.parent == _under(uri, "points")
    assert b"secret" not in pickle.dumps(path)  # only the URI travels, no client, no keys


def test_atomic_write_and_read_table_go_through_the_store(root):
    import pyarrow as pa
    import pyarrow.parquet as pq

    uri, _, _ = root
    target = _under(uri, "region_map.parquet")
    table = pa.table({"x": [1.0, 2.0], "region": ["memory", "chaotic"]})
    assert atomic_write(target, lambda tmp: pq.write_table(table, tmp)) == target
    assert read_table(target).equals(table)


def test_a_uri_with_credentials_or_without_a_bucket_is_refused():
    with pytest.raises(SweeperInputError, match="credentials in the URI") as refused:
        location("s3://AKIAEXAMPLE:s3cr3t@bucket/x")
    assert "s3cr3t" not in str(refused.value)
    with pytest.raises(SweeperInputError, match="no bucket"):
        location("gs:///x")
    assert location("file:///tmp/x").__class__.__name__.endswith("Path")
    assert not isinstance(location("file:///tmp/x"), ObjectPath)


def test_a_reader_lists_again_when_a_file_vanished_under_it(root):
    uri, _, _ = root
    calls = []

    def read():
        calls.append(1)
        if len(calls) < 3:
            raise FileNotFoundError("deleted by a compaction")
        return "read"

    assert retry_vanished(read, location(uri)) == "read" and len(calls) == 3
    calls.clear()

    def never():
        calls.append(1)
        raise FileNotFoundError("gone for good")

    with pytest.raises(FileNotFoundError, match="gone for good"):
        retry_vanished(never, location(uri))
    assert len(calls) == 4  # READ_ATTEMPTS, then the error stands


def test_a_listed_version_is_read_once_and_a_rewritten_one_again(root):
    from sweeper.adapters.parquet_sink import _files

    uri, _, client = root
    folder = _under(uri, "points")
    (folder / "part-a.parquet").write_bytes(b"first")
    [(_, listed)] = _files(folder)
    assert listed.read_bytes() == b"first"
    (folder / "part-a.parquet").unlink()  # behind the listed path's back
    if client == "boto3":  # its listing has ETags: the version read is kept, no second GET
        assert listed.read_bytes() == b"first"
    else:  # pyarrow gives no ETag: every read asks the store
        with pytest.raises(FileNotFoundError):
            listed.read_bytes()
    (folder / "part-a.parquet").write_bytes(b"again")  # a new version: another ETag
    [(_, relisted)] = _files(folder)
    assert relisted.read_bytes() == b"again"


def test_delete_many_deletes_what_is_there_and_passes_over_what_is_not(root, s3):
    from sweeper.adapters.storage import delete_many

    uri, bucket, _ = root
    paths = [_under(uri, "points", f"part-{i}.parquet") for i in range(3)]
    for path in paths[:2]:
        path.write_bytes(b"x")
    (_under(uri, "points", "compact-000001.parquet")).write_bytes(b"kept")
    delete_many(paths)  # the third was never written
    left = [k for k in keys(s3, bucket, "sweep/points/") if not k.endswith("/")]  # markers
    assert left == ["sweep/points/compact-000001.parquet"]
