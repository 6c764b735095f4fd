"""What a run produces, as typed records serialised to exactly the JSON of docs/CONTRACT.md.

``results.json`` is a :class:`RunHeader`'s fields plus ``"results"``: a list of :class:`KernelResult`;
``compare.json`` is a :class:`CompareResult`. ``to_json`` gives the contract's dict (NaN/Inf are written as null by
``io.files.write_json``); ``from_json`` reads one back and raises ``ValueError`` naming the first bad field. Keys a
record does not know (written by a newer version, or added by hand) are kept in ``extra`` and written back after
its own keys, unchanged, so resuming never loses them.
"""

from onnx_kernelviz.results.compare import CompareResult, FocusPair, PairKept
from onnx_kernelviz.results.fields import JSON
from onnx_kernelviz.results.header import RunHeader
from onnx_kernelviz.results.kernel import BaselineMetrics, FocusMetrics, KernelResult, Metrics, Parity

__all__ = ["Metrics", "Parity", "FocusMetrics", "BaselineMetrics", "KernelResult", "RunHeader", "PairKept", "FocusPair",
           "CompareResult", "JSON"]
