#include "server/request_metrics.h"

#include <algorithm>

namespace trellis::server {

void RequestMetrics::Record(uint16_t type, double seconds, StatusCode code) {
  if (type >= kTypes) return;
  PerType& t = by_type_[type];
  t.count++;
  t.seconds += seconds;
  auto bucket = std::lower_bound(kBuckets.begin(), kBuckets.end(), seconds);
  if (bucket != kBuckets.end()) t.in_bucket[bucket - kBuckets.begin()]++;
  auto c = static_cast<size_t>(code);
  if (code != StatusCode::kOk && c < kCodes) errors_[c]++;
}

}  // namespace trellis::server
