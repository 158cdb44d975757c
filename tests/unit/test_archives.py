"""Archive extraction: traversal, links, special files, duplicates and bombs are refused."""

from __future__ import annotations

import io
import stat
import tarfile
import time
import warnings
import zipfile
from pathlib import Path

import pytest
from tests.archives import MIB, zip_of_zeros

from modelbay.archives import extract, safe_relative_path
from modelbay.errors import InvalidRequest, PayloadTooLarge

LIMITS = {"max_bytes": 10 * MIB, "max_files": 100}
TREE = {"model.onnx": b"onnx bytes", "docs/README.txt": b"read me", "a/b/c/data.bin": b"\x00\x01"}


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def make_tar(path: Path, members: list[tarfile.TarInfo], mode: str = "w:gz") -> Path:
    """A tar of ``members``; regular files get ``size`` zero bytes as data."""
    with tarfile.open(path, mode) as archive, open("/dev/zero", "rb") as zeros:
        for member in members:
            archive.addfile(member, zeros if member.isreg() else None)
    return path


def tar_member(
    name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, **attrs: str
) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type = kind
    member.size = size
    for key, value in attrs.items():
        setattr(member, key, value)
    return member


def refused(archive: Path, dest: Path, error: type[Exception], **limits: int) -> str:
    """Extract expecting ``error``; checks nothing is left behind and returns the message."""
    with pytest.raises(error) as caught:
        extract(archive, dest, **{**LIMITS, **limits})
    assert list(dest.iterdir()) == []
    return str(caught.value)


def test_zip_with_nested_directories_extracts_every_file(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "good.zip", {**TREE, "empty/": b""})
    paths = extract(archive, tmp_path / "out", **LIMITS)
    assert paths == sorted(TREE)
    for name, data in TREE.items():
        assert (tmp_path / "out" / name).read_bytes() == data
    assert (tmp_path / "out" / "empty").is_dir()


def test_tar_gz_with_nested_directories_extracts_every_file(tmp_path: Path) -> None:
    path = tmp_path / "good.tgz"
    with tarfile.open(path, "w:gz") as archive:
        archive.addfile(tar_member("a/b", tarfile.DIRTYPE))
        for name, data in TREE.items():
            archive.addfile(tar_member(name, size=len(data)), io.BytesIO(data))
    assert extract(path, tmp_path / "out", **LIMITS) == sorted(TREE)
    for name, data in TREE.items():
        assert (tmp_path / "out" / name).read_bytes() == data


def test_type_is_told_by_content_and_nested_archives_stay_files(tmp_path: Path) -> None:
    inner = make_zip(tmp_path / "inner.zip", {"x.txt": b"x"}).read_bytes()
    disguised = make_zip(tmp_path / "model.tar.gz", {"weights/inner.zip": inner})
    assert extract(disguised, tmp_path / "out", **LIMITS) == ["weights/inner.zip"]
    assert (tmp_path / "out" / "weights" / "inner.zip").read_bytes() == inner


@pytest.mark.parametrize(
    "name", ["../../evil", "a/../../evil", "/etc/evil", "..\\..\\evil", "C:/evil", "C:evil"]
)
@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_member_escaping_the_destination_is_refused_by_name(
    tmp_path: Path, name: str, kind: str
) -> None:
    if kind == "zip":
        archive = make_zip(tmp_path / "slip", {"ok.txt": b"ok", name: b"evil"})
    else:
        archive = make_tar(
            tmp_path / "slip", [tar_member("ok.txt", size=2), tar_member(name, size=4)]
        )
    dest = tmp_path / "x" / "y" / "out"
    message = refused(archive, dest, InvalidRequest)
    assert name in message
    assert not (tmp_path / "evil").exists()
    assert not (tmp_path / "x" / "evil").exists()


@pytest.mark.parametrize(
    ("member", "kind"),
    [
        (tar_member("link", tarfile.SYMTYPE, linkname="/etc/passwd"), "symbolic link"),
        (tar_member("inside", tarfile.SYMTYPE, linkname="ok.txt"), "symbolic link"),
        (tar_member("hard", tarfile.LNKTYPE, linkname="ok.txt"), "hard link"),
        (tar_member("dev", tarfile.CHRTYPE), "device file"),
        (tar_member("disk", tarfile.BLKTYPE), "device file"),
        (tar_member("pipe", tarfile.FIFOTYPE), "FIFO"),
    ],
)
def test_tar_links_and_special_files_are_refused(
    tmp_path: Path, member: tarfile.TarInfo, kind: str
) -> None:
    archive = make_tar(tmp_path / "special.tar", [tar_member("ok.txt", size=2), member], "w")
    message = refused(archive, tmp_path / "out", InvalidRequest)
    assert f"'{member.name}' is a {kind}" in message


def test_zip_symlink_is_refused(tmp_path: Path) -> None:
    link = zipfile.ZipInfo("link")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(tmp_path / "link.zip", "w") as archive:
        archive.writestr(link, "/etc/passwd")
    message = refused(tmp_path / "link.zip", tmp_path / "out", InvalidRequest)
    assert "'link' is a symbolic link" in message


def test_a_path_given_twice_or_as_file_and_directory_is_refused(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns of the duplicate name
        with zipfile.ZipFile(tmp_path / "dup.zip", "w") as archive:
            archive.writestr("a.txt", "first")
            archive.writestr("./a.txt", "second")
    assert "a second time" in refused(tmp_path / "dup.zip", tmp_path / "out", InvalidRequest)
    clash = make_zip(tmp_path / "clash.zip", {"a": b"file", "a/b": b"under a file"})
    assert "'a/b'" in refused(clash, tmp_path / "out", InvalidRequest)


def test_zip_bomb_stops_at_max_bytes_and_leaves_nothing(tmp_path: Path) -> None:
    bomb = zip_of_zeros(tmp_path / "bomb.zip", 200)
    assert bomb.stat().st_size < 1 * MIB
    started = time.monotonic()
    message = refused(bomb, tmp_path / "out", PayloadTooLarge)
    assert "more than 10485760 bytes" in message
    assert "'zeros.bin'" in message
    assert time.monotonic() - started < 5  # stopped at the limit, not after 200 MB


def test_tar_gz_bomb_stops_at_max_bytes(tmp_path: Path) -> None:
    bomb = make_tar(tmp_path / "bomb.tgz", [tar_member("zeros.bin", size=20 * MIB)])
    assert "'zeros.bin'" in refused(bomb, tmp_path / "out", PayloadTooLarge)


def test_more_entries_than_max_files_is_refused(tmp_path: Path) -> None:
    many = make_zip(tmp_path / "many.zip", {f"f{i}.txt": b"x" for i in range(11)})
    assert "more than 10 entries" in refused(many, tmp_path / "out", PayloadTooLarge, max_files=10)
    tar = make_tar(tmp_path / "many.tar", [tar_member(f"f{i}") for i in range(11)])
    assert "more than 10 entries" in refused(tar, tmp_path / "out", PayloadTooLarge, max_files=10)


def test_zip_directory_too_big_for_max_files_is_refused_before_parsing(tmp_path: Path) -> None:
    many = make_zip(tmp_path / "many.zip", {f"{i:04}-{'n' * 200}": b"" for i in range(50)})
    assert "central directory" in refused(many, tmp_path / "out", PayloadTooLarge, max_files=5)


def test_oversized_tar_header_is_refused_before_it_is_read(tmp_path: Path) -> None:
    member = tar_member("ok.txt", size=2)
    member.pax_headers = {"comment": "x" * (2 * MIB)}
    archive = make_tar(tmp_path / "pax.tar", [member], "w")
    assert "tar headers" in refused(archive, tmp_path / "out", PayloadTooLarge)


def test_corrupt_member_and_non_archives_are_refused(tmp_path: Path) -> None:
    good = make_zip(tmp_path / "good.zip", {"data.bin": bytes(range(256)) * 64})
    data = bytearray(good.read_bytes())
    data[100] ^= 0xFF  # inside the deflated data of the only member
    (tmp_path / "bad.zip").write_bytes(data)
    assert "'data.bin' cannot be read" in refused(
        tmp_path / "bad.zip", tmp_path / "o", InvalidRequest
    )
    (tmp_path / "plain.onnx").write_bytes(b"not an archive" * 100)
    message = refused(tmp_path / "plain.onnx", tmp_path / "out", InvalidRequest)
    assert "not a .zip, .tar or .tar.gz" in message


@pytest.mark.parametrize(
    "path",
    [
        "a" * 256 + ".onnx",  # a name no Linux filesystem holds: the upload answered 500
        "é" * 128 + ".bin",  # 256 bytes in UTF-8
        "d/" * 520 + "m.onnx",  # over the registry's 1,024 characters
    ],
)
def test_paths_too_long_to_store_are_refused_naming_the_limit(path: str) -> None:
    with pytest.raises(InvalidRequest, match="is too long: at most 1024 characters"):
        safe_relative_path(path)
    longest_allowed = "d/" * 384 + "a" * 255  # 1,023 characters, a name of 255 bytes
    assert safe_relative_path(longest_allowed) == longest_allowed


def test_a_member_path_too_long_is_refused_in_an_archive(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "long.zip", {"a" * 300: b"x"})
    with pytest.raises(InvalidRequest, match="too long"):
        extract(archive, tmp_path / "out", **LIMITS)
