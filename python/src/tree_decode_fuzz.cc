// libFuzzer target for the extension's MessagePack decoder (tree_decode.cc:
// FromMsgpack, with and without frame blocks, and ValidateTree), the one
// MessagePack reader in trellis that is not a library (tree_decode.h says
// why). Built by cmake/TrellisFuzz.cmake when clang++ is present; `ctest -R
// tree_decode_fuzz` runs it for a few seconds.
//
// The decoder builds Python objects, so this program embeds the interpreter
// (libpython3.11, initialised once; numpy is imported because frame blocks
// make a numpy array of the column labels). Python allocates with plain
// malloc here (PYMEM_ALLOCATOR_MALLOC), so ASan sees every Python object:
// a reference dropped once too often is a use-after-free it reports, and a
// reference kept too long shows in ASan's count of allocated bytes (below).
// LeakSanitizer is off: importing numpy leaks by design, which it would
// report on the first input.
//
// Input layout: byte 0 bit 0 asks for a frame-blocks decode as well; the
// rest is the MessagePack the daemon sent (a GetMeta reply, say).
//
// Invariants checked (a violation aborts, which libFuzzer reports):
//  * no crash, no out-of-bounds read, no undefined behaviour (ASan/UBSan);
//  * no leak: decoding the same input again (once caches are warm) leaves
//    exactly as many bytes allocated as before, C++ and Python alike;
//  * every failure is trellis.InvalidArgument, never another exception;
//  * differential: the plain decode equals FromJson(protocol::DecodeBody())
//    (msgpack-cxx's parser building nlohmann's DOM, then Python objects):
//    same types and values, floats bit for bit; one succeeds iff the other
//    does, except that only the hand-written decoder checks UTF-8 (of every
//    string, also of a value a repeated key replaces);
//  * a frame-blocks decode fails only where the plain one fails or a
//    DataFrame names a column twice, and otherwise is the plain decode with
//    each DataFrame node's plain columns moved into "_blocks": every block
//    column is a plain column of that dtype, buffer and offset, the rest
//    are decoded as before, and the node's "_raw" bytes decode to the plain
//    node.
//
// The seed corpus in python/src/tree_decode_fuzz_corpus/ holds real GetMeta
// replies (python/src/make_msgpack_corpus.py wrote them).
#include <pybind11/embed.h>
#include <sanitizer/allocator_interface.h>

#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "common/protocol.h"
#include "errors.h"
#include "json_convert.h"
#include "tree_decode.h"

namespace py = pybind11;

PYBIND11_EMBEDDED_MODULE(tree_decode_fuzz, m) {
  trellis::python::RegisterErrors(m);
  m.def("decode", [](py::bytes encoded, bool frame_blocks) {
    std::string_view b = encoded;
    return trellis::python::FromMsgpack(
        reinterpret_cast<const uint8_t*>(b.data()), b.size(),
        {.frame_blocks = frame_blocks});
  });
  m.def("validate",
        [](py::handle tree) { trellis::python::ValidateTree(tree); });
  // The reference decoder: the daemon's DecodeBody, then FromJson.
  m.def("decode_body", [](py::bytes encoded) {
    std::string_view b = encoded;
    auto body = trellis::protocol::DecodeBody(
        reinterpret_cast<const uint8_t*>(b.data()), b.size());
    return trellis::python::FromJson(trellis::python::Unwrap(std::move(body)));
  });
}

namespace {

constexpr const char* kChecks = R"py(
import struct
import numpy
from tree_decode_fuzz import decode, decode_body, validate, InvalidArgument

def same(a, b):
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return struct.pack("<d", a) == struct.pack("<d", b)
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if type(a) is dict:
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b

def attempt(f, *args, expected=(InvalidArgument,)):
    try:
        return True, f(*args)
    except expected as e:
        return False, e

def frame_rows(node):
    """num_rows if tree_decode reads `node` (plain) as a frame node."""
    fields = node.get("fields")
    rows = fields.get("num_rows") if type(fields) is dict else None
    if (node.get("typename") == "trellis::DataFrame" and type(rows) is int
            and 0 <= rows < 2 ** 64 and "members" in node):
        return rows
    return None

ITEM_SIZE = {"b": (1,), "i": (1, 2, 4, 8), "u": (1, 2, 4, 8), "f": (2, 4, 8),
             "c": (8, 16), "m": (8,), "M": (8,)}

def check_blocks(plain, got):
    """`got` (a frame-blocks decode) against `plain` (tree_decode.h)."""
    if type(plain) is list:
        assert type(got) is list and len(got) == len(plain)
        for p, g in zip(plain, got):
            check_blocks(p, g)
        return
    if type(plain) is not dict:
        assert same(plain, got), (plain, got)
        return
    assert type(got) is dict
    rows = frame_rows(plain)
    added = set()
    if rows is not None:
        added.add("_raw")
        assert same(decode(got["_raw"], False), plain)
        labels = plain["fields"].get("columns")
        if type(labels) is list:
            added.add("_labels")
            assert type(got["_labels"]) is numpy.ndarray
            assert same(got["_labels"].tolist(), labels)
        if type(plain["members"]) is dict:
            added.add("_blocks")
            check_frame_members(plain["members"], got["members"], rows, got["_blocks"])
    assert got.keys() == plain.keys() | added, (got.keys(), plain.keys())
    for key in plain:
        if key not in added and not (rows is not None and key == "members"):
            check_blocks(plain[key], got[key])

def check_frame_members(plain, got, rows, blocks):
    assert type(got) is dict and type(blocks) is tuple and len(blocks) == 2
    placed = set()
    for buffer, dtype, offset, step, count, placement in blocks[0]:
        if type(placement) is slice:
            positions = list(range(placement.start, placement.stop))
        else:
            positions = placement
        assert len(positions) == count > 0
        kind = dtype.lstrip("<>|=")[:1]
        for k, position in enumerate(positions):
            name = f"column_{position}"
            assert name not in got and position not in placed
            placed.add(position)
            column = plain[name]
            fields = column["fields"]
            size = fields["strides"][0]
            assert column["typename"] == "trellis::Tensor"
            assert fields["dtype"] == dtype and size in ITEM_SIZE[kind]
            assert fields["shape"] == [rows]
            assert fields.get("offset", 0) == offset + k * step, (fields, offset, step)
            assert count == 1 or step >= rows * size
            assert same(column["members"]["buffer"], buffer)
    assert blocks[1] == max(placed, default=-1), (blocks, placed)
    assert got.keys() | {f"column_{p}" for p in placed} == plain.keys()
    for name in got:
        check_blocks(plain[name], got[name])

def check(data):
    body = data[1:]
    ok, plain = attempt(decode, body, False)
    ref_ok, ref = attempt(decode_body, body,
                          expected=(InvalidArgument, UnicodeDecodeError))
    if ok and type(plain) is dict:
        assert ref_ok, ref
    # Only the hand-written decoder checks UTF-8, and it checks every string,
    # also one a repeated key then replaces.
    bad_utf8 = not ok and "UTF-8" in str(plain)
    if ref_ok:
        assert bad_utf8 or (ok and same(plain, ref)), (plain, ref)
    elif type(ref) is UnicodeDecodeError:
        assert bad_utf8, plain
    results = [plain] if ok else []
    if data[0] & 1:
        blocks_ok, blocks = attempt(decode, body, True)
        if not ok:
            assert not blocks_ok, blocks
        elif not blocks_ok:
            assert "twice" in str(blocks), blocks
        else:
            check_blocks(plain, blocks)
            results.append(blocks)
    for tree in results:
        attempt(validate, tree)
)py";

py::object* g_check = nullptr;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  PyPreConfig preconfig;
  PyPreConfig_InitIsolatedConfig(&preconfig);
  preconfig.allocator = PYMEM_ALLOCATOR_MALLOC;
  PyStatus status = Py_PreInitialize(&preconfig);
  if (PyStatus_Exception(status)) Py_ExitStatusException(status);
  PyConfig config;
  PyConfig_InitIsolatedConfig(&config);
  config.install_signal_handlers = 0;  // libFuzzer's own stay in place
  // The Debian interpreter, whatever python3 comes first on PATH.
  PyConfig_SetString(&config, &config.program_name, L"/usr/bin/python3");
  py::initialize_interpreter(&config, 0, nullptr, false);
  py::dict scope;
  py::exec(kChecks, scope);
  g_check = new py::object(scope["check"]);  // lives as long as the process
  return 0;
}

// Bytes allocated by one more decode of `body` that are still allocated
// after it (0 unless something leaks).
size_t LeakedByDecode(const uint8_t* body, size_t size, bool frame_blocks) {
  size_t before = __sanitizer_get_current_allocated_bytes();
  try {
    py::object value = trellis::python::FromMsgpack(
        body, size, {.frame_blocks = frame_blocks});
  } catch (py::error_already_set&) {
  }
  size_t after = __sanitizer_get_current_allocated_bytes();
  return after > before ? after - before : 0;
}

}  // namespace

// LeakSanitizer off also when run by hand (see the top of this file).
extern "C" const char* __asan_default_options() { return "detect_leaks=0"; }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  try {
    (*g_check)(py::bytes(reinterpret_cast<const char*>(data), size));
  } catch (py::error_already_set& e) {
    std::fprintf(stderr, "tree_decode_fuzz: invariant broken:\n%s\n", e.what());
    std::abort();
  }
  // The checks above decoded this input already, and a first decode here
  // (through C++, as the extension calls it) warms the remaining caches.
  for (bool frame_blocks : {false, true}) {
    if (frame_blocks && !(data[0] & 1)) break;
    LeakedByDecode(data + 1, size - 1, frame_blocks);
    if (size_t leaked = LeakedByDecode(data + 1, size - 1, frame_blocks)) {
      std::fprintf(stderr,
                   "tree_decode_fuzz: decoding (frame_blocks %d) leaked %zu "
                   "bytes\n",
                   frame_blocks, leaked);
      std::abort();
    }
  }
  return 0;
}
