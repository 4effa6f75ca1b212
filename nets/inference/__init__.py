"""Inference: AgeEstimator over any model file of this project, the LiteRT runner and video tracks (no TensorFlow with a .tflite model)."""
