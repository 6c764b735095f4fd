"""The front end, the only code that touches ONNX protobufs: safe load, read-only graph views, normalize
(a conversion-ready private copy), layers (convs and their activation tensors), expose/truncate, convert
(onnx2torch with the converters it lacks)."""
