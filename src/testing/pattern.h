// Deterministic test bytes, shared by the tests that move blobs around.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace trellis::testing {

// `size` bytes that differ per seed and per position (xorshift64).
inline std::vector<uint8_t> Pattern(uint64_t size, uint64_t seed) {
  std::vector<uint8_t> out(size);
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (uint64_t i = 0; i < size; i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::memcpy(out.data() + i, &x, std::min<uint64_t>(8, size - i));
  }
  return out;
}

}  // namespace trellis::testing
