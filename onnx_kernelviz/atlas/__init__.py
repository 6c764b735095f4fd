"""``kernelviz atlas``: every kernel of a deployed model over a set of images (CONTRACT.md, "kernelviz atlas").

Modules, in the order a run goes through them: ``stats`` (mergeable per-kernel summaries), ``stream`` (the
statistics pass over onnxruntime; ``collect_stats`` and ``stream_activations`` are reusable), ``journal``
(folder, lock, checkpoints), ``engines`` / ``ray_engine`` (where the work runs), ``rf`` and ``tiles``
(receptive-field crops), ``explainer`` (the explanation pass over the method), ``outputs`` (kernels.parquet,
atlas.json), ``html`` (atlas.html), ``run`` (the chain).
"""

from onnx_kernelviz.atlas.run import AtlasSettings, select_layers
from onnx_kernelviz.atlas.run import atlas as run_atlas
from onnx_kernelviz.atlas.stats import Comoments, LayerStats, TopSites
from onnx_kernelviz.atlas.stream import ShardStats, collect_stats, stream_activations

__all__ = ["AtlasSettings", "Comoments", "LayerStats", "ShardStats", "TopSites", "collect_stats", "run_atlas",
           "select_layers", "stream_activations"]
