"""Draw the console's app icons (cloud_bridge/static/icon-*.png): `python scripts/make_icons.py`.

A white house on the console's accent blue, a blue light in it. Pure Python (zlib): the
shapes are tested per sample (4 per pixel, for smooth edges) and written as 8-bit RGB PNGs.
The maskable icon keeps the house inside the central 80 % circle that launchers keep.
"""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "cloud_bridge" / "static"
ACCENT = (0x17, 0x4A, 0x8B)
WHITE = (0xFF, 0xFF, 0xFF)
SAMPLES = ((0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75))


def _house(x: float, y: float) -> bool:
    """The house in unit coordinates (0..1, y down): a roof and a body."""
    body = 0.28 <= x <= 0.72 and 0.48 <= y <= 0.78
    roof = 0.22 <= y <= 0.5 and abs(x - 0.5) <= (y - 0.22) / 0.28 * 0.3
    return body or roof


def _light(x: float, y: float) -> bool:
    return (x - 0.5) ** 2 + (y - 0.6) ** 2 <= 0.085**2


def _colour(x: float, y: float, scale: float) -> tuple[int, int, int]:
    # scale < 1 shrinks the drawing towards the centre (the maskable icon's safe zone)
    u, v = 0.5 + (x - 0.5) / scale, 0.5 + (y - 0.5) / scale
    return WHITE if _house(u, v) and not _light(u, v) else ACCENT


def draw(size: int, scale: float = 1.0) -> bytes:
    """The icon as a PNG file's bytes."""
    rows = bytearray()
    for py in range(size):
        rows.append(0)  # filter: none
        for px in range(size):
            r = g = b = 0
            for dx, dy in SAMPLES:
                c = _colour((px + dx) / size, (py + dy) / size, scale)
                r, g, b = r + c[0], g + c[1], b + c[2]
            rows += bytes((r // 4, g // 4, b // 4))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(rows), 9))
        + chunk(b"IEND", b"")
    )


ICONS = {
    "icon-192.png": (192, 1.0),
    "icon-512.png": (512, 1.0),
    "icon-maskable-512.png": (512, 0.8),
}


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (size, scale) in ICONS.items():
        (OUT / name).write_bytes(draw(size, scale))
        print(f"{OUT / name}: {size}x{size}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
