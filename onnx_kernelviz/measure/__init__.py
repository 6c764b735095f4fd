"""Measurement on onnxruntime: the contract's metrics and the torch-vs-onnxruntime parity check."""
