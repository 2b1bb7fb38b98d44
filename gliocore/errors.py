"""Exception and warning classes, in one place (as ``sklearn.exceptions``)."""
from __future__ import annotations


class GlioError(Exception):
    """Base class for every error gliocore raises on purpose."""


class InvalidVolumeError(GlioError, ValueError):
    """A NIfTI file is missing, empty, unreadable, not 3-D or holds non-finite values."""


class GeometryMismatchError(GlioError, ValueError):
    """Volumes of one subject do not share a grid (shape or affine)."""


class CohortError(GlioError, ValueError):
    """The clinical table or the image folder of a cohort is unusable as a whole."""


class SubjectError(GlioError):
    """A problem confined to one subject; processing of the other subjects goes on.

    Parameters
    ----------
    subject_id : str
        The subject concerned.
    message : str
        What is wrong and, where possible, what to do about it.
    path : str, optional
        The file concerned.
    stage : str, optional
        Pipeline stage: ``"load"``, ``"segment"``, ``"features"``, ...
    scan_id : str, optional
        The scan (timepoint) concerned, in a cohort with several scans per subject; None for
        the only scan of a cross-sectional cohort or a problem of the subject as a whole.
    """

    def __init__(self, subject_id: str, message: str, path: str | None = None,
                 stage: str | None = None, scan_id: str | None = None):
        self.subject_id = subject_id
        self.path = None if path is None else str(path)
        self.stage = stage
        self.message = message
        self.scan_id = scan_id
        scan = f", scan {scan_id}" if scan_id else ""
        where = f" ({self.path})" if self.path else ""
        super().__init__(f"subject {subject_id}{scan}{where}: {message}")


class OutsideRootError(GlioError, ValueError):
    """A path GlioScope would write (or an uploaded cohort would read) lies outside its root."""


class SegmenterUnavailableError(GlioError, RuntimeError):
    """A segmentation backend cannot run here (weights or package missing)."""


class FeatureExtractionError(GlioError, RuntimeError):
    """PyRadiomics failed on a subject."""


class GlioWarning(UserWarning):
    """Base warning class for gliocore (input checks that do not stop processing)."""


class UploadError(GlioError, ValueError):
    """An uploaded cohort zip was refused (unsafe, too large, wrong file types, unusable)."""


class StoreBusyError(GlioError, RuntimeError):
    """Another processing run holds the store (see :meth:`gliocore.store.database.Store.run_lock`)."""


class StoreError(GlioError, RuntimeError):
    """The store file cannot be used: not a DuckDB database, or corrupt."""


class StoreReadOnlyError(StoreError):
    """A write was asked of a store opened read-only (its folder or file cannot be written), or a
    read-only store needs a schema change that only a writable open can make."""
