"""Compliance archives: export, verify, prune and import what receiver stored, beyond the
provider's 60-day retention. Services here take an engine and a destination; the
`receiver archive` commands and the worker's policy are thin wrappers over them."""

from __future__ import annotations

from .destination import Destination, LocalDestination, S3Destination, destination, locate
from .export import ExportResult, export_archive
from .format import ArchiveError, ArchiveInvalid, parse_before
from .prune import PruneResult, prune
from .restore import ImportResult, import_archive
from .verify import Verified, verify_all, verify_archive

__all__ = [
    "ArchiveError",
    "ArchiveInvalid",
    "Destination",
    "ExportResult",
    "ImportResult",
    "LocalDestination",
    "PruneResult",
    "S3Destination",
    "Verified",
    "destination",
    "export_archive",
    "import_archive",
    "locate",
    "parse_before",
    "prune",
    "verify_all",
    "verify_archive",
]
