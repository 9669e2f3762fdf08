import json

import pytest

from hub_llava.data.reader import ReleaseFileError, count_records, iter_json_array, iter_records, shard_ranges


def _records(n):
    # Ids with leading zeros, non-ASCII text, and text that looks like a record boundary inside a string.
    return [
        {
            "id": f"{i:012d}",
            "image": f"coco/train2017/{i:012d}.jpg",
            "conversations": [
                {"from": "human", "value": '<image>\nWhat is in the café }, { "id": "x" ?'},
                {"from": "gpt", "value": f"Answer ☃ {i}"},
            ],
        }
        for i in range(n)
    ]


@pytest.mark.parametrize("indent", [None, 2])
def test_streams_records_and_keeps_string_ids(tmp_path, indent):
    records = _records(500)
    path = tmp_path / "release.json"
    path.write_text(json.dumps(records, indent=indent, ensure_ascii=False), encoding="utf-8")
    read = list(iter_json_array(path))
    assert read == records
    assert read[33]["id"] == "000000000033"
    assert count_records(path) == 500


@pytest.mark.parametrize("num_shards", [1, 2, 3, 8])
def test_shards_cover_every_record_once_in_order(tmp_path, num_shards, monkeypatch):
    monkeypatch.setattr("hub_llava.data.reader.CHUNK_SIZE", 1000)  # many chunk refills inside a shard
    records = _records(300)
    path = tmp_path / "release.json"
    path.write_text(json.dumps(records, indent=2, ensure_ascii=False), encoding="utf-8")
    ranges = shard_ranges(path, num_shards, lambda r: "conversations" in r)
    assert len(ranges) == num_shards
    assert ranges[0][0] == 0 and ranges[-1][1] == path.stat().st_size
    assert [r for start, end in ranges for r in iter_json_array(path, start, end)] == records


def test_small_file_gives_fewer_shards(tmp_path):
    path = tmp_path / "release.json"
    path.write_text(json.dumps(_records(2)), encoding="utf-8")
    ranges = shard_ranges(path, 8, lambda r: "conversations" in r)
    assert 1 <= len(ranges) <= 2
    assert sum(len(list(iter_json_array(path, s, e))) for s, e in ranges) == 2


def test_empty_array(tmp_path):
    path = tmp_path / "empty.json"
    path.write_text(" [ ]\n")
    assert list(iter_json_array(path)) == []


@pytest.mark.parametrize(
    "text, message",
    [
        ('[{"id": "1"},\n{"id": "2", "conv', "truncated file: unterminated record at byte 14 (line 2)"),
        ('[{"id": "1"},\n', "truncated file: the array is never closed"),
        ('[{"id": "1"},\n{"id": tru}]', "invalid JSON (Expecting value) at byte 21 (line 2)"),
        ('{"id": "1"}', "expected a JSON array '['"),
        ('[{"id": "1"}] trailing', "unexpected data after the closing ']'"),
        ('[{"id": "1"} {"id": "2"}]', "expected ',' or ']' after a record"),
    ],
)
def test_bad_files_name_the_file_and_position(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ReleaseFileError, match="bad.json") as err:
        list(iter_json_array(path))
    assert message in str(err.value)


def test_truncated_file_fails_in_the_shard_that_holds_the_cut(tmp_path):
    text = json.dumps(_records(50), indent=2)
    path = tmp_path / "cut.json"
    path.write_text(text[: len(text) - 300])
    ranges = shard_ranges(path, 3, lambda r: "conversations" in r)
    with pytest.raises(ReleaseFileError, match="truncated file"):
        for start, end in ranges:
            list(iter_json_array(path, start, end))


def _outcome(reader, *args):
    # The records (as their repr, so NaN compares equal to NaN) or the error a reader ends with.
    try:
        return repr(list(reader(*args)))
    except (ReleaseFileError, UnicodeDecodeError) as err:
        return f"{type(err).__name__}: {err}"


@pytest.fixture
def small_slices(monkeypatch):
    # Slices of ~2 KB (a cut searched in the last 600 bytes): a 300-record file is decoded in many orjson calls.
    monkeypatch.setattr("hub_llava.data.reader.SLICE_BYTES", 2000)
    monkeypatch.setattr("hub_llava.data.reader._CUT_WINDOW", 600)


@pytest.mark.parametrize("indent", [None, 2])
@pytest.mark.parametrize("num_shards", [1, 3])
def test_iter_records_gives_the_streaming_readers_records(tmp_path, small_slices, indent, num_shards):
    records = _records(300)
    records[7]["conversations"][1]["value"] = "x" * 5000  # a record longer than a slice
    path = tmp_path / "release.json"
    path.write_text(json.dumps(records, indent=indent, ensure_ascii=False), encoding="utf-8")
    ranges = shard_ranges(path, num_shards, lambda r: "conversations" in r)
    read = [r for s, e in ranges for r in iter_records(path, s, e, lambda r: "conversations" in r)]
    assert read == records
    assert read[33]["id"] == "000000000033"


def _read_reporting_offsets(path, start, end):
    read, reported = [], []  # reported: (offset, records handed over when it was reported)
    on_slice = lambda offset: reported.append((offset, len(read)))  # noqa: E731
    for record in iter_records(path, start, end, lambda r: "conversations" in r, on_slice):
        read.append(record)
    return read, reported


@pytest.mark.parametrize("num_shards", [1, 3])
def test_iter_records_reports_each_slice_end_once_its_records_are_handed_over(tmp_path, small_slices, num_shards):
    records = _records(300)
    path = tmp_path / "release.json"
    path.write_text(json.dumps(records, indent=2, ensure_ascii=False), encoding="utf-8")
    read = []
    for start, end in shard_ranges(path, num_shards, lambda r: "conversations" in r):
        records_of_range, reported = _read_reporting_offsets(path, start, end)
        offsets = [offset for offset, _ in reported]
        assert len(offsets) > 3 and offsets == sorted(set(offsets)) and offsets[0] > start and offsets[-1] == end
        for offset, handed_over in reported:  # a record boundary, with exactly the records before it handed over
            rest = list(iter_json_array(path, offset, end)) if offset < end else []
            assert 0 < handed_over and rest == records_of_range[handed_over:]
        read += records_of_range
    assert read == records


def test_iter_records_decodes_a_well_formed_file_without_the_streaming_reader(tmp_path, small_slices, monkeypatch):
    records = _records(100)
    path = tmp_path / "release.json"
    path.write_text(json.dumps(records, indent=2, ensure_ascii=False), encoding="utf-8")
    ranges = shard_ranges(path, 2, lambda r: "conversations" in r)

    def streaming(*args):
        raise AssertionError(f"fell back to the streaming reader: {args}")

    monkeypatch.setattr("hub_llava.data.reader.iter_json_array", streaming)
    assert [r for s, e in ranges for r in iter_records(path, s, e, lambda r: "conversations" in r)] == records


@pytest.mark.parametrize(
    "text",
    [
        '[{"id": "1"},\n{"id": "2", "conv',
        '[{"id": "1"},\n',
        '[{"id": "1"},\n{"id": tru}]',
        '{"id": "1"}',
        '[{"id": "1"}] trailing',
        '[{"id": "1"}] \x0c',
        '[{"id": "1"} {"id": "2"}]',
        '[{"id": "1"}, ]',
        '[, {"id": "1"}]',
        "",
        " [ ]\n",
        "\ufeff[{}]",
        # Values only the stdlib accepts or reads differently: they must come out as the stdlib's.
        '[{"id": 123456789012345678901234567890}, {"id": -9223372036854775809}]',
        '[{"id": 18446744073709551615, "x": 1e400, "y": NaN, "z": -Infinity}]',
        '[{"id": "1", "id": "2", "a": 1, "id": "3"}]',
        '[{"text": "\\ud800 lone surrogate"}, {"f": [0.1, 2.5e-324, -0.0, -0]}]',
    ],
)
def test_iter_records_ends_as_the_streaming_reader(tmp_path, small_slices, text):
    path = tmp_path / "bad.json"
    path.write_text(text)
    assert _outcome(iter_records, path) == _outcome(iter_json_array, path)
    if text.startswith("["):  # the same after 20 good records (~6 KB, several slices)
        path.write_text("[" + "".join(f'{{"id": "{i}", "pad": "{"p" * 300}"}}, ' for i in range(20)) + text[1:])
        assert _outcome(iter_records, path) == _outcome(iter_json_array, path)


def test_iter_records_errors_name_the_position_after_good_slices(tmp_path, small_slices):
    good = ",\n".join(json.dumps(r) for r in _records(40))
    path = tmp_path / "bad.json"
    path.write_text("[" + good + ',\n{"id": "x", "conversations": [}]')
    outcome = _outcome(iter_records, path)
    assert outcome == _outcome(iter_json_array, path)
    assert outcome.startswith("ReleaseFileError: ") and "invalid JSON (Expecting value)" in outcome
    path.write_text("[" + good + ',\n{"id": "x", "conversations": [], "bad": "\xff"}]', encoding="latin-1")
    with pytest.raises(UnicodeDecodeError):
        list(iter_records(path))
    assert _outcome(iter_records, path) == _outcome(iter_json_array, path)


def test_iter_records_keeps_big_ints_in_a_record_file(tmp_path, small_slices):
    records = _records(60)
    records[50]["id"] = 2**70  # an integer orjson would read as a float
    path = tmp_path / "release.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    read = list(iter_records(path))
    assert read == records and read[50]["id"] == 2**70 and type(read[50]["id"]) is int


def test_iter_records_proves_a_misaligned_range(tmp_path, small_slices):
    text = json.dumps(_records(50), indent=2)
    path = tmp_path / "cut.json"
    path.write_text(text)
    start, end = shard_ranges(path, 2, lambda r: "conversations" in r)[0]
    for bad_end in (end - 5, end + 5):
        assert _outcome(iter_records, path, start, bad_end) == _outcome(iter_json_array, path, start, bad_end)
        assert "shard boundary does not fall between records" in _outcome(iter_records, path, start, bad_end)
