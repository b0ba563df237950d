"""The model stage: run a TFLite model on face crops exactly as its manifest says.

``manifest`` (the contract with converter/), ``preprocess`` (the one implementation of
cropping, colour, resizing and normalisation), ``tflite`` (the LiteRT runner, delegates,
flip averaging) and ``config`` (the ``classifier:`` section). This is exactly what converter/
imports, so training-time evaluation and the daemon cannot drift apart.
"""
