"""CIDs, multihash/multibase and the strict dag-pb / UnixFS codec."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from colonymesh.fs.cid import (
    CODEC_DAG_PB,
    CODEC_RAW,
    Cid,
    Multihash,
    b32_decode,
    b58_decode,
    b58_encode,
    decode_varint,
    encode_varint,
)
from colonymesh.fs.errors import CidError, FsDecodeError, ProtobufError
from colonymesh.fs.importer import directory_node
from colonymesh.fs.pb import (
    DataType,
    PBLink,
    PBNode,
    UnixFsData,
    UnixTime,
    decode_pbnode,
    decode_unixfs,
    encode_pbnode,
    encode_unixfs,
)

EMPTY_RAW = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
EMPTY_DIR_V0 = "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
EMPTY_DIR_V1 = "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354"


def test_known_vectors() -> None:
    assert Cid.of(CODEC_RAW, b"").encode() == EMPTY_RAW
    entry, block = directory_node([])
    assert block.data == bytes.fromhex("0a020801")
    assert entry.cid.encode() == EMPTY_DIR_V1
    v0 = Cid.parse(EMPTY_DIR_V0)
    assert (v0.version, v0.codec) == (0, CODEC_DAG_PB)
    assert v0.encode() == EMPTY_DIR_V0
    assert v0.to_v1() == entry.cid
    assert v0.verify(block.data)
    assert not v0.verify(block.data + b"x")


def test_parse_rejects_bad_text() -> None:
    good = Cid.of(CODEC_RAW, b"x").encode()
    for bad in ["", "x" + good[1:], good.upper(), good + "=", good[:-1] + "1", "b" * 1000]:
        with pytest.raises(CidError):
            Cid.parse(bad)
    with pytest.raises(CidError):  # v0 bytes are never multibase-prefixed
        Cid.parse("z" + EMPTY_DIR_V0)
    with pytest.raises(CidError):  # trailing bits set: another spelling of the same bytes
        b32_decode("ab")


def test_varints_are_minimal_and_bounded() -> None:
    assert decode_varint(encode_varint(300)) == (300, 2)
    with pytest.raises(CidError):
        decode_varint(b"\x81\x00")  # 1 written with a padding byte
    with pytest.raises(CidError):
        decode_varint(b"\xff" * 10)
    with pytest.raises(CidError):
        decode_varint(b"\x80")


@given(
    codec=st.sampled_from([CODEC_RAW, CODEC_DAG_PB, 0x71, 0x0129]),
    digest=st.binary(min_size=32, max_size=32),
    base=st.sampled_from(["b", "z"]),
)
def test_cid_text_round_trip(codec: int, digest: bytes, base: str) -> None:
    cid = Cid(1, codec, Multihash(0x12, digest))
    text = cid.encode() if base == "b" else "z" + b58_encode(cid.to_bytes())
    assert Cid.parse(text) == cid
    assert Cid.from_bytes(cid.to_bytes()) == cid


@given(st.binary(max_size=40))
def test_base58_round_trip(data: bytes) -> None:
    assert b58_decode(b58_encode(data)) == data


@given(st.text(max_size=120))
def test_parse_is_total(text: str) -> None:
    try:
        cid = Cid.parse(text)
    except CidError:
        return
    assert cid.encode() == text  # one CID, one spelling


@given(st.binary(max_size=120))
def test_from_bytes_is_total(data: bytes) -> None:
    try:
        cid = Cid.from_bytes(data)
    except CidError:
        return
    assert cid.to_bytes() == data


def test_pbnode_encoding_is_canonical() -> None:
    child = Cid.of(CODEC_RAW, b"leaf")
    node = PBNode((PBLink(child, "", 4), PBLink(child, "name", None)), b"\x08\x02")
    encoded = encode_pbnode(node)
    # Links (field 2) precede Data (field 1); an empty Name is written.
    assert encoded[0] == 0x12
    assert encoded.endswith(b"\x0a\x02\x08\x02")
    assert decode_pbnode(encoded) == node


def test_pbnode_decoder_is_strict() -> None:
    child = Cid.of(CODEC_RAW, b"leaf")
    link = encode_pbnode(PBNode((PBLink(child, "a", 1),)))
    data = encode_pbnode(PBNode((), b"d"))
    cases = {
        "data before links": data + link,
        "duplicate data": data + data,
        "unknown field": b"\x1a\x00",
        "truncated": link[:-1],
        "fixed64 wire type": b"\x09" + b"\0" * 8,
        "link without hash": b"\x12\x02\x18\x01",
        "link fields out of order": b"\x12\x05\x18\x01\x12\x01a",
        "link hash not a cid": b"\x12\x04\x0a\x02\x01\x55",
    }
    raw_hash = child.to_bytes()
    body = b"\x0a" + bytes([len(raw_hash)]) + raw_hash + b"\x12\x01\xff"
    cases["name not utf-8"] = b"\x12" + bytes([len(body)]) + body
    for label, bad in cases.items():
        with pytest.raises(ProtobufError):
            decode_pbnode(bad)
            pytest.fail(label)


@given(st.binary(max_size=300))
def test_pbnode_decode_is_total(data: bytes) -> None:
    try:
        node = decode_pbnode(data)
    except FsDecodeError:
        return
    assert isinstance(node, PBNode)


def test_unixfs_round_trip_and_packed_blocksizes() -> None:
    msg = UnixFsData(
        DataType.FILE,
        data=b"abc",
        filesize=10,
        blocksizes=(3, 4),
        mode=0o755,
        mtime=UnixTime(-5, 7),
    )
    assert decode_unixfs(encode_unixfs(msg)) == msg
    packed = b"\x08\x02\x18\x07\x22\x02\x03\x04"  # blocksizes as a packed field
    assert decode_unixfs(packed).blocksizes == (3, 4)
    for bad in [b"", b"\x10\x02", b"\x08\x09", b"\x08\x02\x08\x02", b"\x08\x02\x48\x01"]:
        with pytest.raises(ProtobufError):
            decode_unixfs(bad)


@given(st.binary(max_size=200))
def test_unixfs_decode_is_total(data: bytes) -> None:
    try:
        msg = decode_unixfs(data)
    except FsDecodeError:
        return
    assert isinstance(msg.type, DataType)


def test_multihash_verify() -> None:
    mh = Multihash.sha2_256(b"abc")
    assert mh.digest == hashlib.sha256(b"abc").digest()
    assert mh.verify(b"abc") and not mh.verify(b"abd")
