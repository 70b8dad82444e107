"""Files sealed at rest: chunked AES-256-GCM through Django's storage API.

A sealed file is a small header and then the plaintext cut into 64 KiB segments, each
encrypted on its own, so a range (an audio player seeking) decrypts only the segments it
needs, and a file of any size is written and read without holding it in memory.

Layout: header = magic "CVSF", version 1, key id (length-prefixed), segment size, a random
32-byte salt and a random 7-byte nonce prefix; then segment i = AES-256-GCM(ciphertext, tag).
The segment key is HKDF-SHA256(the ring's key named in the header, salt): a key of its own
per file, so the GCM nonce budget of a ring key is never shared between millions of files
(screenshots). The nonce is prefix || i (4 bytes) || last flag (1 byte), and each segment's
associated data binds the whole header, the purpose, the project id, the storage name, the
segment index and the last flag: reordered, dropped, truncated, appended or swapped
segments, a file moved under another name, project or purpose, all fail to decrypt. The
design is Tink's "AES-GCM-HKDF streaming" with callvault's bindings in the associated data.

The plaintext size is not stored: it follows from the stored size (every segment but the
last is full), and a lie about it cannot pass the last segment's flag.

Storage caveat: ranged reads `seek` in the file `default_storage.open` returns. That is
cheap on local disk; django-storages' S3 file downloads the object on its first read (into
a spooled temporary file), so there a ranged read is correct but costs a whole download.
"""

from __future__ import annotations

import io
import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.core.files import File
from django.core.files.storage import default_storage

from callvault.vault.keyring import KeyRing, UnknownKeyError, get_keyring, refresh_keyring

MAGIC = b"CVSF"
VERSION = 1
SEGMENT_SIZE = 64 * 1024
TAG_SIZE = 16
SALT_SIZE = 32
PREFIX_SIZE = 7
_HKDF_INFO = b"callvault/sealed-file/v1"
_PURPOSE = re.compile(r"^[a-z][a-z0-9_.-]{0,49}$")


class _Readable(Protocol):
    """What a sealed file is read from: a storage file or any binary stream."""

    def read(self, size: int = ..., /) -> Any: ...


class SealedFileError(Exception):
    """A sealed file that is damaged, tampered with, or opened with the wrong bindings."""


@dataclass(frozen=True)
class _Header:
    raw: bytes
    kid: str
    segment_size: int
    salt: bytes
    prefix: bytes


def _build_header(kid: str, salt: bytes, prefix: bytes) -> bytes:
    kid_bytes = kid.encode("ascii")
    return (
        MAGIC
        + bytes([VERSION, len(kid_bytes)])
        + kid_bytes
        + struct.pack(">I", SEGMENT_SIZE)
        + salt
        + prefix
    )


def _parse_header(fh: _Readable) -> _Header:
    head = _read_exactly(fh, 6)
    if len(head) < 6 or head[:4] != MAGIC:
        raise SealedFileError("not a sealed file")
    if head[4] != VERSION:
        raise SealedFileError("unknown sealed file version")
    rest = _read_exactly(fh, head[5] + 4 + SALT_SIZE + PREFIX_SIZE)
    if len(rest) < head[5] + 4 + SALT_SIZE + PREFIX_SIZE:
        raise SealedFileError("sealed file header is truncated")
    kid_len = head[5]
    try:
        kid = rest[:kid_len].decode("ascii")
    except UnicodeDecodeError:
        raise SealedFileError("sealed file header is damaged") from None
    (segment_size,) = struct.unpack(">I", rest[kid_len : kid_len + 4])
    if segment_size != SEGMENT_SIZE:
        raise SealedFileError("sealed file header is damaged")
    salt = rest[kid_len + 4 : kid_len + 4 + SALT_SIZE]
    prefix = rest[kid_len + 4 + SALT_SIZE :]
    return _Header(head + rest, kid, segment_size, salt, prefix)


def _segment_cipher(ring: KeyRing, kid: str, salt: bytes) -> AESGCM:
    key = ring.seal_keys.get(kid)
    if key is None:
        # Another process may have rotated: re-read the ring file once before failing.
        key = refresh_keyring().seal_keys.get(kid)
        if key is None:
            raise UnknownKeyError(kid)
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_HKDF_INFO).derive(key)
    return AESGCM(derived)


def _check_bindings(name: str, project_id: int, purpose: str) -> bytes:
    """The associated data common to every segment of the file (without the header)."""
    if not _PURPOSE.match(purpose):
        raise ValueError("purpose must be a short lowercase word")
    if not name or "\x00" in name:
        raise ValueError("a sealed file needs a name without NUL characters")
    parts = [purpose.encode(), str(int(project_id)).encode(), name.encode()]
    # Length-prefixed, so no choice of name can make two different bindings read the same.
    return b"".join(struct.pack(">I", len(p)) + p for p in parts)


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", index, 1 if last else 0)


def _aad(header: bytes, bindings: bytes, index: int, last: bool) -> bytes:
    return header + bindings + struct.pack(">IB", index, 1 if last else 0)


def _read_exactly(fh: _Readable, size: int) -> bytes:
    """Read `size` bytes unless the stream ends first (streams may return short reads)."""
    parts: list[bytes] = []
    left = size
    while left > 0:
        chunk: bytes = fh.read(left)
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


class _SealingReader(io.RawIOBase):
    """The sealed form of a plaintext stream, produced as the storage reads it."""

    def __init__(self, source: BinaryIO, header: bytes, cipher: AESGCM, bindings: bytes) -> None:
        self._source = source
        self._header = header
        self._cipher = cipher
        self._bindings = bindings
        self._prefix = header[-PREFIX_SIZE:]
        self._out = bytearray(header)
        # One segment of look-ahead: a segment is sealed once we know whether it is the last.
        self._pending = _read_exactly(source, SEGMENT_SIZE)
        self._index = 0
        self._done = False
        self.plaintext_size = 0

    def readable(self) -> bool:
        return True

    def _seal_next(self) -> None:
        current = self._pending
        following = _read_exactly(self._source, SEGMENT_SIZE) if current else b""
        last = len(current) < SEGMENT_SIZE or not following
        if self._index >= 0xFFFFFFFF:
            raise SealedFileError("file too large to seal")
        nonce = _nonce(self._prefix, self._index, last)
        aad = _aad(self._header, self._bindings, self._index, last)
        self._out += self._cipher.encrypt(nonce, current, aad)
        self.plaintext_size += len(current)
        self._index += 1
        self._pending = following
        self._done = last

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while len(self._out) < len(buffer) and not self._done:
            self._seal_next()
        size = min(len(buffer), len(self._out))
        buffer[:size] = self._out[:size]
        del self._out[:size]
        return size


def save_sealed(name: str, content: BinaryIO | bytes, *, project_id: int, purpose: str) -> int:
    """Encrypt to default_storage under exactly `name`; returns the plaintext size.

    Never overwrites: an existing file of that name raises FileExistsError (a sealed file is
    evidence; replacing it is the caller's explicit delete)."""
    bindings = _check_bindings(name, project_id, purpose)
    source: BinaryIO = io.BytesIO(content) if isinstance(content, bytes) else content
    if default_storage.exists(name):
        raise FileExistsError(name)
    ring = get_keyring()
    salt = os.urandom(SALT_SIZE)
    header = _build_header(ring.active, salt, os.urandom(PREFIX_SIZE))
    reader = _SealingReader(source, header, _segment_cipher(ring, ring.active, salt), bindings)
    try:
        stored = default_storage.save(name, File(io.BufferedReader(reader), name=name))
    except BaseException:
        # A storage that failed part-way may have left the beginning of the file.
        default_storage.delete(name)
        raise
    if stored != name:
        # Someone else wrote `name` between the check and the save: keep theirs, drop ours.
        default_storage.delete(stored)
        raise FileExistsError(name)
    return reader.plaintext_size


def _plaintext_size(stored_size: int, header_size: int) -> int:
    body = stored_size - header_size
    full = SEGMENT_SIZE + TAG_SIZE
    segments = max(1, -(-body // full))
    last = body - (segments - 1) * full
    if body < TAG_SIZE or last < TAG_SIZE:
        raise SealedFileError("sealed file is truncated")
    return body - segments * TAG_SIZE


def sealed_size(name: str) -> int:
    """The plaintext size, from the header and the stored size, without decrypting."""
    with default_storage.open(name, "rb") as fh:
        header = _parse_header(fh)
    return _plaintext_size(default_storage.size(name), len(header.raw))


def read_sealed(
    name: str, *, project_id: int, purpose: str, start: int = 0, end: int | None = None
) -> Iterator[bytes]:
    """Plaintext bytes [start, end), decrypting only the segments the range touches.

    The header, key, range and the first segment are checked before this returns, so a
    caller can still answer an error; a later damaged segment raises SealedFileError while
    iterating."""
    bindings = _check_bindings(name, project_id, purpose)
    fh = default_storage.open(name, "rb")
    try:
        header = _parse_header(fh)
        size = _plaintext_size(default_storage.size(name), len(header.raw))
        end = size if end is None else end
        if not 0 <= start <= end <= size:
            raise ValueError("range outside the file")
        reader = _SegmentReader(fh, header, bindings, size)
        count = reader.count
        # An empty range still authenticates the segment it points into (an empty file's one).
        first = min(start // SEGMENT_SIZE, count - 1)
        last = max(first, (end - 1) // SEGMENT_SIZE)
        fh.seek(len(header.raw) + first * (SEGMENT_SIZE + TAG_SIZE))
        opened = reader.decrypt(first)
    except BaseException:
        fh.close()
        raise
    return _Pieces(reader, opened, first, last, start, end)


class _SegmentReader:
    """Decrypts the segments of one open sealed file in order."""

    def __init__(self, fh: File[Any], header: _Header, bindings: bytes, size: int) -> None:
        self.fh = fh
        self.header = header
        self.bindings = bindings
        self.count = max(1, -(-size // SEGMENT_SIZE))
        self.cipher = _segment_cipher(get_keyring(), header.kid, header.salt)

    def decrypt(self, index: int) -> bytes:
        """The plaintext of segment `index`; the file is positioned at its start."""
        is_last = index == self.count - 1
        sealed = _read_exactly(self.fh, SEGMENT_SIZE + TAG_SIZE)
        try:
            plain = self.cipher.decrypt(
                _nonce(self.header.prefix, index, is_last),
                sealed,
                _aad(self.header.raw, self.bindings, index, is_last),
            )
        except InvalidTag:
            raise SealedFileError(f"segment {index} failed authentication") from None
        if not is_last and len(plain) != SEGMENT_SIZE:
            raise SealedFileError(f"segment {index} is short")
        return plain


class _Pieces(Iterator[bytes]):
    """The iterator `read_sealed` returns; closing it (as Django does with a streaming
    response's content, even one never read) closes the stored file."""

    def __init__(
        self, reader: _SegmentReader, opened: bytes, first: int, last: int, start: int, end: int
    ) -> None:
        self._reader = reader
        self._plain: bytes | None = opened
        self._index = first
        self._last = last
        self._start = start
        self._end = end

    def __iter__(self) -> _Pieces:
        return self

    def __next__(self) -> bytes:
        while self._index <= self._last:
            plain = self._plain if self._plain is not None else self._reader.decrypt(self._index)
            self._plain = None
            offset = self._index * SEGMENT_SIZE
            self._index += 1
            piece = plain[max(0, self._start - offset) : max(0, self._end - offset)]
            if piece:
                return piece
        self.close()
        raise StopIteration

    def close(self) -> None:
        """Close the stored file."""
        self._reader.fh.close()


def delete_sealed(name: str) -> None:
    """Delete a sealed file (no error when it is already gone)."""
    default_storage.delete(name)
