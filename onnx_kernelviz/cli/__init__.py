"""``kernelviz``: a thin Click layer over the API (docs/CONTRACT.md, "CLI").

Each command parses options, calls the API and prints. Domain errors become one ``Error: ...`` line with exit
status 1 (2 for usage errors); ``--debug`` shows the traceback instead. One module per group of commands;
importing them registers the commands on :data:`cli`.
"""

from onnx_kernelviz.cli import atlas, diff, explain, frontend  # noqa: F401  (registers the commands)
from onnx_kernelviz.cli.app import cli, main

__all__ = ["cli", "main"]
