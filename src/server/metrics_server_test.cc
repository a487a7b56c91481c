// PrometheusText and RequestMetrics without a daemon (the HTTP side is
// tested end to end in python/tests/test_metrics.py and
// test_status_page.py, against a live trellisd).
#include "server/metrics_server.h"

#include <gtest/gtest.h>

#include <sstream>
#include <string>

#include "common/protocol.h"

namespace trellis::server {
namespace {

using protocol::MessageType;

bool Has(const std::string& text, const std::string& line) {
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) {
    if (l == line) return true;
  }
  return false;
}

TEST(RequestMetricsTest, BucketsCountsAndErrors) {
  RequestMetrics m;
  auto get = static_cast<uint16_t>(MessageType::kGetMeta);
  m.Record(get, 5e-6, StatusCode::kOk);   // first bucket (<= 10 us)
  m.Record(get, 10e-6, StatusCode::kOk);  // on a bound: that bucket
  m.Record(get, 3e-3, StatusCode::kObjectNotFound);
  m.Record(get, 60.0, StatusCode::kOk);      // past the last bound: +Inf only
  m.Record(999, 1.0, StatusCode::kInvalid);  // no such type: not counted
  const auto& t = m.by_type()[get];
  EXPECT_EQ(t.count, 4u);
  EXPECT_EQ(t.in_bucket[0], 2u);
  EXPECT_EQ(t.in_bucket[8], 1u);  // (2.5 ms, 5 ms]
  uint64_t bucketed = 0;
  for (uint64_t n : t.in_bucket) bucketed += n;
  EXPECT_EQ(bucketed, 3u);
  EXPECT_DOUBLE_EQ(t.seconds, 5e-6 + 10e-6 + 3e-3 + 60.0);
  EXPECT_EQ(m.errors()[static_cast<size_t>(StatusCode::kObjectNotFound)], 1u);
  EXPECT_EQ(m.errors()[static_cast<size_t>(StatusCode::kInvalid)], 0u);
}

TEST(PrometheusTextTest, FamiliesSamplesAndCumulativeBuckets) {
  MetricsSnapshot s;
  s.status = {{"instance_id", 7},   {"backend", "etcd"}, {"cluster", "a\"b"},
              {"arena_size", 1024}, {"used", 64},        {"clients", 3},
              {"spill_count", 2}};
  auto create = static_cast<uint16_t>(MessageType::kCreateObject);
  s.requests.Record(create, 20e-6, StatusCode::kOk);
  s.requests.Record(create, 2e-3, StatusCode::kObjectExists);
  s.ipc_received = 500;
  s.scrapes = 4;
  std::string text = PrometheusText(s);
  EXPECT_TRUE(Has(text, "# TYPE trellis_arena_size_bytes gauge"));
  EXPECT_TRUE(Has(text, "trellis_arena_size_bytes 1024"));
  EXPECT_TRUE(Has(text, "trellis_arena_used_bytes 64"));
  EXPECT_TRUE(Has(text, "# TYPE trellis_spills_total counter"));
  EXPECT_TRUE(Has(text, "trellis_spills_total 2"));
  EXPECT_TRUE(Has(text, "trellis_clients 2"));  // the scraper's own left out
  EXPECT_TRUE(
      Has(text,
          "trellis_info{instance_id=\"7\",backend=\"etcd\",cluster=\"a\\\"b\","
          "protocol=\"" +
              std::to_string(protocol::kProtocolVersion) + "\"} 1"));
  EXPECT_TRUE(Has(text, "trellis_requests_total{type=\"CreateObject\"} 2"));
  EXPECT_TRUE(Has(text, "trellis_requests_total{type=\"GetMeta\"} 0"));
  EXPECT_TRUE(
      Has(text,
          "trellis_request_duration_seconds_bucket{type=\"CreateObject\","
          "le=\"1e-05\"} 0"));
  EXPECT_TRUE(
      Has(text,
          "trellis_request_duration_seconds_bucket{type=\"CreateObject\","
          "le=\"2.5e-05\"} 1"));
  EXPECT_TRUE(
      Has(text,
          "trellis_request_duration_seconds_bucket{type=\"CreateObject\","
          "le=\"0.0025\"} 2"));
  EXPECT_TRUE(
      Has(text,
          "trellis_request_duration_seconds_bucket{type=\"CreateObject\","
          "le=\"+Inf\"} 2"));
  EXPECT_TRUE(Has(
      text, "trellis_request_duration_seconds_count{type=\"CreateObject\"} 2"));
  // A type never asked for has no histogram series yet.
  EXPECT_EQ(text.find("duration_seconds_count{type=\"GetMeta\"}"),
            std::string::npos);
  EXPECT_TRUE(
      Has(text, "trellis_request_errors_total{code=\"ObjectExists\"} 1"));
  EXPECT_TRUE(Has(text, "trellis_request_errors_total{code=\"Timeout\"} 0"));
  EXPECT_TRUE(Has(text, "trellis_ipc_received_bytes_total 500"));
  EXPECT_TRUE(Has(text, "trellis_metrics_scrapes_total 4"));
  EXPECT_EQ(text.find("trellis_rpc_"), std::string::npos);  // no RPC server
  s.has_rpc = true;
  EXPECT_TRUE(Has(PrometheusText(s), "trellis_rpc_sent_bytes_total 0"));
}

}  // namespace
}  // namespace trellis::server
