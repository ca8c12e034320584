"""The request log: one row per finished API request in r1.db (records.py: the table and its queries),
written in batches off the request path (writer.py), read by GET /api/usage and GET /api/log."""

from .records import RequestRecords
from .writer import RequestLog, error_text

__all__ = ["RequestLog", "RequestRecords", "error_text"]
