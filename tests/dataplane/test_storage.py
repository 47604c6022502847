"""The storage schemes against real backends: S3 (moto server) and the filesystem."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from storage_support import Requests

from kubemaker_runtime.protocol import StorageConfig
from kubemaker_runtime.storage import (
    AccessDeniedError,
    BucketNotFoundError,
    NotFoundError,
    StoredObject,
    StoreFactory,
    TransientError,
)
from kubemaker_runtime.storage.local import LocalStore
from kubemaker_runtime.storage.s3 import POOL_HEADROOM, S3Store, relative_paths


def test_a_uri_is_an_object_a_folder_or_a_key_prefix() -> None:
    keys = ["data/train/a.csv", "data/train/x/b.csv", "data/train/", "data/train-old/c.csv"]
    folder = {"data/train/a.csv": "a.csv", "data/train/x/b.csv": "x/b.csv"}
    # With or without the trailing "/", as SageMaker users write it.
    assert relative_paths("data/train", keys) == folder
    assert relative_paths("data/train/", keys) == folder
    assert relative_paths("data/train/a.csv", keys) == {"data/train/a.csv": "a.csv"}
    assert relative_paths("data/tr", keys) == {
        "data/train/a.csv": "train/a.csv",
        "data/train/x/b.csv": "train/x/b.csv",
        "data/train-old/c.csv": "train-old/c.csv",
    }
    assert relative_paths("", ["a/b.csv", "c"]) == {"a/b.csv": "a/b.csv", "c": "c"}
    assert relative_paths("data/none", keys) == {}


def test_s3_list_download_open_upload(s3_client: Any, s3_bucket: str, tmp_path: Path) -> None:
    s3_client.put_object(Bucket=s3_bucket, Key="data/train/b/2.csv", Body=b"22")
    s3_client.put_object(Bucket=s3_bucket, Key="data/train/a.csv", Body=b"1")
    s3_client.put_object(Bucket=s3_bucket, Key="data/train/", Body=b"")  # folder marker
    s3_client.put_object(Bucket=s3_bucket, Key="data/other.csv", Body=b"no")
    store = S3Store()  # endpoint from AWS_ENDPOINT_URL_S3, like MinIO users set it

    objects = store.list(f"s3://{s3_bucket}/data/train/")
    assert [(o.key, o.size) for o in objects] == [("a.csv", 1), ("b/2.csv", 2)]
    assert objects[1].uri == f"s3://{s3_bucket}/data/train/b/2.csv"
    assert objects[0].etag

    dest = tmp_path / "b" / "2.csv"
    assert store.download(objects[1], dest) == 2
    assert dest.read_bytes() == b"22"
    assert abs(dest.stat().st_mtime - objects[1].mtime) < 1e-3
    assert [p.name for p in dest.parent.iterdir()] == ["2.csv"]  # no temp file left

    with store.open(objects[0]) as stream:
        assert stream.read() == b"1"

    src = tmp_path / "up.bin"
    src.write_bytes(b"x" * 1000)
    assert store.upload(src, f"s3://{s3_bucket}/out/up.bin") == 1000
    body = s3_client.get_object(Bucket=s3_bucket, Key="out/up.bin")["Body"].read()
    assert body == b"x" * 1000


def test_s3_endpoint_from_storage_config(s3_endpoint: str, s3_bucket: str, s3_client: Any) -> None:
    s3_client.put_object(Bucket=s3_bucket, Key="k", Body=b"v")
    store = StoreFactory(StorageConfig(s3_endpoint_url=s3_endpoint)).for_uri(f"s3://{s3_bucket}")
    assert isinstance(store, S3Store) and store.endpoint_url == s3_endpoint
    assert [o.key for o in store.list(f"s3://{s3_bucket}/")] == ["k"]


def test_s3_multipart_upload_and_download(s3_bucket: str, tmp_path: Path) -> None:
    store = S3Store()
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(17 * 1024 * 1024))  # above the 16 MiB multipart threshold
    store.upload(src, f"s3://{s3_bucket}/big.bin")
    [obj] = store.list(f"s3://{s3_bucket}/big.bin")
    assert obj.size == src.stat().st_size
    assert obj.etag and "-" in obj.etag  # a multipart ETag
    store.download(obj, tmp_path / "copy.bin")
    assert (tmp_path / "copy.bin").read_bytes() == src.read_bytes()


def test_one_transfer_manager_bounds_every_transfer(
    s3_endpoint: str, s3_client: Any, s3_bucket: str, tmp_path: Path
) -> None:
    for i in range(40):
        s3_client.put_object(Bucket=s3_bucket, Key=f"small/{i:02d}", Body=b"x" * (i + 1))
    stores = StoreFactory(StorageConfig(s3_endpoint_url=s3_endpoint), max_concurrency=3)
    store = stores.for_uri(f"s3://{s3_bucket}/small/")
    assert isinstance(store, S3Store) and store is stores.for_uri(f"s3://{s3_bucket}/other")
    assert store.client.meta.config.max_pool_connections == 3 + POOL_HEADROOM
    objects = store.list(f"s3://{s3_bucket}/small/")
    requests = Requests(store.client)

    # Ten callers at once, as the agent's staging threads are: still three requests.
    with ThreadPoolExecutor(10) as pool:
        list(pool.map(lambda o: store.download(o, tmp_path / o.key), objects))

    assert all((tmp_path / o.key).stat().st_size == o.size for o in objects)
    assert requests.most_in_flight <= 3
    # One GET per object: the listing's size and ETag stand in for a HeadObject.
    assert requests.sent == {"GetObject": 40}
    manager = store.manager
    store.upload(tmp_path / "00", f"s3://{s3_bucket}/up/00")
    assert store.manager is manager

    stores.close()  # stops the threads; the store still works, with a new manager
    assert store.download(objects[1], tmp_path / "again") == 2


def test_an_object_replaced_after_listing_is_not_mixed(
    s3_client: Any, s3_bucket: str, tmp_path: Path
) -> None:
    size = 17 * 1024 * 1024  # two ranged parts, each sent with If-Match: <listed ETag>
    s3_client.put_object(Bucket=s3_bucket, Key="big.bin", Body=b"a" * size)
    store = S3Store()
    [obj] = store.list(f"s3://{s3_bucket}/big.bin")
    s3_client.put_object(Bucket=s3_bucket, Key="big.bin", Body=b"b" * size)
    with pytest.raises(TransientError) as info:
        store.download(obj, tmp_path / "big.bin")
    assert info.value.kind == "platform" and "ETag" in info.value.message
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temp file


def test_botocore_alone_retries_a_failing_request(
    unavailable_s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    store = S3Store(endpoint_url=unavailable_s3_endpoint)
    requests = Requests(store.client)
    obj = StoredObject(uri="s3://bucket/k", key="k", size=10, mtime=0, etag="abc")
    with pytest.raises(TransientError) as info:
        store.download(obj, tmp_path / "k")
    assert "SlowDown" in info.value.message or "503" in info.value.message
    assert requests.sent == {"GetObject": 2}


class _BodyBreaksOff(BaseHTTPRequestHandler):
    """Answers a GET with headers for 1,000 bytes, sends 10 and hangs up."""

    protocol_version = "HTTP/1.1"
    gets = 0

    def do_GET(self) -> None:
        type(self).gets += 1
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.send_header("ETag", '"abc"')
        self.end_headers()
        self.wfile.write(b"0123456789")
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def body_breaks_off_endpoint() -> Iterator[str]:
    _BodyBreaksOff.gets = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BodyBreaksOff)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_body_that_breaks_off_is_a_platform_error_without_resends(
    body_breaks_off_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # botocore cannot retry a body that fails after the headers arrived; s3transfer
    # would re-send the GET up to five times: the store lets it send one.
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")
    store = S3Store(endpoint_url=body_breaks_off_endpoint)
    obj = StoredObject(uri="s3://bucket/k", key="k", size=1000, mtime=0, etag="abc")
    with pytest.raises(TransientError) as info:
        store.download(obj, tmp_path / "k")
    assert info.value.kind == "platform" and "s3://bucket/k" in info.value.message
    assert _BodyBreaksOff.gets == 1
    assert list(tmp_path.iterdir()) == []


def test_s3_errors_are_classified(s3_endpoint: str, s3_bucket: str, tmp_path: Path) -> None:
    store = S3Store()
    with pytest.raises(BucketNotFoundError) as missing_bucket:
        store.list("s3://no-such-bucket-kubemaker/data")
    assert missing_bucket.value.kind == "user"
    assert "no-such-bucket-kubemaker" in missing_bucket.value.message

    assert store.list(f"s3://{s3_bucket}/empty/") == []
    src = tmp_path / "f"
    src.write_text("x")
    with pytest.raises(BucketNotFoundError):
        store.upload(src, "s3://no-such-bucket-kubemaker/f")
    with pytest.raises(NotFoundError) as missing_key:
        store.open(StoredObject(uri=f"s3://{s3_bucket}/nope", key="nope", size=0, mtime=0))
    assert missing_key.value.kind == "user"


def test_s3_server_errors_are_platform_errors(unavailable_s3_endpoint: str) -> None:
    store = S3Store(endpoint_url=unavailable_s3_endpoint)
    with pytest.raises(TransientError) as info:
        store.list("s3://bucket/data")
    assert info.value.kind == "platform"
    assert "SlowDown" in info.value.message or "503" in info.value.message


def test_s3_unreachable_endpoint_is_a_platform_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = S3Store(endpoint_url=f"http://127.0.0.1:{port}")
    with pytest.raises(TransientError):
        store.list("s3://bucket/data")


def test_file_store_lists_copies_links_and_writes(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "nested").mkdir(parents=True)
    (source / "a.csv").write_text("1,2\n")
    (source / "nested" / "b.csv").write_text("3,4\n")
    store = LocalStore()
    objects = store.list(f"file://{source}")
    assert [o.key for o in objects] == ["a.csv", "nested/b.csv"]
    assert [o.uri for o in objects] == [f"file://{source}/a.csv", f"file://{source}/nested/b.csv"]

    store.download(objects[1], tmp_path / "copy" / "b.csv")
    copy = tmp_path / "copy" / "b.csv"
    assert copy.read_text() == "3,4\n" and not copy.is_symlink()
    assert copy.stat().st_mtime == pytest.approx(objects[1].mtime, abs=1e-3)

    LocalStore(link=True).download(objects[0], tmp_path / "link" / "a.csv")
    link = tmp_path / "link" / "a.csv"
    assert link.is_symlink() and link.resolve() == (source / "a.csv").resolve()

    single = store.list(f"file://{source}/a.csv")
    assert [(o.key, o.size) for o in single] == [("a.csv", 4)]

    out = tmp_path / "f"
    out.write_text("model")
    store.upload(out, f"file://{tmp_path}/outputs/job/model.tar.gz")
    assert (tmp_path / "outputs/job/model.tar.gz").read_text() == "model"

    with pytest.raises(NotFoundError) as info:
        store.list(f"file://{tmp_path}/missing")
    assert info.value.kind == "user"


def test_pvc_uris_resolve_under_the_pvc_root(tmp_path: Path) -> None:
    (tmp_path / "datasets" / "mnist").mkdir(parents=True)
    (tmp_path / "datasets" / "mnist" / "train.csv").write_text("1\n")
    store = StoreFactory(StorageConfig(pvc_root=str(tmp_path))).for_uri("pvc://datasets/mnist")
    assert isinstance(store, LocalStore)
    assert store.path_of("pvc://datasets/mnist") == tmp_path / "datasets" / "mnist"
    assert [o.key for o in store.list("pvc://datasets/mnist")] == ["train.csv"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads everything")
def test_unreadable_directory_is_access_denied(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "a").write_text("x")
    locked.chmod(0)
    try:
        with pytest.raises(AccessDeniedError):
            LocalStore().list(f"file://{locked}")
    finally:
        locked.chmod(0o755)


def test_unknown_scheme_is_a_user_error() -> None:
    with pytest.raises(NotFoundError) as info:
        StoreFactory(StorageConfig()).for_uri("gs://bucket/data")
    assert info.value.kind == "user" and "gs" in info.value.message
