// small_get_loop SOCKET SECONDS: puts a 100-byte blob, then gets it by id
// (GetBlob, one round trip, zero-copy) in a loop for SECONDS and prints the
// gets per second. The C++ reader of bench/metrics_bench.py: a client
// without Python's overheads, so what a scraper costs it shows plainly.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "trellis/client.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s SOCKET SECONDS\n", argv[0]);
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
  using Clock = std::chrono::steady_clock;
  const double seconds = std::atof(argv[2]);
  for (int i = 0; i < 1000; ++i) (void)(*client)->GetBlob(*id);  // warm up
  uint64_t n = 0;
  auto start = Clock::now();
  std::chrono::duration<double> elapsed{};
  while (elapsed.count() < seconds) {
    auto blob = (*client)->GetBlob(*id);
    if (!blob.ok()) {
      std::fprintf(stderr, "%s\n", blob.status().ToString().c_str());
      return 1;
    }
    ++n;
    if ((n & 255) == 0) elapsed = Clock::now() - start;
  }
  elapsed = Clock::now() - start;
  std::printf("%.0f\n", static_cast<double>(n) / elapsed.count());
  return 0;
}
