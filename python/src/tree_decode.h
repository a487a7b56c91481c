// Decoding the daemon's MessagePack replies into Python values.
//
// Hand-written rather than msgpack-cxx or python3-msgpack: it builds the
// Python objects directly (sharing the short strings a tree repeats), and,
// for a get, reads the plain numeric columns of a trellis::DataFrame as
// blocks without making a Python object per column (below). No library
// does either; a wide frame's get is mostly this loop. Measured on a
// 46-column frame's GetMeta reply (bench/results/msgpack_bench.md): 44 us,
// against 48 us for msgpack-cxx's visitor parse building the same objects
// and 64 us for python3-msgpack's unpackb; 16 us with frame blocks, which a
// visitor cannot do (it is never told byte offsets, and blocks need the
// node's own bytes and a second look at its members).
//
// Being hand-written, it is fuzzed (tree_decode_fuzz.cc, under ctest) and
// checked against python3-msgpack (python/tests/test_msgpack_differential.py).
#pragma once

#include <pybind11/pybind11.h>

#include <cstddef>
#include <cstdint>

namespace trellis::python {

struct TreeDecodeOptions {
  // Read DataFrame nodes as "frame blocks" (below). Only for decoding a
  // value; metadata views want every node as it is.
  bool frame_blocks = false;
};

// Builds Python values straight from one MessagePack value spanning exactly
// `size` bytes, as FromJson(DecodeBody(...)) would but without the JSON DOM:
// maps (str keys only) become dicts, arrays lists, bin and ext bytes.
// Raises InvalidArgument if the bytes are not one well-formed value, have
// trailing bytes or nest deeper than 64 maps/arrays (the wire limit);
// declared lengths are checked against the bytes present before anything is
// allocated. GIL held.
//
// With `frame_blocks`, every map whose "typename" is "trellis::DataFrame"
// and whose fields hold an int "num_rows" loses the members that are plain
// columns: "column_<i>" trellis::Tensor nodes of shape [num_rows], unit
// stride, a numeric or datetime dtype (kinds b i u f c m M) and one
// trellis::Blob buffer, with no other fields (docs/format.md). Instead the
// node gains
//   "_blocks": (blocks, max_position), blocks a list of
//       (buffer node, dtype str, offset, step, count, placement)
//     one per run of same-dtype columns of one buffer at evenly spaced
//     offsets `step` bytes apart (step >= a column's bytes, so a run is a
//     (count, num_rows) array without overlap); placement is a slice of
//     column positions if they are consecutive, else a list of them;
//     max_position is the largest position placed (-1 if none);
//   "_raw": the node's own MessagePack bytes, to rebuild its full form;
//   "_labels": if fields' "columns" is a list, its items as a 1-d object
//     ndarray (what a pandas Index of them holds).
// A "column_<i>" that appears twice raises InvalidArgument.
pybind11::object FromMsgpack(const uint8_t* data, size_t size,
                             TreeDecodeOptions options = {});

// Checks a tree got from the daemon as ObjectMeta::FromJson does (every node
// a dict with a str 'typename' or an int 'id', 'fields' and 'members' dicts),
// raising InvalidArgument otherwise. GIL held.
void ValidateTree(pybind11::handle tree);

}  // namespace trellis::python
