// MetricsServer: `trellisd --metrics HOST:PORT`. An HTTP server serving
//   /metrics      the daemon's metrics in Prometheus' text exposition format
//   /             the status page (src/server/status_page.html)
//   /api/status   JSON {status, cluster?, history, metrics_port}: the Status
//                 reply, ClusterInfo when the daemon is in a cluster, and
//                 memory use sampled every 2 s over the last 10 minutes
//   /api/objects  JSON {objects, names}: ListObjects and ListNames
// cpp-httplib (Debian's libcpp-httplib-dev) serves it on threads of its own.
//
// What a request reads from the store it reads on the event loop: the
// handler posts a job there that issues ordinary requests through
// Store::Handle, as a client the store does not count in its request
// metrics, or copies the request metrics and byte counters; formatting
// happens on the HTTP thread. So a scrape holds the loop only for those
// copies (bench/metrics_bench.py measures what it costs other clients).
// A loop that does not answer within 5 s gets the HTTP client a 503.
#pragma once

#include <asio.hpp>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "server/request_metrics.h"
#include "trellis/status.h"

namespace trellis::server {

class Store;
class SessionServer;

// What /metrics shows, copied from the store on the loop.
struct MetricsSnapshot {
  nlohmann::json status;  // the Status reply (docs/protocol.md)
  RequestMetrics requests;
  // Bytes in and out of the UNIX socket's and the RPC server's connections
  // (rpc_* only with `has_rpc`).
  uint64_t ipc_received = 0, ipc_sent = 0;
  bool has_rpc = false;
  uint64_t rpc_received = 0, rpc_sent = 0;
  // /metrics scrapes so far (this one included) and the loop time the
  // earlier ones took.
  uint64_t scrapes = 0;
  double scrape_loop_seconds = 0;
};

// `snapshot` as Prometheus text exposition format (version 0.0.4).
std::string PrometheusText(const MetricsSnapshot& snapshot);

class MetricsServer {
 public:
  // Listens on host:port (port 0: a free one) and serves until Stop. `io`
  // runs `store`'s loop; `ipc` and `rpc` (may be null) are the servers
  // whose byte counters /metrics reports. All must outlive the server.
  static Result<std::unique_ptr<MetricsServer>> Start(
      asio::io_context& io, Store* store, const SessionServer* ipc,
      const SessionServer* rpc, const std::string& host, uint16_t port);
  ~MetricsServer();  // Stop()

  uint16_t port() const;
  // Stops listening, ends requests waiting on the loop and joins the
  // server's threads. Call it from a thread other than the HTTP server's.
  void Stop();

 private:
  class Impl;
  explicit MetricsServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace trellis::server
