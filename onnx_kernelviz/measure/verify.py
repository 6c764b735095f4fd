"""Stage 7: check the torch copy against the deployed graph on onnxruntime.

Every number users see comes from onnxruntime; the torch copy is only trusted for gradients after it agrees
with onnxruntime on the same input, at batch 1 and batch 2, for every tensor that matters, within the model's
tolerance rule (``tolerance.py``: relative for fp32 and fp16, in quantization steps for int8).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from onnx_kernelviz.errors import ConversionError
from onnx_kernelviz.frontend.layers import Layer
from onnx_kernelviz.measure.metrics import parity
from onnx_kernelviz.measure.tolerance import (
    DEFAULT_TOLERANCE,
    FP16_TOLERANCE,
    ToleranceRule,
    layer_step,
    tolerance_rule,
)
from onnx_kernelviz.model import Model

__all__ = ["DEFAULT_TOLERANCE", "FP16_TOLERANCE", "LayerParity", "VerifyReport", "default_tolerance",
           "parity_error", "require_parity", "verify_model"]


@dataclass(frozen=True)
class LayerParity:
    """Worst torch-vs-onnxruntime difference of one layer's activation tensor over the checked inputs.

    ``step`` and ``parity_steps`` (the difference in quantization steps) are set for int8 models.
    """

    index: int
    tensor: str
    parity_max_abs: float
    parity_rel: float
    ok: bool
    step: float | None = None
    parity_steps: float | None = None


@dataclass(frozen=True)
class VerifyReport:
    """The contract's ``verify --json`` object, plus the rule's precision and unit."""

    model: str
    rule: ToleranceRule
    ok: bool
    layers: list[LayerParity]

    @property
    def tolerance(self) -> float:
        return self.rule.value

    def to_dict(self) -> dict:
        return {"model": self.model, "tolerance": self.rule.value, "precision": self.rule.precision,
                "tolerance_unit": self.rule.unit, "ok": self.ok, "layers": [asdict(la) for la in self.layers]}

    @property
    def first_failure(self) -> LayerParity | None:
        return next((la for la in self.layers if not la.ok), None)


def default_tolerance(model: Model) -> float:
    """The default tolerance of the model's precision (``tolerance.DEFAULTS``), in its rule's unit."""
    return tolerance_rule(model).value


def verify_model(model: Model, x: np.ndarray | None = None, layers: list[Layer] | None = None,
                 tolerance: float | None = None) -> VerifyReport:
    """Compare torch and onnxruntime on ``x`` ``[B, C, H, W]`` (synthetic when None) for ``layers`` (all).

    The torch copy runs the whole batch at once and the first sample alone, so graphs that assumed batch 1
    are caught; onnxruntime runs the original graph as deployed, with the layers exposed as ``explain`` exposes
    them (``Model.run_ort_each``). ``tolerance`` replaces the default of the model's rule.
    """
    layers = model.layers if layers is None else layers
    rule = tolerance_rule(model, tolerance)
    if x is None:
        x = model.synthetic_input(batch=2)
    elif len(x) == 1:
        x = np.concatenate([x, x[:, :, :, ::-1]])  # a second, different sample for the batch-2 check
    tensors = tuple(dict.fromkeys(la.tensor for la in layers))
    # Convert before running onnxruntime: for a custom op before a conv, the ConversionError naming the op
    # says more than onnxruntime's "not a registered function/op".
    model.torch_graph(tensors)
    # each layer as explain runs it (for fp16 graphs one session per layer; Model.run_ort_each), uncached
    ort_out = dict(zip(tensors, model.run_ort_each(x, tensors, cache=False)))
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
        step = layer_step(la, ref) if rule.precision == "int8" else None
        ok, steps = rule.judge(abs_, rel, step)
        results.append(LayerParity(la.index, la.tensor, abs_, rel, ok, step, steps))
    return VerifyReport(str(model.path), rule, all(r.ok for r in results), results)


def parity_error(where: str, rule: ToleranceRule, parity_rel: float, parity_steps: float | None) -> str:
    """The message for a torch copy that disagrees with onnxruntime at ``where``, naming the rule and --tolerance."""
    got = f"{parity_steps:.1f} quantization steps" if parity_steps is not None else f"relative error {parity_rel:.2e}"
    return (f"the torch copy disagrees with onnxruntime at {where}: {got} > tolerance {rule.describe()}; results "
            f"would not hold for the deployed model. Run `kernelviz verify MODEL` to see which layer diverges "
            f"first; if the difference is acceptable, raise --tolerance (in the rule's unit: "
            f"{'quantization steps' if rule.precision == 'int8' else 'relative error'})")


def require_parity(report: VerifyReport) -> None:
    """Raise :class:`ConversionError` naming the first layer whose torch copy disagrees with onnxruntime."""
    bad = report.first_failure
    if bad is not None:
        raise ConversionError(parity_error(f"layer {bad.index} ({bad.tensor})", report.rule, bad.parity_rel,
                                           bad.parity_steps))
