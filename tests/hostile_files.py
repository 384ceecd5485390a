"""Small hostile uploads, made on the fly: each is a few KB on disk and would cost far more to decode."""

from __future__ import annotations

import functools
import io
import struct
import zlib
from pathlib import Path

import numpy as np


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@functools.lru_cache(maxsize=4)
def png_bomb(width: int, height: int, rgba: bool = False) -> bytes:
    """A valid all-black PNG, 1-bit (or 8-bit RGBA): width*height pixels decoded from a few KB (or ~1/1000)."""
    row = b"\x00" * (1 + (4 * width if rgba else -(-width // 8)))
    packer, parts = zlib.compressobj(9), []
    for _ in range(height // 100):
        parts.append(packer.compress(row * 100))
    parts.append(packer.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8 if rgba else 1, 6 if rgba else 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")


def ico(picture: bytes, said: int = 256) -> bytes:
    """An ICO whose one directory entry says said x said, holding `picture` (PNG or BMP info header)."""
    side = 0 if said == 256 else said
    entry = struct.pack("<BBBBHHII", side, side, 0, 0, 1, 32, len(picture), 22)
    return struct.pack("<HHH", 0, 1, 1) + entry + picture


def dib_header(width: int, height: int) -> bytes:
    """A BMP info header (as inside an ICO: height counts the mask too) and a few pixel bytes."""
    return struct.pack("<IiiHHIIiiII", 40, width, 2 * height, 1, 32, 0, 0, 0, 0, 0, 0) + b"\0" * 64


def icns(picture: bytes, kind: bytes = b"ic09") -> bytes:
    """An ICNS with one element of `kind` (ic09 says 512x512) holding `picture`."""
    block = kind + struct.pack(">I", 8 + len(picture)) + picture
    return b"icns" + struct.pack(">I", 8 + len(block)) + block


def gif_with_big_first_frame(width: int, height: int) -> bytes:
    """A GIF whose screen is 16x16 but whose first frame says width x height."""
    head = b"GIF89a" + struct.pack("<HHBBB", 16, 16, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    return head + b"," + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x4c\x01\x00;"


def tiff_small_then_big(side: int = 12000) -> bytes:
    """A two-page TIFF: a small page with text-like marks, then an all-white 1-bit side x side page."""
    from PIL import Image, ImageDraw

    first = Image.new("L", (400, 200), 255)
    ImageDraw.Draw(first).text((20, 80), "Invoice number: 1000", fill=0)
    big = Image.new("1", (side, side), 1)
    buf = io.BytesIO()
    first.save(buf, "TIFF", save_all=True, append_images=[big], compression="tiff_deflate")
    return buf.getvalue()


def hls_playlist(target: Path) -> str:
    return f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.0,\n{target}\n#EXT-X-ENDLIST\n"


def concat_list(target: Path) -> str:
    return f"ffconcat version 1.0\nfile '{target}'\n"


def wav_header(channels: int, rate: int, frames: int = 100) -> bytes:
    """A 16-bit PCM WAV of silence with any channel count and rate in its header."""
    align = 2 * channels
    data = b"\0" * (align * frames)
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * align, align, 16)
    return (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
            + b"data" + struct.pack("<I", len(data)) + data)


def wide_flac(path: Path, seconds: int, channels: int = 8, rate: int = 192000) -> Path:
    """Silence in many channels at a high rate: FLAC keeps it in a few KB per minute."""
    import soundfile as sf

    block = np.zeros((rate, channels), np.float32)
    with sf.SoundFile(path, "w", rate, channels, format="FLAC") as f:
        for _ in range(seconds):
            f.write(block)
    return path


def iptc_holding_jpeg(side: int = 1000, said: int = 16) -> bytes:
    """An IPTC/NAA record whose header says said x said and whose data is a side x side JPEG."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (side, side), 128).save(buf, "JPEG", quality=10)

    def field(record: int, tag: int, data: bytes) -> bytes:
        return bytes([0x1C, record, tag]) + struct.pack(">H", len(data)) + data

    return (field(3, 60, b"\x01\x00") + field(3, 20, struct.pack(">H", said)) + field(3, 30, struct.pack(">H", said))
            + field(3, 120, b"\x05") + field(8, 10, buf.getvalue()))


def nested_forms_pdf(levels: int, fan: int = 10, indirect_resources: bool = False) -> bytes:
    """A 3 KB PDF whose page draws a form that draws the next level `fan` times, `levels` deep: fan**levels
    full-page fills for pdfium, which expands every use anew (6 levels took it minutes)."""
    objs = {1: "<< /Type /Catalog /Pages 2 0 R >>", 2: "<< /Type /Pages /Kids [3 0 R] /Count 1 >>"}
    first = 10
    resources = "5 0 R" if indirect_resources else f"<< /XObject << /X {first} 0 R >> >>"
    objs[3] = f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources {resources} >>"
    if indirect_resources:
        objs[5] = f"<< /XObject << /X {first} 0 R >> >>"

    def stream(entries: str, content: str) -> str:
        return f"<< {entries} /Length {len(content)} >>\nstream\n{content}\nendstream"

    objs[4] = stream("", "q /X Do Q")
    for i in range(levels):
        last = i == levels - 1
        content = "0 0 0 rg 10 10 500 700 re f" if last else " ".join(["q 0.99 0 0 0.99 1 1 cm /X Do Q"] * fan)
        res = "" if last else f"/Resources << /XObject << /X {first + i + 1} 0 R >> >>"
        objs[first + i] = stream(f"/Type /XObject /Subtype /Form /BBox [0 0 612 792] {res}", content)
    out, offsets = "%PDF-1.4\n", {}
    for n in sorted(objs):
        offsets[n] = len(out.encode())
        out += f"{n} 0 obj\n{objs[n]}\nendobj\n"
    xref, size = len(out.encode()), max(objs) + 1
    out += f"xref\n0 {size}\n0000000000 65535 f \n" + "".join(
        f"{offsets[n]:010d} 00000 n \n" if n in offsets else "0000000000 65535 f \n" for n in range(1, size))
    out += f"trailer\n<< /Size {size} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n"
    return out.encode()
