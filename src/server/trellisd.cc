// trellisd: the per-node trellis daemon. See README.md ("Running the daemon")
// and docs/protocol.md.
#include <fcntl.h>
#include <malloc.h>
#include <sched.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <asio.hpp>
#include <chrono>
#include <climits>
#include <csignal>
#include <cstdio>
#include <optional>
#include <string>

#include "common/protocol.h"
#include "common/size_parse.h"
#include "common/socket_path.h"
#include "server/adaptive_poll.h"
#include "server/arena.h"
#include "server/asio_hooks.h"
#include "server/etcd_meta_store.h"
#include "server/fetcher.h"
#include "server/ipc_server.h"
#include "server/meta_store.h"
#include "server/metrics_server.h"
#include "server/rpc_server.h"
#include "server/spill_storage.h"
#include "server/store.h"

namespace {

using trellis::server::AdaptivePoll;
using trellis::server::RunnableTasks;

int Refuse(const std::string& reason) {
  std::fprintf(stderr, "trellisd: %s\n", reason.c_str());
  return 1;
}

std::string Hostname() {
  char name[HOST_NAME_MAX + 1] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "";
  return name;
}

std::vector<std::string> SplitEndpoints(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    std::string ep = text.substr(start, comma - start);
    if (!ep.empty()) out.push_back(std::move(ep));
    start = comma + 1;
  }
  return out;
}

// The one place that picks the metadata store: etcd with --etcd (a member
// of a cluster), else the embedded local one (a cluster of one).
trellis::Result<std::unique_ptr<trellis::server::MetaStore>> MakeMetaStore(
    asio::io_context& io, const std::string& etcd, const std::string& cluster,
    int instance_id) {
  using namespace trellis::server;
  if (etcd.empty()) {
    return MakeLocalMetaStore(static_cast<uint16_t>(instance_id));
  }
  if (instance_id != 0) {
    return trellis::Status::Invalid(
        "--instance-id cannot be combined with --etcd: the cluster assigns "
        "instance ids");
  }
  EtcdMetaStoreOptions options;
  options.endpoints = SplitEndpoints(etcd);
  options.cluster = cluster;
  return MakeEtcdMetaStore(std::move(options), [&io](std::function<void()> fn) {
    asio::post(io, std::move(fn));
  });
}

// Runs `io` until it is stopped or out of work. After each event it polls
// for ready work (yielding the CPU between polls) for `poll`'s window
// before it blocks in epoll: a request that comes within the window is
// served without the sleep and wake of this thread, which on a virtual
// machine whose idle CPU halts costs 30-80 us a request
// (bench/results/wake_latency.md). The window is fixed (--busy-poll-us N)
// or adapts to the gaps between events (auto, see AdaptivePoll); a zero
// window sleeps at once.
// True if more tasks are runnable than there are CPUs (/proc/loadavg; this
// thread is one of them). False if that cannot be read.
bool CpusWanted() {
  static const int loadavg = open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
  static const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  char text[128];
  ssize_t n = loadavg < 0 ? -1 : pread(loadavg, text, sizeof text, 0);
  if (n <= 0) return false;
  return RunnableTasks(std::string_view(text, static_cast<size_t>(n))) > cpus;
}

void RunEventLoop(asio::io_context& io, AdaptivePoll poll) {
  using Clock = std::chrono::steady_clock;
  auto since = [](Clock::time_point t) {
    return std::chrono::duration_cast<AdaptivePoll::Micros>(Clock::now() - t);
  };
  auto last_event = Clock::now();
  // After each event, before an adaptive poll: is any CPU free for it?
  auto check_cpus = [&poll] {
    if (poll.adaptive() && poll.window().count() > 0 && CpusWanted()) {
      poll.Contended();
    }
  };
  while (!io.stopped()) {
    auto before = Clock::now();
    if (io.poll() > 0) {
      poll.Observe(std::chrono::duration_cast<AdaptivePoll::Micros>(
          before - last_event));
      last_event = Clock::now();
      check_cpus();
    } else if (since(last_event) < poll.window()) {
      auto yield_start = Clock::now();
      sched_yield();
      poll.Yielded(since(yield_start));
    } else if (io.run_one() == 0) {
      return;  // stopped, or out of work
    } else {
      poll.Observe(since(last_event));
      last_event = Clock::now();
      check_cpus();
    }
  }
}

// --busy-poll-us's value: "auto" (an adaptive window of at most
// kAutoPollCap) or a fixed number of microseconds.
constexpr AdaptivePoll::Micros kAutoPollCap{500};
std::optional<AdaptivePoll> ParseBusyPoll(const std::string& text) {
  if (text == "auto") return AdaptivePoll(kAutoPollCap, /*adaptive=*/true);
  if (text.empty() || text.size() > 6 ||
      text.find_first_not_of("0123456789") != std::string::npos) {
    return std::nullopt;
  }
  long us = std::stol(text);
  if (us > 100000) return std::nullopt;
  return AdaptivePoll(AdaptivePoll::Micros(us), /*adaptive=*/false);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace trellis;
  using namespace trellis::server;

  // Keep freed heap memory for the next request instead of handing it back
  // to the kernel: a request's buffers (an inline blob is up to 64 KiB,
  // decoded once more) would otherwise land on fresh pages every time, and
  // a first touch costs ~10 us a page on a VM with shadow paging
  // (bench/results/small_frames.md). Bodies above the mmap threshold (the
  // rare large ones, up to --max-frame) still go back at once.
  mallopt(M_MMAP_THRESHOLD, 4 << 20);
  mallopt(M_TRIM_THRESHOLD, 64 << 20);

  CLI::App app{"trellisd: per-node shared-memory object store daemon"};
  std::string socket_path = DefaultSocketPath();
  std::string size_text;
  bool reserve = false;
  std::string log_level = "info";
  std::string socket_mode_text = "0600";
  std::string max_frame_text = "64M";
  int instance_id = 0;
  std::string spill_dir;
  double spill_high = 0.9;
  double spill_low = 0.7;
  std::string etcd;
  std::string cluster = "trellis";
  app.add_option("--socket", socket_path,
                 "UNIX socket to serve (default: $TRELLIS_SOCKET, else "
                 "/tmp/trellis-$UID/trellis.sock)");
  app.add_option("--size", size_text,
                 "arena size, e.g. 512M or 4G (default: a quarter of memory)");
  app.add_flag("--reserve", reserve, "pre-fault the whole arena at start");
  std::string huge_pages = "auto";
  app.add_option("--huge-pages", huge_pages,
                 "auto: the arena in transparent huge pages where the "
                 "kernel's shmem_enabled policy allows it (default); off: "
                 "4 KiB pages")
      ->check(CLI::IsMember({"auto", "off"}));
  app.add_option("--log-level", log_level,
                 "trace, debug, info, warn, error or off")
      ->check(
          CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  app.add_option("--socket-mode", socket_mode_text,
                 "permissions of the socket file, octal (default 0600)");
  app.add_option("--max-frame", max_frame_text,
                 "largest request body accepted (default 64M)");
  app.add_option("--instance-id", instance_id,
                 "16-bit id of this daemon, 1-65535 (default: assigned by the "
                 "metadata store; the local one picks a random id)")
      ->check(CLI::Range(0, 65535));
  app.add_option("--spill-dir", spill_dir,
                 "spill cold objects to files here when memory runs short");
  app.add_option("--spill-high", spill_high,
                 "spill above this fraction of --size (default 0.9)")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--spill-low", spill_low,
                 "spill down to this fraction of --size (default 0.7)")
      ->check(CLI::Range(0.0, 1.0));
  CLI::Option* etcd_option = app.add_option(
      "--etcd", etcd,
      "join a cluster whose metadata is in etcd: client URLs, "
      "comma-separated (http://HOST:PORT or HOST:PORT); default: "
      "the local metadata store, no cluster");
  app.add_option("--cluster", cluster,
                 "with --etcd: the cluster's name; daemons with the same name "
                 "on the same etcd share names and objects (default trellis)")
      ->needs(etcd_option);
  RpcFlags rpc_flags;
  auto* rpc_flag = app.add_option(
      "--rpc", rpc_flags.endpoint,
      "also serve over TCP on [HOST:]PORT (HOST 127.0.0.1 unless given; "
      "port 0 picks a free one)");
  app.add_option("--rpc-token", rpc_flags.token_file,
                 "file holding the secret RPC clients must present (needed "
                 "for a non-loopback --rpc host)")
      ->needs(rpc_flag);
  app.add_option("--rpc-port-file", rpc_flags.port_file,
                 "write the RPC port here once listening")
      ->needs(rpc_flag);
  std::string metrics_endpoint, metrics_port_file;
  auto* metrics_flag = app.add_option(
      "--metrics", metrics_endpoint,
      "serve Prometheus metrics at /metrics and a status page at / over "
      "HTTP on [HOST:]PORT (HOST 127.0.0.1 unless given; port 0 picks a free "
      "one; no authentication: keep it on loopback or a trusted network)");
  app.add_option("--metrics-port-file", metrics_port_file,
                 "write the metrics port here once listening")
      ->needs(metrics_flag);
  std::string busy_poll = "0";
  app.add_option("--busy-poll-us", busy_poll,
                 "after each event, poll for the next one (yielding the CPU "
                 "between polls) before sleeping: N microseconds always (0 "
                 "to 100000; 0, the default, sleeps at once), or auto for a "
                 "window that follows the gaps between requests, up to 500 "
                 "us, closing when they are longer or another task wants the "
                 "CPU. Costs CPU; saves the wake of an idle CPU per request "
                 "on virtual machines (docs/operations.md)")
      ->check([](const std::string& text) {
        return ParseBusyPoll(text) ? std::string()
                                   : "must be auto or microseconds from 0 "
                                     "to 100000, got '" +
                                         text + "'";
      });
  CLI11_PARSE(app, argc, argv);
  if (spill_low > spill_high) {
    return Refuse("--spill-low must not exceed --spill-high");
  }

  // Logs go to stderr: stdout stays free for whoever embeds the daemon.
  spdlog::set_default_logger(spdlog::stderr_color_mt("trellisd"));
  spdlog::set_level(spdlog::level::from_str(log_level));
  spdlog::set_pattern("[%Y-%m-%d %H:%M:%S.%e] [trellisd] [%l] %v");

  uint64_t usable = UsableMemoryBytes();
  uint64_t size = usable / 4;
  if (!size_text.empty()) {
    auto parsed = ParseByteSize(size_text);
    if (!parsed.ok()) return Refuse(parsed.status().message());
    size = *parsed;
  }
  if (size > usable) {
    return Refuse("--size " + std::to_string(size) +
                  " bytes is more than the memory this process may use (" +
                  std::to_string(usable) + " bytes)");
  }
  auto max_frame = ParseByteSize(max_frame_text);
  if (!max_frame.ok())
    return Refuse("--max-frame: " + max_frame.status().message());
  if (*max_frame > UINT32_MAX) return Refuse("--max-frame must be below 4G");
  char* end = nullptr;
  long mode = std::strtol(socket_mode_text.c_str(), &end, 8);
  if (socket_mode_text.empty() || *end != '\0' || mode < 0 || mode > 0777) {
    return Refuse("--socket-mode must be an octal mode like 0600, got '" +
                  socket_mode_text + "'");
  }

  // A spill directory that cannot be used is reported, and the daemon runs
  // without spilling (puts that do not fit fail with OutOfMemory saying why).
  std::unique_ptr<SpillStorage> spill;
  std::string spill_error;
  if (!spill_dir.empty()) {
    auto storage = MakeDirectorySpillStorage(spill_dir);
    if (storage.ok()) {
      spill = std::move(*storage);
    } else {
      spill_error = storage.status().message();
      spdlog::error("spilling disabled: {}", spill_error);
    }
  }

  std::signal(SIGPIPE, SIG_IGN);  // before any thread (etcd's) starts
  asio::io_context io(1);
  // The metadata store assigns this daemon's instance id (the local backend:
  // --instance-id, else a random one; etcd: the cluster's next id). A remote
  // backend answers on the loop. If etcd cannot be reached now the daemon
  // does not start (within a few etcd timeouts): a member that never
  // registered would serve names nobody else sees.
  auto made = MakeMetaStore(io, etcd, cluster, instance_id);
  if (!made.ok()) return Refuse(made.status().message());
  std::unique_ptr<MetaStore> meta = std::move(*made);
  // RPC listens before Register, so the member list has its endpoint; it
  // serves once the store exists (connections wait in the backlog).
  auto rpc = ListenRpcServer(io, rpc_flags, static_cast<uint32_t>(*max_frame));
  if (!rpc.ok()) return Refuse(rpc.status().message());
  InstanceInfo self;
  self.hostname = Hostname();
  self.ipc_socket = socket_path;
  self.rpc_endpoint = *rpc ? AdvertisedEndpoint(**rpc, self.hostname) : "";
  self.arena_size = size;
  std::optional<Result<uint16_t>> registered;
  meta->Register(self, [&registered](Result<uint16_t> id) {
    registered.emplace(std::move(id));
  });
  {
    auto waiting = asio::make_work_guard(io);  // the answer comes from a thread
    while (!registered && io.run_one() > 0) {
    }
  }
  if (!registered) return Refuse("the metadata store never answered Register");
  if (!registered->ok()) {
    if (!etcd.empty()) {  // "cannot join cluster 'NAME': etcd ..."
      return Refuse(registered->status().message());
    }
    return Refuse("cannot register with the " + meta->backend() +
                  " metadata store: " + registered->status().ToString());
  }
  instance_id = **registered;
  io.restart();                      // in case run_one ran out of work
  MetaStore* metadata = meta.get();  // owned by the store from here on

  // Spill and reload copies run here, off the event loop.
  asio::thread_pool workers(2);
  // Fetches from other members run on their own thread, one at a time (a
  // long transfer never delays a spill). They present this daemon's RPC
  // token: members of a cluster share one.
  asio::thread_pool fetch_thread(1);
  RpcFetcherOptions fetch_options;
  if (!rpc_flags.token_file.empty()) {
    auto token = ReadRpcToken(rpc_flags.token_file);
    if (!token.ok()) return Refuse(token.status().message());
    fetch_options.token = *token;
  }
  std::unique_ptr<PeerFetcher> fetcher =
      MakeRpcFetcher(PostToPool(io, fetch_thread), fetch_options);
  AsioClock clock(io);
  StoreOptions store_options;
  store_options.size = size;
  store_options.reserve = reserve;
  store_options.huge_pages = huge_pages == "auto";
  store_options.instance_id = static_cast<uint16_t>(instance_id);
  store_options.spill_high = spill_high;
  store_options.spill_low = spill_low;
  StoreHooks hooks;
  hooks.clock = &clock;
  hooks.run_in_background = PostToPool(io, workers);
  hooks.fetcher = fetcher.get();
  auto store = Store::Create(store_options, std::move(meta), std::move(spill),
                             spill_error, hooks);
  if (!store.ok()) return Refuse(store.status().ToString());

  IpcOptions ipc_options;
  ipc_options.socket_path = socket_path;
  ipc_options.socket_mode = static_cast<mode_t>(mode);
  ipc_options.max_frame = static_cast<uint32_t>(*max_frame);
  if (*rpc) (*rpc)->Serve(store->get());
  IpcServer server(io, store->get(), ipc_options);

  // Before the socket serves: whoever sees the socket up may read the
  // metrics port file (trellis.start_daemon does).
  std::unique_ptr<MetricsServer> metrics;
  if (!metrics_endpoint.empty()) {
    auto endpoint = ParseRpcEndpoint(metrics_endpoint);
    if (!endpoint.ok()) {
      return Refuse("--metrics: " + endpoint.status().message());
    }
    auto serving = MetricsServer::Start(io, store->get(), &server, rpc->get(),
                                        endpoint->first, endpoint->second);
    if (!serving.ok()) return Refuse(serving.status().message());
    metrics = std::move(*serving);
    if (!metrics_port_file.empty()) {
      Status written = WritePortFile(metrics_port_file, metrics->port(),
                                     "--metrics-port-file");
      if (!written.ok()) return Refuse(written.message());
    }
    spdlog::info("metrics and status page on http://{}:{}/", endpoint->first,
                 metrics->port());
  }

  Status started = server.Start();
  if (!started.ok()) return Refuse(started.message());

  // The arena use in the member list, now and then (the backend decides
  // how often it is written).
  asio::steady_timer usage_timer(io);
  std::function<void()> report_usage = [&] {
    metadata->UpdateUsage((*store)->arena_used());
    usage_timer.expires_after(std::chrono::seconds(1));
    usage_timer.async_wait([&](const asio::error_code& ec) {
      if (!ec) report_usage();
    });
  };
  report_usage();

  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const asio::error_code& ec, int signo) {
    if (ec) return;
    spdlog::info("signal {}: shutting down", signo);
    server.Stop();
    if (*rpc) (*rpc)->Stop();
    io.stop();
  });

  spdlog::info(
      "serving {}{} (arena {} bytes{}{}, instance {}, protocol {}, {})",
      socket_path, *rpc ? " and tcp " + EndpointString((*rpc)->endpoint()) : "",
      size, reserve ? ", reserved" : "",
      (*store)->arena().huge_pages() ? ", huge pages" : "", instance_id,
      protocol::kProtocolVersion,
      etcd.empty() ? std::string("local metadata")
                   : "cluster '" + cluster + "' at etcd " + etcd);
  RunEventLoop(io, *ParseBusyPoll(busy_poll));
  if (metrics) metrics->Stop();
  server.Stop();
  if (*rpc) (*rpc)->Stop();
  // No copy may run against the arena once it is unmapped.
  fetch_thread.join();
  workers.join();
  return 0;
}
