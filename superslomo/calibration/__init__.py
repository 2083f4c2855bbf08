"""Calibration sets from footage and INT8 Q/DQ quantization with a measured accuracy report."""
