// ObjectID: the 64-bit identity of every object and blob in a trellis store.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "trellis/status.h"

namespace trellis {

// An id is printed as "o" followed by exactly 16 lower-case hex digits and
// parses back from that form. Layout (docs/protocol.md): the top 16 bits are
// the instance id of the daemon that created the object, the low 48 bits a
// per-daemon sequence. Id 0 is never issued and means "no object".
class ObjectID {
 public:
  constexpr ObjectID() = default;
  constexpr explicit ObjectID(uint64_t value) : value_(value) {}

  static ObjectID Make(uint16_t instance_id, uint64_t sequence) {
    return ObjectID((uint64_t{instance_id} << 48) |
                    (sequence & ((uint64_t{1} << 48) - 1)));
  }
  // Parses "o" + 16 hex digits; anything else is Invalid.
  static Result<ObjectID> FromString(std::string_view text);

  constexpr uint64_t value() const { return value_; }
  constexpr bool valid() const { return value_ != 0; }
  uint16_t instance_id() const { return static_cast<uint16_t>(value_ >> 48); }
  std::string ToString() const;

  friend constexpr bool operator==(ObjectID a, ObjectID b) {
    return a.value_ == b.value_;
  }
  friend constexpr bool operator!=(ObjectID a, ObjectID b) {
    return a.value_ != b.value_;
  }
  friend constexpr bool operator<(ObjectID a, ObjectID b) {
    return a.value_ < b.value_;
  }

 private:
  uint64_t value_ = 0;
};

}  // namespace trellis

template <>
struct std::hash<trellis::ObjectID> {
  size_t operator()(trellis::ObjectID id) const noexcept {
    // Ids are sequential: mix so hash tables spread them.
    uint64_t x = id.value();
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return static_cast<size_t>(x);
  }
};
