"""The store on a temp dir: blobs, manifests, names, garbage collection, crash repair."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import sqlite_utils

from r1.daemon.create import combine_overrides
from r1.daemon.errors import InsufficientStorage
from r1.daemon.metadata import ModelFacts
from r1.daemon.store import FileEntry, Manifest, MissingBlobError, ModelNotFoundError, Overrides, Store, parse_digest
from r1.daemon.store.blobs import BlobStore, InvalidDigestError, Upload, UploadMismatchError
from r1.daemon.store.index import migrations


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "home")
    assert s.open().actions == []
    yield s
    s.close()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def add_file_model(store: Store, name: str, path: Path, link: bool = True) -> Manifest:
    ingested = store.ingest(path, link=link)
    manifest = Manifest((FileEntry(path.name, ingested.digest, ingested.size),), ModelFacts("gguf", quantization="Q4_K_M"))
    store.add(name, manifest)
    return manifest


def blob_files(store: Store) -> list[str]:
    return sorted(p.name for p in store.blobs.dir.iterdir())


def index_rows(store: Store, sql: str) -> list[tuple]:
    """What the index file holds, read with a connection of the test's own."""
    db = sqlite_utils.Database(store.home / "r1.db")
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


@pytest.mark.unit
def test_add_get_list_and_snapshot(store: Store, tmp_path: Path) -> None:
    data = os.urandom(10_000)
    source = write(tmp_path / "src" / "model.gguf", data)
    manifest = add_file_model(store, "tiny:1", source, link=False)

    record = store.get("TINY:1")
    assert record.name == "tiny:1" and record.manifest == manifest and record.manifest_id == manifest.id
    assert [r.name for r in store.models()] == ["tiny:1"]
    blob = store.blobs.path(sha(data))
    assert blob.read_bytes() == data
    assert stat.S_IMODE(blob.stat().st_mode) == 0o444, "blobs are read-only"
    link = store.snapshot_path(manifest.id) / "model.gguf"
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))
    assert link.read_bytes() == data
    assert link.resolve() == blob.resolve()


@pytest.mark.unit
def test_hard_link_shares_the_inode_and_copy_does_not(store: Store, tmp_path: Path) -> None:
    linked = write(tmp_path / "a.gguf", b"linked bytes")
    copied = write(tmp_path / "b.gguf", b"copied bytes")
    mode = stat.S_IMODE(linked.stat().st_mode)
    assert store.ingest(linked).how in ("linked", "reflinked")
    assert store.ingest(copied, link=False).how == "copied"
    assert store.blobs.path(sha(b"linked bytes")).stat().st_ino == linked.stat().st_ino, "ext4: a hard link"
    assert stat.S_IMODE(linked.stat().st_mode) == mode, "a hard-linked original keeps its mode (issue 18)"
    assert stat.S_IMODE(store.blobs.path(sha(b"copied bytes")).stat().st_mode) == 0o444, "a copy is read-only"
    assert store.blobs.path(sha(b"copied bytes")).stat().st_ino != copied.stat().st_ino
    assert copied.stat().st_mode & stat.S_IWUSR, "a copied original keeps its mode"


def test_same_bytes_under_two_names_are_stored_once(store: Store, tmp_path: Path) -> None:
    data = os.urandom(5000)
    first = write(tmp_path / "one" / "m.gguf", data)
    second = write(tmp_path / "two" / "m.gguf", data)
    add_file_model(store, "first", first, link=False)
    assert store.ingest(second, link=False).how == "stored"
    add_file_model(store, "second", second, link=False)
    assert blob_files(store) == [sha(data).replace(":", "-")]
    assert store.get("first").manifest_id == store.get("second").manifest_id
    assert len(list(store.snapshots.iterdir())) == 1


@pytest.mark.unit
def test_copy_shares_the_manifest(store: Store, tmp_path: Path) -> None:
    add_file_model(store, "orig", write(tmp_path / "m.gguf", b"x" * 100))
    copied = store.copy("orig", "hf.co/me/copy:v1")
    assert copied.name == "hf.co/me/copy:v1"
    assert copied.manifest_id == store.get("orig").manifest_id
    with pytest.raises(ModelNotFoundError):
        store.copy("missing", "other")


def test_rm_collects_blobs_only_when_unreferenced(store: Store, tmp_path: Path) -> None:
    shared, own = os.urandom(300), os.urandom(400)
    add_file_model(store, "a", write(tmp_path / "a" / "m.gguf", shared))
    add_file_model(store, "b", write(tmp_path / "b" / "m.gguf", shared))
    add_file_model(store, "c", write(tmp_path / "c" / "m.gguf", own))
    store.copy("c", "c2")

    store.remove("a")
    assert sha(shared).replace(":", "-") in blob_files(store), "b still needs the shared blob"
    store.remove("b")
    assert sha(shared).replace(":", "-") not in blob_files(store)
    store.remove("c")
    assert sha(own).replace(":", "-") in blob_files(store), "c2 still needs it"
    manifest_id = store.get("c2").manifest_id
    store.remove("c2")
    assert blob_files(store) == []
    assert not store.snapshot_path(manifest_id).exists()
    assert index_rows(store, "SELECT * FROM blobs") == [] and index_rows(store, "SELECT * FROM manifests") == []
    with pytest.raises(ModelNotFoundError) as info:
        store.remove("c2")
    assert "not found" in str(info.value) and info.value.status == 404


def test_renaming_to_a_taken_name_replaces_and_collects(store: Store, tmp_path: Path) -> None:
    old, new = os.urandom(100), os.urandom(100)
    add_file_model(store, "m", write(tmp_path / "old.gguf", old))
    add_file_model(store, "m", write(tmp_path / "new.gguf", new))
    assert blob_files(store) == [sha(new).replace(":", "-")]
    assert [r.name for r in store.models()] == ["m:latest"]


@pytest.mark.unit
def test_add_refuses_a_manifest_whose_blob_is_gone(store: Store, tmp_path: Path) -> None:
    data = b"gone"
    entry = FileEntry("m.gguf", sha(data), len(data))
    with pytest.raises(MissingBlobError) as info:
        store.add("x", Manifest((entry,), ModelFacts("gguf")))
    assert "disappeared" in str(info.value) and info.value.status == 409
    assert store.models() == []


@pytest.mark.unit
def test_manifest_paths_cannot_escape(store: Store) -> None:
    with pytest.raises(ValueError):
        FileEntry("../../etc/passwd", "sha256:" + "0" * 64, 1)
    with pytest.raises(InvalidDigestError):
        FileEntry("ok.gguf", "md5:abc", 1)


@pytest.mark.unit
def test_parse_digest_forms() -> None:
    hexd = "AB" * 32
    assert parse_digest("sha256:" + hexd) == "sha256:" + hexd.lower()
    assert parse_digest("sha256-" + hexd) == "sha256:" + hexd.lower()
    for bad in ("sha256:xyz", "sha256:" + "0" * 63, "../sha256:" + "0" * 64, ""):
        with pytest.raises(InvalidDigestError):
            parse_digest(bad)


@pytest.mark.unit
def test_not_enough_space_is_a_clear_error_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blobs = BlobStore(tmp_path / "home")
    blobs.create_dirs()
    source = write(tmp_path / "big.gguf", os.urandom(2048))
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10_000, 9_000, 1000))
    with pytest.raises(InsufficientStorage) as info:
        blobs.copy_in(source)
    assert "needs 2,048 bytes" in str(info.value) and "r1 rm" in str(info.value)
    assert list(blobs.partial.iterdir()) == [] and list(blobs.dir.iterdir()) == []


# Crash repair: the states a killed process leaves behind, then a fresh open().


def test_reconcile_after_a_process_killed_between_blob_and_index(tmp_path: Path) -> None:
    home = tmp_path / "home"
    Store(home).open()
    source = write(tmp_path / "m.gguf", os.urandom(4096))
    # A real process dies right after the blob is durable and before the index records it.
    script = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from r1.daemon.store import Store
        s = Store(Path({str(home)!r})); s.open()
        s.ingest(Path({str(source)!r}), link=False)
        (s.blobs.partial / "import-deadbeef").write_bytes(b"half a copy")
        os._exit(9)
        """
    )
    assert subprocess.run([sys.executable, "-c", script]).returncode == 9
    store = Store(home)
    report = store.open()
    assert any("orphan blob" in a for a in report.actions)
    assert any("import-deadbeef of an interrupted import" in a for a in report.actions)
    assert blob_files(store) == [] and list(store.blobs.partial.iterdir()) == []
    assert store.open().actions == [], "a second start finds nothing to repair"


def test_reconcile_reports_missing_and_damaged_blobs_and_fixes_snapshots(tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = Store(home)
    store.open()
    a, b = os.urandom(100), os.urandom(200)
    ma = add_file_model(store, "a", write(tmp_path / "a.gguf", a), link=False)
    mb = add_file_model(store, "b", write(tmp_path / "b.gguf", b), link=False)
    store.close()

    store.blobs.path(sha(a)).unlink()  # lost
    damaged = store.blobs.path(sha(b))
    damaged.chmod(0o644)
    damaged.write_bytes(b"short")  # truncated
    (store.snapshot_path(mb.id) / "b.gguf").unlink()  # snapshot link lost
    (store.snapshots / ("f" * 64)).mkdir()  # snapshot of nothing
    write(store.blobs.dir / "notes.txt", b"stray")

    report = store.open()
    text = "\n".join(report.actions)
    assert f"blob {sha(a)} is missing; models that need it (a:latest)" in text
    assert f"blob {sha(b)} had 5 bytes instead of 200" in text
    assert "removed snapshot " + "f" * 64 in text
    assert f"rebuilt snapshot {mb.id[:12]}" in text
    assert "notes.txt" in text
    assert not damaged.exists()
    assert (store.snapshot_path(mb.id) / "b.gguf").is_symlink()
    # The names stay: re-importing the same bytes makes the models whole again.
    assert store.missing_files(store.get("a").manifest) == ["a.gguf"]
    add_file_model(store, "a", write(tmp_path / "again" / "a.gguf", a))
    assert store.missing_files(store.get("a").manifest) == []
    assert store.get("a").manifest_id == ma.id
    store.close()


@pytest.mark.unit
def test_migrations_create_the_schema_once() -> None:
    db = sqlite_utils.Database(memory=True)
    migrations.apply(db)
    migrations.apply(db)
    assert set(db.table_names()) == {"blobs", "manifests", "manifest_files", "models", "blob_sources",
                                     "_sqlite_migrations"}, "the store's tables, no other feature's"
    assert db["models"].columns_dict == {
        "key": str, "name": str, "manifest_id": str, "created_at": str, "modified_at": str
    }
    assert [c.name for c in db["manifest_files"].columns] == ["manifest_id", "path", "digest", "size", "position"]
    assert [c.name for c in db["manifests"].columns] == ["id", "format", "facts", "created_at", "overrides", "source"]
    assert [c.name for c in db["blob_sources"].columns] == ["digest", "kind", "source", "size", "mtime_ns", "inode"]
    assert migrations.applied(db) == ["m001_initial", "m002_facts_apart_from_overrides", "m003_blob_sources"]
    assert migrations.pending(db) == []


@pytest.mark.unit
def test_index_is_in_wal_mode(store: Store) -> None:
    assert index_rows(store, "PRAGMA journal_mode") == [("wal",)]


@pytest.mark.unit
def test_resumable_downloads_are_kept_until_they_go_stale(tmp_path: Path) -> None:
    store = Store(tmp_path / "home")
    store.open()
    fresh = write(store.blobs.partial / ("sha256-" + "1" * 64 + ".part"), b"half")
    stale = write(store.blobs.partial / ("sha256-" + "2" * 64 + ".part"), b"old")
    stale_state = write(store.blobs.partial / ("sha256-" + "2" * 64 + ".json"), b"{}")
    long_ago = time.time() - 15 * 86400
    for path in (stale, stale_state):
        os.utime(path, (long_ago, long_ago))
    report = store.open()
    assert fresh.exists() and not stale.exists() and not stale_state.exists()
    assert sum("not resumed for 14 days" in action for action in report.actions) == 2


# Facts apart from overrides, and the migration that split them


def old_manifest_id(fmt: str, files: list[dict], metadata: dict) -> str:
    """How r1 named a manifest when facts, source and overrides were one `metadata` object."""
    body = {"format": fmt, "files": files, "metadata": metadata}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def test_a_new_manifest_keeps_the_id_r1_gave_the_same_content_before(store: Store, tmp_path: Path) -> None:
    data = os.urandom(100)
    ingested = store.ingest(write(tmp_path / "m.gguf", data))
    facts = ModelFacts("gguf", architecture="llama", license="apache-2.0", vocab_size=32, matmul_weights={"F32": 8})
    overrides = Overrides(system="Be brief.", parameters={"temperature": 0.5})
    manifest = Manifest((FileEntry("m.gguf", ingested.digest, ingested.size),), facts, overrides, {"repo": "o/r"})
    merged = facts.to_dict() | {"source": {"repo": "o/r"}, "system": "Be brief.", "parameters": {"temperature": 0.5}}
    files = [{"path": "m.gguf", "digest": ingested.digest, "size": 100}]
    assert manifest.id == old_manifest_id("gguf", files, merged)
    assert store.add("m", manifest).manifest_id == manifest.id
    assert store.get("m").manifest == manifest


def test_old_stores_are_migrated_and_keep_their_manifest_ids(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    data = os.urandom(1000)
    digest = sha(data)
    # A manifest as an r1 before vocab_size and matmul_weights wrote it: a created variant of a pulled model.
    merged = {
        "format": "gguf", "architecture": "llama", "family": "llama", "parameter_count": 1000,
        "parameter_size": "0.00M", "quantization": "Q8_0", "context_length": 2048, "chat_template": "{{ x }}",
        "name": "Tiny", "license": "MIT", "embedding_length": 64, "block_count": 2, "head_count": 4,
        "head_count_kv": 2, "key_length": 16, "value_length": 16,
        "source": {"repo": "org/tiny", "commit": "c" * 40, "tag": "Q8_0"},
        "template": "{{ messages }}", "system": "Be brief.", "parameters": {"temperature": 0.5},
        "messages": [{"role": "user", "content": "hi"}],
    }
    files = [{"path": "tiny.gguf", "digest": digest, "size": len(data)}]
    manifest_id = old_manifest_id("gguf", files, merged)
    db = sqlite_utils.Database(home / "r1.db")
    migrations.apply(db, stop_before="m002_facts_apart_from_overrides")
    stamp = "2025-01-01T00:00:00+00:00"
    db.execute("INSERT INTO blobs VALUES (?, ?, ?)", [digest, len(data), stamp])
    db.execute("INSERT INTO manifests VALUES (?, 'gguf', ?, ?)", [manifest_id, json.dumps(merged), stamp])
    db.execute("INSERT INTO manifest_files VALUES (?, 'tiny.gguf', ?, ?, 0)", [manifest_id, digest, len(data)])
    db.execute("INSERT INTO models VALUES ('tiny:latest', 'tiny:latest', ?, ?, ?)", [manifest_id, stamp, stamp])
    db.conn.commit()
    db.close()
    write(home / "blobs" / digest.replace(":", "-"), data)

    store = Store(home)
    assert store.open().actions == [f"rebuilt snapshot {manifest_id[:12]}"]  # only the links this test left out
    record = store.get("tiny")
    assert record.manifest_id == record.manifest.id == manifest_id
    manifest = record.manifest
    assert manifest.facts == ModelFacts(
        format="gguf", architecture="llama", family="llama", parameter_count=1000, parameter_size="0.00M",
        quantization="Q8_0", context_length=2048, chat_template="{{ x }}", name="Tiny", license="MIT",
        embedding_length=64, block_count=2, head_count=4, head_count_kv=2, key_length=16, value_length=16,
    )  # vocab_size and matmul_weights unknown: the memory estimate has defaults for them
    assert manifest.overrides == Overrides(template="{{ messages }}", system="Be brief.",
                                           parameters={"temperature": 0.5}, messages=[{"role": "user", "content": "hi"}])
    assert manifest.source == {"repo": "org/tiny", "commit": "c" * 40, "tag": "Q8_0"}
    assert (store.snapshot_path(manifest_id) / "tiny.gguf").read_bytes() == data
    # The recorded id travels with the manifest: a copy shares it, a variant gets its own.
    assert store.copy("tiny", "again").manifest_id == manifest_id
    overrides = combine_overrides(manifest.overrides, Overrides(parameters={"top_k": 5}))
    variant = Manifest(manifest.files, manifest.facts, overrides)
    assert variant.overrides.parameters == {"temperature": 0.5, "top_k": 5}
    assert store.add("variant", variant).manifest_id not in (manifest_id, "")
    store.close()
    assert store.open().actions == [], "the migration runs once"
    store.close()


# SQLite off the hot path


def test_lookups_go_on_while_rm_unlinks_a_big_model(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    add_file_model(store, "big", write(tmp_path / "big.gguf", os.urandom(300)))
    add_file_model(store, "small", write(tmp_path / "small.gguf", os.urandom(200)))
    unlinking, release = threading.Event(), threading.Event()
    remove = store.blobs.remove

    def slow_remove(digest: str) -> None:
        unlinking.set()
        release.wait(10)  # a multi-gigabyte unlink on a slow disk
        remove(digest)

    monkeypatch.setattr(store.blobs, "remove", slow_remove)
    rm = threading.Thread(target=store.remove, args=("big",))
    rm.start()
    try:
        assert unlinking.wait(5)
        answers: list[object] = []
        reader = threading.Thread(target=lambda: answers.extend([store.get("small").name, store.has("big")]))
        reader.start()
        reader.join(2)
        assert answers == ["small:latest", False], "a lookup waited behind the rm's unlink"
    finally:
        release.set()
        rm.join()
    assert len(blob_files(store)) == 1


@pytest.mark.unit
def test_an_upload_becomes_a_blob_only_with_its_digest(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "home")
    blobs.create_dirs()
    data = os.urandom(3000)
    upload = Upload(blobs, sha(data), len(data))
    for start in range(0, len(data), 1024):
        upload.write(data[start : start + 1024])
    upload.commit()
    upload.discard()
    assert blobs.path(sha(data)).read_bytes() == data
    wrong = Upload(blobs, sha(b"other"), None)
    wrong.write(b"not other")
    with pytest.raises(UploadMismatchError, match=f"have digest {sha(b'not other')}, not {sha(b'other')}"):
        wrong.commit()
    wrong.discard()
    assert not blobs.has(sha(b"other")) and list(blobs.partial.iterdir()) == []
