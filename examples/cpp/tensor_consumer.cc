// Waits for the tensor named argv[1] (default "demo_tensor"), reads it in
// place from shared memory, checks every value, and deletes it.
#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "trellis/tensor.h"

int main(int argc, char** argv) {
  const std::string name = argc > 1 ? argv[1] : "demo_tensor";
  auto client = trellis::Client::Connect();
  if (!client.ok()) {
    std::fprintf(stderr, "consumer: %s\n", client.status().ToString().c_str());
    return 1;
  }
  auto id = (*client)->GetName(name, /*wait=*/true, std::chrono::seconds(30));
  if (!id.ok()) {
    std::fprintf(stderr, "consumer: %s\n", id.status().ToString().c_str());
    return 1;
  }
  auto start = std::chrono::steady_clock::now();
  auto tensor = trellis::Tensor::Get(**client, *id);
  auto elapsed = std::chrono::steady_clock::now() - start;
  if (!tensor.ok()) {
    std::fprintf(stderr, "consumer: %s\n", tensor.status().ToString().c_str());
    return 1;
  }
  const double* values = tensor->data_as<double>();
  int64_t bad = 0;
  double sum = 0;
  for (int64_t i = 0; i < tensor->size(); ++i) {
    if (values[i] != 0.5 * static_cast<double>(i)) ++bad;
    sum += values[i];
  }
  std::printf(
      "consumer (pid %d): got %s '%s' shape [%lld, %lld] %s in %.3f ms, "
      "zero-copy: %s, sum %.1f, mismatches %lld\n",
      static_cast<int>(getpid()), id->ToString().c_str(), name.c_str(),
      static_cast<long long>(tensor->shape()[0]),
      static_cast<long long>(tensor->shape()[1]), tensor->dtype().c_str(),
      std::chrono::duration<double, std::milli>(elapsed).count(),
      (*client)->InArena(tensor->data()) ? "yes (pointer into the shared arena)"
                                         : "NO",
      sum, static_cast<long long>(bad));
  tensor = trellis::Status::Invalid("released");  // drops our hold
  auto deleted = (*client)->Delete({*id});
  if (!deleted.ok()) {
    std::fprintf(stderr, "consumer: %s\n", deleted.status().ToString().c_str());
    return 1;
  }
  std::printf("consumer: deleted %s and its buffer (%zu objects)\n",
              id->ToString().c_str(), deleted->size());
  return bad == 0 ? 0 : 1;
}
