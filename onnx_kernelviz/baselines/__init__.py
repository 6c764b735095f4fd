"""Baselines to compare the method against at equal mask area (METHOD.md): one short module per method over
the :class:`Baseline` template; ``evaluate_baselines`` is what ``explain`` calls with ``--baselines``."""

from onnx_kernelviz.baselines import activation, gradient, guided, input_x_gradient, occlusion  # noqa: F401  (registers them)
from onnx_kernelviz.baselines.base import (
                   BASELINES,
                   Baseline,
                   BaselineOutcome,
                   GradientBaseline,
                   equal_area_masks,
                   evaluate_baselines,
                   resolve_names,
)
from onnx_kernelviz.baselines.guided import guided_relus

__all__ = ["BASELINES", "Baseline", "GradientBaseline", "BaselineOutcome", "equal_area_masks",
           "evaluate_baselines", "resolve_names", "guided_relus"]
