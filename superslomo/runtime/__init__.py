"""Torch-free inference: numpy plus onnxruntime, or TensorRT plus cuda-python."""
