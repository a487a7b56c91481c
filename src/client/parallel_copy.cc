#include <algorithm>
#include <cstring>
#include <thread>
#include <vector>

#include "trellis/client.h"

namespace trellis {

void ParallelMemcpy(void* dst, const void* src, size_t n) {
  // Below this, thread start-up costs more than the second core saves.
  constexpr size_t kParallelThreshold = 8u << 20;
  constexpr size_t kMaxThreads = 8;
  if (n < kParallelThreshold) {
    std::memcpy(dst, src, n);
    return;
  }
  // Asked once: glibc reads /sys/devices/system/cpu/online on every call
  // (~7 us, more than a small copy takes).
  static const size_t threads = std::min<size_t>(
      kMaxThreads, std::max(1u, std::thread::hardware_concurrency()));
  if (threads < 2) {
    std::memcpy(dst, src, n);
    return;
  }
  // Chunks are multiples of 4 KiB so no two threads write one page.
  size_t chunk = ((n / threads) + 4095) & ~size_t{4095};
  auto* d = static_cast<uint8_t*>(dst);
  auto* s = static_cast<const uint8_t*>(src);
  std::vector<std::thread> workers;
  for (size_t start = chunk; start < n; start += chunk) {
    size_t len = std::min(chunk, n - start);
    workers.emplace_back([=] { std::memcpy(d + start, s + start, len); });
  }
  std::memcpy(d, s, std::min(chunk, n));
  for (auto& w : workers) w.join();
}

}  // namespace trellis
