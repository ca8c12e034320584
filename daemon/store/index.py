"""The SQLite index: names -> manifests -> files -> blobs, with the store's migrations.

The index is the store's source of truth: a blob counts as stored once it is recorded
here, and garbage collection decides from here what goes. An Index wraps one connection;
the shared Database (daemon/database.py) decides which connection serves which thread.
Other features keep their own tables in the same r1.db, each beside its own code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlite_utils

from ..database import Migrations
from ..metadata.facts import ModelFacts
from .external import BlobSource
from .manifest import FileEntry, Manifest, Overrides

migrations = Migrations("store")


@migrations(formerly="m001_initial")
def m001_initial(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE blobs (
            digest TEXT PRIMARY KEY,
            size INTEGER NOT NULL,
            created_at TEXT NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE manifests (
            id TEXT PRIMARY KEY,
            format TEXT NOT NULL,
            metadata TEXT NOT NULL,
            created_at TEXT NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE manifest_files (
            manifest_id TEXT NOT NULL REFERENCES manifests(id) ON DELETE CASCADE,
            path TEXT NOT NULL,
            digest TEXT NOT NULL REFERENCES blobs(digest),
            size INTEGER NOT NULL,
            position INTEGER NOT NULL,
            PRIMARY KEY (manifest_id, path)
        )"""
    )
    db.execute("CREATE INDEX manifest_files_digest ON manifest_files(digest)")
    db.execute(
        """CREATE TABLE models (
            key TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            manifest_id TEXT NOT NULL REFERENCES manifests(id),
            created_at TEXT NOT NULL,
            modified_at TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX models_manifest ON models(manifest_id)")


# Keys of a manifest's old merged metadata that `r1 create` set. `license` stays with the facts:
# the merged object cannot tell the file's license from a LICENSE line, and either is the one in effect.
_CREATE_KEYS = ("template", "system", "parameters", "messages")


@migrations(formerly="m003_facts_apart_from_overrides")
def m002_facts_apart_from_overrides(db: sqlite_utils.Database) -> None:
    # Manifests kept one merged `metadata` object: the files' facts, a pull's source and what
    # `r1 create` set. Each gets a column of its own; manifest ids stay as they were.
    db.execute("ALTER TABLE manifests RENAME COLUMN metadata TO facts")
    db.execute("ALTER TABLE manifests ADD COLUMN overrides TEXT NOT NULL DEFAULT '{}'")
    db.execute("ALTER TABLE manifests ADD COLUMN source TEXT")
    for manifest_id, fmt, text in db.execute("SELECT id, format, facts FROM manifests").fetchall():
        facts = json.loads(text)
        source = facts.pop("source", None)
        overrides = {key: facts.pop(key) for key in _CREATE_KEYS if key in facts}
        db.execute(
            "UPDATE manifests SET facts = ?, overrides = ?, source = ? WHERE id = ?",
            [json.dumps({**facts, "format": fmt}, sort_keys=True), json.dumps(overrides, sort_keys=True),
             None if source is None else json.dumps(source, sort_keys=True), manifest_id],
        )


@migrations(formerly="m006_blob_sources")
def m003_blob_sources(db: sqlite_utils.Database) -> None:
    # Blobs whose bytes another tool owns (external.py): a hard link or a symlink in blobs/, and what
    # the file was when r1 took it in, so a changed or vanished one is never served.
    db.execute(
        """CREATE TABLE blob_sources (
            digest TEXT PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('linked', 'symlinked')),
            source TEXT NOT NULL,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            inode INTEGER NOT NULL
        )"""
    )


def now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass(frozen=True)
class ModelRecord:
    name: str
    manifest_id: str
    manifest: Manifest
    created_at: str
    modified_at: str


@dataclass(frozen=True)
class Collected:
    """What a garbage collection dropped from the index; the caller removes the files."""

    manifests: list[str]
    blobs: list[str]


class Index:
    """Queries and transactions on one connection; the caller keeps it to one thread at a time."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db

    # reads

    def get_model(self, key: str) -> ModelRecord | None:
        row = self.db.execute(
            "SELECT name, manifest_id, created_at, modified_at FROM models WHERE key = ?", [key]
        ).fetchone()
        return self._record(*row) if row else None

    def list_models(self) -> list[ModelRecord]:
        rows = self.db.execute(
            "SELECT name, manifest_id, created_at, modified_at FROM models ORDER BY modified_at DESC, name"
        ).fetchall()
        return [self._record(*row) for row in rows]

    def manifest(self, manifest_id: str) -> Manifest | None:
        row = self.db.execute("SELECT facts, overrides, source FROM manifests WHERE id = ?", [manifest_id]).fetchone()
        if row is None:
            return None
        files = tuple(
            FileEntry(path, digest, size)
            for path, digest, size in self.db.execute(
                "SELECT path, digest, size FROM manifest_files WHERE manifest_id = ? ORDER BY position",
                [manifest_id],
            )
        )
        facts, overrides, source = row
        return Manifest.recorded(manifest_id, files, ModelFacts.from_dict(json.loads(facts)),
                                 Overrides.from_dict(json.loads(overrides)), None if source is None else json.loads(source))

    def _record(self, name: str, manifest_id: str, created_at: str, modified_at: str) -> ModelRecord:
        manifest = self.manifest(manifest_id)
        assert manifest is not None, "foreign key guarantees the manifest"
        return ModelRecord(name, manifest_id, manifest, created_at, modified_at)

    def blobs(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT digest, size FROM blobs").fetchall())

    def blob_sources(self, digests: list[str] | None = None) -> dict[str, BlobSource]:
        """The records of externally held blobs: of `digests`, or all of them."""
        sql = "SELECT digest, kind, source, size, mtime_ns, inode FROM blob_sources"
        if digests is not None:
            sql += f" WHERE digest IN ({', '.join('?' * len(digests))})"
        return {row[0]: BlobSource(*row) for row in self.db.execute(sql, digests or [])}

    def manifest_ids(self) -> list[str]:
        return [row[0] for row in self.db.execute("SELECT id FROM manifests")]

    def models_using_blob(self, digest: str) -> list[str]:
        return [
            row[0]
            for row in self.db.execute(
                "SELECT DISTINCT m.name FROM models m JOIN manifest_files f ON f.manifest_id = m.manifest_id "
                "WHERE f.digest = ? ORDER BY m.name",
                [digest],
            )
        ]

    # writes: each is one transaction, garbage collection included

    def put_blob_source(self, source: BlobSource) -> None:
        self.db.table("blob_sources").upsert(source.to_row(), pk="digest")

    def drop_blob_sources(self, digests: list[str]) -> None:
        self.db.conn.executemany("DELETE FROM blob_sources WHERE digest = ?", [(d,) for d in digests])

    def put_model(self, key: str, name: str, manifest: Manifest) -> Collected:
        """Point `name` at `manifest` (recording it and its blobs), replacing what the name had; what
        nothing uses any more is dropped in the same transaction, and its files are the caller's to remove."""
        stamp = now()
        with self.db.atomic():
            for f in manifest.files:
                self.db.execute(
                    "INSERT OR IGNORE INTO blobs (digest, size, created_at) VALUES (?, ?, ?)",
                    [f.digest, f.size, stamp],
                )
            manifest_id = manifest.id
            inserted = self.db.execute(
                "INSERT OR IGNORE INTO manifests (id, format, facts, overrides, source, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [manifest_id, manifest.format, json.dumps(manifest.facts.to_dict(), sort_keys=True),
                 json.dumps(manifest.overrides.to_dict(), sort_keys=True),
                 None if manifest.source is None else json.dumps(manifest.source, sort_keys=True), stamp],
            ).rowcount
            if inserted:
                self.db.conn.executemany(
                    "INSERT INTO manifest_files (manifest_id, path, digest, size, position) VALUES (?, ?, ?, ?, ?)",
                    [(manifest_id, f.path, f.digest, f.size, i) for i, f in enumerate(manifest.files)],
                )
            self.db.execute(
                "INSERT INTO models (key, name, manifest_id, created_at, modified_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET name = excluded.name, manifest_id = excluded.manifest_id, "
                "modified_at = excluded.modified_at",
                [key, name, manifest_id, stamp, stamp],
            )
            return self._collect()

    def delete_model(self, key: str) -> Collected:
        with self.db.atomic():
            self.db.execute("DELETE FROM models WHERE key = ?", [key])
            return self._collect()

    def _collect(self) -> Collected:
        manifests = [
            row[0]
            for row in self.db.execute(
                "SELECT id FROM manifests WHERE id NOT IN (SELECT manifest_id FROM models)"
            )
        ]
        self.db.conn.executemany("DELETE FROM manifests WHERE id = ?", [(m,) for m in manifests])
        blobs = [
            row[0]
            for row in self.db.execute(
                "SELECT digest FROM blobs WHERE digest NOT IN (SELECT digest FROM manifest_files)"
            )
        ]
        self.db.conn.executemany("DELETE FROM blobs WHERE digest = ?", [(b,) for b in blobs])
        self.drop_blob_sources(blobs)
        return Collected(manifests, blobs)
