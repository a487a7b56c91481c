// small_get_loop SOCKET SECONDS [SLOT_MS]: puts a 100-byte blob, then gets
// it by id (GetBlob, one round trip, zero-copy) in a loop for SECONDS and
// prints the gets per second. The C++ reader of bench/metrics_bench.py: a
// client without Python's overheads, so what a scraper costs it shows
// plainly.
//
// With SLOT_MS it prints instead, as JSON, the gets done in each SLOT_MS
// slot of CLOCK_MONOTONIC (slot k: [k, k+1) * SLOT_MS since the clock's
// origin, the clock Python's time.monotonic reads), {"slot_ms": S,
// "counts": {"k": n, ...}}, so that a scraper that works in every other
// slot can be compared with its own pauses in one run.
#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "trellis/client.h"

namespace {
int64_t MonotonicNanos() {
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 && argc != 4) {
    std::fprintf(stderr, "usage: %s SOCKET SECONDS [SLOT_MS]\n", argv[0]);
    return 2;
  }
  const double seconds = std::atof(argv[2]);
  const int64_t slot_ns =
      argc == 4 ? static_cast<int64_t>(std::atof(argv[3]) * 1e6) : 0;
  if (argc == 4 && slot_ns <= 0) {
    std::fprintf(stderr, "SLOT_MS must be a positive number, not '%s'\n",
                 argv[3]);
    return 2;
  }
  auto client = trellis::Client::Connect(argv[1]);
  if (!client.ok()) {
    std::fprintf(stderr, "%s\n", client.status().ToString().c_str());
    return 1;
  }
  std::vector<uint8_t> bytes(100, 7);
  auto id = (*client)->PutBlob(bytes.data(), bytes.size());
  if (!id.ok()) {
    std::fprintf(stderr, "%s\n", id.status().ToString().c_str());
    return 1;
  }
  for (int i = 0; i < 1000; ++i) (void)(*client)->GetBlob(*id);  // warm up
  std::map<int64_t, uint64_t> per_slot;
  uint64_t n = 0;
  const int64_t start = MonotonicNanos();
  const int64_t end = start + static_cast<int64_t>(seconds * 1e9);
  int64_t now = start;
  while (now < end) {
    auto blob = (*client)->GetBlob(*id);
    if (!blob.ok()) {
      std::fprintf(stderr, "%s\n", blob.status().ToString().c_str());
      return 1;
    }
    ++n;
    if (slot_ns > 0) {
      now = MonotonicNanos();  // a vDSO call: ~0.1% of a get
      ++per_slot[now / slot_ns];
    } else if ((n & 255) == 0) {
      now = MonotonicNanos();
    }
  }
  if (slot_ns == 0) {
    now = MonotonicNanos();
    std::printf("%.0f\n", static_cast<double>(n) * 1e9 /
                              static_cast<double>(now - start));
    return 0;
  }
  std::printf("{\"slot_ms\": %g, \"counts\": {",
              static_cast<double>(slot_ns) / 1e6);
  const char* sep = "";
  for (const auto& [slot, count] : per_slot) {
    std::printf("%s\"%lld\": %llu", sep, static_cast<long long>(slot),
                static_cast<unsigned long long>(count));
    sep = ", ";
  }
  std::printf("}}\n");
  return 0;
}
