"""Sealed files: chunked AES-256-GCM through the storage API, ranged reads, tamper evidence."""

from __future__ import annotations

import io
import os

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from callvault.vault.files import (
    SEGMENT_SIZE,
    TAG_SIZE,
    SealedFileError,
    delete_sealed,
    read_sealed,
    save_sealed,
    sealed_size,
)
from callvault.vault.keyring import KeyRing, get_keyring, reset_keyring_cache, write_keyring_file

SEG = SEGMENT_SIZE


@pytest.fixture(autouse=True)
def storage(settings, tmp_path):
    """A storage folder of the test's own (the same FileSystemStorage the product uses)."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        },
    }
    return tmp_path / "media"


def seal(data, name="rec/1.sealed", project_id=7, purpose="recording"):
    return save_sealed(name, data, project_id=project_id, purpose=purpose)


def read(name="rec/1.sealed", project_id=7, purpose="recording", **kw):
    return b"".join(read_sealed(name, project_id=project_id, purpose=purpose, **kw))


def stored(name="rec/1.sealed"):
    with default_storage.open(name, "rb") as fh:
        return fh.read()


def rewrite(name, data):
    default_storage.delete(name)
    default_storage.save(name, ContentFile(data))


def header_size(name="rec/1.sealed"):
    return default_storage.size(name) - sealed_size(name) - segments(sealed_size(name)) * TAG_SIZE


def segments(size):
    return max(1, -(-size // SEG))


class Trickle(io.RawIOBase):
    """A stream that hands out at most 1000 bytes a read, like a socket."""

    def __init__(self, data):
        self._data = io.BytesIO(data)

    def readable(self):
        return True

    def readinto(self, buffer):
        chunk = self._data.read(min(len(buffer), 1000))
        buffer[: len(chunk)] = chunk
        return len(chunk)


@pytest.mark.parametrize(
    "size", [0, 1, SEG - 1, SEG, SEG + 1, 2 * SEG, 3 * SEG + 17], ids=lambda s: f"{s}b"
)
def test_it_round_trips_files_of_every_shape(size):
    data = os.urandom(size)
    assert seal(data) == size
    assert sealed_size("rec/1.sealed") == size
    assert read() == data
    # The stored form: one tag per segment (an empty file still has one) and a small header.
    assert 0 < header_size() < 64


def test_exact_multiples_of_the_segment_size_have_no_extra_segment():
    seal(os.urandom(2 * SEG))
    assert default_storage.size("rec/1.sealed") == header_size() + 2 * (SEG + TAG_SIZE)


def test_it_streams_from_a_file_that_gives_short_reads():
    data = os.urandom(2 * SEG + 5)
    assert seal(io.BufferedReader(Trickle(data), buffer_size=700)) == len(data)
    assert read() == data


def test_the_stored_bytes_are_not_the_plaintext():
    data = b"RIFF" + b"a recognisable plaintext run " * 5000
    seal(data)
    raw = stored()
    assert b"recognisable plaintext" not in raw
    assert b"RIFF" not in raw
    assert len(raw) > len(data)


def test_sealing_the_same_bytes_twice_gives_different_files():
    data = os.urandom(1000)
    seal(data, name="a.sealed")
    seal(data, name="b.sealed")
    assert stored("a.sealed")[-1000:] != stored("b.sealed")[-1000:]


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (0, 1),
        (0, SEG),
        (SEG - 1, SEG + 1),
        (SEG, SEG),
        (SEG, 2 * SEG),
        (SEG - 10, 3 * SEG + 10),
        (2 * SEG + 1, 3 * SEG + 100),
        (3 * SEG + 99, 3 * SEG + 100),
        (3 * SEG + 100, 3 * SEG + 100),
        (12345, 54321),
    ],
)
def test_ranges_across_segment_edges(start, end):
    data = os.urandom(3 * SEG + 100)
    seal(data)
    assert read(start=start, end=end) == data[start:end]


def test_a_range_to_the_end_by_default():
    data = os.urandom(SEG + 300)
    seal(data)
    assert read(start=SEG - 3) == data[SEG - 3 :]


@pytest.mark.parametrize(("start", "end"), [(-1, 10), (10, 5), (0, SEG + 1), (SEG + 1, None)])
def test_a_range_outside_the_file_is_refused(start, end):
    seal(os.urandom(SEG))
    with pytest.raises(ValueError):
        read_sealed("rec/1.sealed", project_id=7, purpose="recording", start=start, end=end)


def test_a_range_decrypts_only_the_segments_it_needs():
    data = os.urandom(3 * SEG)
    seal(data)
    raw = bytearray(stored())
    # Damage the third segment: ranges inside the first two still read, one touching it fails.
    raw[header_size() + 2 * (SEG + TAG_SIZE) + 10] ^= 1
    rewrite("rec/1.sealed", bytes(raw))
    assert read(start=5, end=2 * SEG) == data[5 : 2 * SEG]
    with pytest.raises(SealedFileError):
        read(start=2 * SEG - 1, end=2 * SEG + 1)


@pytest.mark.parametrize("where", ["header", "first", "tag", "last"])
def test_a_changed_byte_is_detected(where):
    seal(os.urandom(2 * SEG + 10))
    raw = bytearray(stored())
    h = header_size()
    offset = {"header": h - 3, "first": h, "tag": h + SEG + 1, "last": len(raw) - 1}[where]
    raw[offset] ^= 0x40
    rewrite("rec/1.sealed", bytes(raw))
    with pytest.raises(SealedFileError):
        read()


@pytest.mark.parametrize("cut", [1, TAG_SIZE, SEG + TAG_SIZE, SEG + TAG_SIZE + 5])
def test_truncation_is_detected(cut):
    seal(os.urandom(2 * SEG + 10))
    raw = stored()
    rewrite("rec/1.sealed", raw[: len(raw) - cut])
    with pytest.raises(SealedFileError):
        read()


def test_a_file_cut_at_a_segment_edge_is_detected():
    seal(os.urandom(3 * SEG))
    raw = stored()
    rewrite("rec/1.sealed", raw[: header_size() + 2 * (SEG + TAG_SIZE)])
    assert sealed_size("rec/1.sealed") == 2 * SEG  # the size alone cannot tell...
    with pytest.raises(SealedFileError):
        read()  # ...but the second segment was not sealed as the last one


def test_an_appended_segment_is_detected():
    seal(os.urandom(SEG))
    raw = stored()
    h = header_size()
    rewrite("rec/1.sealed", raw + raw[h:])
    with pytest.raises(SealedFileError):
        read()


def test_swapped_segments_are_detected():
    seal(os.urandom(3 * SEG))
    raw = stored()
    h = header_size()
    one, two = raw[h : h + SEG + TAG_SIZE], raw[h + SEG + TAG_SIZE : h + 2 * (SEG + TAG_SIZE)]
    rewrite("rec/1.sealed", raw[:h] + two + one + raw[h + 2 * (SEG + TAG_SIZE) :])
    with pytest.raises(SealedFileError):
        read(end=10)
    with pytest.raises(SealedFileError):
        read(start=SEG, end=SEG + 10)


def test_a_file_copied_over_another_is_detected():
    seal(os.urandom(500), name="rec/1.sealed")
    seal(os.urandom(500), name="rec/2.sealed")
    rewrite("rec/2.sealed", stored("rec/1.sealed"))
    with pytest.raises(SealedFileError):
        read("rec/2.sealed")


def test_a_segment_from_another_file_is_detected():
    seal(os.urandom(2 * SEG), name="rec/1.sealed")
    seal(os.urandom(2 * SEG), name="rec/2.sealed")
    one, two = stored("rec/1.sealed"), stored("rec/2.sealed")
    h = header_size("rec/1.sealed")
    rewrite("rec/2.sealed", two[: h + SEG + TAG_SIZE] + one[h + SEG + TAG_SIZE :])
    with pytest.raises(SealedFileError):
        read("rec/2.sealed", start=SEG)


@pytest.mark.parametrize(
    ("project_id", "purpose"), [(8, "recording"), (7, "screenshot")], ids=["project", "purpose"]
)
def test_the_wrong_project_or_purpose_is_refused_before_any_byte(project_id, purpose):
    seal(os.urandom(10))
    with pytest.raises(SealedFileError):
        read_sealed("rec/1.sealed", project_id=project_id, purpose=purpose)


def test_an_empty_file_is_authenticated_too():
    seal(b"")
    with pytest.raises(SealedFileError):
        read(purpose="screenshot")
    assert read() == b""


def test_not_a_sealed_file_is_refused():
    default_storage.save("plain.wav", ContentFile(b"RIFF" + bytes(100)))
    with pytest.raises(SealedFileError):
        sealed_size("plain.wav")
    with pytest.raises(SealedFileError):
        read("plain.wav")


def test_it_never_overwrites_an_existing_file():
    seal(b"first")
    with pytest.raises(FileExistsError):
        seal(b"second")
    assert read() == b"first"


def test_delete_removes_the_file():
    seal(b"x")
    delete_sealed("rec/1.sealed")
    delete_sealed("rec/1.sealed")  # already gone: no error
    assert not default_storage.exists("rec/1.sealed")
    with pytest.raises(FileNotFoundError):
        sealed_size("rec/1.sealed")


def test_files_sealed_before_a_rotation_still_read(own_ring):
    old = os.urandom(SEG + 1)
    seal(old, name="old.sealed")
    write_keyring_file(own_ring, get_keyring().with_new_key())
    reset_keyring_cache()
    assert get_keyring().active == "k2"
    new = os.urandom(100)
    seal(new, name="new.sealed")
    assert b"k2" in stored("new.sealed")[:16] and b"k1" in stored("old.sealed")[:16]
    assert read("old.sealed") == old
    assert read("new.sealed") == new


def test_a_process_with_the_old_ring_reads_a_file_sealed_under_the_new_key(own_ring, monkeypatch):
    old_ring = get_keyring()
    # Another process rotates and seals under k2 while this one still holds k1 only.
    write_keyring_file(own_ring, old_ring.with_new_key())
    other = KeyRing.from_json(own_ring.read_text())
    with monkeypatch.context() as patched:
        patched.setattr("callvault.vault.files.get_keyring", lambda: other)
        seal(b"from the other process", name="k2.sealed")
    assert get_keyring() is old_ring
    assert read("k2.sealed") == b"from the other process"


def test_a_retired_key_cannot_read_its_files(own_ring):
    seal(b"sealed under k1")
    ring = get_keyring().with_new_key()
    write_keyring_file(own_ring, ring.without_key("k1"))
    reset_keyring_cache()
    with pytest.raises(KeyError):
        read()


class Broken(io.RawIOBase):
    """A source that fails after its first 200 KB, like a dropped upload."""

    def __init__(self):
        self.sent = 0

    def readable(self):
        return True

    def readinto(self, buffer):
        if self.sent >= 200_000:
            raise OSError("connection reset")
        size = min(len(buffer), 50_000)
        buffer[:size] = bytes(size)
        self.sent += size
        return size


def test_a_source_that_fails_part_way_leaves_no_file():
    with pytest.raises(OSError):
        seal(io.BufferedReader(Broken()))
    assert not default_storage.exists("rec/1.sealed")
