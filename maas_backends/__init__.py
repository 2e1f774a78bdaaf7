"""Python-based Triton backends named like the native ones (pytorch, tensorflow, onnxruntime).

The framework code is plain classes (runners) that tests call without Triton; the model.py
files under triton/ are thin adapters that Triton's Python backend loads.
"""
