#include "server/metrics_server.h"

#include <httplib.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "common/protocol.h"
#include "server/session.h"
#include "server/status_page.h"
#include "server/store.h"

namespace trellis::server {

using json = nlohmann::json;
using protocol::MessageType;

// ------------------------------------------------------------ text format

namespace {

// One metric family of the Status reply: field, metric name, type, help.
struct StatusMetric {
  const char* field;
  const char* name;
  const char* type;
  const char* help;
};

constexpr StatusMetric kStatusMetrics[] = {
    {"arena_size", "trellis_arena_size_bytes", "gauge", "Arena size."},
    {"used", "trellis_arena_used_bytes", "gauge",
     "Arena bytes allocated to blobs."},
    {"free", "trellis_arena_free_bytes", "gauge", "Arena bytes not allocated."},
    {"arena_resident_bytes", "trellis_arena_resident_bytes", "gauge",
     "Arena bytes backed by memory now."},
    {"held_bytes", "trellis_held_bytes", "gauge",
     "Blob bytes in memory that readers hold."},
    {"pinned_bytes", "trellis_pinned_bytes", "gauge",
     "Blob bytes pinned in memory."},
    {"spilled_bytes", "trellis_spilled_bytes", "gauge",
     "Blob bytes spilled to disk now."},
    {"spilled_blobs", "trellis_spilled_blobs", "gauge",
     "Blobs spilled to disk now."},
    {"objects", "trellis_objects", "gauge", "Sealed composite objects."},
    {"blobs", "trellis_blobs", "gauge", "Sealed blobs."},
    {"unsealed_blobs", "trellis_unsealed_blobs", "gauge",
     "Blobs being written."},
    {"deleted_pending", "trellis_deleted_pending_objects", "gauge",
     "Deleted objects kept while readers hold them."},
    {"spill_count", "trellis_spills_total", "counter", "Blobs spilled."},
    {"spill_bytes_total", "trellis_spill_written_bytes_total", "counter",
     "Bytes written to the spill directory."},
    {"spill_failures", "trellis_spill_failures_total", "counter",
     "Spills that failed."},
    {"reload_count", "trellis_reloads_total", "counter",
     "Spilled blobs read back into memory."},
    {"reload_bytes_total", "trellis_reload_read_bytes_total", "counter",
     "Bytes read back from the spill directory."},
    {"reload_failures", "trellis_reload_failures_total", "counter",
     "Reloads that failed."},
    {"out_of_memory_count", "trellis_out_of_memory_total", "counter",
     "Requests refused with OutOfMemory."},
    {"trimmed_bytes_total", "trellis_trimmed_bytes_total", "counter",
     "Arena bytes returned to the kernel by MemoryTrim."},
    {"fetch_count", "trellis_fetches_total", "counter",
     "Objects copied here from other members (fetch=True)."},
    {"fetch_bytes_total", "trellis_fetch_received_bytes_total", "counter",
     "Bytes copied here from other members."},
    {"fetch_failures", "trellis_fetch_failures_total", "counter",
     "Fetches that failed."},
    {"fetch_joined", "trellis_fetch_joined_total", "counter",
     "Fetch requests that joined a transfer already under way."},
};

// A label value with \, " and newlines escaped.
std::string Escaped(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

void Family(std::string* out, const char* name, const char* type,
            const char* help) {
  *out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name +
          " " + type + "\n";
}

void Sample(std::string* out, const std::string& name,
            const std::string& labels, double value) {
  char number[40];
  if (value == static_cast<double>(static_cast<uint64_t>(value)) &&
      value < 1e18) {
    std::snprintf(number, sizeof(number), "%llu",
                  static_cast<unsigned long long>(value));
  } else {
    std::snprintf(number, sizeof(number), "%.9g", value);
  }
  *out += name;
  if (!labels.empty()) *out += "{" + labels + "}";
  *out += " ";
  *out += number;
  *out += "\n";
}

// Makes the calling thread (and threads it starts later) nice 19. Linux
// applies setpriority to a single thread when given its thread id.
void LowestPriority() {
  if (setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 19) != 0) {
    spdlog::debug("metrics: cannot lower the HTTP threads' priority: {}",
                  std::strerror(errno));
  }
}

// CPU time of the calling thread: what a job cost the loop, not counting
// the time other threads ran meanwhile.
double ThreadCpuSeconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

std::string Bound(double le) {
  char text[32];
  std::snprintf(text, sizeof(text), "%g", le);
  return text;
}

}  // namespace

std::string PrometheusText(const MetricsSnapshot& s) {
  std::string out;
  const json& st = s.status;
  Family(&out, "trellis_info", "gauge",
         "The daemon: its instance id, metadata backend and cluster.");
  Sample(&out, "trellis_info",
         "instance_id=\"" + std::to_string(st.value("instance_id", 0)) +
             "\",backend=\"" + Escaped(st.value("backend", "")) +
             "\",cluster=\"" + Escaped(st.value("cluster", "")) +
             "\",protocol=\"" + std::to_string(protocol::kProtocolVersion) +
             "\"",
         1);
  for (const StatusMetric& m : kStatusMetrics) {
    auto value = st.find(m.field);
    if (value == st.end() || !value->is_number()) continue;
    Family(&out, m.name, m.type, m.help);
    Sample(&out, m.name, "", value->get<double>());
  }
  // The metrics server's own connection is not a client anyone made.
  double clients = std::max(0.0, st.value("clients", 1.0) - 1);
  Family(&out, "trellis_clients", "gauge", "Connected clients.");
  Sample(&out, "trellis_clients", "", clients);

  const auto& by_type = s.requests.by_type();
  Family(&out, "trellis_requests_total", "counter",
         "Requests handled, by message type.");
  for (uint16_t t = 0; t < by_type.size(); ++t) {
    if (!protocol::IsRequestType(t)) continue;
    Sample(&out, "trellis_requests_total",
           "type=\"" + protocol::MessageTypeName(t) + "\"",
           static_cast<double>(by_type[t].count));
  }
  Family(&out, "trellis_request_duration_seconds", "histogram",
         "Time from a request's arrival to its reply, by message type "
         "(Release has no reply and is left out).");
  for (uint16_t t = 0; t < by_type.size(); ++t) {
    if (!protocol::IsRequestType(t) ||
        t == static_cast<uint16_t>(MessageType::kRelease)) {
      continue;
    }
    const RequestMetrics::PerType& p = by_type[t];
    if (p.count == 0) continue;  // a type never asked for: no series yet
    std::string type = "type=\"" + protocol::MessageTypeName(t) + "\"";
    uint64_t cumulative = 0;
    for (size_t b = 0; b < RequestMetrics::kBuckets.size(); ++b) {
      cumulative += p.in_bucket[b];
      Sample(&out, "trellis_request_duration_seconds_bucket",
             type + ",le=\"" + Bound(RequestMetrics::kBuckets[b]) + "\"",
             static_cast<double>(cumulative));
    }
    Sample(&out, "trellis_request_duration_seconds_bucket",
           type + ",le=\"+Inf\"", static_cast<double>(p.count));
    Sample(&out, "trellis_request_duration_seconds_sum", type, p.seconds);
    Sample(&out, "trellis_request_duration_seconds_count", type,
           static_cast<double>(p.count));
  }
  Family(&out, "trellis_request_errors_total", "counter",
         "Requests answered with an error, by status code.");
#define TRELLIS_METRICS_ERROR_SAMPLE(name, number)                   \
  Sample(&out, "trellis_request_errors_total", "code=\"" #name "\"", \
         static_cast<double>(s.requests.errors()[number]));
  TRELLIS_STATUS_CODES(TRELLIS_METRICS_ERROR_SAMPLE)
#undef TRELLIS_METRICS_ERROR_SAMPLE

  struct Single {
    const char* name;
    const char* help;
    double value;
  };
  std::vector<Single> counters = {
      {"trellis_ipc_received_bytes_total",
       "Bytes read from the UNIX socket's connections.",
       static_cast<double>(s.ipc_received)},
      {"trellis_ipc_sent_bytes_total",
       "Bytes written to the UNIX socket's connections.",
       static_cast<double>(s.ipc_sent)},
      {"trellis_metrics_scrapes_total",
       "Scrapes of /metrics, this one included.",
       static_cast<double>(s.scrapes)},
      {"trellis_metrics_loop_seconds_total",
       "CPU time the event loop spent on earlier scrapes (copying what they "
       "show).",
       s.scrape_loop_seconds}};
  if (s.has_rpc) {
    counters.push_back({"trellis_rpc_received_bytes_total",
                        "Bytes read from RPC (TCP) connections.",
                        static_cast<double>(s.rpc_received)});
    counters.push_back({"trellis_rpc_sent_bytes_total",
                        "Bytes written to RPC (TCP) connections.",
                        static_cast<double>(s.rpc_sent)});
  }
  for (const Single& c : counters) {
    Family(&out, c.name, "counter", c.help);
    Sample(&out, c.name, "", c.value);
  }
  return out;
}

// ----------------------------------------------------------------- server

class MetricsServer::Impl {
 public:
  Impl(asio::io_context& io, Store* store, const SessionServer* ipc,
       const SessionServer* rpc)
      : io_(io), store_(store), ipc_(ipc), rpc_(rpc) {
    // Start runs before the loop does, on its thread.
    client_ = store_->Connect(/*counted=*/false);
  }

  Status Listen(const std::string& host, uint16_t port) {
    // Two threads answer requests: a scrape and a page view at once.
    server_.new_task_queue = [] { return new httplib::ThreadPool(2); };
    // One request per connection: cpp-httplib waits for a kept-alive
    // connection's next request by polling it every 10 ms, and those
    // wake-ups cost the daemon's clients more (11% fewer small gets/s in
    // bench/metrics_bench.py) than a scraper's new connection per scrape.
    server_.set_keep_alive_max_count(1);
    server_.Get("/metrics", [this](const httplib::Request&,
                                   httplib::Response& res) { Metrics(res); });
    server_.Get("/", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(kStatusPage, "text/html; charset=utf-8");
    });
    server_.Get("/api/status",
                [this](const httplib::Request&, httplib::Response& res) {
                  ApiStatus(res);
                });
    server_.Get("/api/objects",
                [this](const httplib::Request&, httplib::Response& res) {
                  ApiObjects(res);
                });
    if (port == 0) {
      int bound = server_.bind_to_any_port(host);
      if (bound <= 0)
        return Status::IOError("--metrics: cannot listen on " + host);
      port_ = static_cast<uint16_t>(bound);
    } else {
      if (!server_.bind_to_port(host, port)) {
        return Status::IOError("--metrics: cannot listen on " + host + ":" +
                               std::to_string(port));
      }
      port_ = port;
    }
    // The HTTP threads (the listener's pool inherits its niceness) and the
    // sampler run at the lowest priority: on a busy node a scrape waits
    // rather than taking CPU from the daemon's clients.
    listener_ = std::thread([this] {
      LowestPriority();
      server_.listen_after_bind();
    });
    sampler_ = std::thread([this] {
      LowestPriority();
      Sample();
    });
    return Status::OK();
  }

  uint16_t port() const { return port_; }

  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_) return;
      stopping_ = true;
    }
    woken_.notify_all();
    server_.stop();
    if (listener_.joinable()) listener_.join();
    if (sampler_.joinable()) sampler_.join();
  }

  // After Stop, on the loop's thread (the loop is not running).
  void Disconnect() { store_->Disconnect(client_); }

 private:
  // One answer from the loop.
  struct Waiter {
    std::optional<Result<json>> result;
  };

  // Runs `job(done)` on the loop; `job` calls `done` once, now or later.
  // Waits up to 5 s for it (Unavailable as IOError after that, or when the
  // server stops meanwhile).
  Result<json> OnLoop(
      std::function<void(std::function<void(Result<json>)>)> job) {
    auto waiter = std::make_shared<Waiter>();
    asio::post(io_, [this, job = std::move(job), waiter] {
      job([this, waiter](Result<json> r) {
        {
          std::lock_guard<std::mutex> lock(mutex_);
          waiter->result.emplace(std::move(r));
        }
        woken_.notify_all();  // unlocked: the woken thread need not wait
      });
    });
    std::unique_lock<std::mutex> lock(mutex_);
    woken_.wait_for(lock, std::chrono::seconds(5),
                    [&] { return waiter->result.has_value() || stopping_; });
    if (!waiter->result) {
      return Status::IOError(stopping_ ? "the daemon is stopping"
                                       : "the daemon's loop did not answer");
    }
    return std::move(*waiter->result);
  }

  // A request of the metrics server's own client, its reply as a DOM.
  Result<json> Ask(MessageType type, json body) {
    TRELLIS_ASSIGN_OR_RAISE(
        json reply, OnLoop([this, type, body = std::move(body)](auto done) {
          store_->Handle(client_, static_cast<uint16_t>(type), body,
                         std::move(done));
        }));
    return protocol::BodyDom(reply);
  }

  static void Fail(httplib::Response& res, const Status& st) {
    res.status = 503;
    res.set_content(st.ToString() + "\n", "text/plain; charset=utf-8");
  }

  void Metrics(httplib::Response& res) {
    // The copies happen on the loop (into a snapshot the job shares: a
    // job that runs after a timeout must not write to a gone frame); the
    // text is made here.
    auto snapshot = std::make_shared<MetricsSnapshot>();
    auto status = OnLoop([this, snapshot](auto done) {
      double start = ThreadCpuSeconds();
      snapshot->requests = store_->request_metrics();
      snapshot->ipc_received = ipc_ ? ipc_->bytes_received() : 0;
      snapshot->ipc_sent = ipc_ ? ipc_->bytes_sent() : 0;
      snapshot->has_rpc = rpc_ != nullptr;
      snapshot->rpc_received = rpc_ ? rpc_->bytes_received() : 0;
      snapshot->rpc_sent = rpc_ ? rpc_->bytes_sent() : 0;
      snapshot->scrapes = ++scrapes_;
      snapshot->scrape_loop_seconds = scrape_loop_seconds_;
      // Status answers at once (a synchronous handler).
      store_->Handle(client_, static_cast<uint16_t>(MessageType::kStatus),
                     json::object(), std::move(done));
      scrape_loop_seconds_ += ThreadCpuSeconds() - start;
    });
    if (!status.ok()) return Fail(res, status.status());
    auto dom = protocol::BodyDom(*status);
    if (!dom.ok()) return Fail(res, dom.status());
    snapshot->status = std::move(*dom);
    res.set_content(PrometheusText(*snapshot),
                    "text/plain; version=0.0.4; charset=utf-8");
  }

  void ApiStatus(httplib::Response& res) {
    auto status = Ask(MessageType::kStatus, json::object());
    if (!status.ok()) return Fail(res, status.status());
    json out = {{"status", *status}, {"metrics_port", port_}};
    if (status->value("backend", "local") != "local") {
      auto cluster = Ask(MessageType::kClusterInfo, json::object());
      out["cluster"] = cluster.ok()
                           ? *cluster
                           : json{{"error", cluster.status().ToString()}};
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      json history = json::array();
      for (const json& sample : history_) history.push_back(sample);
      out["history"] = std::move(history);
    }
    res.set_content(out.dump(), "application/json");
  }

  void ApiObjects(httplib::Response& res) {
    constexpr uint64_t kLimit = 10000;  // rows a page can show
    auto objects =
        Ask(MessageType::kListObjects, {{"pattern", "*"}, {"limit", kLimit}});
    if (!objects.ok()) return Fail(res, objects.status());
    auto names =
        Ask(MessageType::kListNames, {{"pattern", "*"}, {"limit", kLimit}});
    if (!names.ok()) return Fail(res, names.status());
    // Ids as text ("o" + 16 hex digits, as the clients print them): a
    // 64-bit id is no exact JavaScript number.
    auto id_text = [](const json& id) {
      return id.is_number_unsigned() ? ObjectID(id.get<uint64_t>()).ToString()
                                     : std::string();
    };
    json listed = json::array();
    for (json& o : (*objects)["objects"]) {
      o["id"] = id_text(o["id"]);
      listed.push_back(std::move(o));
    }
    json bound = json::object();
    const json& name_list = (*names)["names"];
    const json& id_list = (*names)["ids"];
    for (size_t i = 0; i < name_list.size() && i < id_list.size(); ++i) {
      bound[name_list[i].get<std::string>()] = id_text(id_list[i]);
    }
    json out = {{"objects", std::move(listed)},
                {"names", std::move(bound)},
                {"limit", kLimit}};
    res.set_content(out.dump(), "application/json");
  }

  // Every 2 s, memory use into history_ (10 minutes of it).
  void Sample() {
    constexpr size_t kSamples = 300;
    while (true) {
      auto status = Ask(MessageType::kStatus, json::object());
      std::unique_lock<std::mutex> lock(mutex_);
      if (stopping_) return;
      if (status.ok()) {
        double now = std::chrono::duration<double>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
        history_.push_back({{"t", now},
                            {"used", (*status)["used"]},
                            {"held", (*status)["held_bytes"]},
                            {"pinned", (*status)["pinned_bytes"]},
                            {"spilled", (*status)["spilled_bytes"]}});
        if (history_.size() > kSamples) history_.pop_front();
      }
      woken_.wait_for(lock, std::chrono::seconds(2), [&] { return stopping_; });
      if (stopping_) return;
    }
  }

  asio::io_context& io_;
  Store* store_;
  const SessionServer* ipc_;
  const SessionServer* rpc_;
  ClientId client_ = 0;
  httplib::Server server_;
  uint16_t port_ = 0;
  std::thread listener_, sampler_;
  std::mutex mutex_;  // guards stopping_, history_ and every Waiter
  std::condition_variable woken_;
  bool stopping_ = false;
  std::deque<json> history_;
  // Scrapes of /metrics and the loop time their copies took (loop only).
  uint64_t scrapes_ = 0;
  double scrape_loop_seconds_ = 0;
};

Result<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    asio::io_context& io, Store* store, const SessionServer* ipc,
    const SessionServer* rpc, const std::string& host, uint16_t port) {
  auto impl = std::make_unique<Impl>(io, store, ipc, rpc);
  Status listening = impl->Listen(host, port);
  if (!listening.ok()) {
    impl->Disconnect();
    return listening;
  }
  return std::unique_ptr<MetricsServer>(new MetricsServer(std::move(impl)));
}

MetricsServer::MetricsServer(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}

MetricsServer::~MetricsServer() { Stop(); }

uint16_t MetricsServer::port() const { return impl_->port(); }

void MetricsServer::Stop() {
  if (!impl_) return;
  impl_->Stop();
  impl_->Disconnect();
  impl_.reset();
}

}  // namespace trellis::server
