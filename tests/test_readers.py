"""The input readers (txt, jsonl, json, csv, tsv, parquet; prepare's SST-2 TSV) and serve's request parsers.

Examples for each reported bug, then properties (hypothesis): texts written by the stdlib's or pyarrow's own writer
read back the same, in order, whatever the shard size (nothing lost, nothing duplicated); any bytes give records or
one RobertaInferError (the parsers: their documented error), never another exception.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
import random
import re
import struct
import tempfile
import warnings
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roberta_infer.classify.job import expand_inputs
from roberta_infer.data import DELIMITERS, read_sst2
from roberta_infer.errors import RobertaInferError
from roberta_infer.readers import plan, read, read_texts
from roberta_infer.readers.csv import file_records, parsed_record_starts, quoted_record_starts
from roberta_infer.serve.limits import Limits
from roberta_infer.serve.requests import ApiError, check_texts
from roberta_infer.serve.v1 import parse_texts
from roberta_infer.serve.v2 import ProtocolError, encode_bytes_tensor, parse_infer_request

PROPERTY = settings(max_examples=50, deadline=None, derandomize=True)  # the same examples every run: no flakes


def records_of(path: Path, text_field: str = "text", shard_size: int = 3) -> tuple[list, list, list]:
    """(ids, texts, errors) of every span of `path`, in order."""
    ids, texts, errors = [], [], []
    for span in plan(path, text_field, shard_size):
        records = read(span, text_field)
        ids += records.ids
        texts += records.texts
        errors += records.errors
    return ids, texts, errors


# ---------------------------------------------------------------- CSV and TSV by RFC 4180


@pytest.mark.parametrize("shard_size", [1, 2, 10])
def test_csv_records_spanning_lines_are_one_record_each_in_any_shard(tmp_path, shard_size):
    """A quoted field holding newlines, quotes and commas is one record (RFC 4180), numbered by its first line; no
    shard cut falls inside it, so no record is lost, split or read twice ("changed while the job ran" before)."""
    path = tmp_path / "a.csv"
    path.write_bytes(b'id,text\n1,"two\nlines, ""quoted"""\n2,plain\n3,"three\r\nli\nnes"\n4,last\n')
    ids, texts, errors = records_of(path, shard_size=shard_size)
    assert texts == ['two\nlines, "quoted"', "plain", "three\r\nli\nnes", "last"]
    assert ids == [f"{path}:{line}" for line in (2, 4, 5, 8)] and errors == [None] * 4


def test_tsv_quoted_like_csv_and_glue_tsv_read_as_cut_does(tmp_path, shared_data):
    path = tmp_path / "a.tsv"
    path.write_bytes(b'text\tn\n"tab\there\nand newline"\t1\nsaid "hi" plainly\t2\n')
    assert records_of(path)[1] == ["tab\there\nand newline", 'said "hi" plainly']
    dev = shared_data / "SST-2" / "dev.tsv"  # fairseq's GLUE recipe reads it with `cut -f1`: the oracle
    lines = dev.read_text(encoding="utf-8").splitlines()[1:]
    assert read_sst2(dev).sentences == [line.split("\t")[0].strip() for line in lines]


def test_sst2_tsv_with_a_quoted_newline(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_bytes(b'sentence\tlabel\n"a film\nin two lines "\t1\nplain\t0\nbad\t2\n')
    with pytest.raises(RobertaInferError, match="train.tsv line 5: label '2' is not 0 or 1"):
        read_sst2(path)
    path.write_bytes(b'sentence\tlabel\n"a film\nin two lines "\t1\nplain\t0\n')
    split = read_sst2(path)
    assert split.sentences == ["a film\nin two lines", "plain"] and split.labels == ["1", "0"]


@pytest.mark.parametrize("content, message", [
    (b"text,n,text\nx,1,y\n", "a.csv line 1: column 'text' named more than once (columns: text, n, text)"),
    (b"n,n,text\n1,2,x\n", "a.csv line 1: column 'n' named more than once"),
    (b"body,n\nx,1\n", "a.csv line 1: no column 'text' (columns: body, n)"),
    (b"\n", "a.csv line 1: no header"),
    (b"", "a.csv line 1: no header"),
])
def test_bad_csv_header_is_one_clear_error(tmp_path, content, message):
    (tmp_path / "a.csv").write_bytes(content)
    with pytest.raises(RobertaInferError) as error:
        plan(tmp_path / "a.csv", "text", 10)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_bare_carriage_return_ends_a_csv_record_and_a_line(tmp_path):
    """As `csv` reads a file opened with newline="" (old Mac line ends); ids stay unique."""
    path = tmp_path / "a.csv"
    path.write_bytes(b'text\rone\r"two\rlines"\nthree\n')
    for shard_size in (1, 2):
        ids, texts, _ = records_of(path, shard_size=shard_size)
        assert texts == ["one", "two\rlines", "three"] and ids == [f"{path}:{line}" for line in (2, 3, 5)]


def test_csv_record_with_missing_or_extra_fields_is_that_records_error(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes(b'text,n\nfine,1\nmissing\n"extra\nfield",2,3\nalso fine,4\n')
    ids, texts, errors = records_of(path)
    assert texts == ["fine", None, None, "also fine"]
    assert errors[1] == f"{path} line 3: expected 2 fields, found 1"
    assert errors[2] == f"{path} line 4: expected 2 fields, found 3"


# ---------------------------------------------------------------- files that are not text


def gzip_of(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def zip_of(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("a.csv", data)
    return buffer.getvalue()


def parquet_bytes() -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.table({"text": ["a"]}), buffer)
    return buffer.getvalue()


NOT_TEXT = {
    "gzip": (gzip_of(b"text\nfine\n"), "is gzip-compressed, not text: decompress it first (`gunzip "),
    "bzip2": (bz2.compress(b"text\nfine\n"), "is bzip2-compressed, not text"),
    "xz": (lzma.compress(b"text\nfine\n"), "is xz-compressed, not text"),
    "zip": (zip_of(b"text\nfine\n"), "is zip-compressed, not text"),
    "parquet": (parquet_bytes(), "is a Parquet file, not text: name it .parquet"),
    "random bytes": (random.Random(0).randbytes(4096), "is binary data, not text (NUL bytes, and bytes that are not UTF-8)"),
    "one NUL": (b"text\nfine\nnul \x00 here\n", "line 3 holds a NUL byte: binary data, not UTF-8 text"),
    "UTF-16 with a mark": ("text\nfine\n".encode("utf-16"), "is UTF-16 text, not UTF-8"),
    "UTF-16 without": ("text\nfine\n".encode("utf-16-le"), "is UTF-16 text, not UTF-8"),
    "UTF-16 big-endian": ("text\nfine\n".encode("utf-16-be"), "is UTF-16 text, not UTF-8"),
}


@pytest.mark.parametrize("suffix", [".txt", ".jsonl", ".csv", ".tsv", ".json", ".dat"])
@pytest.mark.parametrize("case", NOT_TEXT)
def test_a_file_that_is_not_text_is_named_for_what_it_is(tmp_path, case, suffix):
    """Compressed, binary, NUL-bearing and UTF-16 files are told apart (all were "UTF-16 text" before)."""
    content, message = NOT_TEXT[case]
    path = tmp_path / f"in{suffix}"
    path.write_bytes(content)
    for call in ([lambda: read_texts(path)] + ([lambda: plan(path, "text", 10)] if suffix != ".dat" else [])):
        with pytest.raises(RobertaInferError) as error:
            call()
        assert f"{path} {message}" in str(error.value) and "\n" not in str(error.value)


def test_a_lone_surrogate_escape_in_json_is_that_records_error(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"text": "fine"}\n{"text": "bad \\ud800"}\n{"text": "ok", "note": "\\udc00"}\n{"text": "also"}\n')
    ids, texts, errors = records_of(path)
    assert texts == ["fine", None, None, "also"]
    assert errors[1:3] == [f"{path} line {i}: not valid Unicode (an unpaired surrogate escape)" for i in (2, 3)]


def test_latin1_text_is_not_utf8_on_its_line(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"fine\ncaf\xe9\n")
    with pytest.raises(RobertaInferError, match="a.txt line 2: not valid UTF-8"):
        read_texts(path)
    assert records_of(path)[2][1].startswith(f"{path} line 2: not valid UTF-8")


def test_a_folders_unreadable_files_are_named_in_one_warning(tmp_path):
    (tmp_path / "a.txt").write_text("one\n")
    (tmp_path / "b.json").write_text('["two"]')
    (tmp_path / "c.csv.gz").write_bytes(gzip_of(b"text\nthree\n"))
    (tmp_path / "notes.md").write_text("# mine\n")
    (tmp_path / "_SUCCESS").write_text("{}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        files = expand_inputs([str(tmp_path)])
    assert files == [tmp_path / "a.txt", tmp_path / "b.json"]
    assert len(caught) == 1
    message = str(caught[0].message)
    assert message.startswith("2 files in the input folders are not read")
    assert f"{tmp_path / 'c.csv.gz'} (gzip-compressed: decompress it first)" in message
    assert f"{tmp_path / 'notes.md'} (unknown extension '.md')" in message and "_SUCCESS" not in message
    with pytest.raises(RobertaInferError, match="c.csv.gz: gzip-compressed: decompress it first"):
        expand_inputs([str(tmp_path / "c.csv.gz")])


# ---------------------------------------------------------------- .json arrays


def test_json_array_of_strings_or_objects(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps(["first", "second, with a comma"]))
    ids, texts, errors = records_of(path, shard_size=1)
    assert texts == ["first", "second, with a comma"] and ids == [f"{path}:1", f"{path}:2"]
    path.write_text(json.dumps([{"review": "good", "n": 1}, {"review": "bad", "n": 2}, {"other": "x"}, 7]))
    ids, texts, errors = records_of(path, text_field="review", shard_size=2)
    assert texts == ["good", "bad", None, None]
    assert errors[2].startswith(f"{path} element 3: no field 'review'")
    assert errors[3] == f"{path} element 4: a JSON number, not a string or an object"


@pytest.mark.parametrize("content, message", [
    ('{"texts": ["a"]}', "a.json holds a JSON object, not an array"),
    ('"just one"', "a.json holds a JSON string, not an array"),
    ('["a",\n "b"', "a.json line 2: not valid JSON"),
    ('{"text": "a"}\n{"text": "b"}\n', "a.json line 2: not valid JSON (Extra data"),
])
def test_json_that_is_not_an_array_is_refused_in_one_line(tmp_path, content, message):
    (tmp_path / "a.json").write_text(content)
    for call in (lambda: read_texts(tmp_path / "a.json"), lambda: plan(tmp_path / "a.json", "text", 10)):
        with pytest.raises(RobertaInferError) as error:
            call()
        assert message in str(error.value) and "\n" not in str(error.value)


# ---------------------------------------------------------------- empty and blank texts

BLANKS = ["", " ", "\t  ", "\u00a0", "\u2028", "\u2029", "\u3000", "\u200b", "\ufeff ", "\u2003\u205f\u1680"]


def write_format(path: Path, texts: list[str], *, extra: bool = True) -> None:
    """`texts` as a file of `path`'s format, through the stdlib's or pyarrow's own writer (field "text")."""
    kind = path.suffix[1:]
    if kind == "txt":
        path.write_text("".join(t + "\n" for t in texts), encoding="utf-8", newline="")
    elif kind == "jsonl":
        path.write_text("".join(json.dumps({"text": t, "n": i}) + "\n" for i, t in enumerate(texts)), encoding="utf-8")
    elif kind == "json":
        path.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
    elif kind in ("csv", "tsv"):
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, delimiter="," if kind == "csv" else "\t")
            writer.writerows([["n", "text"], *[[i, t] for i, t in enumerate(texts)]] if extra
                             else [["text"], *[[t] for t in texts]])
    else:
        pq.write_table(pa.table({"text": pa.array(texts, pa.string()), "n": pa.array(range(len(texts)), pa.int64())}),
                       path, row_group_size=2)


@pytest.mark.parametrize("kind", ["txt", "jsonl", "json", "csv", "tsv", "parquet"])
def test_blank_texts_are_errors_per_record_never_labels(tmp_path, kind):
    path = tmp_path / f"a.{kind}"
    texts = ["fine"] + BLANKS + ["also fine"]
    write_format(path, texts)
    ids, read_back, errors = records_of(path)
    assert read_back == ["fine"] + [None] * (len(texts) - 2) + ["also fine"]
    assert all(error and error.endswith("empty text (nothing but whitespace): nothing to classify")
               for error in errors[1:-1])
    with pytest.raises(RobertaInferError, match="empty text"):
        read_texts(path)


# Texts with separators, whitespace and zero-width characters around (and inside) them, and what is classified:
# the ends stripped in any mix (U+2028/U+2029 line and paragraph separators, U+0085 next line, NBSP, ideographic and
# em spaces, zero-width space/joiner, BOM, tab), what is inside kept.
SEPARATED = {
    "\u2028text\u2028": "text",
    "\u0085text\u0085": "text",
    "\u2029 two words\u00a0": "two words",
    "\ufeff\u200btext\u3000\u200d": "text",
    "\t\u2003in\u2028side\u205f\u200b ": "in\u2028side",
    "\u200b\u2060\u00a0a": "a",
}


def stripped(text: str) -> bool:
    """Whether `text` starts and ends with a character that is neither whitespace nor zero-width."""
    return bool(text) and all(not c.isspace() and c not in "\u200b\u200c\u200d\u2060\ufeff" for c in (text[0], text[-1]))


@pytest.mark.parametrize("kind", ["txt", "jsonl", "json", "csv", "tsv", "parquet"])
def test_texts_are_stripped_of_unicode_separators(tmp_path, kind):
    path = tmp_path / f"a.{kind}"
    write_format(path, list(SEPARATED))
    ids, texts, errors = records_of(path)
    assert texts == list(SEPARATED.values()) and errors == [None] * len(SEPARATED)
    assert read_texts(path) == list(SEPARATED.values())


def test_prepares_tsv_and_serves_parsers_strip_the_same(tmp_path):
    path = tmp_path / "dev.tsv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, delimiter="\t").writerows([["sentence", "label"], *[[t, "1"] for t in SEPARATED]])
    assert read_sst2(path).sentences == list(SEPARATED.values())
    assert parse_texts(json.dumps({"texts": list(SEPARATED)}).encode(), LIMITS) == list(SEPARATED.values())
    assert parse_texts(json.dumps({"text": "\u2028text\u2028"}).encode(), LIMITS) == ["text"]
    # v2: the parser reads the tensor as sent; the service checks it with `check_texts` as v1 does
    tensor = {"name": "text", "datatype": "BYTES", "shape": [len(SEPARATED)], "data": list(SEPARATED)}
    request = parse_infer_request(json.dumps({"inputs": [tensor]}).encode(), None)
    assert check_texts(request.texts, LIMITS, "input", str) == list(SEPARATED.values())
    with open(path, "a", newline="", encoding="utf-8") as f:  # kept, empty, as fairseq's preprocessing keeps it
        f.write("\u2028\u200b\u00a0\t1\n")
    assert read_sst2(path).sentences[-1] == ""


# ---------------------------------------------------------------- properties: round trips

# A text from any Unicode but lone surrogates and NUL, between visible characters (so never blank, nothing stripped:
# stripping is `test_texts_are_stripped_of_unicode_separators`'s).
ANY_CHAR = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
VISIBLE = st.sampled_from("aZ€漢🙂,\"'")
TEXT = st.builds(lambda a, c, b: a + c + b, VISIBLE, st.text(ANY_CHAR, max_size=40), VISIBLE)
LINE_TEXT = TEXT.map(lambda t: t.replace("\n", " ").replace("\r", " "))  # one per line
TEXTS = st.lists(TEXT, max_size=12)


@PROPERTY
@given(texts=TEXTS, kind=st.sampled_from(["jsonl", "json", "csv", "tsv", "parquet"]), shard_size=st.integers(1, 5))
def test_texts_written_by_the_formats_own_writer_read_back_the_same(texts, kind, shard_size):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"in.{kind}"
        write_format(path, texts)
        ids, read_back, errors = records_of(path, shard_size=shard_size)
        assert read_back == texts and errors == [None] * len(texts) and len(set(ids)) == len(texts)
        assert read_texts(path) == texts


@PROPERTY
@given(texts=st.lists(LINE_TEXT, max_size=12), shard_size=st.integers(1, 5), bom=st.booleans())
def test_text_lines_read_back_the_same(texts, shard_size, bom):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "in.txt"
        path.write_bytes(b"\xef\xbb\xbf" * bom + "".join(t + "\n" for t in texts).encode("utf-8"))
        ids, read_back, errors = records_of(path, shard_size=shard_size)
        assert read_back == texts and ids == [f"{path}:{i}" for i in range(1, len(texts) + 1)]
        assert read_texts(path) == texts


@PROPERTY
@given(texts=st.lists(TEXT, max_size=12), shard_size=st.integers(1, 5), kind=st.sampled_from(["csv", "tsv"]))
def test_one_column_csv_reads_back_with_first_lines_as_ids(texts, shard_size, kind):
    """A record's id is the line its record starts on: the header's lines plus the lines of the records before, lines
    as `csv` and editors count them (broken by \\n, \\r\\n or a bare \\r)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"in.{kind}"
        write_format(path, texts, extra=False)
        ids, read_back, _ = records_of(path, shard_size=shard_size)
        assert read_back == texts
        buffer = io.StringIO(newline="")
        writer = csv.writer(buffer, delimiter="," if kind == "csv" else "\t")
        lines = [1]
        for text in ["text", *texts]:  # the line each record starts on, from the writer's own output
            before = buffer.tell()
            writer.writerow([text])
            lines.append(lines[-1] + len(re.findall("\r\n|\r|\n", buffer.getvalue()[before:])))  # universal newlines
        assert ids == [f"{path}:{line}" for line in lines[1:-1]]


@PROPERTY
@given(texts=st.lists(TEXT, max_size=12),
       labels=st.lists(st.sampled_from(["0", "1"]), min_size=12, max_size=12))
def test_sst2_tsv_reads_back_the_same(texts, labels):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "train.tsv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            csv.writer(f, delimiter="\t").writerows([["sentence", "label"], *zip(texts, labels)])
        split = read_sst2(path)
        assert split.sentences == texts and split.labels == labels[: len(texts)]


# ---------------------------------------------------------------- properties: any bytes


CONTENT = st.one_of(st.binary(max_size=200),
                    st.lists(st.sampled_from([b"text", b",", b"\t", b'"', b"\n", b"\r", b"\xff", b"\xc3", b"{", b"}",
                                              b"[", b"]", b":", b" ", b"a", b"\xe2\x80\xa8", b"\x00", b"\\u0000", b"\\ud800"]),
                             max_size=40).map(b"".join))


@PROPERTY
@given(content=CONTENT, kind=st.sampled_from(["txt", "jsonl", "json", "csv", "tsv", "parquet"]),
       shard_size=st.integers(1, 4))
def test_any_bytes_give_records_or_one_clear_error(content, kind, shard_size):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"in.{kind}"
        path.write_bytes(content)
        try:
            ids, texts, errors = records_of(path, shard_size=shard_size)
        except RobertaInferError as e:
            assert str(e) and "\n" not in str(e) and "changed while the job ran" not in str(e)
            return
        assert len(ids) == len(set(ids)) == len(texts) == len(errors)
        assert all((text is None) != (error is None) for text, error in zip(texts, errors))
        assert all(stripped(text) for text in texts if text is not None)
        if kind in ("txt", "jsonl"):  # one record per line, a final newline ending the last
            lines = content.removeprefix(b"\xef\xbb\xbf").split(b"\n")
            assert len(ids) == len(lines) - (lines[-1] == b"")


@PROPERTY
@given(content=CONTENT, kind=st.sampled_from(["txt", "jsonl", "json", "csv", "tsv", "dat"]))
def test_read_texts_of_any_bytes_gives_texts_or_one_clear_error(content, kind):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"in.{kind}"
        path.write_bytes(content)
        try:
            texts = read_texts(path)
        except RobertaInferError as e:
            assert str(e) and "\n" not in str(e)
            return
        assert all(isinstance(text, str) and stripped(text) for text in texts)


CSV_CONTENT = st.lists(st.sampled_from([b"a", b"b c", b",", b"\t", b'"', b'""', b"\n", b"\r\n", b"\r", b" ", b"\xc3\xa9"]),
                       max_size=60).map(b"".join)


@PROPERTY
@given(content=CSV_CONTENT, kind=st.sampled_from(["csv", "tsv"]), shard_size=st.integers(1, 4), bom=st.booleans(),
       block_size=st.sampled_from([1, 2, 3, 7, 1 << 20]))
def test_csv_quote_counting_plan_agrees_with_parsing_every_record(content, kind, shard_size, bom, block_size):
    """Where the fast plan (quotes counted with numpy, block by block) applies, its record starts (first line, first
    byte) and count are the csv module's."""
    content = b"\xef\xbb\xbf" * bom + b"text\n" + content
    fast = quoted_record_starts(io.BytesIO(content), len(content), DELIMITERS[kind], shard_size, block_size=block_size)
    records = file_records(io.BytesIO(content), kind, "in")
    next(records)
    assert fast is None or fast == parsed_record_starts(records, shard_size)


# ---------------------------------------------------------------- properties: serve's request parsers

LIMITS = Limits(max_texts_per_request=16, max_text_chars=100)
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                    max_leaves=12)


@PROPERTY
@given(texts=st.lists(TEXT, min_size=1, max_size=16), single=st.booleans())
def test_v1_parses_any_texts_back(texts, single):
    body = json.dumps({"text": texts[0]} if single else {"texts": texts}).encode()
    assert parse_texts(body, LIMITS) == (texts[:1] if single else texts)


@PROPERTY
@given(body=st.one_of(st.binary(max_size=100), JSON.map(lambda v: json.dumps(v).encode()),
                      st.dictionaries(st.sampled_from(["text", "texts", "other"]), JSON, max_size=2)
                      .map(lambda v: json.dumps(v).encode())))
def test_v1_any_body_gives_texts_or_an_api_error(body):
    try:
        texts = parse_texts(body, LIMITS)
    except ApiError as e:
        assert e.status in (400, 413, 422) and e.message and "\n" not in e.message
        return
    assert texts and all(isinstance(t, str) and stripped(t) for t in texts)


@PROPERTY
@given(texts=st.lists(TEXT, max_size=16), binary=st.booleans(), column=st.booleans())
def test_v2_parses_any_texts_back(texts, binary, column):
    shape = [len(texts), 1] if column else [len(texts)]
    tensor = {"name": "text", "datatype": "BYTES", "shape": shape}
    if binary:
        payload = encode_bytes_tensor(texts)
        header = json.dumps({"inputs": [tensor | {"parameters": {"binary_data_size": len(payload)}}]}).encode()
        request = parse_infer_request(header + payload, str(len(header)))
    else:
        data = [[t] for t in texts] if column else texts
        request = parse_infer_request(json.dumps({"inputs": [tensor | {"data": data}]}).encode(), None)
    assert request.texts == texts


def v2_document(shape, data, parameters, outputs, top) -> bytes:
    """A v2 request whose tensor fields and outputs are any JSON values."""
    tensor = {"name": "text", "datatype": "BYTES", "shape": shape, "data": data, "parameters": parameters}
    return json.dumps({"inputs": [tensor], "outputs": outputs, "parameters": top}).encode()


@PROPERTY
@given(header=st.one_of(st.binary(max_size=80), JSON.map(lambda v: json.dumps(v).encode()),
                        st.builds(v2_document, JSON | st.just([2]), JSON | st.just(["a", "b"]), JSON,
                                  JSON | st.just(None), JSON)),
       payload=st.binary(max_size=40), declared=st.booleans())
def test_v2_any_body_gives_a_request_or_a_protocol_error(header, payload, declared):
    body = header + payload if declared else header
    try:
        request = parse_infer_request(body, str(len(header)) if declared else None)
    except ProtocolError as e:
        assert str(e) and "\n" not in str(e)
        return
    assert all(isinstance(t, str) for t in request.texts)


def test_v2_binary_tensor_round_trip_with_struct():
    """The binary BYTES layout against Triton's binary_data.md, written here with struct (not our encoder)."""
    texts = ["a", "", "naïve"]
    payload = b"".join(struct.pack("<I", len(t.encode())) + t.encode() for t in texts)
    header = json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [3],
                                     "parameters": {"binary_data_size": len(payload)}}]}).encode()
    assert parse_infer_request(header + payload, str(len(header))).texts == texts
