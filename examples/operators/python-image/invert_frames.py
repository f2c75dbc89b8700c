"""A Python dataflow operator for binary frames: the negative of each greyscale image (binary PGM, ``P5``).

A bytes record of content type ``image/x-portable-graymap`` (a ``.pgm`` file dropped into a ``dir:``
source) comes out as the same header and every pixel ``maxval - p``, content type
``image/x-portable-graymap``; ``src``, ``seq`` and ``t`` are kept. Anything else (another content type, a
number or JSON, a frame whose pixels do not match its header) is bad input: the call raises, and the SDK
counts that record as an error and drops it, alone.

Shipped in an image of its own (this directory's Dockerfile; docs/dataflow.md, "Your own operator image").
"""

from __future__ import annotations

import re

from edgerm.dataflow.operator import Record, run

PGM = "image/x-portable-graymap"
_HEADER = re.compile(rb"P5\s+(\d+)\s+(\d+)\s+(\d+)\s")  # then the raster: one byte per pixel (maxval < 256)


def negative(frame: bytes) -> bytes:
    """The inverted frame; ValueError when ``frame`` is not an 8-bit binary PGM."""
    m = _HEADER.match(frame)
    if m is None:
        raise ValueError("not a binary PGM frame (no P5 header)")
    width, height, maxval = (int(g) for g in m.groups())
    pixels = frame[m.end() :]
    if not 0 < maxval < 256 or len(pixels) != width * height:
        raise ValueError(f"a {width}x{height} frame (maxval {maxval}) with {len(pixels)} bytes of pixels")
    table = bytes(maxval - min(p, maxval) for p in range(256))
    return frame[: m.end()] + pixels.translate(table)


def invert(r: Record) -> Record:
    if not isinstance(r.value, bytes) or r.content_type != PGM:
        raise ValueError(f"expected {PGM}, got {r.content_type or r.kind.name.lower()}")
    return Record(r.src, r.seq, r.t, negative(r.value), PGM)


if __name__ == "__main__":
    run(invert)
