"""Object stores on real parts: a folder, and a real S3 server (SeaweedFS) for the MinIO store."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.request import url2pathname, urlopen

import httpx
import pytest
from minio import Minio
from pydantic import SecretStr

from linli.errors import ConfigurationError, DeliveryError, NotFound, ValidationError
from linli.settings import Settings, StorageSettings
from linli.storage import LocalObjectStore, MinioObjectStore, ObjectStore, check_key, make_store
from tests.s3server import S3Server, running_s3

BAD_KEYS = ["", "/etc/passwd", "../outside.txt", "a/../../outside.txt", "a/./b", "a//b", "a/", "a\\b", "a\x00b"]


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 server (SeaweedFS) with credentials, for this module."""
    with running_s3(tmp_path_factory.mktemp("s3")) as server:
        yield server


def minio_store(server: S3Server, **overrides: object) -> MinioObjectStore:
    """A store on a fresh bucket of the test server, so tests never see each other's objects."""
    options: dict[str, object] = {
        "endpoint": server.endpoint,
        "access_key": server.access_key,
        "secret_key": SecretStr(server.secret_key),
        "bucket": f"linli-{uuid.uuid4().hex[:12]}",
        "secure": False,
    }
    options.update(overrides)
    return MinioObjectStore(**options)  # type: ignore[arg-type]


@pytest.fixture(params=["local", "minio"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """Each implementation in turn, behind the same interface."""
    if request.param == "local":
        return LocalObjectStore(tmp_path / "objects")
    return minio_store(request.getfixturevalue("s3"))


# --- behaviour both stores share ------------------------------------------------------------


def test_put_get_exists_delete(store: ObjectStore) -> None:
    key = "cases/LL-20261123-0001/before-1a2b3c4d.jpg"
    assert isinstance(store, ObjectStore)
    assert not store.exists(key)
    store.put(key, b"\xff\xd8 photo bytes", "image/jpeg")
    assert store.exists(key)
    assert store.get(key) == b"\xff\xd8 photo bytes"
    store.delete(key)
    assert not store.exists(key)


def test_put_replaces_the_object(store: ObjectStore) -> None:
    store.put("a/b.txt", b"first", "text/plain")
    store.put("a/b.txt", b"second, longer", "text/plain")
    assert store.get("a/b.txt") == b"second, longer"


def test_missing_object(store: ObjectStore) -> None:
    with pytest.raises(NotFound, match="nope.jpg"):
        store.get("cases/nope.jpg")
    store.delete("cases/nope.jpg")  # deleting what is not there is not an error
    assert not store.exists("cases/nope.jpg")


def test_empty_object(store: ObjectStore) -> None:
    store.put("empty.bin", b"", "application/octet-stream")
    assert store.exists("empty.bin")
    assert store.get("empty.bin") == b""


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_are_refused(store: ObjectStore, key: str) -> None:
    for call in (
        lambda: store.put(key, b"x", "text/plain"),
        lambda: store.get(key),
        lambda: store.exists(key),
        lambda: store.delete(key),
        lambda: store.url(key),
    ):
        with pytest.raises(ValidationError) as info:
            call()
        assert info.value.field == "key"


def test_expiry_out_of_range_is_refused(store: ObjectStore) -> None:
    for seconds in (0, -5, 8 * 24 * 3600):
        with pytest.raises(ValidationError) as info:
            store.url("a.txt", expires_seconds=seconds)
        assert info.value.field == "expires_seconds"


def test_check_key_accepts_ordinary_keys() -> None:
    for key in ("a", "cases/LL-20261123-0001/after-0011aabb.webp", "snapshots/设备-7/1.jpg", "a/..b/c.."):
        assert check_key(key) == key


# --- the local folder -----------------------------------------------------------------------


def test_local_files_live_under_root(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    store.put("cases/x/before-1.jpg", b"data", "image/jpeg")
    assert (tmp_path / "objects" / "cases" / "x" / "before-1.jpg").read_bytes() == b"data"


def test_local_url_is_a_file_uri_of_the_object(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    store.put("cases/x/照片 1.png", b"png bytes", "image/png")
    url = store.url("cases/x/照片 1.png", expires_seconds=60)
    assert url.startswith("file://")
    assert Path(url2pathname(url.removeprefix("file://"))) == tmp_path / "objects" / "cases" / "x" / "照片 1.png"
    with urlopen(url) as response:  # noqa: S310 - a file:// URI we made
        assert response.read() == b"png bytes"


def test_local_key_escaping_through_a_symlink_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "objects"
    root.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    store = LocalObjectStore(root)
    with pytest.raises(ValidationError, match="outside the store"):
        store.put("link/evil.txt", b"x", "text/plain")
    assert list(outside.iterdir()) == []


def test_local_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    store = LocalObjectStore(root)
    store.put("a/b.txt", b"original", "text/plain")
    (root / "a" / "dir").mkdir()  # a folder where the new object should go: the rename fails
    with pytest.raises(DeliveryError) as info:
        store.put("a/dir", b"new data", "text/plain")
    assert "LINLI_DATA_DIR" in info.value.hint
    assert sorted(p.name for p in (root / "a").iterdir()) == ["b.txt", "dir"]  # no temp file left
    assert list((root / "a" / "dir").iterdir()) == []
    assert store.get("a/b.txt") == b"original"


def test_local_readers_never_see_half_an_object(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    versions = [bytes([n]) * 2_000_000 for n in range(1, 6)]
    store.put("big.bin", versions[0], "application/octet-stream")
    seen: list[bytes] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            seen.append(store.get("big.bin"))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(4):
            for version in versions:
                store.put("big.bin", version, "application/octet-stream")
    finally:
        done.set()
        reader.join()
    assert seen
    assert all(data in versions for data in seen)
    assert not [p for p in (tmp_path / "objects").iterdir() if p.name != "big.bin"]


def test_local_delete_prunes_empty_folders(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    store = LocalObjectStore(root)
    store.put("cases/x/before-1.jpg", b"1", "image/jpeg")
    store.put("cases/y/before-2.jpg", b"2", "image/jpeg")
    store.delete("cases/x/before-1.jpg")
    assert not (root / "cases" / "x").exists()
    assert (root / "cases" / "y" / "before-2.jpg").exists()
    assert root.is_dir()


def test_local_unwritable_root_is_a_delivery_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    store = LocalObjectStore(tmp_path / "file" / "objects")
    with pytest.raises(DeliveryError, match="could not write"):
        store.put("a.txt", b"x", "text/plain")


# --- MinIO / S3 against a real S3 server ----------------------------------------------------


def test_minio_creates_the_bucket_if_missing(s3: S3Server) -> None:
    store = minio_store(s3)
    admin = Minio(s3.endpoint, access_key=s3.access_key, secret_key=s3.secret_key, secure=False)
    assert not admin.bucket_exists(store.bucket)
    store.put("hello.txt", b"hi", "text/plain")
    assert admin.bucket_exists(store.bucket)
    # A second store on the same, now existing, bucket works too.
    again = minio_store(s3, bucket=store.bucket)
    assert again.get("hello.txt") == b"hi"


def test_minio_keeps_the_content_type(s3: S3Server) -> None:
    store = minio_store(s3)
    store.put("cases/x/before-1.webp", b"RIFF....WEBP", "image/webp")
    admin = Minio(s3.endpoint, access_key=s3.access_key, secret_key=s3.secret_key, secure=False)
    assert admin.stat_object(store.bucket, "cases/x/before-1.webp").content_type == "image/webp"


def test_minio_presigned_url_serves_the_bytes_then_expires(s3: S3Server) -> None:
    store = minio_store(s3)
    payload = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 10
    store.put("cases/LL-20261123-0001/before-00112233.png", payload, "image/png")

    url = store.url("cases/LL-20261123-0001/before-00112233.png", expires_seconds=600)
    assert url.startswith(f"http://{s3.endpoint}/{store.bucket}/cases/LL-20261123-0001/")
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=600" in url
    assert s3.secret_key not in url
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.content == payload
    assert response.headers["content-type"] == "image/png"

    # Without the signature the object is not public.
    assert httpx.get(url.split("?", 1)[0]).status_code == 403

    short = store.url("cases/LL-20261123-0001/before-00112233.png", expires_seconds=1)
    time.sleep(2.1)
    assert httpx.get(short).status_code == 403


@pytest.mark.parametrize(
    ("access_key", "secret_key"),
    [("linli-test", "definitely-the-wrong-secret"), ("nobody-of-ours", "another-wrong-secret")],
    ids=["wrong-secret", "unknown-access-key"],
)
def test_minio_wrong_credentials_say_what_to_check(s3: S3Server, access_key: str, secret_key: str) -> None:
    store = minio_store(s3, access_key=access_key, secret_key=SecretStr(secret_key))
    with pytest.raises(DeliveryError) as info:
        store.put("a.txt", b"x", "text/plain")
    error = info.value
    assert s3.endpoint in error.message
    assert "refused access key" in error.message
    assert "LINLI_STORAGE__ACCESS_KEY" in error.hint and "LINLI_STORAGE__SECRET_KEY" in error.hint
    for text in (str(error), repr(error), error.message, error.hint, repr(store)):
        assert secret_key not in text
        assert s3.secret_key not in text


def test_minio_unreachable_endpoint_is_a_quick_delivery_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # free once closed: nothing listens there
    store = MinioObjectStore(f"127.0.0.1:{port}", "linli", SecretStr("s3cr3t-value"), "linli")
    started = time.monotonic()
    with pytest.raises(DeliveryError) as info:
        store.get("a.txt")
    assert time.monotonic() - started < 10
    assert f"127.0.0.1:{port}" in info.value.message
    assert "LINLI_STORAGE__ENDPOINT" in info.value.hint
    assert "s3cr3t-value" not in str(info.value)


def test_minio_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="bucket name"):
        MinioObjectStore("127.0.0.1:9000", "a", "b", "Not_A_Bucket")
    with pytest.raises(ConfigurationError, match="not host:port"):
        MinioObjectStore("http://127.0.0.1:9000/some/path", "a", "b", "linli")
    store = MinioObjectStore("https://minio.example.org:9443", "a", "b", "linli")
    assert (store.endpoint, store.secure) == ("minio.example.org:9443", True)


# --- make_store -----------------------------------------------------------------------------


def test_make_store_local(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", storage=StorageSettings(backend="local"))
    store = make_store(settings)
    assert isinstance(store, LocalObjectStore)
    store.put("a.txt", b"x", "text/plain")
    assert (tmp_path / "data" / "objects" / "a.txt").read_bytes() == b"x"


def test_make_store_minio(s3: S3Server, tmp_path: Path) -> None:
    bucket = f"linli-{uuid.uuid4().hex[:12]}"
    settings = Settings(
        data_dir=tmp_path / "data",
        storage=StorageSettings(
            backend="minio",
            endpoint=s3.endpoint,
            access_key=s3.access_key,
            secret_key=SecretStr(s3.secret_key),
            bucket=bucket,
            secure=False,
        ),
    )
    store = make_store(settings)
    assert isinstance(store, MinioObjectStore)
    store.put("a.txt", b"from settings", "text/plain")
    assert store.get("a.txt") == b"from settings"
    assert httpx.get(store.url("a.txt")).content == b"from settings"
