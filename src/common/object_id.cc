#include "trellis/object_id.h"

#include <cstdio>

namespace trellis {

Result<ObjectID> ObjectID::FromString(std::string_view text) {
  if (text.size() != 17 || text[0] != 'o') {
    return Status::Invalid("not an object id (want 'o' + 16 hex digits): '" +
                           std::string(text) + "'");
  }
  uint64_t value = 0;
  for (char c : text.substr(1)) {
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      digit = c - 'A' + 10;
    } else {
      return Status::Invalid("not an object id (bad hex digit): '" +
                             std::string(text) + "'");
    }
    value = (value << 4) | static_cast<uint64_t>(digit);
  }
  return ObjectID(value);
}

std::string ObjectID::ToString() const {
  char buf[18];
  std::snprintf(buf, sizeof(buf), "o%016llx",
                static_cast<unsigned long long>(value_));
  return std::string(buf, 17);
}

}  // namespace trellis
