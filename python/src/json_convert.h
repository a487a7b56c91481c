// Conversion between Python values and the JSON values of metadata trees
// (docs/format.md). Supported Python values: None, bool, int (64-bit signed
// or unsigned; objects with __index__ such as numpy integers too), float,
// str, bytes (JSON binary), list/tuple (arrays) and dict with str keys.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <vector>

namespace trellis::python {

// Where a placeholder in a tree being built stands for a blob whose id is
// known only after it has been created: every occurrence of `placeholder`
// (compared by identity) becomes the reference {"id": blob_id}.
struct BlobPlaceholder {
  pybind11::handle placeholder;
  uint64_t blob_id = 0;
};

// Appends `value` to *out as one MessagePack value (maps, arrays, bin for
// bytes; every placeholder becomes {"id": blob_id}), without building a
// DOM. `depth` is the nesting level of the map or array holding `value` (1
// for a field of a body). Raises InvalidArgument naming the offending
// value's type and path for anything else, or for a map or array nested
// past protocol::kMaxBodyDepth. GIL held.
void ToMsgpack(pybind11::handle value, const BlobPlaceholder* blob, int depth,
               std::vector<uint8_t>* out);

// Builds Python values from JSON (binary becomes bytes). GIL held.
pybind11::object FromJson(const nlohmann::json& value);

}  // namespace trellis::python
