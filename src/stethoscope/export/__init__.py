"""A trained model exported for scoring without torch: ONNX networks, numpy features, the back ends.

``stethoscope export`` writes an export folder (:mod:`.writer`, the only part that needs torch);
:func:`stethoscope.export.runtime.load_onnx_detector` scores recordings from one with numpy,
soundfile, onnxruntime and safetensors alone. Importing this package imports neither.
"""
