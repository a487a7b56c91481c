// Puts a 1000x1000 float64 tensor named by argv[1] (default "demo_tensor")
// into the daemon at $TRELLIS_SOCKET, then exits: the object outlives it.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <vector>

#include "trellis/tensor.h"

int main(int argc, char** argv) {
  const std::string name = argc > 1 ? argv[1] : "demo_tensor";
  auto client = trellis::Client::Connect();
  if (!client.ok()) {
    std::fprintf(stderr, "producer: %s\n", client.status().ToString().c_str());
    return 1;
  }
  const int64_t rows = 1000, cols = 1000;
  std::vector<double> values(rows * cols);
  for (int64_t i = 0; i < rows * cols; ++i)
    values[i] = 0.5 * static_cast<double>(i);

  auto start = std::chrono::steady_clock::now();
  trellis::PutOptions options;
  options.name = name;
  auto id = trellis::Tensor::Put(**client, "<f8", {rows, cols}, values.data(),
                                 options);
  auto elapsed = std::chrono::steady_clock::now() - start;
  if (!id.ok()) {
    std::fprintf(stderr, "producer: %s\n", id.status().ToString().c_str());
    return 1;
  }
  std::printf(
      "producer (pid %d): put tensor %s as '%s': %lldx%lld <f8, %.1f MB in "
      "%.2f ms\n",
      static_cast<int>(getpid()), id->ToString().c_str(), name.c_str(),
      static_cast<long long>(rows), static_cast<long long>(cols),
      rows * cols * 8 / 1e6,
      std::chrono::duration<double, std::milli>(elapsed).count());
  return 0;
}
