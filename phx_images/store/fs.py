"""The store's file system: one fsspec root (local path or ``s3://bucket/prefix``), keys
relative to it, atomic writes.

Why atomic everywhere: a process killed mid-write (OOM, SIGKILL, a cancelled flow run) must
never leave a half-written manifest that the next run cannot read. Locally a write goes to a
temporary file in the same directory, is fsynced, then ``os.replace``d over the target (and the
directory fsynced); on S3 a single PUT is atomic by itself. Concurrency is handled by layout,
not locks: callers never read-modify-write an object another writer may write (see
phx_images/store/__init__.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

_BAD_KEY = re.compile(r"(^/|\\|(^|/)\.\.?(/|$)|//|[\x00-\x1f])")
TMP_MARK = ".tmp-"


class StoreError(RuntimeError):
    """A store operation failed; the message names the object (key) and the store."""


def _replace_atomically(path: str, fill: Callable[[str], None]) -> None:
    """Create ``path`` from a temporary file in its folder that ``fill`` writes and syncs,
    renamed over it, then sync the folder: readers see the old file or the whole new one, and
    a crash leaves at most a temporary file (named with ``TMP_MARK``, which gc removes)."""
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}{TMP_MARK}{uuid.uuid4().hex}")
    try:
        fill(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class StoreFS:
    """Keys like ``processed/ab12cd34/manifest.json`` under one root URL."""

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
        options = dict(storage_options or {})
        protocol = url.split("://", 1)[0] if "://" in url else "file"
        if protocol in ("s3", "s3a"):
            # Other writers add objects at any time: never trust a cached listing.
            options.setdefault("use_listings_cache", False)
            options.setdefault("skip_instance_cache", True)
        try:
            self.fs, root = fsspec.core.url_to_fs(url, **options)
        except Exception as exc:
            raise StoreError(f"cannot open store {url!r}: {type(exc).__name__}: {exc}") from exc
        self.url = url
        self.local = isinstance(self.fs, LocalFileSystem)
        protocol = self.fs.protocol
        # storage classes exist (and are passed) only on S3
        self.s3 = "s3" in (protocol if isinstance(protocol, tuple) else (protocol,))
        self.root = root.rstrip("/")
        if self.local:
            os.makedirs(self.root, exist_ok=True)
        else:
            try:
                self.fs.mkdirs(self.root, exist_ok=True)
            except Exception as exc:  # buckets may be creatable or not; reads will tell
                if not self.fs.exists(self.root.split("/", 1)[0]):
                    raise StoreError(f"store {url!r}: bucket missing: {exc}") from exc

    def __repr__(self) -> str:  # never show storage options (they hold secrets)
        return f"StoreFS({self.url!r})"

    def path(self, key: str) -> str:
        """The full path of ``key``; refuses keys that could escape the root."""
        if not key or _BAD_KEY.search(key):
            raise StoreError(f"unsafe store key {key!r}")
        return f"{self.root}/{key}"

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self.path(key)))

    def read_bytes(self, key: str) -> bytes:
        try:
            return bytes(self.fs.cat_file(self.path(key)))
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise StoreError(f"cannot read {key!r} from {self.url!r}: {exc}") from exc

    def read_json(self, key: str) -> Any:
        """Parsed JSON of ``key``; FileNotFoundError if absent, StoreError if not JSON."""
        data = self.read_bytes(key)
        try:
            return json.loads(data)
        except ValueError as exc:
            raise StoreError(f"{key!r} in {self.url!r} is not valid JSON: {exc}") from exc

    def write_bytes(self, key: str, data: bytes) -> None:
        """Write ``data`` to ``key`` atomically (readers see old or new, never a part)."""
        path = self.path(key)
        try:
            if self.local:
                def fill(tmp: str) -> None:
                    with open(tmp, "wb") as fh:
                        fh.write(data)
                        fh.flush()
                        os.fsync(fh.fileno())

                _replace_atomically(path, fill)
            else:
                self.fs.pipe_file(path, data)  # one PUT: atomic on S3
        except Exception as exc:
            raise StoreError(f"cannot write {key!r} to {self.url!r}: {exc}") from exc

    def write_json(self, key: str, obj: Any) -> None:
        self.write_bytes(key, json.dumps(obj, indent=1, sort_keys=True).encode())

    def put_once(self, key: str, data: bytes) -> bool:
        """Write content-addressed ``data`` unless ``key`` exists; True if written."""
        if self.exists(key):
            return False
        self.write_bytes(key, data)
        return True

    def list(self, prefix: str) -> list[str]:
        """Keys of the files directly under ``prefix`` (a folder), temp files excluded."""
        base = self.path(prefix.rstrip("/"))
        try:
            entries = self.fs.ls(base, detail=True)
        except FileNotFoundError:
            return []
        keys = []
        for entry in entries:
            name = entry["name"].rstrip("/")
            leaf = name.rsplit("/", 1)[-1]
            if TMP_MARK in leaf:
                continue
            keys.append(f"{prefix.rstrip('/')}/{leaf}" + ("/" if entry["type"] == "directory"
                                                          else ""))
        return sorted(keys)

    def list_details(self, prefix: str) -> dict[str, dict[str, Any]]:
        """The files directly under ``prefix``: key -> {"size", "storage_class"} (the storage
        class is None off S3). One listing call; temp files excluded."""
        base = self.path(prefix.rstrip("/"))
        try:
            entries = self.fs.ls(base, detail=True)
        except FileNotFoundError:
            return {}
        out: dict[str, dict[str, Any]] = {}
        for entry in entries:
            leaf = entry["name"].rstrip("/").rsplit("/", 1)[-1]
            if entry["type"] == "directory" or TMP_MARK in leaf:
                continue
            out[f"{prefix.rstrip('/')}/{leaf}"] = {
                "size": int(entry.get("size") or 0),
                "storage_class": (entry.get("StorageClass") or "STANDARD") if self.s3 else None,
            }
        return out

    def copy(self, src: str, dst: str, *, storage_class: str | None = None) -> None:
        """Copy ``src`` to ``dst``; readers of ``dst`` see the old object or the whole new one.

        Locally a hard link to a temporary name, renamed over ``dst`` (no bytes are copied;
        a plain copy when the file system refuses links); on S3 one server-side CopyObject,
        in ``storage_class`` when given (else STANDARD). FileNotFoundError if ``src`` is absent.
        """
        src_path, dst_path = self.path(src), self.path(dst)
        try:
            if self.local:
                def fill(tmp: str) -> None:
                    try:
                        os.link(src_path, tmp)
                    except FileNotFoundError:
                        raise
                    except OSError:  # another device, or links not supported
                        shutil.copyfile(src_path, tmp)
                        with open(tmp, "rb+") as fh:
                            os.fsync(fh.fileno())

                _replace_atomically(dst_path, fill)
            else:
                extra = {"StorageClass": storage_class} if storage_class and self.s3 else {}
                self.fs.cp_file(src_path, dst_path, **extra)
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise StoreError(f"cannot copy {src!r} to {dst!r} in {self.url!r}: {exc}") from exc

    def delete(self, key: str) -> None:
        try:
            self.fs.rm_file(self.path(key))
        except FileNotFoundError:
            pass
        except Exception as exc:
            raise StoreError(f"cannot delete {key!r} from {self.url!r}: {exc}") from exc

    def local_path(self, key: str) -> str | None:
        """A path on this machine for ``key`` (local stores only)."""
        return self.path(key) if self.local else None
