"""What the embedded S3 endpoint remembers: buckets, their objects' metadata, and listings.

Only metadata is kept (size, ETag, time): the demo never reads an object back, and a long
run should not hold every payload in memory. Keys are kept sorted, so a page of a listing
costs a binary search and the page itself. S3 lists keys in the binary order of their
UTF-8 bytes, which is the order of their code points: Python's own ``str`` order.
"""

from __future__ import annotations

import bisect
import datetime as dt

import attrs

__all__ = ["Bucket", "ObjectStore", "StoredObject", "StorePage"]


@attrs.frozen(kw_only=True)
class StoredObject:
    """One object's metadata; ``etag`` is the hex MD5 of its body, without quotes."""

    key: str
    size: int
    etag: str
    last_modified: dt.datetime


@attrs.frozen(kw_only=True)
class StorePage:
    """One page of a listing; ``truncated`` when more keys follow under the prefix."""

    objects: tuple[StoredObject, ...]
    truncated: bool


@attrs.define(eq=False)
class Bucket:
    """A bucket's objects by key, and the keys in order."""

    name: str
    created: dt.datetime
    _objects: dict[str, StoredObject] = attrs.field(factory=dict, init=False)
    _keys: list[str] = attrs.field(factory=list, init=False)

    def __len__(self) -> int:
        return len(self._keys)

    def put(self, stored: StoredObject) -> None:
        """Store ``stored``, replacing any object of the same key (as S3 does)."""
        if stored.key not in self._objects:
            bisect.insort(self._keys, stored.key)
        self._objects[stored.key] = stored

    def get(self, key: str) -> StoredObject | None:
        return self._objects.get(key)

    def page(self, *, prefix: str = "", after: str = "", max_keys: int = 1000) -> StorePage:
        """Up to ``max_keys`` objects whose keys start with ``prefix`` and sort after
        ``after``, in key order."""
        keys = self._keys
        index = bisect.bisect_left(keys, prefix)
        if after:
            index = max(index, bisect.bisect_right(keys, after))
        found: list[StoredObject] = []
        while index < len(keys) and keys[index].startswith(prefix) and len(found) < max_keys:
            found.append(self._objects[keys[index]])
            index += 1
        truncated = bool(found) and index < len(keys) and keys[index].startswith(prefix)
        return StorePage(objects=tuple(found), truncated=truncated)


@attrs.define(eq=False)
class ObjectStore:
    """Every bucket of one embedded endpoint."""

    _buckets: dict[str, Bucket] = attrs.field(factory=dict, init=False)

    def create_bucket(self, name: str, now: dt.datetime) -> bool:
        """Create ``name``; False when it already exists (and nothing changes)."""
        if name in self._buckets:
            return False
        self._buckets[name] = Bucket(name, now)
        return True

    def bucket(self, name: str) -> Bucket | None:
        return self._buckets.get(name)
