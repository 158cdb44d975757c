"""Which files a push sends, and progress reports while httpx reads them."""

from __future__ import annotations

import io
import os
from pathlib import Path

import httpx
import pytest

from modelbay.client.uploads import ProgressReader, UploadProgress, collect_files


def test_file_is_sent_under_its_own_name(tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(b"x")
    assert collect_files(model) == [("model.onnx", model)]


def test_directory_sends_every_file_with_its_posix_relative_path(tmp_path: Path) -> None:
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    for rel in ("model.pt", "sub/config.json", "sub/deeper/vocab.txt"):
        (tmp_path / rel).write_text(rel)
    names = [rel for rel, _ in collect_files(tmp_path)]
    assert names == ["model.pt", "sub/config.json", "sub/deeper/vocab.txt"]


def test_missing_path_or_empty_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no file or directory"):
        collect_files(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="contains no files"):
        collect_files(tmp_path)


def test_reads_of_several_files_report_a_running_total() -> None:
    reports: list[tuple[int, int]] = []
    progress = UploadProgress(total=10, callback=lambda sent, total: reports.append((sent, total)))
    first = ProgressReader(io.BytesIO(b"abcdef"), progress)
    second = ProgressReader(io.BytesIO(b"ghij"), progress)
    assert first.read(4) == b"abcd"
    assert first.read(4) == b"ef"
    assert first.read(4) == b""
    assert second.read() == b"ghij"
    assert reports == [(4, 10), (6, 10), (10, 10)]


def test_rewinding_for_a_resend_moves_the_total_back_without_a_report() -> None:
    reports: list[int] = []
    progress = UploadProgress(total=6, callback=lambda sent, _: reports.append(sent))
    reader = ProgressReader(io.BytesIO(b"abcdef"), progress)
    reader.read()
    assert reader.seek(0, os.SEEK_END) == 6
    assert reader.seek(0) == 0
    assert progress.sent == 0
    reader.read(3)
    assert reports == [6, 3]


def test_httpx_sees_the_real_file_size_through_the_reader(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"0" * 1000)
    with path.open("rb") as file:
        reader = ProgressReader(file, UploadProgress(1000, None))
        request = httpx.Request(
            "POST", "http://test/upload", files=[("files", ("model.bin", reader))]
        )
        assert int(request.headers["Content-Length"]) > 1000
        assert b"0" * 1000 in request.read()
