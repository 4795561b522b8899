"""Signal pieces in numpy alone, shared by the torch models and the torch-free ONNX runtime.

Nothing under this package imports torch: a step both paths take (cutting a clip into windows,
stacking log-mel frames, the noise reference) is written once here and called by both.
"""
