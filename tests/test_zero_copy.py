"""Blobs another tool owns (issue 18): taken in by reflink, hard link or symlink without a byte copied,
the source never changed, a changed or vanished source never served, `rm` never deleting it."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from r1.daemon.intake.files import import_model
from r1.daemon.metadata import ModelFacts
from r1.daemon.store import CorruptSourceError, FileEntry, Manifest, ReconcileReport, Store, parse_name
from r1.daemon.store import blobs as blobs_module
from r1.daemon.store import external
from tests.support.tinymodels import write_tiny_gguf
from tests.support.toolstores import tree_state

pytestmark = pytest.mark.unit  # the fast lane (docs/development.md)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "home")
    assert s.open().actions == []
    yield s
    s.close()


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A file in another tool's store, named by its sha256 as Ollama names its blobs; mode 0644."""
    data = os.urandom(50_000)
    path = tmp_path / "ollama" / "blobs" / sha(data).replace(":", "-")
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    path.chmod(0o644)
    return path


def parse_digest_of(path: Path) -> str:
    return "sha256:" + path.name.removeprefix("sha256-")


def force(monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """Make the file system behave so that `how` is what adopt can do: no reflink (ext4 has none
    anyway), and for "symlinked" a hard link refused as across devices."""
    monkeypatch.setattr(external, "reflink", lambda src, dst: False)
    if how == "symlinked":
        def no_link(src: object, dst: object) -> None:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        monkeypatch.setattr(os, "link", no_link)


@pytest.fixture(params=["linked", "symlinked"])
def how(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each way of sharing the other tool's bytes, forced."""
    force(monkeypatch, request.param)
    return request.param


@pytest.fixture
def symlinked(monkeypatch: pytest.MonkeyPatch) -> None:
    force(monkeypatch, "symlinked")


def reopened(store: Store) -> tuple[Store, ReconcileReport]:
    """The store as the daemon's next start finds it."""
    store.close()
    again = Store(store.home)
    return again, again.open()


def add(store: Store, name: str, path: Path, **kw: object) -> Manifest:
    ingested = store.adopt(path, sha256=path.name, **kw)
    manifest = Manifest((FileEntry("model.gguf", ingested.digest, ingested.size),), ModelFacts("gguf"))
    store.add(name, manifest)
    return manifest


def test_linking_copies_nothing_and_leaves_the_source_as_it_was(store: Store, source: Path, how: str) -> None:
    before = tree_state(source.parent)
    ingested = store.adopt(source, sha256=source.name)
    assert (ingested.how, ingested.bytes_copied, ingested.bytes_linked) == (how, 0, 50_000)
    assert ingested.digest == parse_digest_of(source)
    assert tree_state(source.parent) == before, "not a byte nor a mode bit of the source changed"
    blob = store.blobs.path(ingested.digest)
    assert blob.read_bytes() == source.read_bytes()
    assert blob.is_symlink() == (how == "symlinked")
    if how == "symlinked":
        assert os.readlink(blob) == str(source) and os.path.isabs(os.readlink(blob))
    else:
        assert blob.stat().st_ino == source.stat().st_ino
    manifest = Manifest((FileEntry("model.gguf", ingested.digest, ingested.size),), ModelFacts("gguf"))
    store.add("deepseek-r1:7b", manifest)
    [recorded] = store.blob_sources(manifest).values()
    assert (recorded.kind, recorded.source, recorded.size) == (how, str(source), 50_000)
    assert recorded.inode == source.stat().st_ino and recorded.mtime_ns == source.stat().st_mtime_ns
    assert store.changed_files(manifest) == [] and store.broken(manifest) == [] and store.missing_files(manifest) == []
    assert store.adopt(source, sha256=source.name).how == "stored", "the same file again costs nothing"
    assert tree_state(source.parent) == before


def test_copy_mode_copies_into_a_read_only_blob_of_r1s_own(store: Store, source: Path) -> None:
    before = tree_state(source.parent)
    ingested = store.adopt(source, sha256=source.name, copy=True)
    assert (ingested.how, ingested.bytes_copied, ingested.bytes_linked) == ("copied", 50_000, 0)
    blob = store.blobs.path(ingested.digest)
    assert blob.stat().st_ino != source.stat().st_ino and stat.S_IMODE(blob.stat().st_mode) == 0o444
    assert tree_state(source.parent) == before
    manifest = add(store, "m", source, copy=True)
    assert store.blob_sources(manifest) == {}, "a copy is r1's own: nothing to watch"


@pytest.mark.parametrize("change", ["append a byte", "touch"])
def test_a_changed_source_is_never_served(store: Store, source: Path, how: str, change: str) -> None:
    manifest = add(store, "m", source)
    if change == "touch":
        mtime = source.stat().st_mtime_ns + 5_000_000_000
        os.utime(source, ns=(mtime, mtime))
    else:
        with open(source, "ab") as f:
            f.write(b"!")
    assert store.changed_files(manifest) == ["model.gguf"]
    [broken] = store.broken(manifest)
    assert (broken.problem, broken.source) == ("changed", str(source))
    assert str(broken) == f"model.gguf: changed since it was imported from {source}"
    if change == "touch":  # the same bytes: importing again takes the file as it is now
        assert store.adopt(source, sha256=source.name).how == how
        assert store.changed_files(manifest) == []


def break_source(source: Path, how: str) -> str:
    """What can happen to another tool's file: a symlinked one deleted, a hard-linked one edited in
    place (deleting that one would not matter: the link keeps the bytes). The problem r1 should see."""
    if how == "symlinked":
        source.unlink()
        return "gone"
    with open(source, "ab") as f:
        f.write(b"!")
    return "changed"


def test_a_broken_source_is_reported_at_start_up_and_kept(store: Store, source: Path, how: str) -> None:
    manifest = add(store, "deepseek-r1:7b", source)
    problem = break_source(source, how)
    store, report = reopened(store)
    try:
        assert report.actions == [], "not removed as an orphan, not a stray, not 'missing'"
        [message] = report.broken
        digest = manifest.files[0].digest
        what = f"broken: {source} is gone" if how == "symlinked" else f"changed since it was imported from {source}"
        assert message == f"{digest}: {what}; models that need it (deepseek-r1:7b) must be imported again"
        assert store.blobs.path(digest).is_symlink() == (how == "symlinked"), "kept, so the model says why"
        record = store.get("deepseek-r1:7b")
        [broken] = store.broken(record.manifest)
        assert (str(broken), broken.problem) == (f"model.gguf: {what}", problem)
        assert store.changed_files(record.manifest) == ["model.gguf"]
    finally:
        store.close()


def test_bytes_of_r1s_own_in_place_of_a_broken_link_are_served(
    store: Store, source: Path, tmp_path: Path, how: str
) -> None:
    manifest = add(store, "m", source)
    data = source.read_bytes()
    break_source(source, how)
    assert store.changed_files(manifest) == ["model.gguf"] and store.missing_files(manifest) == ["model.gguf"]
    again = tmp_path / "elsewhere" / "m.gguf"
    again.parent.mkdir()
    again.write_bytes(data)
    assert store.adopt(again, copy=True).how == "copied", "as a pull would: r1's own bytes replace the link"
    assert store.changed_files(manifest) == [] and store.missing_files(manifest) == []
    assert not store.blobs.path(manifest.files[0].digest).is_symlink()


def test_rm_removes_r1s_link_and_never_the_source(store: Store, source: Path, how: str) -> None:
    before = tree_state(source.parent)
    manifest = add(store, "a", source)
    store.copy("a", "b")
    store.remove("a")
    assert store.blobs.path(manifest.files[0].digest).exists(), "b still needs it"
    store.remove("b")
    assert list(store.blobs.dir.iterdir()) == [] and list(store.snapshots.iterdir()) == []
    assert tree_state(source.parent) == before, "garbage collection unlinked r1's name only"
    assert store.blob_sources(manifest) == {}


@pytest.mark.usefixtures("symlinked")
def test_an_orphan_symlinked_blob_at_start_up_is_unlinked_not_its_target(store: Store, source: Path) -> None:
    before = tree_state(source.parent)
    assert store.adopt(source, sha256=source.name).how == "symlinked"  # then a crash before the model is recorded
    store, report = reopened(store)
    store.close()
    assert report.actions == [f"removed orphan blob {parse_digest_of(source)} (50,000 bytes) that no model records"]
    assert list(store.blobs.dir.iterdir()) == []
    assert tree_state(source.parent) == before


@pytest.mark.parametrize("mode", ["linked", "symlinked", "copied"])
def test_a_corrupt_file_is_rejected_naming_it(
    store: Store, tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    force(monkeypatch, mode)
    named = sha(b"what the manifest says")
    bad = tmp_path / "ollama" / "blobs" / named.replace(":", "-")
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"what the disk holds")
    with pytest.raises(CorruptSourceError) as info:
        store.adopt(bad, sha256=bad.name, copy=mode == "copied")
    message = str(info.value)
    assert str(bad) in message and "corrupt" in message and "pull it again there" in message
    assert info.value.status == 400
    assert list(store.blobs.dir.iterdir()) == [] and list(store.blobs.partial.iterdir()) == []
    assert bad.read_bytes() == b"what the disk holds"


def test_trust_takes_the_given_digest_without_reading_the_file(
    store: Store, source: Path, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:

    def no_hashing(*args: object, **kw: object) -> None:
        raise AssertionError("trust=True must not hash")

    monkeypatch.setattr(external, "hash_file", no_hashing)
    monkeypatch.setattr(blobs_module, "hash_file", no_hashing)
    monkeypatch.setattr(blobs_module, "_copy_hashing", no_hashing)
    # A digest the bytes do not have: only a check that never read them can take it.
    claimed = sha(b"not these bytes")
    ingested = store.adopt(source, sha256=claimed, trust=True)
    assert (ingested.digest, ingested.how, ingested.bytes_copied) == (claimed, how, 0)
    manifest = Manifest((FileEntry("model.gguf", claimed, ingested.size),), ModelFacts("gguf"))
    store.add("m", manifest)
    assert store.blob_sources(manifest)["model.gguf"].digest == claimed
    with pytest.raises(ValueError, match="trust needs the sha256"):
        store.adopt(source, trust=True)


@pytest.mark.usefixtures("symlinked")
def test_a_users_file_on_another_device_is_copied_not_symlinked(store: Store, source: Path) -> None:
    ingested = store.ingest(source)  # `r1 import FILE`: the user may delete the file afterwards
    assert (ingested.how, ingested.bytes_copied) == ("copied", 50_000)
    assert not store.blobs.path(ingested.digest).is_symlink()


def test_r1_import_links_without_changing_the_users_file(store: Store, tmp_path: Path) -> None:
    (tmp_path / "downloads").mkdir()
    path = write_tiny_gguf(tmp_path / "downloads" / "tiny.gguf")
    path.chmod(0o664)
    before = tree_state(path.parent)
    result = import_model(store, path, parse_name("tiny:1"))
    assert result.how == {"tiny.gguf": "linked"}
    assert tree_state(path.parent) == before, "the original keeps its mode: no chmod of a shared inode"
    manifest = store.get("tiny:1").manifest
    assert store.blob_sources(manifest)["tiny.gguf"].kind == "linked"
    with open(path, "ab") as f:  # the user edits the file in place: r1 notices
        f.write(b"\0")
    assert store.changed_files(manifest) == ["tiny.gguf"]
    store.remove("tiny:1")
    assert path.exists() and path.stat().st_size == before["tiny.gguf"][0] + 1
