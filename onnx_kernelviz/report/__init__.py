"""Pictures of an explanation and the offline HTML report."""

from onnx_kernelviz.report.html import write_report

__all__ = ["write_report"]
