"""Using trained networks: ``predict`` (depth from images) and ``export`` (TorchScript / ONNX)."""
