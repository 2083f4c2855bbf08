"""superslomo-trt: Super SloMo frame interpolation from PyTorch to ONNX and TensorRT."""

__version__ = "0.1.0"
