from onnx_kernelviz.cli import main

main()
