"""Where things run: torch device and onnxruntime providers, chosen by what is really there.

CUDA is used only when torch sees a GPU; only then is CUDAExecutionProvider asked for (asking for it on a
machine without a GPU makes onnxruntime-gpu print alarming errors). After creating a session we check which
providers it really got, since onnxruntime silently falls back to the CPU.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

import numpy as np
import onnx
import torch

from onnx_kernelviz.errors import KernelvizError, UsageError
from onnx_kernelviz.options import DEVICES, DeviceName


@dataclass(frozen=True)
class Devices:
    """The torch device for optimization and the onnxruntime providers for checking."""

    torch: torch.device
    ort_providers: tuple[str, ...]


def _ort() -> Any:
    try:
        import onnxruntime as ort
    except ImportError as e:  # pragma: no cover - depends on the install
        raise KernelvizError("onnxruntime is not installed; install exactly one of `onnxruntime-gpu` or "
                             "`onnxruntime` (see README, Install)") from e
    return ort


@lru_cache(maxsize=1)
def ort_packages() -> tuple[str, ...]:
    """Installed onnxruntime distributions; more than one of them break each other (shared package folder)."""
    found = []
    for name in ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino"):
        try:
            importlib.metadata.version(name)
            found.append(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return tuple(found)


def resolve_devices(device: DeviceName | str = "auto") -> Devices:
    """Pick torch's device and onnxruntime's providers for ``auto``, ``cpu`` or ``cuda``."""
    if device not in DEVICES:
        raise UsageError(f"unknown device {device!r}; use auto, cpu or cuda")
    gpu = torch.cuda.is_available()
    if device == "cuda" and not gpu:
        raise UsageError("--device cuda was asked for but torch sees no CUDA GPU; use --device auto or cpu")
    if device == "cpu" or not gpu:
        return Devices(torch.device("cpu"), ("CPUExecutionProvider",))
    exact_fp32()
    ort = _ort()
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    if "CUDAExecutionProvider" in ort.get_available_providers():
        _preload_cuda_libraries(ort)
        providers = ("CUDAExecutionProvider", "CPUExecutionProvider")
    return Devices(torch.device("cuda"), providers)


def exact_fp32() -> None:
    """Make torch compute float32 convolutions and matmuls in full float32 on CUDA (no TensorFloat-32).

    On Ampere and later cards torch runs float32 convolutions in TF32 by default, which moved the default model's
    activations by 2-3e-3 relative (measured on an H200) — beyond the parity tolerance, so the torch copy would
    no longer stand for the deployed model. Process-wide, like torch's own switch.
    """
    try:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    except RuntimeError:  # torch >= 2.9 refuses the old flags once the new per-op API was used: use it too
        torch.backends.cudnn.conv.fp32_precision = "ieee"  # type: ignore[attr-defined]
        torch.backends.cuda.matmul.fp32_precision = "ieee"


@lru_cache(maxsize=1)
def _preload_cuda_libraries(ort: Any) -> None:
    # onnxruntime-gpu >= 1.21 loads the CUDA/cuDNN libraries that torch's nvidia-* wheels installed.
    if hasattr(ort, "preload_dlls"):
        ort.preload_dlls()


class OrtRunner:
    """An onnxruntime session over one model, feeding NCHW float32 batches in the model's own layout/dtype.

    Args:
        proto: the model to run (the user's graph with tensors exposed).
        input_name, layout, dtype, fixed_batch: from :class:`~onnx_kernelviz.frontend.load.InputInfo`.
        readouts: ``tensor -> (scale, zero_point)`` for integer tensors of a quantized graph, returned as their real
            values ``(q − zero_point)·scale`` (what the graph's DequantizeLinear computes).
        per_sample: run one sample at a time (dynamic quantization takes its range from the whole batch, so an
            image must be alone to be quantized as it is when deployed).
    """

    def __init__(self, proto: onnx.ModelProto, *, input_name: str, layout: str, dtype: np.dtype,
                 fixed_batch: int | None, providers: tuple[str, ...],
                 readouts: Mapping[str, tuple[float, int]] | None = None, per_sample: bool = False,
                 threads: int | None = None) -> None:
        ort = _ort()
        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # errors only: shape-hint warnings are noise for users
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(proto.SerializeToString(), sess_options=opts,
                                                providers=list(providers))
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise KernelvizError(f"onnxruntime cannot run this model: {str(e).splitlines()[0][:300]}") from e
        self.providers = tuple(self.session.get_providers())
        self.input_name, self.layout, self.dtype, self.fixed_batch = input_name, layout, dtype, fixed_batch
        self.readouts = dict(readouts or {})
        if per_sample:
            self.fixed_batch = 1

    def run(self, x: np.ndarray, outputs: list[str]) -> list[np.ndarray]:
        """Run ``x`` ``[B, C, H, W]`` (float32, normalized) and return float32 arrays for ``outputs``.

        A graph that hard-codes batch 1 is run one sample at a time.
        """
        feed = x.transpose(0, 2, 3, 1) if self.layout == "nhwc" else x
        feed = np.ascontiguousarray(feed, dtype=self.dtype)
        step = self.fixed_batch or len(feed)
        try:
            parts = [self.session.run(outputs, {self.input_name: feed[i:i + step]})
                     for i in range(0, len(feed), step)]
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise KernelvizError(f"onnxruntime cannot run this model on an input of shape {list(feed.shape)}: "
                                 f"{str(e).splitlines()[0][:300]}; check --size and the preprocessing") from e
        arrays = [np.concatenate([p[j] for p in parts]) for j in range(len(outputs))]
        return [self._real(name, a) for name, a in zip(outputs, arrays)]

    def _real(self, name: str, a: np.ndarray) -> np.ndarray:
        """float32 values of output ``name``; integer tensors of a quantized graph dequantized as the graph does."""
        if name in self.readouts:
            scale, zero = self.readouts[name]
            return (a.astype(np.float32) - np.float32(zero)) * np.float32(scale)
        return a.astype(np.float32, copy=False)


@lru_cache(maxsize=1)
def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory instead of returning it to the OS after every step.

    Each optimizer step allocates and frees the same large activation buffers; with glibc's defaults they are
    mmap'ed and unmapped every time, and the page faults cost more than the arithmetic (measured: 3.7 -> 1.7 s
    per kernel at the default model's layer 20 on 2 cores, system time 1.5 min -> 1 s). Process-wide and
    idempotent; a no-op where glibc is not the C library. Returns whether it took effect.
    """
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
    big = 1 << 30
    ok = mallopt(M_TRIM_THRESHOLD, big) == 1
    ok &= mallopt(M_TOP_PAD, 1 << 28) == 1
    # glibc caps the mmap threshold at 32 MiB on 64-bit (larger values are refused); take the cap
    ok &= mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1
    return bool(ok)


#: Most rows per batch on a GPU: past a few hundred 224x224 rows a step's time grows linearly (the card is busy)
#: while a bigger batch only waits longer for its slowest row to converge.
CUDA_MAX_BATCH = 256


def probe_row_bytes(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> int:
    """GPU memory one optimized row needs: the peak of a forward+backward of ``forward`` at batch 2, per row.

    Args:
        forward: the truncated network, ``[b, C, H, W] -> [b, C', h, w]``.
        x: one input ``[1, C, H, W]`` on the CUDA device.
    """
    dev = x.device
    torch.cuda.synchronize(dev)
    base = torch.cuda.memory_allocated(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    xi = x.repeat(2, 1, 1, 1).requires_grad_(True)
    torch.relu(forward(xi)).pow(2).sum().backward()
    peak = torch.cuda.max_memory_allocated(dev) - base
    del xi
    return max(1, peak // 2)


def cuda_free_bytes(dev: torch.device) -> int:
    """Bytes a new allocation can get: free on the card plus what torch's caching allocator holds unused."""
    free, _ = torch.cuda.mem_get_info(dev)
    return free + torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev)


def fit_batch(n: int, free_bytes: int, row_bytes: int, *, fraction: float = 0.5, cap: int = CUDA_MAX_BATCH) -> int:
    """Rows per batch that fit in ``fraction`` of the free memory, between 1 and ``min(n, cap)``.

    Half the free memory leaves room for what a step holds besides the network's activations (the mask and its
    optimizer state, the objective's temporaries, the allocator's fragmentation); a batch that still runs out of
    memory is halved and retried (``explainer._explain_bounded``).
    """
    return max(1, min(n, cap, int(free_bytes * fraction) // max(1, row_bytes)))


R = TypeVar("R")


def halve_on_oom(run: Callable[[int, int], list[R]], n: int) -> list[R]:
    """``run(lo, hi)`` over rows ``[0, n)`` of a batch; when the GPU runs out of memory, each half is run on its
    own (recursively) instead of failing, and a single row that does not fit is one clear error."""
    def part(lo: int, hi: int) -> list[R]:
        try:
            return run(lo, hi)
        except torch.cuda.OutOfMemoryError:
            if hi - lo == 1:
                raise KernelvizError("out of GPU memory with a single explanation; use --device cpu or a smaller "
                                     "--size") from None
            torch.cuda.empty_cache()
            mid = (lo + hi) // 2
            return part(lo, mid) + part(mid, hi)

    return part(0, n)
