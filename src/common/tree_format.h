// The rules of the tree format (docs/format.md) in one place: the keys of a
// node, the built-in type names, the fields and members of Tensor and
// DataFrame, the dtype table, the node-shape check and the depth limits.
// The daemon (server/tree_codec.cc), the C++ client (client/object_meta.cc,
// tensor.cc, dataframe.cc) and the Python extension (python/src/
// tree_decode.cc, which also hands these constants to the pure-Python layer
// as trellis._core.format) all read them from here, so a rule changed here
// changes for every reader and writer.
//
// Everything is constexpr or a header template: nothing here costs a
// lookup on a hot path. Thread-safe (no state).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/protocol.h"
#include "trellis/object.h"
#include "trellis/status.h"

namespace trellis::format {

// ------------------------------------------------------------ node keys

inline constexpr std::string_view kTypeNameKey = "typename";
inline constexpr std::string_view kIdKey = "id";
inline constexpr std::string_view kNbytesKey = "nbytes";
inline constexpr std::string_view kInstanceIdKey = "instance_id";
inline constexpr std::string_view kFieldsKey = "fields";
inline constexpr std::string_view kMembersKey = "members";
// On the root of a global object's tree: true (docs/format.md, "Global
// objects").
inline constexpr std::string_view kGlobalKey = "global";
// On a blob node: where its bytes start in the arena.
inline constexpr std::string_view kOffsetKey = "offset";

// ----------------------------------------------------- built-in type names

// The public headers name some of these too (kBlobTypeName here, the
// typed objects' in trellis/tensor.h, checked against these in tensor.cc).
inline constexpr const char* kBlob = kBlobTypeName;
inline constexpr const char* kTensor = "trellis::Tensor";
inline constexpr const char* kDataFrame = "trellis::DataFrame";
inline constexpr const char* kRangeIndex = "trellis::RangeIndex";
inline constexpr const char* kSeries = "trellis::Series";
inline constexpr const char* kStringColumn = "trellis::StringColumn";
inline constexpr const char* kCategorical = "trellis::Categorical";
inline constexpr const char* kNullableColumn = "trellis::NullableColumn";

// ------------------------------------------------------- trellis::Tensor

namespace tensor {
inline constexpr std::string_view kDType = "dtype";
inline constexpr std::string_view kShape = "shape";
inline constexpr std::string_view kStrides = "strides";
// Byte offset of element 0 in the buffer (a field; default 0).
inline constexpr std::string_view kOffset = "offset";
// The member holding the elements.
inline constexpr std::string_view kBuffer = "buffer";
}  // namespace tensor

// ---------------------------------------------------- trellis::DataFrame

namespace dataframe {
inline constexpr std::string_view kColumns = "columns";
inline constexpr std::string_view kNumRows = "num_rows";
// Column i is the member kColumnPrefix + decimal i (no leading zeros).
inline constexpr std::string_view kColumnPrefix = "column_";
inline constexpr std::string_view kIndex = "index";
// Alignment of each column DataFrame::Put (C++) writes into its one blob,
// and of every region the Python package plans in a put's blob.
inline constexpr uint64_t kColumnAlign = 64;

inline std::string ColumnMember(size_t i) {
  return std::string(kColumnPrefix) + std::to_string(i);
}
// Block k (several columns in one 2-d node) is the member kBlockPrefix +
// decimal k; the field kBlockColumns lists, per block, the positions of its
// columns (row j of block k is column kBlockColumns[k][j]).
inline constexpr std::string_view kBlockPrefix = "block_";
inline constexpr std::string_view kBlockColumns = "block_columns";

inline std::string BlockMember(size_t k) {
  return std::string(kBlockPrefix) + std::to_string(k);
}
}  // namespace dataframe

// --------------------------------------------------- trellis::RangeIndex

namespace range_index {
inline constexpr std::string_view kStart = "start";
inline constexpr std::string_view kStop = "stop";
inline constexpr std::string_view kStep = "step";
}  // namespace range_index

// ---------------------------------------------------------------- dtypes
//
// A dtype is numpy's dtype.str: <byte order><kind><count>[unit], the byte
// order one of "<>|=", the unit only for kinds M and m ("[ns]", ...).

inline constexpr std::string_view kByteOrders = "<>|=";

struct DTypeKind {
  char kind;
  // The counts a dtype of this kind may have (0 ends the list); an empty
  // list means any count (S, V, U).
  std::array<uint8_t, 4> counts;
  // Bytes per count (4 for U: UCS-4 code points).
  uint8_t bytes_per_count;
  // Largest item size a DataFrame block of this kind can hold (the readers
  // join such columns into one 2-d array); 0: never a block.
  uint8_t max_block_item;
};

inline constexpr std::array<DTypeKind, 10> kDTypeKinds = {{
    {'b', {1}, 1, 1},
    {'i', {1, 2, 4, 8}, 1, 8},
    {'u', {1, 2, 4, 8}, 1, 8},
    {'f', {2, 4, 8, 16}, 1, 8},
    {'c', {8, 16, 32}, 1, 16},
    {'M', {8}, 1, 8},
    {'m', {8}, 1, 8},
    {'S', {}, 1, 0},
    {'V', {}, 1, 0},
    {'U', {}, 4, 0},
}};

// The datetime/timedelta units a block may have (a tensor may have any
// bracketed unit, e.g. "[10ns]").
inline constexpr std::array<std::string_view, 13> kTimeUnits = {
    "[Y]",  "[M]",  "[W]",  "[D]",  "[h]",  "[m]", "[s]",
    "[ms]", "[us]", "[ns]", "[ps]", "[fs]", "[as]"};

// The kinds a Python put stores as one region per pandas block (the
// columns of a block back to back): docs/format.md, "trellis::DataFrame
// (as written from Python)".
inline constexpr std::string_view kBlockWriteKinds = "biufc";
// The kinds the Python package stores as a Tensor (others, including V,
// whose numpy dtypes are mostly structured, are pickled).
inline constexpr std::string_view kTensorWriteKinds = "biufcmMSU";

struct DType {
  char kind = 0;
  uint64_t item_size = 0;
  std::string_view unit;  // "" or "[...]" (kinds M and m)
};

constexpr const DTypeKind* FindDTypeKind(char kind) {
  for (const DTypeKind& k : kDTypeKinds) {
    if (k.kind == kind) return &k;
  }
  return nullptr;
}

// The parts of a dtype string, or nullopt if it is not one of the table's.
constexpr std::optional<DType> ParseDType(std::string_view text) {
  if (text.size() < 3 || kByteOrders.find(text[0]) == std::string_view::npos) {
    return std::nullopt;
  }
  const DTypeKind* kind = FindDTypeKind(text[1]);
  if (!kind) return std::nullopt;
  size_t i = 2;
  uint64_t count = 0;
  for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
    if (count > (uint64_t{1} << 40)) return std::nullopt;
    count = count * 10 + static_cast<uint64_t>(text[i] - '0');
  }
  if (i == 2) return std::nullopt;
  std::string_view unit = text.substr(i);
  bool timed = kind->kind == 'M' || kind->kind == 'm';
  if (!unit.empty() && (!timed || unit.size() < 3 || unit.front() != '[' ||
                        unit.back() != ']')) {
    return std::nullopt;
  }
  if (kind->counts[0] != 0) {
    bool allowed = false;
    for (uint8_t c : kind->counts) allowed |= c != 0 && c == count;
    if (!allowed) return std::nullopt;
  }
  return DType{kind->kind, count * kind->bytes_per_count, unit};
}

// The item size of `text` if a DataFrame block can hold it, else 0.
constexpr uint64_t BlockItemSize(std::string_view text) {
  std::optional<DType> d = ParseDType(text);
  if (!d) return 0;
  const DTypeKind* kind = FindDTypeKind(d->kind);
  if (d->item_size > kind->max_block_item) return 0;
  if (!d->unit.empty()) {
    bool known = false;
    for (std::string_view u : kTimeUnits) known |= u == d->unit;
    if (!known) return 0;
  }
  return d->item_size;
}

// ---------------------------------------------------------- depth limits

// Deepest MessagePack nesting an expanded tree may have. A GetMeta reply
// carries a tree two levels down (the body's map, then its `trees` array)
// and clients decode replies with the limit the daemon applies to requests,
// so a deeper object could be created but never read. Each tree level takes
// two (a node and its `members`).
inline constexpr size_t kMaxTreeNesting = protocol::kMaxBodyDepth - 2;
// Most member levels a gotten or parsed tree may have (the client's and
// the extension's validators; bounds their recursion on trees that did
// not come from the daemon, e.g. ObjectMeta::FromJsonString).
inline constexpr int kMaxTreeLevels = static_cast<int>(protocol::kMaxBodyDepth);

// ------------------------------------------------------------ node shape

enum class TreeKind {
  // Sent to CreateObject: a reference is {"id": <non-zero uint>} (nothing
  // else of it is looked at); a new node needs a non-empty typename other
  // than kBlob.
  kBuilding,
  // Got from the daemon (or parsed): any node with a uint "id" may lack a
  // typename.
  kGotten,
};

// What CheckNodeShape found; `Node` is the adapter's node handle.
template <typename Node>
struct NodeShape {
  bool reference = false;  // a reference to an existing object (kBuilding)
  uint64_t id = 0;         // its id
  Node type_name{};        // the "typename" value if the node has one
  Node fields{};           // the "fields" map if present
  Node members{};          // the "members" map if present
};

// The keys CheckNodeShape looks up, for adapters that pre-make them.
enum class NodeKey { kTypeName, kId, kFields, kMembers };

constexpr std::string_view KeyText(NodeKey key) {
  switch (key) {
    case NodeKey::kTypeName:
      return kTypeNameKey;
    case NodeKey::kId:
      return kIdKey;
    case NodeKey::kFields:
      return kFieldsKey;
    case NodeKey::kMembers:
      return kMembersKey;
  }
  return {};
}

// Checks the shape of one node (not its members) of a tree of `kind`
// (docs/format.md, "The tree" and "Building a tree"): a map; a reference,
// or a node with a string "typename"; "fields" and "members", if present,
// maps. Invalid naming what is wrong. `A` adapts a node representation:
//   using Node = ...;            // a cheap handle; Node{} is "absent"
//   static bool IsMap(Node);
//   static Node Find(Node map, NodeKey key);   // Node{} if absent
//   static bool AsUint(Node, uint64_t*);       // a non-negative integer?
//   static bool IsString(Node);
//   static std::string_view Text(Node string);
template <typename A>
Status CheckNodeShape(typename A::Node node, TreeKind kind,
                      NodeShape<typename A::Node>* shape) {
  using Node = typename A::Node;
  if (!A::IsMap(node)) return Status::Invalid("tree node must be a map");
  Node id = A::Find(node, NodeKey::kId);
  bool has_id = id != Node{} && A::AsUint(id, &shape->id);
  if (kind == TreeKind::kBuilding) {
    shape->reference = has_id && shape->id != 0;
    if (shape->reference) return Status::OK();
  }
  shape->type_name = A::Find(node, NodeKey::kTypeName);
  bool named = shape->type_name != Node{} && A::IsString(shape->type_name);
  if (kind == TreeKind::kBuilding) {
    if (!named || A::Text(shape->type_name).empty()) {
      return Status::Invalid(
          "a new tree node needs a non-empty string 'typename' (or an 'id' "
          "naming an existing object)");
    }
    if (A::Text(shape->type_name) == kBlob) {
      return Status::Invalid("blobs are made with CreateBlobs, not in a tree");
    }
  } else if (!named && !has_id) {
    return Status::Invalid(
        "a tree node needs a string 'typename' (or an 'id' naming an "
        "existing object)");
  }
  auto not_a_map = [&](std::string_view key) {
    std::string type =
        named ? std::string(A::Text(shape->type_name)) : "referenced";
    return Status::Invalid("'" + std::string(key) + "' of a " + type +
                           " node must be a map");
  };
  shape->fields = A::Find(node, NodeKey::kFields);
  if (shape->fields != Node{} && !A::IsMap(shape->fields)) {
    return not_a_map(kFieldsKey);
  }
  shape->members = A::Find(node, NodeKey::kMembers);
  if (shape->members != Node{} && !A::IsMap(shape->members)) {
    return not_a_map(kMembersKey);
  }
  return Status::OK();
}

// Checks every node of a gotten (or parsed) tree and that it has at most
// kMaxTreeLevels levels of members; errors name the path of members to the
// bad node. `A` as for CheckNodeShape, plus
//   template <typename F> static Status ForEachMember(Node members, F f);
//     // calls f(std::string_view name, Node member), stops at an error
template <typename A>
Status CheckGottenTree(typename A::Node node, int depth = 0) {
  if (depth > kMaxTreeLevels) {
    return Status::Invalid("object tree nests more than " +
                           std::to_string(kMaxTreeLevels) + " levels deep");
  }
  NodeShape<typename A::Node> shape;
  TRELLIS_RETURN_NOT_OK(CheckNodeShape<A>(node, TreeKind::kGotten, &shape));
  if (shape.members == typename A::Node{}) return Status::OK();
  return A::ForEachMember(
      shape.members, [&](std::string_view name, typename A::Node member) {
        Status st = CheckGottenTree<A>(member, depth + 1);
        if (st.ok()) return st;
        return Status(st.code(),
                      "member '" + std::string(name) + "': " + st.message());
      });
}

// The adapter of nlohmann-json trees (protocol::json).
struct JsonNodes {
  using Node = const protocol::json*;
  static bool IsMap(Node n) { return n->is_object(); }
  static Node Find(Node map, NodeKey key) {
    auto it = map->find(KeyText(key));
    return it == map->end() ? nullptr : &*it;
  }
  static bool AsUint(Node n, uint64_t* out) {
    return protocol::AsUint(*n, out);
  }
  static bool IsString(Node n) { return n->is_string(); }
  static std::string_view Text(Node n) {
    return n->get_ref<const std::string&>();
  }
  template <typename F>
  static Status ForEachMember(Node members, F f) {
    for (const auto& [name, member] : members->items()) {
      TRELLIS_RETURN_NOT_OK(f(name, &member));
    }
    return Status::OK();
  }
};

}  // namespace trellis::format
