"""Turning a player's drawing into an MNIST digit, the way the MNIST digits were made.

MNIST digits were size-normalised to fit a 20x20 box keeping their aspect ratio, then placed in
a 28x28 frame so that their centre of mass sits at the centre. A drawing of any size (a 2-D
array, or text where `.` and space are background and anything else is ink) goes through the
same steps here, so a 7x5 terminal scribble and a 200x200 mouse drawing reach the model alike.
"""

from __future__ import annotations

import io
from pathlib import Path
from tokenize import TokenError

import numpy as np

from maas_client.errors import MaasClientError

MAX_SIDE = 128  # larger drawings are refused: nobody draws a rune that big in a terminal
FRAME = 28
BOX = 20
BACKGROUND_CHARS = frozenset(". ")
MAX_FILE_BYTES = 1 << 20  # a 128x128 drawing is far smaller, as text or as .npy
NUMBER_KINDS = "biuf"  # bool, signed and unsigned ints, floats: not complex, dates, text, objects


class DrawingError(MaasClientError, ValueError):
    """A drawing that cannot be a digit: empty, ragged, too large, not text."""


def parse_text(text: str) -> np.ndarray:
    """Text lines to a 0/1 float32 array; every line must have the same width."""
    lines = text.replace("\r\n", "\n").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        raise DrawingError("the drawing is empty")
    widths = {len(line) for line in lines}
    if len(widths) > 1:
        first = len(lines[0])
        bad = next(i for i, line in enumerate(lines) if len(line) != first)
        raise DrawingError(
            f"ragged lines: line {bad + 1} has {len(lines[bad])} characters, line 1 has {first}; "
            "pad every line to the same width with '.'"
        )
    grid = np.array([[ch not in BACKGROUND_CHARS for ch in line] for line in lines], np.float32)
    return check_array(grid)


def check_array(drawing: np.ndarray) -> np.ndarray:
    try:
        array = np.asarray(drawing)
    except (TypeError, ValueError):  # ragged nested lists
        raise DrawingError("a drawing is a 2-D array of numbers") from None
    if array.dtype.kind not in NUMBER_KINDS:
        raise DrawingError(f"a drawing is a 2-D array of numbers, not of {array.dtype}")
    if array.ndim != 2:
        raise DrawingError(f"a drawing is a 2-D array; got {array.ndim} dimensions")
    if array.size == 0:
        raise DrawingError("the drawing is empty")
    if array.shape[0] > MAX_SIDE or array.shape[1] > MAX_SIDE:
        raise DrawingError(
            f"the drawing is {array.shape[0]}x{array.shape[1]}; at most {MAX_SIDE}x{MAX_SIDE}"
        )
    # Checked before the cast, so a huge float64 is refused instead of overflowing with a warning.
    if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
        raise DrawingError("pixel values must be between 0 (background) and 1 (ink)")
    array = array.astype(np.float32)
    if not (array > 0).any():
        raise DrawingError("the drawing has no ink")
    return array


def load_drawing_file(path: Path) -> np.ndarray:
    """A text drawing (.txt or any text) or a 2-D numpy array (.npy)."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise DrawingError(f"cannot read: {error.strerror or error}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise DrawingError(
            f"the file is over {MAX_FILE_BYTES >> 20} MiB; a drawing is at most "
            f"{MAX_SIDE}x{MAX_SIDE}"
        )
    if path.suffix.lower() == ".npy":
        return check_array(_load_npy(raw))
    if b"\0" in raw:
        raise DrawingError("binary data, not a text drawing")
    try:
        text = raw.decode("utf-8-sig")  # a BOM (Windows editors) is not ink
    except UnicodeDecodeError:
        raise DrawingError("not UTF-8 text; a drawing is lines of '.' and '#'") from None
    if any(ord(ch) < 32 and ch not in "\n\r\t" for ch in text):
        raise DrawingError("control characters in the file: not a text drawing")
    return parse_text(text.expandtabs())


def _load_npy(raw: bytes) -> np.ndarray:
    """A .npy array, its header checked before any data is read: never unpickled, and never a
    header's huge shape allocated."""
    if not raw:
        raise DrawingError("not a valid .npy array: the file is empty")
    fmt, stream = np.lib.format, io.BytesIO(raw)
    try:
        version = fmt.read_magic(stream)
    except ValueError as error:
        raise DrawingError(f"not a valid .npy array: {error}") from None
    if version not in ((1, 0), (2, 0)):  # 3.0 only for structured arrays, never a drawing
        raise DrawingError(f"not a valid .npy array: unsupported format version {version}")
    read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    try:
        shape, _, dtype = read_header(stream)
    except ValueError as error:
        raise DrawingError(f"not a valid .npy array: {error}") from None
    except (SyntaxError, TokenError, RecursionError):  # numpy parses the header as Python
        raise DrawingError("not a valid .npy array: its header is not readable") from None
    if dtype.kind not in NUMBER_KINDS:
        raise DrawingError(f"a drawing is a 2-D array of numbers, not of {dtype}")
    if len(shape) != 2:
        raise DrawingError(f"a drawing is a 2-D array; got {len(shape)} dimensions")
    if min(shape) < 0:
        raise DrawingError(f"not a valid .npy array: negative shape {shape}")
    if shape[0] > MAX_SIDE or shape[1] > MAX_SIDE:
        raise DrawingError(f"the drawing is {shape[0]}x{shape[1]}; at most {MAX_SIDE}x{MAX_SIDE}")
    try:
        return np.load(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise DrawingError(f"not a valid .npy array: {error}") from None


def _resample_matrix(source: int, target: int) -> np.ndarray:
    """Area-weighted (box) resampling from `source` pixels to `target` pixels along one axis."""
    edges = np.linspace(0, source, target + 1)
    weights = np.zeros((target, source), np.float64)
    for i in range(target):
        lo, hi = edges[i], edges[i + 1]
        for j in range(int(np.floor(lo)), min(int(np.ceil(hi)), source)):
            weights[i, j] = max(0.0, min(hi, j + 1) - max(lo, j))
        weights[i] /= weights[i].sum()
    return weights


def prepare(drawing: np.ndarray) -> np.ndarray:
    """Crop to the ink, fit the longer side to 20 px keeping the aspect, centre the mass."""
    array = check_array(drawing)
    rows = np.flatnonzero(array.max(axis=1) > 0)
    cols = np.flatnonzero(array.max(axis=0) > 0)
    crop = array[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].astype(np.float64)
    height, width = crop.shape
    scale = BOX / max(height, width)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    scaled = _resample_matrix(height, new_h) @ crop @ _resample_matrix(width, new_w).T
    frame = np.zeros((FRAME, FRAME), np.float64)
    total = scaled.sum()
    ys, xs = np.indices(scaled.shape)
    centre_y, centre_x = (ys * scaled).sum() / total, (xs * scaled).sum() / total
    top = int(np.clip(round(FRAME / 2 - 0.5 - centre_y), 0, FRAME - new_h))
    left = int(np.clip(round(FRAME / 2 - 0.5 - centre_x), 0, FRAME - new_w))
    frame[top : top + new_h, left : left + new_w] = scaled
    return np.clip(frame, 0.0, 1.0).astype(np.float32)


def render(image: np.ndarray, ink: str = "#", background: str = ".") -> str:
    """A 28x28 image back as text: what the model saw, for people to look at."""
    shades = " .:-=+*#%@" if ink == "shade" else None
    lines = []
    for row in np.asarray(image):
        if shades:
            lines.append("".join(shades[min(9, int(v * 9.999))] for v in row))
        else:
            lines.append("".join(ink if v >= 0.5 else background for v in row))
    return "\n".join(lines)


TYPED_DIGITS_DIR = Path(__file__).resolve().parent / "typed_digits"


def typed_digit_files(label: int | None = None) -> list[Path]:
    """Digits typed by hand in a terminal ('#' ink), named <label>_<style>.txt: sample drawings
    for load tests, benchmarks and the MNIST build's terminal-drawing check."""
    pattern = f"{label}_*.txt" if label is not None else "*.txt"
    return sorted(TYPED_DIGITS_DIR.glob(pattern))
