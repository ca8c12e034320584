"""The content-addressed model store (see store.py for the layout)."""

from .blobs import CorruptSourceError, Ingested, InvalidDigestError, parse_digest
from .confined import Confinement, RefusedFileError, open_regular, read_small
from .external import BlobSource, BrokenFile
from .index import ModelRecord
from .manifest import FileEntry, Manifest, Overrides
from .names import InvalidNameError, ModelName, parse_name
from .store import MissingBlobError, ModelNotFoundError, ReconcileReport, Store

__all__ = [
    "BlobSource",
    "BrokenFile",
    "Confinement",
    "CorruptSourceError",
    "FileEntry",
    "Ingested",
    "InvalidDigestError",
    "InvalidNameError",
    "Manifest",
    "MissingBlobError",
    "ModelName",
    "ModelNotFoundError",
    "ModelRecord",
    "Overrides",
    "ReconcileReport",
    "RefusedFileError",
    "Store",
    "open_regular",
    "parse_digest",
    "parse_name",
    "read_small",
]
