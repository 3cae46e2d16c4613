"""SST-2 files: reading GLUE TSVs, bad files, and the verified download path (against a local HTTP server)."""

from __future__ import annotations

import functools
import http.server
import io
import threading
import zipfile

import pytest

from roberta_infer.data import SHA256, bpe_dir, download, read_sst2, read_utf8, sha256_file, sst2_file
from roberta_infer.errors import RobertaInferError
from roberta_infer.tokenise import FairseqDictionary


def test_reads_official_splits(shared_data):
    dev = read_sst2(sst2_file(shared_data, "dev"))
    assert len(dev.sentences) == 872 and dev.labels.count("1") == 444 and dev.labels.count("0") == 428
    assert dev.sentences[0] == "it 's a charming and often affecting journey ."
    test = read_sst2(sst2_file(shared_data / "SST-2", "test"))
    assert len(test.sentences) == 1821 and test.labels is None


def test_official_files_match_their_sums(shared_data):
    for name, digest in SHA256.items():
        assert sha256_file(shared_data / name) == digest, name


def test_bad_tsv_files(tmp_path):
    bad_header = tmp_path / "dev.tsv"
    bad_header.write_text("text\tlabel\nfine\t1\n")
    with pytest.raises(RobertaInferError, match="not SST-2's"):
        read_sst2(bad_header)
    bad_header.write_bytes(b"sentence\tlabel\ngood\t1\nbad \xff byte\t0\n")
    with pytest.raises(RobertaInferError, match="line 3: not valid UTF-8"):
        read_sst2(bad_header)
    bad_header.write_text("sentence\tlabel\nno label here\n")
    with pytest.raises(RobertaInferError, match="line 2: expected 2 tab-separated fields"):
        read_sst2(bad_header)
    bad_header.write_text("sentence\tlabel\nmaybe\t2\n")
    with pytest.raises(RobertaInferError, match="label '2'"):
        read_sst2(bad_header)
    with pytest.raises(RobertaInferError, match="not found"):
        sst2_file(tmp_path / "missing", "dev")
    with pytest.raises(RobertaInferError, match="unknown split"):
        sst2_file(tmp_path, "validation")


def test_windows_files_byte_order_mark_and_utf16(tmp_path, shared_data):
    plain = (shared_data / "SST-2" / "dev.tsv").read_bytes()
    marked = tmp_path / "dev.tsv"
    marked.write_bytes(b"\xef\xbb\xbf" + plain.replace(b"\n", b"\r\n"))
    official = read_sst2(shared_data / "SST-2" / "dev.tsv")
    windows = read_sst2(marked)
    assert (windows.sentences, windows.labels) == (official.sentences, official.labels)
    assert read_utf8(marked).startswith("sentence\tlabel")
    marked.write_text("sentence\tlabel\nfine\t1\n", encoding="utf-16")
    with pytest.raises(RobertaInferError, match="is UTF-16 text, not UTF-8"):
        read_sst2(marked)
    dictionary = tmp_path / "dict.txt"
    dictionary.write_bytes(b"\xef\xbb\xbf1 5\n0 3\n")
    assert FairseqDictionary.load(dictionary, add_mask=False).symbols[4:] == ["1", "0"]


def test_bpe_dir_falls_back_to_verified_package_copy(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBERTA_INFER_DATA", str(tmp_path))
    found = bpe_dir()
    assert sha256_file(found / "encoder.json") == SHA256["gpt2_bpe/encoder.json"]
    with pytest.raises(RobertaInferError, match="encoder.json"):
        bpe_dir(tmp_path)


@pytest.fixture
def mirror(tmp_path, shared_data):
    """A local HTTP server laid out like the official hosts, serving the shared reference files."""
    root = tmp_path / "www"
    (root / "glue" / "data").mkdir(parents=True)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        for split in ("train", "dev", "test"):
            z.write(shared_data / "SST-2" / f"{split}.tsv", f"SST-2/{split}.tsv")
    (root / "glue" / "data" / "SST-2.zip").write_bytes(archive.getvalue())
    (root / "fairseq" / "gpt2_bpe").mkdir(parents=True)
    for name in ("encoder.json", "vocab.bpe", "dict.txt"):
        (root / "fairseq" / "gpt2_bpe" / name).write_bytes((shared_data / "gpt2_bpe" / name).read_bytes())
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_download_verifies_files(tmp_path, mirror):
    root, url = mirror
    dest = download(tmp_path / "data", url)
    for name, digest in SHA256.items():
        assert sha256_file(dest / name) == digest
    (root / "fairseq" / "gpt2_bpe" / "dict.txt").write_text("tampered 1\n")
    with pytest.raises(RobertaInferError, match="dict.txt has sha256 .* refusing"):
        download(tmp_path / "data2", url)
    assert not (tmp_path / "data2").exists(), "nothing is written unless every file verifies"
    with pytest.raises(RobertaInferError, match="download of .* failed"):
        download(tmp_path / "data3", url + "/nothing-here")
