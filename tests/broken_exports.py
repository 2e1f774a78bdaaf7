"""Exports that load in `tf.saved_model.load` but fail on the GPU server: the tests' proof that
the build and `maas validate` catch what Triton's native TensorFlow backend would refuse."""

from __future__ import annotations

from pathlib import Path


def export_module_wrapper(model, path: Path) -> None:
    """The old mnist export: a Keras 3 model inside a `tf.Module`. The saved restore targets are
    copies the serving graph never reads, so a TF1 session answers "Could not find variable"."""
    import tensorflow as tf

    class Serving(tf.Module):
        def __init__(self, keras_model) -> None:
            super().__init__()
            self.model = keras_model

        @tf.function(input_signature=[tf.TensorSpec([None, 28, 28], tf.float32, name="IMAGE")])
        def serve(self, image):
            return {"PROBABILITIES": self.model(image, training=False)}

    module = Serving(model)
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
