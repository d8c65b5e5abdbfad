"""Image headers without decoding: size, bit depth and channels of PNG and JPEG files.

``harness data check`` reads tens of thousands of files; parsing the first bytes is enough to
tell a missing, truncated, 8-bit or colour file from a valid one.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass

__all__ = ["ImageInfo", "image_info"]

_PNG_SIG = b"\x89PNG\r\n\x1a\n"
# PNG colour type -> channels (0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA)
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


@dataclass(frozen=True)
class ImageInfo:
    format: str  # "png" | "jpeg"
    width: int
    height: int
    bit_depth: int
    channels: int
    palette: bool = False

    @property
    def is_uint16_grey(self) -> bool:
        return self.format == "png" and self.bit_depth == 16 and self.channels == 1 and not self.palette

    def describe(self) -> str:
        kind = "palette" if self.palette else f"{self.channels} channel(s)"
        return f"{self.bit_depth}-bit {self.format.upper()} with {kind}, {self.width}x{self.height}"


def image_info(path: str | os.PathLike) -> ImageInfo:
    """Header of a PNG or JPEG file. Raises ``FileNotFoundError`` or ``ValueError`` (message
    starts with the path) for a missing, truncated or unknown file."""
    with open(path, "rb") as f:
        head = f.read(33)
        if head.startswith(_PNG_SIG):
            if len(head) < 33 or head[12:16] != b"IHDR":
                raise ValueError(f"{path}: truncated PNG header")
            width, height, depth, ctype = struct.unpack(">IIBB", head[16:26])
            if ctype not in _PNG_CHANNELS:
                raise ValueError(f"{path}: PNG header has unknown colour type {ctype}")
            return ImageInfo("png", width, height, depth, _PNG_CHANNELS[ctype], palette=ctype == 3)
        if head[:2] == b"\xff\xd8":
            f.seek(2)
            return _jpeg(f, path)
    raise ValueError(f"{path}: neither a PNG nor a JPEG file")


def _jpeg(f, path) -> ImageInfo:
    while True:
        byte = f.read(1)
        while byte and byte != b"\xff":
            byte = f.read(1)
        while byte == b"\xff":
            byte = f.read(1)
        if not byte:
            raise ValueError(f"{path}: truncated JPEG (no frame header)")
        marker = byte[0]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            continue
        if marker == 0xD9:
            raise ValueError(f"{path}: JPEG without a frame header")
        raw = f.read(2)
        if len(raw) < 2:
            raise ValueError(f"{path}: truncated JPEG")
        (length,) = struct.unpack(">H", raw)
        if marker in _SOF:
            data = f.read(6)
            if len(data) < 6:
                raise ValueError(f"{path}: truncated JPEG frame header")
            depth, height, width, comps = struct.unpack(">BHHB", data)
            return ImageInfo("jpeg", width, height, depth, comps)
        f.seek(length - 2, os.SEEK_CUR)
