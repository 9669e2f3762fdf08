"""Proving that a JPEG file is whole without decoding it: its marker structure, read at C speed.

Decoding to check an image costs ~2 ms per 640x480 JPEG (libjpeg's Huffman decoding of the whole stream, even at
reduced scale): ~40 MB/s per core, far below a disk. What breaks images in practice (truncated downloads, garbage,
empty files) breaks their structure, and that can be read without decoding. Checked here: SOI, then marker segments
each inside the file and each valid as libjpeg checks it: a baseline, extended or progressive Huffman frame (SOF0-2)
of 8-bit samples, 1, 3 or 4 components, a non-zero size and integral sampling factors; quantisation and Huffman tables
(libjpeg's code-length rule, DC symbols <= 15) defined before the scans that use them; scan headers naming the
frame's components with libjpeg's progression rules; each scan's entropy-coded data followed by a marker; and EOI.
Data after EOI is ignored, as decoders do. Markers other than these, APPn and COM send the file to the decoder.

`complete_format` only ever *accepts*: a file it does not prove whole (another format, a rarer JPEG kind, or a broken
structure) returns `None`, and the caller decodes it, so such files are judged exactly as before. What a structure
check cannot see is damage inside complete entropy-coded data; libjpeg only warns on that when decoding, too (random
corruptions of headers, tables and data: every file accepted here decodes, `tests/test_image_structure.py`).
"""

import functools
import re
import struct

_JPEG_SOI = b"\xff\xd8"
# In entropy-coded data 0xFF is followed by 0x00 (a stuffed byte) or a restart marker; anything else is a marker.
_ENTROPY_END = re.compile(rb"\xff[^\x00\xd0-\xd7]")
_SEQUENTIAL, _PROGRESSIVE = {0xC0, 0xC1}, 0xC2  # Huffman-coded frames PIL decodes; any other frame kind: decode it
_APPN_COM = {*range(0xE0, 0xF0), 0xFE}  # skipped by decoders
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM and RSTn carry no length


class _Frame:
    """What a JPEG's segments have declared so far: the frame's components and the tables defined."""

    def __init__(self):
        self.kind = None
        self.components = {}  # component id -> (h, v, quantisation table)
        self.quant, self.huffman = set(), set()  # table ids; Huffman as (class, id)


@functools.lru_cache(maxsize=1024)
def _quant_tables(body: bytes) -> frozenset[int] | None:
    """The ids a DQT segment defines, or `None` if libjpeg would refuse it. Cached: encoders reuse their tables."""
    pos, ids = 0, set()
    while pos < len(body):  # precision (8 / 16 bit) and id, then 64 values
        precision, table = body[pos] >> 4, body[pos] & 15
        size = 1 + 64 * (precision + 1)
        if precision > 1 or table > 3 or pos + size > len(body):
            return None
        ids.add(table)
        pos += size
    return frozenset(ids) if ids else None


@functools.lru_cache(maxsize=1024)
def _huffman_tables(body: bytes) -> frozenset[tuple[int, int]] | None:
    """The (class, id) pairs a DHT segment defines, or `None` if libjpeg would refuse it (cached, as above)."""
    pos, ids = 0, set()
    while pos < len(body):  # class (DC / AC) and id, 16 code-length counts, then the symbols
        if pos + 17 > len(body):
            return None
        kind, table = body[pos] >> 4, body[pos] & 15
        counts = body[pos + 1 : pos + 17]
        total = sum(counts)
        if kind > 1 or table > 3 or not total or total > 256 or pos + 17 + total > len(body):
            return None
        code = 0  # libjpeg's check: the codes of each length must fit that length, none all ones
        for length, count in enumerate(counts, 1):
            code += count
            if count and code >= 1 << length:
                return None
            code <<= 1
        if kind == 0 and max(body[pos + 17 : pos + 17 + total]) > 15:  # a DC symbol is a bit count
            return None
        ids.add((kind, table))
        pos += 17 + total
    return frozenset(ids) if ids else None


def _frame_header(marker: int, body: bytes, frame: _Frame) -> bool:
    if frame.kind is not None or (marker not in _SEQUENTIAL and marker != _PROGRESSIVE) or len(body) < 6:
        return False
    precision, height, width, n = struct.unpack_from(">BHHB", body)
    if precision != 8 or not height or not width or n not in (1, 3, 4) or len(body) != 6 + 3 * n:
        return False
    for i in range(n):
        component, sampling, table = body[6 + 3 * i : 9 + 3 * i]
        h, v = sampling >> 4, sampling & 15
        if component in frame.components or not (1 <= h <= 4 and 1 <= v <= 4) or table > 3:
            return False
        frame.components[component] = (h, v, table)
    frame.kind = marker
    sampling = [(h, v) for h, v, _ in frame.components.values()]
    max_h, max_v = max(h for h, _ in sampling), max(v for _, v in sampling)
    if any(max_h % h or max_v % v for h, v in sampling):  # libjpeg decodes integral up-sampling ratios only
        return False
    return n == 1 or sum(h * v for h, v in sampling) <= 10  # blocks per MCU, libjpeg's limit


def _scan_header(body: bytes, frame: _Frame) -> bool:
    if frame.kind is None or not body:
        return False
    n = body[0]
    if not 1 <= n <= len(frame.components) or len(body) != 4 + 2 * n:
        return False
    start, end, approximation = body[1 + 2 * n], body[2 + 2 * n], body[3 + 2 * n]
    high, low = approximation >> 4, approximation & 15
    if frame.kind in _SEQUENTIAL:
        if start != 0 or end != 63 or approximation:
            return False
    elif (
        start > end
        or end > 63
        or (start == 0) != (end == 0)
        or (start and n != 1)
        or low > 13
        or (high and low != high - 1)
    ):  # libjpeg's rules for a progressive scan
        return False
    seen = set()
    for i in range(n):
        component, tables = body[1 + 2 * i], body[2 + 2 * i]
        dc, ac = tables >> 4, tables & 15
        if component not in frame.components or component in seen or frame.components[component][2] not in frame.quant:
            return False
        seen.add(component)
        needs_dc = start == 0 and not high  # a sequential scan, or a progressive DC first pass
        needs_ac = start > 0 or frame.kind in _SEQUENTIAL
        if (needs_dc and (0, dc) not in frame.huffman) or (needs_ac and (1, ac) not in frame.huffman):
            return False
    return n == 1 or sum(frame.components[c][0] * frame.components[c][1] for c in seen) <= 10


def jpeg_is_complete(data: bytes) -> bool:
    """Whether `data` is a whole JPEG of a kind PIL decodes (see the module docstring)."""
    if not data.startswith(_JPEG_SOI):
        return False
    pos, n = 2, len(data)
    frame, scans = _Frame(), 0
    while pos + 1 < n:
        if data[pos] != 0xFF:
            return False
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == 0xD9:  # EOI
            return scans > 0
        if marker in _STANDALONE:
            pos += 2
            continue
        if pos + 4 > n:
            return False
        (length,) = struct.unpack_from(">H", data, pos + 2)
        end = pos + 2 + length
        if length < 2 or end > n:
            return False
        body = data[pos + 4 : end]
        if marker in (0xDB, 0xC4):
            tables = (_quant_tables if marker == 0xDB else _huffman_tables)(body)
            ok = tables is not None
            (frame.quant if marker == 0xDB else frame.huffman).update(tables or ())
        elif marker == 0xDA:
            ok = _scan_header(body, frame)
        elif marker == 0xDD:  # restart interval
            ok = length == 4
        elif 0xC0 <= marker <= 0xCF:
            ok = _frame_header(marker, body, frame)
        else:
            ok = marker in _APPN_COM
        if not ok:
            return False
        pos = end
        if marker == 0xDA:  # the entropy-coded data runs to the next marker
            scans += 1
            found = _ENTROPY_END.search(data, pos)
            if found is None:
                return False  # truncated inside the scan
            pos = found.start()
    return False  # no EOI: truncated


def complete_format(data: bytes) -> str | None:
    """`"JPEG"` if `data` is proven a whole JPEG, else `None` (decode it to judge). PNGs are always decoded: their
    CRCs prove the chunks intact but not the zlib stream inside, and inflating it costs as much as decoding."""
    return "JPEG" if jpeg_is_complete(data) else None
