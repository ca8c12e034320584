"""The model store: blobs on disk, the index in SQLite, and per-manifest snapshot folders.

$R1_HOME/
  r1.db                    the index (WAL)
  blobs/sha256-<hex>       immutable, read-only file contents; or a hard link or symlink to a file
                           another tool owns, recorded in blob_sources and never changed (external.py)
  partial/                 bytes on their way in; never read by backends
  snapshots/<manifest>/    symlinks into blobs/ under the file names a backend expects

Order of writes keeps a crash harmless: bytes become a blob (fsync + rename) before the
index records them, and blob files are removed only after the index forgot them. What a
crash leaves behind, `reconcile()` repairs at the next start.

Reads never wait: each runs on a read connection of its own. Writes, and the file work
that must not interleave with them, run one at a time on the writer thread of r1.db
(daemon/database.py), which the store shares with the other features that keep tables there.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from ..database import Database
from ..errors import Conflict, ModelNotFound
from .blobs import EPHEMERAL_PREFIXES, VIEW_PREFIX, BlobStore, Ingested, Progress
from .confined import Confinement, open_regular, pinned_path
from .external import BlobSource, BrokenFile, Fallback, adopt, describe, pinned
from .index import Collected, Index, ModelRecord, migrations
from .manifest import Manifest
from .names import ModelName, parse_name, safe_relpath
from .private import INDEX, make_private

log = logging.getLogger(__name__)
T = TypeVar("T")

PARTIAL_MAX_AGE = 14 * 86400  # seconds an unfinished, resumable download waits for its pull to come back


class ModelNotFoundError(ModelNotFound, LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"model '{name}' not found; `r1 list` shows the models you have")


class MissingBlobError(Conflict):
    """A file the model needs left the store while it was being added (a concurrent rm)."""


@dataclass
class ReconcileReport:
    actions: list[str] = field(default_factory=list)  # repairs made
    # Externally held blobs that cannot be served, left as they are: "sha256:...: broken: SOURCE is gone"
    broken: list[str] = field(default_factory=list)

    def add(self, message: str) -> None:
        log.warning("store repair: %s", message)
        self.actions.append(message)

    def add_broken(self, message: str) -> None:
        log.warning("store: %s", message)
        self.broken.append(message)


def _as_name(name: str | ModelName) -> ModelName:
    return name if isinstance(name, ModelName) else parse_name(name)


class Store:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.blobs = BlobStore(home)
        self.snapshots = home / "snapshots"
        self._database: Database | None = None

    @property
    def database(self) -> Database:
        """r1.db, opened by open(): the other features that keep tables there (remotes, Responses, the
        request log, kernel crashes) use it too."""
        if self._database is None:
            raise RuntimeError("Store.open() was not called")
        return self._database

    def open(self) -> ReconcileReport:
        """Create the layout if needed, open r1.db (migrating the index) and repair what a crash left."""
        make_private(self.home)
        self.blobs.create_dirs()
        self.snapshots.mkdir(exist_ok=True)
        self._database = Database(self.home / INDEX)
        self._database.migrate(migrations)
        return self.reconcile()

    def close(self) -> None:
        """Close r1.db, for every feature that uses it: the caller stops them first."""
        if self._database is not None:
            self._database.close()
            self._database = None

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Index]:
        with self.database.reading() as db:
            yield Index(db)

    def _write(self, job: Callable[[Index], T]) -> T:
        return self.database.write(lambda db: job(Index(db)))

    # reading: on a read connection of the caller's own, never waiting for a write

    def get(self, name: str | ModelName) -> ModelRecord:
        model = _as_name(name)
        with self._reading() as index:
            record = index.get_model(model.key)
        if record is None:
            raise ModelNotFoundError(str(model))
        return record

    def has(self, name: str | ModelName) -> bool:
        with self._reading() as index:
            return index.get_model(_as_name(name).key) is not None

    def models(self) -> list[ModelRecord]:
        with self._reading() as index:
            return index.list_models()

    def snapshot_path(self, manifest_id: str) -> Path:
        return self.snapshots / manifest_id

    def missing_files(self, manifest: Manifest) -> list[str]:
        """Files of a model whose blobs are not on disk (a damaged store)."""
        return [f.path for f in manifest.files if not self.blobs.has(f.digest, f.size)]

    def blob_sources(self, manifest: Manifest) -> dict[str, BlobSource]:
        """{file path: record} for the model's files whose bytes another tool holds (linked or symlinked)."""
        with self._reading() as index:
            sources = index.blob_sources([f.digest for f in manifest.files])
        return {f.path: sources[f.digest] for f in manifest.files if f.digest in sources}

    def broken(self, manifest: Manifest, sources: dict[str, BlobSource] | None = None) -> list[BrokenFile]:
        """The model's externally held files that must not be served: their source is gone, or changed
        (size, mtime or inode) since the import. A stat each, no reading. `sources`: its blob_sources(),
        when the caller has read them already."""
        held = self.blob_sources(manifest) if sources is None else sources
        problems = ((path, source, source.problem(self.blobs.path(source.digest))) for path, source in held.items())
        return [BrokenFile(path, source.digest, source.source, source.kind, problem)
                for path, source, problem in problems if problem]

    def changed_files(self, manifest: Manifest) -> list[str]:
        """Paths of the model's files that changed or vanished at their source since they were imported."""
        return [broken.path for broken in self.broken(manifest)]

    def _usable(self, digest: str, size: int) -> bool:
        """Whether blobs/ already holds sound bytes for a digest (an external one not gone nor changed)."""
        if not self.blobs.has(digest, size):
            return False
        with self._reading() as index:
            source = index.blob_sources([digest]).get(digest)
        return source is None or source.problem(self.blobs.path(digest)) is None

    # writing: on the writer thread, one at a time

    def ingest(self, path: Path, *, link: bool = True, progress: Progress | None = None) -> Ingested:
        """Bring one of the user's files in as a blob (`r1 import`): a clone, a hard link or a copy,
        never changing the file (see adopt); no index work but the link's record: hashing may take a while."""
        return self.adopt(path, copy=not link, fallback="copy", progress=progress, from_client=True)

    def adopt(self, path: Path, *, sha256: str | None = None, trust: bool = False, copy: bool = False,
              fallback: Fallback = "symlink", progress: Progress | None = None, inside: Path | None = None,
              from_client: bool = False) -> Ingested:
        """Bring a file another tool owns in as a blob without changing or moving it (external.adopt:
        a reflink, else a hard link, else a symlink or with `fallback="copy"` a copy; `copy` copies).
        `sha256`: the digest the tool names it by, verified unless `trust`. The file must be a regular
        file, `inside` that folder if given, and never in R1_HOME when a client named it (`from_client`).
        A linked or symlinked blob is recorded, so changed_files() and broken() can tell when its source
        changes."""
        rules = Confinement(inside, self.home if from_client else None)
        ingested, source = adopt(self.blobs, path, sha256=sha256, trust=trust, copy=copy, fallback=fallback,
                                 usable=self._usable, progress=progress, rules=rules)
        if source is not None:
            try:
                self._write(lambda index: index.put_blob_source(source))
            except BaseException:
                self.discard([ingested])  # an unrecorded link would be served as r1's own bytes
                raise
        return ingested

    @contextlib.contextmanager
    def intake(self) -> Iterator[list[Ingested]]:
        """Collects the blobs brought in for one model (append each); if the model is not recorded (an
        error half-way: a later file refused, a full disk), those this intake put in blobs/ and no model
        records are removed, so a failed import leaves no link behind."""
        taken: list[Ingested] = []
        try:
            yield taken
        except BaseException:
            try:
                self.discard(taken)
            except Exception as exc:  # the import's own error matters more; reconcile removes them at start
                log.warning("could not remove the blobs of a failed import: %s", exc)
            raise

    def discard(self, taken: Iterable[Ingested]) -> None:
        """Remove blobs brought in for a model that was not recorded, unless a model records them now:
        only r1's names (a link's source stays), and only those brought in, not ones already stored."""
        digests = {ingested.digest for ingested in taken if ingested.how != "stored"}

        def write(index: Index) -> None:
            unrecorded = sorted(digests - index.blobs().keys())
            index.drop_blob_sources(unrecorded)
            for digest in unrecorded:
                self.blobs.remove(digest)
            if unrecorded:
                log.info("removed %d blob(s) of an import that failed: %s", len(unrecorded), ", ".join(unrecorded))

        if digests:
            self._write(write)

    def add(self, name: str | ModelName, manifest: Manifest) -> ModelRecord:
        """Point a name at a manifest whose blobs are already in blobs/; replaces the name's old model."""
        model = _as_name(name)

        def write(index: Index) -> ModelRecord:
            missing = self.missing_files(manifest)
            if missing:
                raise MissingBlobError(f"files of {model} disappeared from the store while adding it: "
                                       f"{', '.join(missing)}; try again")
            self._build_snapshot(manifest)
            return self._put(index, model, manifest)

        return self._write(write)

    def copy(self, source: str | ModelName, destination: str | ModelName) -> ModelRecord:
        src, dst = _as_name(source), _as_name(destination)

        def write(index: Index) -> ModelRecord:
            record = index.get_model(src.key)
            if record is None:
                raise ModelNotFoundError(str(src))
            return self._put(index, dst, record.manifest)

        return self._write(write)

    def _put(self, index: Index, model: ModelName, manifest: Manifest) -> ModelRecord:
        self._drop_files(index.put_model(model.key, str(model), manifest))
        record = index.get_model(model.key)
        assert record is not None
        return record

    def remove(self, name: str | ModelName) -> ModelRecord:
        """Forget a name; the manifest and blobs nothing else uses go with it."""
        model = _as_name(name)

        def write(index: Index) -> ModelRecord:
            record = index.get_model(model.key)
            if record is None:
                raise ModelNotFoundError(str(model))
            self._drop_files(index.delete_model(model.key))
            return record

        return self._write(write)

    def _drop_files(self, collected: Collected) -> None:
        """Remove the files of what a committed transaction dropped (on the writer thread: an add
        queued after it must not find a blob this is about to unlink)."""
        for manifest_id in collected.manifests:
            shutil.rmtree(self.snapshot_path(manifest_id), ignore_errors=True)
        for digest in collected.blobs:
            self.blobs.remove(digest)

    @contextlib.contextmanager
    def staged_view(self, files: Iterable[tuple[str, str]]) -> Iterator[Path]:
        """A temporary folder presenting blobs under model file names ((path, digest) pairs),
        so a model's metadata can be read before the model is recorded. A blob that is a symlink to
        another tool's file shows that file as imported, opened now (external.pinned): its owner may
        have swapped the path since."""
        files = list(files)
        with self._reading() as index:
            sources = index.blob_sources([digest for _, digest in files])
        with contextlib.ExitStack() as held:
            shown = [(path, pinned(sources[digest], self.blobs.path(digest), held) if digest in sources
                      else self.blobs.path(digest)) for path, digest in files]
            with self._view(shown) as root:
                yield root

    @contextlib.contextmanager
    def client_view(self, files: Iterable[tuple[str, Path]]) -> Iterator[Path]:
        """A temporary folder presenting files a client named ((path in the model, file) pairs), each
        opened now as a regular file outside R1_HOME (a RefusedFileError for one that is not) and read
        through that open file (confined.pinned_path), so a model's metadata can be read before a byte
        of it is hashed."""
        with contextlib.ExitStack() as held:
            rules = Confinement(private=self.home)
            shown = [(path, pinned_path(held.enter_context(open_regular(file, rules)))) for path, file in files]
            with self._view(shown) as root:
                yield root

    @contextlib.contextmanager
    def _view(self, links: list[tuple[str, Path]]) -> Iterator[Path]:
        """A temporary folder in partial/ of symlinks ((name, target) pairs), removed afterwards."""
        root = self.blobs.new_partial(VIEW_PREFIX)
        try:
            for path, target in links:
                link = root / safe_relpath(path)
                link.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(target, link)
            yield root
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def _snapshot_links(self, manifest: Manifest) -> list[tuple[Path, str]]:
        """(link, relative target) for each file: relative, so R1_HOME can move."""
        root = self.snapshot_path(manifest.id)
        links = []
        for entry in manifest.files:
            link = root / safe_relpath(entry.path)
            links.append((link, os.path.relpath(self.blobs.path(entry.digest), link.parent)))
        return links

    def _build_snapshot(self, manifest: Manifest) -> None:
        """Symlinks into blobs/ under the model's own file names (idempotent)."""
        for link, target in self._snapshot_links(manifest):
            if link.is_symlink() and os.readlink(link) == target:
                continue
            link.parent.mkdir(parents=True, exist_ok=True)
            tmp = link.with_name(f".{link.name}.tmp")
            tmp.unlink(missing_ok=True)
            os.symlink(target, tmp)
            os.replace(tmp, link)

    # repair

    def reconcile(self) -> ReconcileReport:
        """Make disk and index agree; each repair is logged and returned."""
        report = ReconcileReport()

        def repair(index: Index) -> None:
            self._clear_stale_partials(report)
            self._reconcile_blobs(index, report)
            self._reconcile_snapshots(index, report)

        self._write(repair)
        return report

    def _clear_stale_partials(self, report: ReconcileReport) -> None:
        """Drop what cannot be resumed, and resumable downloads nobody came back for in PARTIAL_MAX_AGE."""
        oldest = time.time() - PARTIAL_MAX_AGE
        kept = 0
        for path in self.blobs.partial.iterdir():
            if path.name.startswith(EPHEMERAL_PREFIXES):
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
                report.add(f"removed the partial file {path.name} of an interrupted import or download")
            elif path.stat().st_mtime < oldest:
                path.unlink(missing_ok=True)
                report.add(f"removed {path.name}, a download not resumed for {PARTIAL_MAX_AGE // 86400} days")
            elif path.suffix == ".part":
                kept += path.stat().st_size
        if kept:
            log.info("keeping %d bytes of interrupted downloads in %s; pulling again resumes them", kept, self.blobs.partial)

    def _reconcile_blobs(self, index: Index, report: ReconcileReport) -> None:
        recorded = index.blobs()
        external = index.blob_sources()
        present, strays = self.blobs.on_disk()
        for digest, size in present.items():
            if digest not in recorded:
                self.blobs.remove(digest)  # an unlink: a symlink's or hard link's source stays
                report.add(f"removed orphan blob {digest} ({size or 0:,} bytes) that no model records")
            elif digest not in external and size != recorded[digest]:
                self.blobs.remove(digest)
                self._report_missing(index, report, digest, f"had {size or 0:,} bytes instead of {recorded[digest]:,}; removed it")
        for digest in recorded.keys() - present.keys() - external.keys():
            self._report_missing(index, report, digest, "is missing")
        for stray in strays:
            report.add(f"found {stray.name} in blobs/, which is not a blob; left it alone")
        self._reconcile_external(index, report, recorded, external)

    def _reconcile_external(self, index: Index, report: ReconcileReport, recorded: dict[str, int],
                            external: dict[str, BlobSource]) -> None:
        """Report externally held blobs that changed or whose source is gone; left in place, so the
        model says what happened (r1 list, r1 show) instead of vanishing."""
        orphans = [digest for digest in external if digest not in recorded]
        if orphans:
            index.drop_blob_sources(orphans)
        for digest in external.keys() - set(orphans):
            source = external[digest]
            problem = source.problem(self.blobs.path(digest))
            if problem:
                models = ", ".join(index.models_using_blob(digest)) or "none"
                report.add_broken(f"{digest}: {describe(source.kind, source.source, problem)}; models that need "
                                  f"it ({models}) must be imported again")

    def _report_missing(self, index: Index, report: ReconcileReport, digest: str, what: str) -> None:
        models = index.models_using_blob(digest)
        report.add(
            f"blob {digest} {what}; models that need it ({', '.join(models) or 'none'}) "
            "must be imported or pulled again"
        )

    def _reconcile_snapshots(self, index: Index, report: ReconcileReport) -> None:
        manifests = set(index.manifest_ids())
        for entry in self.snapshots.iterdir():
            if entry.name not in manifests:
                shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink()
                report.add(f"removed snapshot {entry.name} of a model no longer in the store")
        for manifest_id in manifests:
            manifest = index.manifest(manifest_id)
            assert manifest is not None
            if not self._snapshot_complete(manifest):
                self._build_snapshot(manifest)
                report.add(f"rebuilt snapshot {manifest_id[:12]}")

    def _snapshot_complete(self, manifest: Manifest) -> bool:
        return all(
            link.is_symlink() and os.readlink(link) == target for link, target in self._snapshot_links(manifest)
        )

