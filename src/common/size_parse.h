#pragma once

#include <cstdint>
#include <string>

#include "trellis/status.h"

namespace trellis {

// Parses a byte count: a whole number with an optional binary suffix
// K, M, G or T (also KB/KiB/...), e.g. "512M", "4G", "1048576".
// Invalid (naming the text) for anything else, zero, or an overflow.
Result<uint64_t> ParseByteSize(const std::string& text);

}  // namespace trellis
