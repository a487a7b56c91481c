"""Differential tests of trellis's MessagePack against python3-msgpack, an
independent implementation (docs/protocol.md, "Bodies"):

* the extension's decoder (python/src/tree_decode.cc, through
  trellis._core.decode_tree) on what python3-msgpack writes: edge values,
  random values and corrupted bytes give the value python3-msgpack reads, or
  InvalidArgument where trellis refuses the input (non-str keys, invalid
  UTF-8, more than 64 levels);
* the extension's tree writer (json_convert.cc, CreateObject) and the
  request bodies protocol::IdsBody/NamesBody, recorded on the socket: what
  python3-msgpack reads from them is what was meant, byte for byte what it
  would write itself;
* the daemon's decoder (protocol::DecodeBody) on CreateObject bodies written
  by python3-msgpack, and its encoder (GetMeta replies) read back by it.
"""

import os
import random
import struct

import msgpack
import numpy as np
import pytest

import trellis
from trellis import _core

from msgpack_wire import (CREATE_OBJECT, ERROR, GET_META, REPLY, RawConnection,
                          RecordingProxy)

# decode_tree reads a tree: values go in as the field "v" of a node, which
# puts them two levels down (the node's map, its "fields").
NODE_PREFIX = b"\x82\xa8typename\xa1t\xa6fields\x81\xa1v"
VALUE_DEPTH = 64 - 2  # the containers a value may nest in a decoded node

INTS = [0, 1, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 0xffffffff, 0x100000000,
        2 ** 63 - 1, 2 ** 63, 2 ** 64 - 1, -1, -32, -33, -128, -129, -32768, -32769,
        -2 ** 31, -2 ** 31 - 1, -2 ** 63]
FLOATS = [0.0, -0.0, 1.5, -2.25, 1e300, 5e-324, float("inf"), float("-inf"), float("nan")]
LENGTHS = [0, 1, 31, 32, 255, 256, 65535, 65536]


def same(a, b):
    """Equal values of equal types, floats bit for bit (NaN equals NaN)."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return struct.pack("<d", a) == struct.pack("<d", b)
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if type(a) is dict:
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


def nested(levels, leaf=7):
    """`leaf` inside `levels` containers, maps and lists alternating."""
    value = leaf
    for i in range(levels):
        value = {"d": value} if i % 2 else [value]
    return value


def depth(value):
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def str_keys_only(value):
    if isinstance(value, dict):
        return all(type(k) is str and str_keys_only(v) for k, v in value.items())
    if isinstance(value, list):
        return all(str_keys_only(v) for v in value)
    return True


def ours(payload):
    """(True, value) or (False, InvalidArgument) from the extension."""
    try:
        return True, _core.decode_tree(NODE_PREFIX + payload)["fields"]["v"]
    except trellis.InvalidArgument as e:
        return False, e


def reference(payload):
    """What trellis must decode `payload` to (python3-msgpack's reading, ext
    values as their bytes), or None where it must refuse it."""
    try:
        value = msgpack.unpackb(payload, strict_map_key=False, ext_hook=lambda code, data: data)
    except (ValueError, TypeError):  # malformed, invalid UTF-8, unhashable key
        return None
    if not str_keys_only(value) or depth(value) > VALUE_DEPTH:
        return None
    return (value,)


def check_decode(payload):
    ok, got = ours(payload)
    want = reference(payload)
    if want is None:
        assert not ok, (payload[:80], got)
    else:
        assert ok, (payload[:80], got)
        assert same(got, want[0]), (got, want[0])
    return ok


def edge_values():
    yield from INTS
    yield from FLOATS
    yield from (None, True, False)
    for n in LENGTHS:
        yield "s" * n
        yield bytes(range(256)) * (n // 256) + bytes(range(n % 256))
    yield from ("é", "日本語", "\U0001f600", "\x00")
    for n in (1, 2, 4, 8, 16, 0, 3, 17, 255, 256, 65536):
        yield msgpack.ExtType(n % 128, b"x" * n)
    yield [], {}, [[]], {"": {}}
    yield list(range(70000))  # array32
    yield {f"k{i}": i for i in range(70000)}  # map32
    yield nested(VALUE_DEPTH)


def test_edge_values_decode_as_python_msgpack_reads_them():
    decoded = 0
    for value in edge_values():
        for single in (False, True):
            payload = msgpack.packb(value, use_single_float=single)
            decoded += check_decode(payload)
    assert decoded == 2 * len(list(edge_values()))


def test_what_trellis_refuses_is_refused_cleanly():
    cases = {
        "invalid UTF-8": msgpack.Packer(unicode_errors="surrogateescape").pack("\udcff"),
        "int key": msgpack.packb({1: 2}),
        "bin key": msgpack.packb({b"k": 2}),
        "too deep": msgpack.packb(nested(VALUE_DEPTH + 1)),
        "unknown type byte": b"\xc1",
        "truncated": msgpack.packb("abc")[:-1],
        "trailing bytes": msgpack.packb(1) + b"\x01",
        "array longer than the bytes": b"\xdd\xff\xff\xff\xff\x01",
        "str longer than the bytes": b"\xdb\xff\xff\xff\xff",
    }
    for name, payload in cases.items():
        ok, error = ours(payload)
        assert not ok, name
        assert "MessagePack" in str(error), (name, error)
        assert reference(payload) is None, name  # python3-msgpack agrees


def test_repeated_keys_keep_the_last_value_as_python_msgpack():
    payload = b"\x83\xa1a\x01\xa1b\x02\xa1a\x93\x01\x02\x03"
    assert msgpack.unpackb(payload) == {"a": [1, 2, 3], "b": 2}
    assert check_decode(payload)


def test_ext_values_are_their_bytes_whatever_the_type():
    # Negative (reserved) types too, which python3-msgpack reads as
    # timestamps or refuses: trellis keeps no ext types (as FromJson drops a
    # binary's subtype).
    for payload, data in [(b"\xd4\xff\x07", b"\x07"), (b"\xd6\xff\x00\x00\x00\x01", b"\0\0\0\1"),
                          (b"\xc7\x03\x80abc", b"abc"), (b"\xc8\x00\x00\x05", b"")]:
        assert ours(payload) == (True, data)


def random_value(rng, levels):
    kind = rng.randrange(12 if levels else 9)
    if kind == 0:
        return rng.choice(INTS)
    if kind == 1:
        return rng.randint(-2 ** 63, 2 ** 64 - 1)
    if kind == 2:
        return rng.choice(FLOATS + [rng.uniform(-1e9, 1e9)])
    if kind == 3:
        return "".join(rng.choice("ab\u00e9\u65e5\U0001f600") for _ in range(rng.choice([0, 3, 40])))
    if kind == 4:
        return rng.randbytes(rng.choice([0, 5, 300]))
    if kind == 5:
        return msgpack.ExtType(rng.randrange(128), rng.randbytes(rng.choice([1, 2, 4, 8, 16, 5])))
    if kind == 6:
        return rng.choice([None, True, False])
    if kind in (7, 8):
        return rng.randrange(-40, 200)
    if kind in (9, 10):
        return [random_value(rng, levels - 1) for _ in range(rng.randrange(5))]
    return {f"k{rng.randrange(8)}": random_value(rng, levels - 1) for _ in range(rng.randrange(5))}


def test_random_values_and_corruptions_match_python_msgpack():
    rng = random.Random(13)
    decoded = refused = 0
    for _ in range(600):
        payload = msgpack.packb(random_value(rng, 5), use_single_float=rng.random() < 0.3)
        assert check_decode(payload)
        for _ in range(6):
            damaged = bytearray(payload)
            if rng.random() < 0.3:
                del damaged[rng.randrange(len(damaged)):]
            else:
                for _ in range(rng.randint(1, 3)):
                    # Never 0xff: python3-msgpack reads ext type -1 as a
                    # timestamp, which trellis keeps as bytes.
                    damaged[rng.randrange(len(damaged))] = rng.randrange(255)
            if check_decode(bytes(damaged)):
                decoded += 1
            else:
                refused += 1
    assert decoded > 100 and refused > 100  # both outcomes were exercised


# ------------------------------------------------------------ the encoders

def edge_fields():
    return {
        "ints": INTS,
        "floats": [f for f in FLOATS if f == f],  # NaN != NaN in the check
        "strs": ["s" * n for n in LENGTHS[:6]] + ["é", "日本語", "\U0001f600"],
        "bytes": [b"", b"\x00\xff", bytes(300)],
        "atoms": [None, True, False],
        "tuple": (1, (2, 3)),
        "numpy": [np.int64(-5), np.uint64(2 ** 64 - 1), np.int8(3)],
        # With the body, tree and fields: 63 levels, and 64 in a GetMeta
        # reply, which adds its "trees" list.
        "deep": nested(60),
        "": {"empty": {}, "list": []},
    }


def plain(value):
    """`value` as python3-msgpack reads it back (tuples are lists, numpy
    integers ints)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    return value


@pytest.fixture
def recorded(daemon, tmp_socket_dir):
    """(client through a recording proxy, the proxy)."""
    proxy = RecordingProxy(os.path.join(tmp_socket_dir, "proxy.sock"), daemon.socket)
    client = trellis.connect(proxy.path, start=False)
    yield client, proxy
    client.close()
    proxy.wait()


def bodies(proxy, direction, kind):
    return [body for t, body in proxy.frames(direction) if t == kind]


def test_tree_writer_and_request_bodies_are_what_python_msgpack_writes(recorded):
    client, proxy = recorded
    fields = edge_fields()
    tree = {"typename": "test::Edge", "fields": fields, "members": {}}
    oid = client._core.create_object(tree, None, None, "edge", False, True)
    client._core.get_tree(oid, False)
    client._core.get_tree_by_name("edge", False)
    client.close()
    proxy.wait()

    request, = bodies(proxy, "request", CREATE_OBJECT)
    want = {"tree": plain(tree), "overwrite": True, "persist": False, "name": "edge"}
    assert same(msgpack.unpackb(request), want)
    assert request == msgpack.packb(want)  # the same shortest encodings
    by_id, by_name = bodies(proxy, "request", GET_META)
    assert by_id == msgpack.packb({"ids": [oid.value]})
    assert by_name == msgpack.packb({"names": ["edge"]})

    # The daemon's encoder (GetMeta replies) read back by python3-msgpack.
    for reply in bodies(proxy, "reply", REPLY)[-2:]:
        got = msgpack.unpackb(reply)["trees"][0]
        assert got["typename"] == "test::Edge" and got["id"] == oid.value
        assert got["fields"] == plain(fields)


def test_tree_writer_refuses_one_level_too_many(client):
    tree = {"typename": "test::Deep", "fields": {"deep": nested(62)}, "members": {}}
    with pytest.raises(trellis.InvalidArgument, match="nests deeper"):
        client._core.create_object(tree, None, None, "", False, True)


# CreateObject refuses a tree whose GetMeta reply would nest deeper than a
# reader accepts (the reply's map and 'trees' list add two levels), so
# whatever it accepts can be read back.
def test_an_object_the_daemon_accepts_can_be_read_back(client):
    tree = {"typename": "test::Deep", "fields": {"deep": nested(61)}, "members": {}}
    try:
        oid = client._core.create_object(tree, None, None, "", False, True)
    except trellis.InvalidArgument:
        return  # refused up front: fine
    assert client._core.get_tree(oid, False)[0]["fields"]["deep"] == nested(61)


def create_object_body(fields_bytes):
    """A CreateObject body around already encoded fields."""
    return (b"\x83\xa4tree\x83\xa8typename\xa6test::\xa6fields" + fields_bytes +
            b"\xa7members\x80\xa9overwrite\xc3\xa7persist\xc2")


def put_and_read_back(conn, fields_bytes):
    kind, reply = conn.call(CREATE_OBJECT, create_object_body(fields_bytes))
    assert kind == REPLY, msgpack.unpackb(reply)
    oid = msgpack.unpackb(reply)["id"]
    kind, reply = conn.call(GET_META, msgpack.packb({"ids": [oid]}))
    assert kind == REPLY
    return msgpack.unpackb(reply, unicode_errors="surrogateescape")["trees"][0]["fields"]


def test_daemon_decodes_what_python_msgpack_writes(daemon):
    packer = msgpack.Packer(unicode_errors="surrogateescape")
    single = msgpack.Packer(use_single_float=True)
    cases = [
        ({"ints": INTS}, packer),
        ({"floats": [f for f in FLOATS if f == f]}, packer),
        ({"floats": [1.5, -0.0, 0.25, 1e10]}, single),  # exact in float32
        ({"strs": ["s" * n for n in LENGTHS], "bad": "\udcff\udcfe"}, packer),
        ({"bin": [bytes(n) for n in LENGTHS]}, packer),
        ({"ext": [msgpack.ExtType(c, b"x" * n) for c, n in
                  [(0, 1), (5, 2), (127, 4), (1, 8), (2, 16), (3, 3), (4, 300)]]}, packer),
        ({"deep": nested(60)}, packer),  # tree + fields: the 62 levels a reply carries
        ({"big": list(range(70000))}, packer),
    ]
    with RawConnection(daemon.socket) as conn:
        for fields, pk in cases:
            assert put_and_read_back(conn, pk.pack(fields)) == fields, list(fields)
        # A repeated key: the last value counts, as python3-msgpack reads it.
        fields_bytes = b"\x82\xa1k\x01\xa1k\x92\x02\x03"
        assert put_and_read_back(conn, fields_bytes) == msgpack.unpackb(fields_bytes)


@pytest.mark.parametrize("body, message", [
    (create_object_body(msgpack.packb({"deep": nested(62)})), "nests deeper than 64 levels"),
    (create_object_body(msgpack.packb({1: 2})), "a map key is not a string"),
    (create_object_body(msgpack.packb({"x": "abc"}))[:-1], "truncated"),
    (create_object_body(b"\x81\xa1x\xc1"), "is not a MessagePack type"),
    (create_object_body(b"\x80") + b"\x00", "trailing bytes"),
])
def test_daemon_refuses_what_the_protocol_forbids(daemon, body, message):
    with RawConnection(daemon.socket) as conn:
        kind, reply = conn.call(CREATE_OBJECT, body)
        assert kind == ERROR and message in msgpack.unpackb(reply)["message"]
        assert conn.next_frame() is None  # a protocol violation: closed
