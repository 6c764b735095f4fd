"""Stage 7: check the torch copy against the deployed graph on onnxruntime.

Every number users see comes from onnxruntime; the torch copy is only trusted for gradients after it agrees
with onnxruntime on the same input, at batch 1 and batch 2, for every tensor that matters.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from onnx_kernelviz.errors import ConversionError
from onnx_kernelviz.frontend.layers import Layer
from onnx_kernelviz.measure.metrics import parity
from onnx_kernelviz.model import Model

DEFAULT_TOLERANCE = 1e-3
#: fp16 models compute in fp16 on onnxruntime and fp32 in the torch copy: rounding each output to fp16 alone
#: is up to 2^-11 ~ 4.9e-4 relative, and it compounds layer after layer.
FP16_TOLERANCE = 1e-2


@dataclass(frozen=True)
class LayerParity:
    """Worst torch-vs-onnxruntime difference of one layer's activation tensor over the checked inputs."""

    index: int
    tensor: str
    parity_max_abs: float
    parity_rel: float
    ok: bool


@dataclass(frozen=True)
class VerifyReport:
    """The contract's ``verify --json`` object."""

    model: str
    tolerance: float
    ok: bool
    layers: list[LayerParity]

    def to_dict(self) -> dict:
        return {"model": self.model, "tolerance": self.tolerance, "ok": self.ok,
                "layers": [asdict(la) for la in self.layers]}

    @property
    def first_failure(self) -> LayerParity | None:
        return next((la for la in self.layers if not la.ok), None)


def default_tolerance(model: Model) -> float:
    """1e-3 (CONTRACT.md, fp32); :data:`FP16_TOLERANCE` for models that compute in fp16 on onnxruntime."""
    return FP16_TOLERANCE if model.normalized.fp16_compute else DEFAULT_TOLERANCE


def verify_model(model: Model, x: np.ndarray | None = None, layers: list[Layer] | None = None,
                 tolerance: float | None = None) -> VerifyReport:
    """Compare torch and onnxruntime on ``x`` ``[B, C, H, W]`` (synthetic when None) for ``layers`` (all).

    The torch copy runs the whole batch at once and the first sample alone, so graphs that assumed batch 1
    are caught; onnxruntime runs the original graph as deployed. ``tolerance`` defaults to
    :func:`default_tolerance`.
    """
    layers = model.layers if layers is None else layers
    tolerance = default_tolerance(model) if tolerance is None else tolerance
    if x is None:
        x = model.synthetic_input(batch=2)
    elif len(x) == 1:
        x = np.concatenate([x, x[:, :, :, ::-1]])  # a second, different sample for the batch-2 check
    tensors = tuple(dict.fromkeys(la.tensor for la in layers))
    # Convert before running onnxruntime: for a custom op before a conv, the ConversionError naming the op
    # says more than onnxruntime's "not a registered function/op".
    model.torch_graph(tensors)
    ort_out = dict(zip(tensors, model.run_ort(x, tensors)))
    torch_batch = dict(zip(tensors, model.run_torch(x, tensors)))
    torch_one = dict(zip(tensors, model.run_torch(x[:1], tensors)))
    results = []
    for la in layers:
        ref = ort_out[la.tensor]
        for got, want in ((torch_batch[la.tensor], ref), (torch_one[la.tensor], ref[:1])):
            # parity() would broadcast a batch-1 result against batch 2 and hide a graph that assumed batch 1.
            if got.shape != want.shape:
                raise ConversionError(f"the torch copy gives layer {la.index} ({la.tensor}) the shape "
                                      f"{list(got.shape)} where onnxruntime gives {list(want.shape)}; the "
                                      "graph probably hard-codes a shape (re-export with a dynamic batch axis)")
        a1, r1 = parity(torch_batch[la.tensor], ref)
        a2, r2 = parity(torch_one[la.tensor], ref[:1])
        rel, abs_ = max(r1, r2), max(a1, a2)
        results.append(LayerParity(la.index, la.tensor, abs_, rel, bool(rel <= tolerance)))
    return VerifyReport(str(model.path), tolerance, all(r.ok for r in results), results)


def require_parity(report: VerifyReport) -> None:
    """Raise :class:`ConversionError` naming the first layer whose torch copy disagrees with onnxruntime."""
    bad = report.first_failure
    if bad is not None:
        raise ConversionError(f"the torch copy disagrees with onnxruntime at layer {bad.index} ({bad.tensor}): "
                              f"relative error {bad.parity_rel:.2e} > tolerance {report.tolerance:.0e}; results "
                              "would not hold for the deployed model (run `kernelviz verify MODEL` for all layers)")
