"""Object storage for photos and snapshots: one small interface, a folder and a MinIO/S3 implementation.

Callers receive an :class:`ObjectStore` (built once by :func:`make_store`) and never know which
one they hold. Both implementations share the same rules:

- a key is a relative, slash-separated path such as ``cases/LL-20261123-0001/before-1a2b3c4d.jpg``;
  empty segments, ``.``/``..``, backslashes, control characters and leading slashes are refused
  with :class:`~linli.errors.ValidationError` (field ``key``);
- ``get`` of a missing key raises :class:`~linli.errors.NotFound`; ``delete`` of a missing key
  does nothing (as in S3);
- failures of the backing system become :class:`~linli.errors.DeliveryError` whose hint says what
  to check; secrets never appear in a message.
"""

from __future__ import annotations

import logging
import os
import ssl
import tempfile
import threading
from collections.abc import Callable
from datetime import timedelta
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable
from urllib.parse import urlsplit

import certifi
import urllib3
from minio import Minio
from minio.error import MinioException, S3Error
from minio.helpers import check_bucket_name
from pydantic import SecretStr

from linli.errors import ConfigurationError, DeliveryError, NotFound, ValidationError

if TYPE_CHECKING:
    from linli.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_KEY_LENGTH = 1024  # S3's own limit, in UTF-8 bytes
MAX_URL_EXPIRY_SECONDS = 7 * 24 * 3600  # the longest a SigV4 presigned URL may live
_AUTH_ERROR_CODES = {"SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied", "InvalidToken"}


@runtime_checkable
class ObjectStore(Protocol):
    """Where Linli keeps binary objects (photos, snapshots) by key."""

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` under ``key``, replacing what was there."""
        ...

    def get(self, key: str) -> bytes:
        """The bytes stored under ``key``; :class:`NotFound` when there are none."""
        ...

    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object under ``key``; nothing happens when there is none."""
        ...

    def url(self, key: str, expires_seconds: int = 3600) -> str:
        """A URL a browser or notification channel can fetch the object from."""
        ...


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative object key, else raise :class:`ValidationError`."""
    hint = "use a relative path like 'cases/LL-20261123-0001/before-1a2b3c4d.jpg'"
    if not isinstance(key, str) or not key:
        raise ValidationError("object key is empty", field="key", hint=hint)
    if len(key.encode("utf-8")) > MAX_KEY_LENGTH:
        raise ValidationError(f"object key is longer than {MAX_KEY_LENGTH} bytes", field="key", hint=hint)
    if key.startswith("/") or "\\" in key:
        raise ValidationError(f"object key {key!r} is absolute", field="key", hint=hint)
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in key):
        raise ValidationError("object key contains control characters", field="key", hint=hint)
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise ValidationError(f"object key {key!r} has an empty, '.' or '..' segment", field="key", hint=hint)
    return key


def _check_expiry(expires_seconds: int) -> timedelta:
    if not 1 <= expires_seconds <= MAX_URL_EXPIRY_SECONDS:
        raise ValidationError(
            f"URL expiry {expires_seconds} s is out of range",
            field="expires_seconds",
            hint=f"choose between 1 and {MAX_URL_EXPIRY_SECONDS} seconds (7 days)",
        )
    return timedelta(seconds=expires_seconds)


class LocalObjectStore:
    """Objects as files under one folder: the embedded default and the store tests run against.

    Only the bytes are kept (the content type lives with the record that points at the object,
    e.g. ``CasePhoto.content_type``). Writes are atomic: a temporary file in the target folder
    is renamed over the key, so readers see the old object or the new one, never half of one.
    ``url`` returns a ``file://`` URI of the object's path; it does not expire and only works on
    this machine, so anything served to a browser must go through an endpoint that calls ``get``.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    def __repr__(self) -> str:
        return f"LocalObjectStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        # Resolving catches a key that escapes through a symlink inside the root.
        if not path.is_relative_to(self.root) or path == self.root:
            raise ValidationError(
                f"object key {key!r} points outside the store", field="key", hint="use a relative path"
            )
        return path

    def _failed(self, action: str, key: str, err: OSError) -> DeliveryError:
        return DeliveryError(
            f"local object store could not {action} {key!r}: {err.strerror or err}",
            hint=f"check that {self.root} exists, is writable by this user and has free space "
            "(LINLI_DATA_DIR)",
        )

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Write ``data`` to ``root/key`` atomically (temp file, fsync, rename)."""
        path = self._path(key)
        tmp_name = ""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(
                dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
            ) as tmp:
                tmp_name = tmp.name
                tmp.write(data)
                tmp.flush()
                os.fsync(tmp.fileno())
            os.replace(tmp_name, path)
            tmp_name = ""
        except OSError as err:
            raise self._failed("write", key, err) from err
        finally:
            if tmp_name:
                Path(tmp_name).unlink(missing_ok=True)

    def get(self, key: str) -> bytes:
        """The file's bytes; :class:`NotFound` when it does not exist."""
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as err:
            raise NotFound(f"no object {key!r} in the local store", hint="check the key") from err
        except OSError as err:
            raise self._failed("read", key, err) from err

    def exists(self, key: str) -> bool:
        """Whether a file is stored under ``key``."""
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        """Remove the file and any folders it leaves empty (up to the root)."""
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except IsADirectoryError:
            return  # a key prefix, not an object: nothing to delete
        except OSError as err:
            raise self._failed("delete", key, err) from err
        for parent in path.parents:
            if parent == self.root or not parent.is_relative_to(self.root):
                break
            try:
                parent.rmdir()
            except OSError:
                break  # not empty (or already gone): stop climbing

    def url(self, key: str, expires_seconds: int = 3600) -> str:
        """A ``file://`` URI of the object (no expiry: ``expires_seconds`` is only range-checked)."""
        _check_expiry(expires_seconds)
        return self._path(key).as_uri()


class MinioObjectStore:
    """Objects in a MinIO (or any S3) bucket, created on first use if missing.

    ``url`` returns a presigned GET URL valid for ``expires_seconds``; it names the endpoint as
    configured, so the endpoint must be reachable by whoever follows the link.
    """

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str | SecretStr,
        bucket: str,
        secure: bool = False,
        *,
        region: str | None = None,
        timeout_seconds: float = 10.0,
    ) -> None:
        endpoint, secure = _split_endpoint(endpoint, secure)
        self.endpoint = endpoint
        self.bucket = bucket
        self.secure = secure
        self.access_key = access_key
        try:
            check_bucket_name(bucket, strict=True)
        except ValueError as err:
            raise ConfigurationError(
                f"bucket name {bucket!r} is not valid: {err}",
                hint="set LINLI_STORAGE__BUCKET to 3-63 lowercase letters, digits, '-' or '.'",
            ) from err
        secret = secret_key.get_secret_value() if isinstance(secret_key, SecretStr) else secret_key
        ssl_context = ssl.create_default_context()
        ssl_context.load_verify_locations(certifi.where())  # the system's CAs plus certifi's
        # Few, quick retries: a down store should surface as a DeliveryError in seconds, not minutes,
        # and the callers (Prefect tasks) have their own retry policy.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=timeout_seconds, read=timeout_seconds * 3),
            maxsize=10,
            ssl_context=ssl_context,
            retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
        )
        try:
            self._client = Minio(
                endpoint,
                access_key=access_key,
                secret_key=secret,
                secure=secure,
                region=region,
                http_client=http,
            )
        except ValueError as err:
            raise ConfigurationError(
                f"object store endpoint {endpoint!r} or bucket settings are not usable: {err}",
                hint="set LINLI_STORAGE__ENDPOINT to host:port (e.g. 127.0.0.1:9000)",
            ) from err
        self._bucket_ready = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        scheme = "https" if self.secure else "http"
        return f"MinioObjectStore({scheme}://{self.endpoint}/{self.bucket}, access_key={self.access_key!r})"

    @property
    def _where(self) -> str:
        return f"{'https' if self.secure else 'http'}://{self.endpoint}"

    def _call(self, action: str, fn: Callable[[], T]) -> T:
        """Run one client call, translating every MinIO/urllib3 failure into a Linli error."""
        try:
            return fn()
        except S3Error as err:
            if err.code in _AUTH_ERROR_CODES:
                raise DeliveryError(
                    f"object store at {self._where} refused access key {self.access_key!r} "
                    f"while trying to {action} ({err.code})",
                    hint="check LINLI_STORAGE__ACCESS_KEY and LINLI_STORAGE__SECRET_KEY, and that this "
                    f"user may read and write bucket {self.bucket!r}",
                ) from err
            raise DeliveryError(
                f"object store at {self._where} failed to {action}: {err.code}: {err.message}",
                hint=f"check bucket {self.bucket!r} (LINLI_STORAGE__BUCKET) and the object store's logs",
            ) from err
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as err:
            reason = getattr(err, "reason", None) or err
            raise DeliveryError(
                f"cannot reach the object store at {self._where} to {action}: "
                f"{type(reason).__name__}: {reason}",
                hint="check LINLI_STORAGE__ENDPOINT and LINLI_STORAGE__SECURE, and that MinIO is running "
                "and reachable from this machine",
            ) from err

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist yet (done once, before the first operation)."""
        if self._bucket_ready:
            return
        with self._lock:
            if self._bucket_ready:
                return
            if not self._call(
                f"check bucket {self.bucket!r}", lambda: self._client.bucket_exists(self.bucket)
            ):
                try:
                    self._call(
                        f"create bucket {self.bucket!r}", lambda: self._client.make_bucket(self.bucket)
                    )
                    log.info("created bucket %s at %s", self.bucket, self._where)
                except DeliveryError as err:
                    # Another process may have created it between our check and our create.
                    code = getattr(err.__cause__, "code", "")
                    if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise
            self._bucket_ready = True

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Upload ``data`` under ``key`` with its content type."""
        check_key(key)
        self.ensure_bucket()
        self._call(
            f"store {key!r}",
            lambda: self._client.put_object(
                self.bucket, key, BytesIO(data), len(data), content_type=content_type
            ),
        )

    def get(self, key: str) -> bytes:
        """Download the object; :class:`NotFound` when it does not exist."""
        check_key(key)
        self.ensure_bucket()

        def fetch() -> bytes:
            response = self._client.get_object(self.bucket, key)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

        try:
            return self._call(f"read {key!r}", fetch)
        except DeliveryError as err:
            if getattr(err.__cause__, "code", "") == "NoSuchKey":
                raise NotFound(f"no object {key!r} in bucket {self.bucket!r}", hint="check the key") from err
            raise

    def exists(self, key: str) -> bool:
        """Whether the object exists (a HEAD request)."""
        check_key(key)
        self.ensure_bucket()
        try:
            self._call(f"look up {key!r}", lambda: self._client.stat_object(self.bucket, key))
        except DeliveryError as err:
            if getattr(err.__cause__, "code", "") in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
                return False
            raise
        return True

    def delete(self, key: str) -> None:
        """Remove the object (S3 treats a missing key as already deleted)."""
        check_key(key)
        self.ensure_bucket()
        self._call(f"delete {key!r}", lambda: self._client.remove_object(self.bucket, key))

    def url(self, key: str, expires_seconds: int = 3600) -> str:
        """A presigned GET URL that stops working after ``expires_seconds``."""
        check_key(key)
        expires = _check_expiry(expires_seconds)
        self.ensure_bucket()
        return self._call(
            f"sign a URL for {key!r}",
            lambda: self._client.presigned_get_object(self.bucket, key, expires=expires),
        )


def _split_endpoint(endpoint: str, secure: bool) -> tuple[str, bool]:
    """Accept ``host:port`` or a URL (``https://host:port`` sets ``secure``); return ``host:port``."""
    endpoint = endpoint.strip()
    if "://" not in endpoint:
        return endpoint.rstrip("/"), secure
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/"):
        raise ConfigurationError(
            f"object store endpoint {endpoint!r} is not host:port",
            hint="set LINLI_STORAGE__ENDPOINT to host:port (e.g. 127.0.0.1:9000) and "
            "LINLI_STORAGE__SECURE=true for HTTPS",
        )
    return parts.netloc, parts.scheme == "https"


def make_store(settings: Settings) -> ObjectStore:
    """The object store the settings ask for: a folder under the data dir, or MinIO/S3."""
    storage = settings.storage
    if storage.backend == "local":
        return LocalObjectStore(settings.data_dir / "objects")
    return MinioObjectStore(
        endpoint=storage.endpoint,
        access_key=storage.access_key,
        secret_key=storage.secret_key,
        bucket=storage.bucket,
        secure=storage.secure,
    )
