"""tinyinterp.io.jsonl: fsynced appends, torn-tail repair, strict vs tolerant reads, dedupe by key."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyinterp.errors import DataError
from tinyinterp.io.jsonl import (
    AppendLog, append_jsonl, compact, iter_jsonl, read_jsonl, read_records, repair_torn_tail, scan_jsonl, write_jsonl,
)

records_st = st.lists(st.fixed_dictionaries({"id": st.integers(0, 5), "text": st.text(max_size=20)}), max_size=12)


@settings(max_examples=60, deadline=None)
@given(records=records_st, cut=st.integers(min_value=0))
def test_a_kill_at_any_byte_leaves_a_prefix_of_whole_records_after_repair(tmp_path_factory, records, cut):
    path = tmp_path_factory.mktemp("log") / "log.jsonl"
    for r in records:
        append_jsonl(path, r, fsync=False)
    data = path.read_bytes() if path.exists() else b""
    path.write_bytes(data[: cut % (len(data) + 1)])  # the process died after this many bytes
    read_before = read_jsonl(path)  # readers tolerate the torn tail without repairing it
    removed = repair_torn_tail(path)
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n")
    assert removed == len(data[: cut % (len(data) + 1)]) - len(text.encode())
    after = read_jsonl(path)
    assert after == records[: len(after)] and read_before[: len(after)] == after


def test_strict_read_refuses_a_damaged_middle_line_and_names_it(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 1}\nnot json\n{"step": 3}\n[1, 2]\n{"step": 5', encoding="utf-8")
    with pytest.raises(DataError, match=r"m\.jsonl:2: not valid JSON"):
        read_jsonl(path)
    assert [r["step"] for r in read_jsonl(path, skip_bad=True)] == [1, 3]  # line 4 is not an object, 5 torn
    contents = scan_jsonl(path)
    assert contents.skipped == [2, 4, 5] and contents.torn_tail
    assert [r["step"] for r in iter_jsonl(path)] == [1, 3]


def test_a_complete_last_line_without_newline_is_kept_and_a_missing_file_is_empty(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}', encoding="utf-8")
    assert [r["step"] for r in read_jsonl(path)] == [1, 2]
    assert not scan_jsonl(path).torn_tail
    assert read_jsonl(tmp_path / "absent.jsonl") == [] and list(iter_jsonl(tmp_path / "absent.jsonl")) == []
    assert repair_torn_tail(tmp_path / "absent.jsonl") == 0


def test_dedupe_keeps_the_first_record_of_each_key_and_compact_rewrites_once(tmp_path):
    path = tmp_path / "s.jsonl"
    write_jsonl(path, [{"id": "a", "v": 1}, {"id": "b", "v": 2}, {"id": "a", "v": 3}, {"v": 4}])
    with open(path, "a", encoding="utf-8") as f:
        f.write("garbage\n")
    assert {k: r["v"] for k, r in read_records(path).items()} == {"a": 1, "b": 2}
    assert compact(path) == 3
    assert [json.loads(line)["v"] for line in path.read_text().splitlines()] == [1, 2]
    assert compact(path) == 0


def test_append_log_repairs_a_torn_tail_before_its_first_record(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"id": 1}\n{"id": 2, "te', encoding="utf-8")
    with AppendLog(path) as log:
        log.append({"id": 3, "text": "Lily – ünïcode"})
    assert [r["id"] for r in read_jsonl(path)] == [1, 3]
    assert "ünïcode" in path.read_text(encoding="utf-8")  # kept as text, not \\u escapes
    lazy = tmp_path / "errors.jsonl"
    AppendLog(lazy, lazy=True).close()
    assert not lazy.exists()  # a lazy log that never appended leaves no empty file
