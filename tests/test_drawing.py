"""Preparing drawings the MNIST way, without a server."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from maas_client.drawing import DrawingError, load_drawing_file, parse_text, prepare


def bbox(image: np.ndarray) -> tuple[int, int]:
    rows = np.flatnonzero(image.max(axis=1) > 0)
    cols = np.flatnonzero(image.max(axis=0) > 0)
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    ys, xs = np.indices(image.shape)
    return (ys * image).sum() / image.sum(), (xs * image).sum() / image.sum()


def test_text_ink_is_anything_but_dot_and_space():
    grid = parse_text(".#.\n x \n@..\n")
    np.testing.assert_array_equal(grid, [[0, 1, 0], [0, 1, 0], [1, 0, 0]])


def test_tall_stroke_is_scaled_to_20_rows_keeping_aspect():
    image = prepare(np.ones((10, 2), np.float32))  # 10 tall, 2 wide
    assert image.shape == (28, 28) and image.dtype == np.float32
    assert bbox(image) == (20, 4)
    np.testing.assert_allclose(centre_of_mass(image), (13.5, 13.5), atol=0.5)


def test_wide_drawing_is_scaled_on_its_longer_side():
    image = prepare(np.ones((3, 60), np.float32))
    assert bbox(image) == (1, 20)


def test_offset_ink_is_cropped_and_centred():
    canvas = np.zeros((100, 100), np.float32)
    canvas[80:95, 5:12] = 1.0
    image = prepare(canvas)
    assert bbox(image)[0] == 20
    np.testing.assert_allclose(centre_of_mass(image), (13.5, 13.5), atol=0.5)


@settings(max_examples=60, deadline=None)
@given(
    arrays(
        np.float32,
        st.tuples(st.integers(1, 128), st.integers(1, 128)),
        elements=st.sampled_from([0.0, 0.5, 1.0]),
    )
)
def test_any_inked_drawing_becomes_a_valid_mnist_image(drawing):
    if not (drawing > 0).any():
        with pytest.raises(DrawingError, match="no ink"):
            prepare(drawing)
        return
    image = prepare(drawing)
    assert image.shape == (28, 28)
    assert image.min() >= 0.0 and image.max() <= 1.0
    # Box resampling can leave a faint edge column off; the longer side fills the 20 px box.
    assert 19 <= max(bbox(image)) <= 20
    # Centred by mass, unless that would push the box out of the frame (then it touches an edge).
    for axis, profile in zip(centre_of_mass(image), (image.max(axis=1), image.max(axis=0))):
        inked = np.flatnonzero(profile > 0)
        assert abs(axis - 13.5) <= 1.0 or inked[0] == 0 or inked[-1] == 27


@pytest.mark.parametrize(
    "content,message",
    [
        (b"", "empty"),
        (b"....\n....\n", "no ink"),
        (b"..#.\n.#\n", "ragged lines: line 2 has 2 characters, line 1 has 4"),
        (("#" * 129 + "\n") * 3, "at most 128x128"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00", "binary data"),
        (b"\xff\xfe#.#", "not UTF-8"),
        (b"#.\x07\n.#\n", "control characters"),
    ],
)
def test_bad_files_get_one_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    with pytest.raises(DrawingError, match=message):
        load_drawing_file(path)


def test_byte_order_mark_is_not_ink(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes("\ufeff.#.\n.#.\n".encode())
    np.testing.assert_array_equal(load_drawing_file(path), [[0, 1, 0], [0, 1, 0]])


def test_npy_out_of_range_values_are_named(tmp_path):
    path = tmp_path / "d.npy"
    np.save(path, np.full((5, 5), 255, np.uint8))
    with pytest.raises(DrawingError, match=r"between 0 \(background\) and 1 \(ink\)"):
        load_drawing_file(path)
    with pytest.raises(DrawingError, match="empty"):
        prepare(np.zeros((0, 4)))


def test_npy_arrays_are_drawings_too(tmp_path):
    path = tmp_path / "d.npy"
    np.save(path, np.eye(30, dtype=np.float32))
    assert prepare(load_drawing_file(path)).shape == (28, 28)
    np.save(path, np.ones((2, 2, 2)))
    with pytest.raises(DrawingError, match="2-D"):
        load_drawing_file(path)
