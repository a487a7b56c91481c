#include "common/size_parse.h"

#include <cctype>

namespace trellis {

Result<uint64_t> ParseByteSize(const std::string& text) {
  auto bad = [&] {
    return Status::Invalid("cannot parse size '" + text +
                           "' (want e.g. 1048576, 512M, 4G)");
  };
  size_t i = 0;
  uint64_t value = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
    uint64_t digit = static_cast<uint64_t>(text[i] - '0');
    if (value > (UINT64_MAX - digit) / 10) return bad();
    value = value * 10 + digit;
    ++i;
  }
  if (i == 0) return bad();
  std::string suffix;
  for (; i < text.size(); ++i) {
    suffix +=
        static_cast<char>(std::toupper(static_cast<unsigned char>(text[i])));
  }
  int shift = 0;
  if (suffix.empty() || suffix == "B") {
    shift = 0;
  } else if (suffix == "K" || suffix == "KB" || suffix == "KIB") {
    shift = 10;
  } else if (suffix == "M" || suffix == "MB" || suffix == "MIB") {
    shift = 20;
  } else if (suffix == "G" || suffix == "GB" || suffix == "GIB") {
    shift = 30;
  } else if (suffix == "T" || suffix == "TB" || suffix == "TIB") {
    shift = 40;
  } else {
    return bad();
  }
  if (shift > 0 && value > (UINT64_MAX >> shift)) return bad();
  value <<= shift;
  if (value == 0)
    return Status::Invalid("size must be positive: '" + text + "'");
  return value;
}

}  // namespace trellis
