// The JSON DOM of an ObjectMeta, for code of this project that works on
// trees directly (the client, typed objects, the Python binding, tests,
// benchmarks). Not part of the public API: users see ObjectMeta's typed
// accessors and its JSON text form only.
#pragma once

#include <memory>

#include "common/protocol.h"
#include "trellis/object.h"

namespace trellis {

struct ObjectMeta::Tree {
  protocol::json node;
};

class ObjectMetaAccess {
 public:
  using json = protocol::json;

  // Builds a meta from a tree, validating the node shapes (Invalid naming
  // the first bad one). `lease` keeps the tree's blobs readable (gotten
  // trees); null for trees being built.
  static Result<ObjectMeta> FromJson(json tree,
                                     std::shared_ptr<Lease> lease = nullptr);
  // The whole tree; an empty map for a moved-from meta.
  static const json& TreeOf(const ObjectMeta& meta);
  // Its "fields" map (an empty map if it has none).
  static const json& FieldsOf(const ObjectMeta& meta);
  // Sets a field to any JSON value.
  static void SetField(ObjectMeta* meta, const std::string& key, json value);
};

}  // namespace trellis
