// RequestMetrics: what the daemon's requests cost, for its /metrics page
// (server/metrics_server.h): per message type, how many were handled and a
// histogram of how long each took from Store::Handle to its reply; and the
// error replies by status code.
//
// Updated and read on the event loop only (Store::Handle records, the
// metrics server copies it there): not thread-safe, no atomics needed.
#pragma once

#include <array>
#include <cstdint>

#include "trellis/status.h"

namespace trellis::server {

class RequestMetrics {
 public:
  // Upper bounds of the latency buckets, in seconds (Prometheus `le`); a
  // last, implicit bucket is +Inf.
  static constexpr std::array<double, 16> kBuckets = {
      10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3,
      5e-3,  10e-3, 25e-3, 50e-3,  100e-3, 250e-3, 1.0,  10.0};
  // Message types are below this (Store's handler table has as many slots).
  static constexpr size_t kTypes = 32;

  struct PerType {
    uint64_t count = 0;
    // Requests whose time was at most kBuckets[i] and more than the bound
    // before (not cumulative; the +Inf bucket is count - their sum).
    std::array<uint64_t, kBuckets.size()> in_bucket{};
    double seconds = 0;  // the sum of their times
  };

  // One request of `type` answered after `seconds` with `code` (kOk for a
  // reply). Types outside [0, kTypes) are not counted.
  void Record(uint16_t type, double seconds, StatusCode code);

  const std::array<PerType, kTypes>& by_type() const { return by_type_; }
  // Error replies by code (index: the code's number; kOk never counted).
  static constexpr size_t kCodes = 32;
  const std::array<uint64_t, kCodes>& errors() const { return errors_; }

 private:
  std::array<PerType, kTypes> by_type_{};
  std::array<uint64_t, kCodes> errors_{};
};

}  // namespace trellis::server
