"""Streaming reader for release files: one top-level JSON array, up to several GB, never loaded whole.

`json.JSONDecoder.raw_decode` (the C scanner) decodes one element at a time from a bounded text buffer, so memory
stays at one chunk plus one record whatever the file size. Ids are never touched here: a string stays a string
(`datasets`' own json loader turns "000000033471" into 33471).

For sharded preparation, `shard_ranges` cuts a file into byte ranges that start exactly at an element. A range is
found by a cheap local search (`}` `,` `{` followed by a record that decodes), and the reader of the range before it
proves the cut: it must parse its own bytes to the end, landing exactly on the boundary, or it raises.

`iter_records` is the fast path over a range: it cuts the range into slices of about `SLICE_BYTES` at element
boundaries and decodes each slice in one `orjson.loads` call (about twice the stdlib's speed). A slice that decodes
proves its cut the same way. orjson and the stdlib give the same objects on what both accept; orjson refuses what only
the stdlib takes (NaN, Infinity, lone surrogates, a BOM) and turns integers beyond 64 bits into floats, so such a slice
(or one with a run of 19 digits) is decoded by the stdlib, and a slice neither accepts is re-read by `iter_json_array`,
which raises exactly its usual error (file, byte offset, line).
"""

import codecs
import gc
import json
import os
import re
from collections.abc import Callable, Iterator

import orjson

CHUNK_SIZE = 1 << 22  # 4 MiB of text decoded at a time
_WS = " \t\n\r"
_SKIP_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
_BOUNDARY = re.compile(rb"\}\s*,\s*\{")
# Bytes decoded by one orjson call in `iter_records`: small enough that a slice's records are still in the CPU's caches
# when they are converted (1 MiB: 40.4 us per record of the whole build, 8 MiB: 45.6).
SLICE_BYTES = 1 << 20
_CUT_WINDOW = 1 << 14  # a slice's cut is searched for in its last 16 KiB, then in 16x more, then anywhere
_JSON_WS = b" \t\n\r"
_DIGITS_AS_ZERO = bytes(48 if 48 <= i <= 57 else 32 for i in range(256))
_LONG_DIGITS = b"0" * 19  # an integer this long may not fit in 64 bits: orjson would make it a float


class ReleaseFileError(ValueError):
    """A release file that is not a well-formed JSON array; the message names the file and the position."""


def _line_of(path: str, byte_offset: int) -> int:
    line, seen = 1, 0
    with open(path, "rb") as f:
        while seen < byte_offset:
            block = f.read(min(CHUNK_SIZE, byte_offset - seen))
            if not block:
                break
            line += block.count(b"\n")
            seen += len(block)
    return line


def _error(path: str, byte_offset: int, what: str) -> ReleaseFileError:
    return ReleaseFileError(f"{path}: {what} at byte {byte_offset} (line {_line_of(path, byte_offset)})")


def _needs_more(err: json.JSONDecodeError, buf: str) -> bool:
    # Errors caused by the end of the buffer rather than by bad JSON: read more and retry.
    return err.pos >= len(buf) - 1 or err.msg.startswith("Unterminated string")


def iter_json_array(path: str | os.PathLike, start: int = 0, end: int | None = None) -> Iterator:
    """Yields the elements of the JSON array in `path`, one at a time.

    Args:
        path (`str`):
            The release file.
        start (`int`, *optional*, defaults to `0`):
            Byte offset to start at: `0` (the opening `[`) or a boundary returned by `shard_ranges`.
        end (`int`, *optional*):
            Byte offset to stop at (a boundary from `shard_ranges`); the end of the file by default.

    Raises:
        `ReleaseFileError`: the bytes are not a JSON array (truncated file, invalid JSON, misaligned shard), with the
        file, byte offset and line.
    """
    path = os.fspath(path)
    size = os.path.getsize(path)
    end = size if end is None else end
    decoder = codecs.getincrementaldecoder("utf-8")()
    with open(path, "rb") as f:
        f.seek(start)
        remaining = end - start
        buf, pos, buf_byte = "", 0, start  # buf[pos:] is unread; buf_byte is the byte offset of buf[0]
        done = remaining <= 0

        def refill():
            nonlocal buf, pos, buf_byte, remaining, done
            consumed = buf[:pos]
            buf_byte += len(consumed) if consumed.isascii() else len(consumed.encode("utf-8"))
            block = f.read(min(CHUNK_SIZE, remaining))
            remaining -= len(block)
            done = remaining <= 0 or not block
            buf = buf[pos:] + decoder.decode(block, final=done)
            pos = 0

        def byte_at(i: int) -> int:
            head = buf[:i]
            return buf_byte + (len(head) if head.isascii() else len(head.encode("utf-8")))

        def skip_ws():
            nonlocal pos
            while True:
                pos = _SKIP_WS.match(buf, pos).end()
                if pos < len(buf) or done:
                    return
                refill()

        refill()
        if start == 0:
            if buf.startswith("\ufeff"):
                pos = 1
            skip_ws()
            if pos >= len(buf) or buf[pos] != "[":
                raise _error(path, byte_at(pos), "expected a JSON array '['")
            pos += 1
            skip_ws()
            if pos < len(buf) and buf[pos] == "]":
                pos += 1
                return _check_tail(path, f, buf[pos:], byte_at(pos), done)
        while True:
            skip_ws()
            if pos >= len(buf):
                # The range ended right after a separator: the next range starts at an element.
                if end < size:
                    return
                raise _error(path, byte_at(pos), "truncated file: the array is never closed")
            while True:
                try:
                    record, stop = _DECODER.raw_decode(buf, pos)
                    break
                except json.JSONDecodeError as err:
                    if not _needs_more(err, buf):
                        raise _error(path, byte_at(err.pos), f"invalid JSON ({err.msg})") from None
                    if done:
                        reason = "truncated file: unterminated record"
                        if end < size:
                            reason = "shard boundary does not fall between records"
                        raise _error(path, byte_at(pos), reason) from None
                    refill()
            yield record
            pos = stop
            skip_ws()
            if pos >= len(buf):
                if end < size:
                    raise _error(path, byte_at(pos), "shard boundary does not fall between records")
                raise _error(path, byte_at(pos), "truncated file: the array is never closed")
            if buf[pos] == ",":
                pos += 1
            elif buf[pos] == "]":
                pos += 1
                return _check_tail(path, f, buf[pos:], byte_at(pos), done)
            else:
                raise _error(
                    path, byte_at(pos), f"invalid JSON (expected ',' or ']' after a record, got {buf[pos]!r})"
                )


def _check_tail(path, f, rest: str, byte_offset: int, done: bool):
    tail = rest + ("" if done else f.read().decode("utf-8", errors="replace"))
    if tail.strip(_WS):
        raise _error(path, byte_offset, "unexpected data after the closing ']'")


def count_records(path: str | os.PathLike) -> int:
    """Counts the elements of a release file by streaming it."""
    return sum(1 for _ in iter_json_array(path))


def iter_records(
    path: str | os.PathLike,
    start: int = 0,
    end: int | None = None,
    is_record: Callable[[dict], bool] = lambda r: isinstance(r, dict),
    on_slice: Callable[[int], None] | None = None,
) -> Iterator:
    """Yields the same elements as `iter_json_array(path, start, end)`, and raises the same errors, decoding slices of
    about `SLICE_BYTES` with orjson (see the module docstring).

    Args:
        path (`str`):
            The release file.
        start (`int`, *optional*, defaults to `0`):
            Byte offset to start at: `0` (the opening `[`) or a boundary returned by `shard_ranges`.
        end (`int`, *optional*):
            Byte offset to stop at (a boundary from `shard_ranges`); the end of the file by default.
        is_record (`Callable`, *optional*):
            Accepts a decoded candidate as a real record, to cut slices between records rather than between the
            objects inside one (a wrong cut only costs speed: its slice does not decode and is re-read).
        on_slice (`Callable[[int], None]`, *optional*):
            Called with the byte offset reached once the records before it have all been yielded (after each slice,
            about every `SLICE_BYTES`, and at `end`): how far through the range the caller is, for progress.

    Raises:
        `ReleaseFileError`: as `iter_json_array`.
    """
    path = os.fspath(path)
    size = os.path.getsize(path)
    end = size if end is None else end
    if start >= end:
        yield from iter_json_array(path, start, end)
        return
    yielded = 0
    with open(path, "rb") as f:
        f.seek(start)
        offset, rest = start, b""  # rest: the bytes from `offset` on, read but not decoded yet
        while offset < end:
            # buf[0] is the "[" that opens a slice; the file's bytes from `offset` follow (one copy of each byte).
            buf = bytearray(1 + len(rest) + min(SLICE_BYTES, end - offset - len(rest)))
            buf[0], buf[1 : 1 + len(rest)] = ord("["), rest
            got = f.readinto(memoryview(buf)[1 + len(rest) :])
            size_read = len(rest) + got
            at_end = not got or offset + size_read >= end
            cut = 1 + size_read if at_end else _find_cut(buf, 1 + size_read, is_record)
            if cut is None:
                rest = bytes(buf[1 : 1 + size_read])  # no boundary in reach (very large records): read on
                continue
            cut -= 1  # from an index in buf to one in the file's bytes
            elements = _decode_slice(buf, cut, first=offset == 0, last=offset + cut == size)
            if elements is None:
                break
            yield from elements
            yielded += len(elements)
            rest, offset = bytes(buf[1 + cut : 1 + size_read]), offset + cut
            if on_slice is not None:
                on_slice(offset)
        else:
            return
    # A slice that neither decoder accepts: the streaming reader re-reads the range and raises its usual error.
    records = iter_json_array(path, start, end)
    for _ in range(yielded):
        next(records)
    yield from records
    if on_slice is not None:
        on_slice(end)


def _find_cut(buf: bytearray, stop: int, is_record) -> int | None:
    # The start of the last record in buf[1:stop] that follows a separator, searched from the end in growing windows.
    for low in (max(1, stop - _CUT_WINDOW), max(1, stop - 16 * _CUT_WINDOW), 1):
        for match in reversed(list(_BOUNDARY.finditer(buf, low, stop))):
            if _record_at(buf, match.end() - 1, stop, is_record):
                return match.end() - 1
        if low == 1:
            return None
    return None


def _record_at(buf: bytearray, pos: int, stop: int, is_record) -> bool:
    length = 1 << 16
    while True:
        text = buf[pos : min(pos + length, stop)].decode("utf-8", errors="ignore")
        try:
            return is_record(_DECODER.raw_decode(text)[0])
        except json.JSONDecodeError as err:
            if pos + length >= stop or not _needs_more(err, text):
                return False
            length *= 4


def _orjson_loads(data: memoryview):
    # The garbage collector is paused for this one call: orjson builds only trees of dicts, lists and scalars (no
    # cycles to collect) and keeps the GIL, and the thousands of containers of a slice would otherwise trigger
    # collections during the call (measured with 8 MiB slices: 17 -> 12 us per record of the bench's files).
    enabled = gc.isenabled()
    gc.disable()
    try:
        return orjson.loads(data)
    finally:
        if enabled:
            gc.enable()


def _decode_slice(buf: bytearray, length: int, first: bool, last: bool) -> list | None:
    """The elements of buf[1 : 1 + length]: whole elements from a boundary (or the file's start) to a boundary (or the
    file's end); `None` if the bytes are not exactly that. buf[0] is "[" (used unless the slice starts the file)."""
    stop = 1 + length
    if not last:  # the slice ends with `,` and JSON whitespace: the `,` becomes the closing `]`
        while stop > 1 and buf[stop - 1] in _JSON_WS:
            stop -= 1
        if stop == 1 or buf[stop - 1] != ord(","):
            return None
        buf[stop - 1] = ord("]")
    begin = 1 if first else 0
    elements = None
    if buf.translate(_DIGITS_AS_ZERO).find(_LONG_DIGITS, begin, stop) < 0:
        try:
            elements = _orjson_loads(memoryview(buf)[begin:stop])
        except orjson.JSONDecodeError:
            pass
    if elements is None:
        try:
            elements = json.loads(buf[begin:stop].decode("utf-8"))  # strict UTF-8, like the streaming reader
        except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError
            return None
    if type(elements) is not list or not (elements or (first and last)):
        return None  # not an array, or an empty slice between separators (`, ]`, `[,`)
    return elements


def shard_ranges(
    path: str | os.PathLike, num_shards: int, is_record: Callable[[dict], bool] = lambda r: isinstance(r, dict)
) -> list[tuple[int, int]]:
    """Cuts a release file into at most `num_shards` byte ranges, each starting exactly at an array element.

    Args:
        path (`str`):
            The release file.
        num_shards (`int`):
            How many ranges to aim for; fewer come back for a small file.
        is_record (`Callable`, *optional*):
            Accepts a decoded candidate as a real record (e.g. "has a `conversations` key"), so a cut can never
            land inside a string that happens to contain `}, {`.
    """
    path = os.fspath(path)
    size = os.path.getsize(path)
    cuts = [0]
    for k in range(1, num_shards):
        cut = _next_boundary(path, max(k * size // num_shards, cuts[-1] + 1), is_record)
        if cut is None:
            break
        if cut > cuts[-1]:
            cuts.append(cut)
    cuts.append(size)
    return list(zip(cuts[:-1], cuts[1:]))


def _next_boundary(path: str, offset: int, is_record, window: int = 1 << 20) -> int | None:
    with open(path, "rb") as f:
        while True:
            f.seek(offset)
            data = f.read(window)
            if not data:
                return None
            for match in _BOUNDARY.finditer(data):
                start = match.end() - 1
                if _decodes_at(path, offset + start, is_record):
                    return offset + start
            if len(data) < window:
                return None
            offset += window - 64  # overlap so a boundary split across windows is still seen


def _decodes_at(path: str, byte_offset: int, is_record) -> bool:
    # The candidate must decode, be a record, and be followed by a separator and a decodable element (or `]`).
    # Reject a non-record (e.g. an inner turn `}, {"from": ...}`) before decoding on: the turn before an inner `]`
    # would send the reader to check the rest of the FILE after that `]` (seconds and GBs on a large release).
    records = iter_json_array(path, start=byte_offset)
    try:
        first = next(records, None)
        if first is None or not is_record(first):
            return False
        next(records, None)
    except ReleaseFileError:
        return False
    finally:
        records.close()
    return True
