"""The segmentation interface and the backend registry."""
from __future__ import annotations

import abc
import json
from typing import Any, ClassVar, Mapping

import numpy as np

from gliocore.cohort.subjects import Subject
from gliocore.errors import SegmenterUnavailableError
from gliocore.imaging.volume import Volume
from gliocore.imaging.labels import LabelMap

SEGMENTERS: dict[str, type["Segmenter"]] = {}

#: Revision of the code every backend shares (this module's mask checks and conversion to
#: canonical labels). Bump it when that code changes a result: it enters every cache token.
WRAPPER_REVISION = "1"


def register_segmenter(cls: type["Segmenter"]) -> type["Segmenter"]:
    """Class decorator: make a backend available by its ``name``."""
    if not getattr(cls, "name", None):
        raise TypeError(f"{cls.__name__} needs a class attribute 'name'")
    SEGMENTERS[cls.name] = cls
    return cls


class Segmenter(abc.ABC):
    """A segmentation backend.

    Subclasses set ``name`` and ``title``, implement :meth:`version`, :meth:`segment_images`,
    and, where a model is involved, :meth:`load` (called once per batch, before the first
    subject) and :attr:`weights_checksum`.

    Parameters
    ----------
    **options
        Backend settings that change the output (they enter the cache key via
        :meth:`cache_token`). Settings that do not change the output (device, verbosity) are
        listed in ``runtime_options`` and left out of the key.

    Attributes
    ----------
    label_map : LabelMap
        How the backend's raw integers map to tumour classes; recorded with every result.
    parallel_safe : bool
        True when several worker processes may each run a copy (no GPU model).
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    #: Revision of GlioScope's own code for this backend (its method or its adapter around a
    #: package). Bump it when a change to that code changes the output: it enters
    #: :meth:`cache_token`, so results cached by the old code are not served again.
    code_version: ClassVar[str] = "1"
    parallel_safe: ClassVar[bool] = True
    #: True when the backend segments a part of the brain that one sequence did not image from
    #: the sequences that did (and says so), or its mask does not come from the images (import);
    #: otherwise the pipeline leaves that part unsegmented (:mod:`gliocore.preprocess.field_of_view`).
    handles_partial_coverage: ClassVar[bool] = False
    runtime_options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **options: Any) -> None:
        self.options: dict[str, Any] = dict(options)
        self._loaded = False
        #: Per-subject input warnings (e.g. "not skull-stripped"), recorded with the result.
        self.input_warnings_: dict[str, list[str]] = {}

    # -- identity -------------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def version(self) -> str:
        """Backend version (package version plus method revision)."""

    @property
    @abc.abstractmethod
    def label_map(self) -> LabelMap:
        """Label map of the raw output (before conversion to canonical labels)."""

    @property
    def weights_checksum(self) -> str | None:
        """Checksum of the model weights, or None for methods without weights."""
        return None

    @property
    def device(self) -> str:
        """Where it runs: ``"cpu"`` or ``"cuda"``."""
        return "cpu"

    def cache_token(self) -> str:
        """Everything about this backend that changes its output, as canonical JSON.

        It holds the backend's name, version (package versions), GlioScope's own code
        revisions (:data:`WRAPPER_REVISION` and the backend's :attr:`code_version`), the
        weights' checksum, the output-changing options and the label map.
        """
        opts = {k: _jsonable(v) for k, v in sorted(self.options.items())
                if k not in self.runtime_options}
        return json.dumps({"backend": self.name, "version": self.version,
                           "code": f"{WRAPPER_REVISION}/{self.code_version}",
                           "weights": self.weights_checksum, "options": opts,
                           "label_map": json.loads(self.label_map.to_json())}, sort_keys=True)

    # -- lifecycle ------------------------------------------------------------------------
    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why this backend cannot run here (missing package or weights), or None."""
        return None

    def load(self) -> None:
        """Load the model (once per batch). Idempotent."""
        reason = self.unavailable_reason()
        if reason:
            raise SegmenterUnavailableError(f"{self.name}: {reason}")
        self._loaded = True

    def close(self) -> None:
        """Free the model."""
        self._loaded = False

    def __enter__(self) -> "Segmenter":
        self.load()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- work -----------------------------------------------------------------------------
    def segment(self, subject: Subject, images: Mapping[str, Volume]) -> np.ndarray:
        """Segment one subject.

        Parameters
        ----------
        subject : Subject
            Paths (backends that read files, e.g. mask import) and ID.
        images : mapping of sequence -> Volume
            The four sequences already loaded and checked (same grid).

        Returns
        -------
        (I, J, K) uint8 ndarray
            GlioScope's canonical mask on the images' grid: 0 background,
            1 contrast-enhancing, 2 non-enhancing.
        """
        if not self._loaded:
            self.load()
        raw = self.segment_images(subject, images)
        ref = next(iter(images.values()))
        if raw.shape != ref.shape:
            raise ValueError(f"{self.name} returned a mask of shape {raw.shape} for images of "
                             f"shape {ref.shape} (subject {subject.subject_id})")
        return self.label_map.to_canonical(raw)

    @abc.abstractmethod
    def segment_images(self, subject: Subject, images: Mapping[str, Volume]) -> np.ndarray:
        """Return the raw mask (in this backend's own label values, see :attr:`label_map`)."""

    def describe(self) -> dict[str, Any]:
        """Identity shown beside every result in the dashboard."""
        return {"backend": self.name, "title": self.title, "version": self.version,
                "weights_checksum": self.weights_checksum, "device": self.device,
                "label_map": self.label_map.name}


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, LabelMap):
        return json.loads(value.to_json())
    return str(value)


def get_segmenter(name: str, **options: Any) -> Segmenter:
    """Build a registered backend by name.

    Raises
    ------
    KeyError
        Unknown name (the message lists the known ones).
    """
    try:
        cls = SEGMENTERS[name]
    except KeyError:
        raise KeyError(f"unknown segmentation backend {name!r}; available: "
                       f"{', '.join(sorted(SEGMENTERS))}") from None
    return cls(**options)


def available_segmenters() -> dict[str, str | None]:
    """Backend name -> None when it can run here, else the reason it cannot."""
    return {name: cls.unavailable_reason() for name, cls in sorted(SEGMENTERS.items())}
