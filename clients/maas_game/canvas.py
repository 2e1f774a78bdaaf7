"""A 28x28 drawing canvas for rune locks: mouse (click and drag) or keyboard (arrows, space)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

SIDE = 28
INK = Color.from_rgb(235, 235, 235)
BLANK = Color.from_rgb(25, 25, 35)
CURSOR_INK = Color.from_rgb(255, 190, 60)
CURSOR_BLANK = Color.from_rgb(120, 90, 30)
COMPACT_BELOW_ROWS = 40  # terminals shorter than this get the half-height canvas


class RuneCanvas(Widget, can_focus=True):
    """Ink is 1.0, blank 0.0; a mouse stroke, a space press or a clear is one undo step."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "move(0, -1)", "Up", show=False),
        Binding("down", "move(0, 1)", "Down", show=False),
        Binding("left", "move(-1, 0)", "Left", show=False),
        Binding("right", "move(1, 0)", "Right", show=False),
        Binding("space", "ink", "Ink"),
        Binding("c", "clear", "Clear"),
        Binding("u", "undo", "Undo"),
        Binding("b", "brush", "Brush size"),
    ]

    DEFAULT_CSS = """
    RuneCanvas { width: auto; height: auto; }
    """

    cursor: reactive[tuple[int, int]] = reactive((SIDE // 2, SIDE // 2))
    brush: reactive[int] = reactive(2)

    def __init__(self, *, compact: bool | None = None, id: str | None = None) -> None:
        """`compact`: one column and half a row per pixel (two pixels per cell with a half
        block), so 28x28 fits an 80x24 terminal; otherwise two columns and one row per pixel.
        Both keep pixels square. None picks by the terminal's height."""
        super().__init__(id=id)
        self._compact = compact
        self.pixels = np.zeros((SIDE, SIDE), np.float32)
        self._history: list[np.ndarray] = []
        self._dragging = False

    @property
    def compact(self) -> bool:
        if self._compact is None:
            self._compact = self.app.size.height < COMPACT_BELOW_ROWS
        return self._compact

    @property
    def cell_width(self) -> int:
        return 1 if self.compact else 2

    def get_content_width(self, container: Size, viewport: Size) -> int:
        return SIDE * self.cell_width

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return SIDE // 2 if self.compact else SIDE

    def _color(self, x: int, y: int) -> Color:
        inked = self.pixels[y, x] > 0.5
        if (x, y) == self.cursor and self.has_focus:
            return CURSOR_INK if inked else CURSOR_BLANK
        return INK if inked else BLANK

    def render_line(self, y: int) -> Strip:
        if self.compact:
            if y >= SIDE // 2:
                return Strip.blank(self.size.width)
            segments = [
                Segment("▀", Style(color=self._color(x, 2 * y), bgcolor=self._color(x, 2 * y + 1)))
                for x in range(SIDE)
            ]
            return Strip(segments, SIDE)
        if y >= SIDE:
            return Strip.blank(self.size.width)
        segments = [Segment("  ", Style(bgcolor=self._color(x, y))) for x in range(SIDE)]
        return Strip(segments, SIDE * 2)

    @property
    def is_empty(self) -> bool:
        return not self.pixels.any()

    def load(self, pixels: np.ndarray) -> None:
        """Replace the drawing (e.g. a test's digit), as one undo step."""
        self._checkpoint()
        self.pixels = (np.asarray(pixels, np.float32) > 0.5).astype(np.float32)
        self.refresh()

    def _checkpoint(self) -> None:
        self._history.append(self.pixels.copy())
        del self._history[:-50]

    def _stamp(self, x: int, y: int, *, tall: bool = False) -> None:
        """Ink a brush-sized square; `tall` covers both pixels of a compact cell (the mouse
        cannot tell its upper half from its lower)."""
        height = max(self.brush, 2) if tall else self.brush
        self.pixels[max(0, y) : y + height, max(0, x) : x + self.brush] = 1.0
        self.refresh()

    def _pixel_at(self, event: events.MouseEvent) -> tuple[int, int] | None:
        x = event.x // self.cell_width
        y = event.y * 2 if self.compact else event.y
        return (x, y) if 0 <= x < SIDE and 0 <= y < SIDE else None

    def on_mouse_down(self, event: events.MouseDown) -> None:
        spot = self._pixel_at(event)
        if spot is None:
            return
        self.focus()
        self.capture_mouse()
        self._dragging = True
        self._checkpoint()
        self.cursor = spot
        self._stamp(*spot, tall=self.compact)

    def on_mouse_move(self, event: events.MouseMove) -> None:
        spot = self._pixel_at(event)
        if self._dragging and spot is not None:
            self._line_to(spot)

    def on_mouse_up(self, event: events.MouseUp) -> None:
        self._dragging = False
        self.release_mouse()

    def _line_to(self, spot: tuple[int, int]) -> None:
        """Fill the gap between two mouse events, which skip cells when the hand moves fast."""
        (x0, y0), (x1, y1) = self.cursor, spot
        steps = max(abs(x1 - x0), abs(y1 - y0), 1)
        for i in range(1, steps + 1):
            x, y = round(x0 + (x1 - x0) * i / steps), round(y0 + (y1 - y0) * i / steps)
            self._stamp(x, y, tall=self.compact)
        self.cursor = spot

    def action_move(self, dx: int, dy: int) -> None:
        x, y = self.cursor
        self.cursor = (min(SIDE - 1, max(0, x + dx)), min(SIDE - 1, max(0, y + dy)))

    def action_ink(self) -> None:
        self._checkpoint()
        self._stamp(*self.cursor)

    def action_clear(self) -> None:
        if not self.is_empty:
            self._checkpoint()
            self.pixels = np.zeros((SIDE, SIDE), np.float32)
            self.refresh()

    def action_undo(self) -> None:
        if self._history:
            self.pixels = self._history.pop()
            self.refresh()

    def action_brush(self) -> None:
        self.brush = 1 if self.brush == 3 else self.brush + 1

    def watch_cursor(self) -> None:
        self.refresh()
