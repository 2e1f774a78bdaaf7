"""A 28x28 drawing canvas for rune locks: mouse (click and drag) or keyboard (arrows, space)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

SIDE = 28
CELL_WIDTH = 2  # terminal cells are about twice as tall as wide: two columns per pixel
INK = Style(bgcolor="rgb(235,235,235)")
BLANK = Style(bgcolor="rgb(25,25,35)")
CURSOR_INK = Style(bgcolor="rgb(255,190,60)")
CURSOR_BLANK = Style(bgcolor="rgb(120,90,30)")


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
    RuneCanvas { width: 56; height: 28; }
    """

    cursor: reactive[tuple[int, int]] = reactive((SIDE // 2, SIDE // 2))
    brush: reactive[int] = reactive(2)

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.pixels = np.zeros((SIDE, SIDE), np.float32)
        self._history: list[np.ndarray] = []
        self._dragging = False

    def get_content_width(self, container: Size, viewport: Size) -> int:
        return SIDE * CELL_WIDTH

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return SIDE

    def render_line(self, y: int) -> Strip:
        if y >= SIDE:
            return Strip.blank(self.size.width)
        cx, cy = self.cursor
        segments = []
        for x in range(SIDE):
            inked = self.pixels[y, x] > 0.5
            if (x, y) == (cx, cy) and self.has_focus:
                style = CURSOR_INK if inked else CURSOR_BLANK
            else:
                style = INK if inked else BLANK
            segments.append(Segment(" " * CELL_WIDTH, style))
        return Strip(segments, SIDE * CELL_WIDTH)

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

    def _stamp(self, x: int, y: int) -> None:
        self.pixels[max(0, y) : y + self.brush, max(0, x) : x + self.brush] = 1.0
        self.refresh()

    def _pixel_at(self, event: events.MouseEvent) -> tuple[int, int] | None:
        x, y = event.x // CELL_WIDTH, event.y
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
        self._stamp(*spot)

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
            self._stamp(round(x0 + (x1 - x0) * i / steps), round(y0 + (y1 - y0) * i / steps))
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
