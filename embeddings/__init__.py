"""Text to vectors: the verified reference model, its ONNX export, and micro-batching."""
