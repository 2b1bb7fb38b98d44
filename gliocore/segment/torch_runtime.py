"""What the deep-learning backends (HD-GLIO, nnU-Net v2) share about running torch models: the
device choice, torch's thread count, quiet progress prints, CUDA hidden from code that would use
it on a CPU run, and installed package versions (part of a backend's version string)."""
from __future__ import annotations

import contextlib
import io
from importlib import metadata
from typing import Iterator


def resolve_torch_device(option: str, backend: str):
    """``auto`` -> CUDA when available else CPU; otherwise ``cpu``, ``cuda`` or ``cuda:N``."""
    import torch
    opt = str(option).lower()
    if opt == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(opt)
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"{backend}: device must be auto, cpu, cuda or cuda:N, got {opt!r}")
    return dev


def package_version(name: str) -> str | None:
    """The installed version of a distribution, or None when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


@contextlib.contextmanager
def quiet(enabled: bool) -> Iterator[None]:
    """Swallow nnU-Net's progress prints (they go to stdout) unless ``verbose``."""
    if not enabled:
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()):
        yield


@contextlib.contextmanager
def cuda_hidden(hide: bool) -> Iterator[None]:
    """Make ``torch.cuda.is_available()`` false while nnU-Net v1 code runs on the CPU.

    nnU-Net v1 calls ``.cuda()`` whenever CUDA is available, whatever device the network is
    on; this is the only way to run it on the CPU of a CUDA machine.
    """
    if not hide:
        yield
        return
    import torch
    original = torch.cuda.is_available
    torch.cuda.is_available = lambda: False  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.cuda.is_available = original  # type: ignore[assignment]


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` torch CPU threads, then restore the previous number."""
    if n is None:
        yield
        return
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
