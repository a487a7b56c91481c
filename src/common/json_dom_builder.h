// Builds an nlohmann::json DOM from SAX-style events, for a parser other
// than nlohmann's own (DecodeBody's msgpack-cxx visitor, protocol.cc; and
// bench/msgpack_bench.cc, to time nlohmann's parser on the same builder).
// Keeps the open maps and arrays on a stack, so it never recurses, and
// refuses to nest deeper than a bound. Not thread-safe.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace trellis::protocol {

class JsonDomBuilder {
 public:
  using json = nlohmann::json;

  // Builds into *root (not owned; must outlive the builder), at most
  // `max_depth` maps and arrays deep.
  JsonDomBuilder(json* root, size_t max_depth)
      : root_(root), max_depth_(max_depth) {}

  // Where the key of the next value in a map goes (moved from once used).
  std::string& key() { return key_; }

  // Puts `v` at the current place: the root, the end of the open array, or
  // key() of the open map (a repeated key keeps its last value, as
  // nlohmann's reader does).
  void Value(json&& v) { Put(std::move(v)); }

  // Puts an empty map or array there and opens it; false, changing
  // nothing, if that would nest deeper than max_depth.
  bool Open(json&& empty) {
    if (stack_.size() >= max_depth_) return false;
    stack_.push_back(Put(std::move(empty)));
    return true;
  }

  // Closes the open map or array.
  void Close() { stack_.pop_back(); }

 private:
  json* Put(json&& v) {
    if (stack_.empty()) {
      *root_ = std::move(v);
      return root_;
    }
    json* top = stack_.back();
    if (top->is_array()) {
      return &top->get_ref<json::array_t&>().emplace_back(std::move(v));
    }
    return &top->get_ref<json::object_t&>()
                .insert_or_assign(std::move(key_), std::move(v))
                .first->second;
  }

  json* root_;
  size_t max_depth_;
  std::vector<json*> stack_;  // the open maps and arrays, innermost last
  std::string key_;
};

}  // namespace trellis::protocol
