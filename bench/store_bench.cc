// store_bench: what trellis costs against what the hardware does, in one run.
//
//   store_bench [--trellisd=PATH] [--arena=3G] [--max-size=1G]
//               [google benchmark flags]
//
// Starts its own trellisd (--reserve, on a private socket in /tmp), forks a
// reader process that connects to it separately, and measures:
//
//   Memcpy/N       memcpy of N bytes between two private, pre-faulted buffers
//                  (one thread): the baseline every ratio refers to.
//   Put/N          CreateBlob(N) + ParallelMemcpy into the arena + Seal, by a
//                  client whose mapping of the arena is warm (it wrote there
//                  before) - the steady state of a producer process. The
//                  blob is deleted after each put (not timed), so the next
//                  one reuses the range, as Memcpy/N reuses its buffers.
//   PutFresh/N     the same by a client connected just before (connect not
//                  timed): its mapping has no page-table entries yet, so the
//                  copy also pays one minor fault per 4 KiB page.
//   Get/N          GetBlob of an N-byte blob in the reader process (which did
//                  not create it), touching its first and last byte.
//   SmallPut, SmallGet, SmallPutBatch, SmallGetBatch, TensorPut, TensorGet
//                  objects/second from one client: 100-byte blobs one per
//                  call (PutBlob inline: 1 round trip; GetBlob: 1) and 100 per
//                  call (PutBlobs/GetBlobs), 12-element int64 tensors
//                  (Tensor::Put: 2 round trips; Tensor::Get: 1).
//   RoundTrip      one minimal request (GetBlobs of no ids) to the daemon,
//   SocketPingPong and a 32-byte ping-pong over a socketpair between two
//                  threads: the floor any request/reply protocol sits on.
//
// Times are wall-clock per operation (manual timing with steady_clock, so
// untimed set-up and clean-up never leak into them). Put and Get report
// `vs_memcpy`: their time divided by the same run's Memcpy of the same N.
#include <benchmark/benchmark.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bench_support.h"
#include "trellis/client.h"
#include "trellis/tensor.h"

namespace {

using Clock = std::chrono::steady_clock;
using trellis::ObjectID;
using trellis::bench::Die;
using trellis::bench::Must;

constexpr int64_t kKiB = 1024, kMiB = kKiB * 1024, kGiB = kMiB * 1024;
constexpr int64_t kSmallSize = 100;
constexpr size_t kSmallPool = 2000;  // distinct objects per Get iteration
constexpr size_t kBatch = 100;

std::string g_trellisd;  // --trellisd, by default the one built here
std::string g_arena = "3G";
uint64_t g_max_size = kGiB;
std::string g_socket;
// Stopped by Shutdown, or on Die by its destructor (static objects are
// destroyed on exit); the reader dies with us (PR_SET_PDEATHSIG).
std::unique_ptr<trellis::testing::DaemonProcess> g_daemon;
pid_t g_reader = -1;
int g_reader_fd = -1;  // socketpair end talking to the reader process
std::unique_ptr<trellis::Client> g_client;
uint8_t* g_src = nullptr;  // private, pre-faulted, g_max_size bytes
uint8_t* g_dst = nullptr;
std::map<int64_t, double> g_memcpy_ns;  // N -> mean ns of Memcpy/N

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

bool ReadFull(int fd, void* p, size_t n) {
  auto* b = static_cast<uint8_t*>(p);
  while (n > 0) {
    ssize_t r = read(fd, b, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    b += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}
bool WriteFull(int fd, const void* p, size_t n) {
  auto* b = static_cast<const uint8_t*>(p);
  while (n > 0) {
    ssize_t r = write(fd, b, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    b += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

// ------------------------------------------------------------ reader process

enum ReaderOp : uint32_t {
  kQuit = 0,
  kGetEach = 1,    // GetBlob per id, touching first and last byte
  kGetBatch = 2,   // GetBlobs of kBatch ids at a time
  kTensorEach = 3  // Tensor::Get per id
};
struct ReaderRequest {
  uint32_t op;
  uint32_t count;
  uint64_t expect_size;  // blobs: each must have this size (0: any)
};
struct ReaderReply {
  int64_t ns;  // time of the whole loop
  int64_t ok;  // 1, or 0 after an error (printed by the reader)
};

volatile uint8_t g_sink;

// Runs in the forked reader: its own connection, its own arena mapping.
[[noreturn]] void ReaderMain(int fd) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  auto client = trellis::Client::Connect(g_socket);
  if (!client.ok()) {
    std::fprintf(stderr, "reader: %s\n", client.status().ToString().c_str());
    _exit(1);
  }
  std::vector<uint64_t> raw;
  std::vector<ObjectID> ids;
  while (true) {
    ReaderRequest req;
    if (!ReadFull(fd, &req, sizeof(req)) || req.op == kQuit) _exit(0);
    raw.resize(req.count);
    if (!ReadFull(fd, raw.data(), raw.size() * 8)) _exit(1);
    ids.clear();
    for (uint64_t v : raw) ids.emplace_back(v);
    bool ok = true;
    auto fail = [&](const trellis::Status& s) {
      std::fprintf(stderr, "reader: %s\n", s.ToString().c_str());
      ok = false;
    };
    auto t0 = Clock::now();
    if (req.op == kGetEach) {
      for (ObjectID id : ids) {
        auto blob = (*client)->GetBlob(id);
        if (!blob.ok()) {
          fail(blob.status());
          break;
        }
        if (req.expect_size && blob->size() != req.expect_size) {
          fail(trellis::Status::Invalid("wrong blob size"));
          break;
        }
        if (blob->size() > 0) {
          g_sink = blob->data()[0];
          g_sink = blob->data()[blob->size() - 1];
        }
      }
    } else if (req.op == kGetBatch) {
      for (size_t i = 0; i < ids.size() && ok; i += kBatch) {
        std::vector<ObjectID> batch(
            ids.begin() + i, ids.begin() + std::min(ids.size(), i + kBatch));
        auto blobs = (*client)->GetBlobs(batch);
        if (!blobs.ok()) {
          fail(blobs.status());
          break;
        }
        for (const trellis::Blob& b : *blobs) g_sink = b.data()[0];
      }
    } else if (req.op == kTensorEach) {
      for (ObjectID id : ids) {
        auto t = trellis::Tensor::Get(**client, id);
        if (!t.ok()) {
          fail(t.status());
          break;
        }
        g_sink = t->data()[0];
      }
    }
    auto t1 = Clock::now();
    ReaderReply reply{
        std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count(),
        ok ? 1 : 0};
    if (!WriteFull(fd, &reply, sizeof(reply))) _exit(1);
  }
}

// Asks the reader to run `op` over `ids`; returns the seconds it took.
double ReaderRun(ReaderOp op, const std::vector<ObjectID>& ids,
                 uint64_t expect_size = 0) {
  ReaderRequest req{op, static_cast<uint32_t>(ids.size()), expect_size};
  std::vector<uint64_t> raw;
  for (ObjectID id : ids) raw.push_back(id.value());
  if (!WriteFull(g_reader_fd, &req, sizeof(req)) ||
      !WriteFull(g_reader_fd, raw.data(), raw.size() * 8)) {
    Die("reader process is gone");
  }
  ReaderReply reply;
  if (!ReadFull(g_reader_fd, &reply, sizeof(reply))) {
    Die("reader process is gone");
  }
  if (!reply.ok) Die("reader failed (see above)");
  return static_cast<double>(reply.ns) * 1e-9;
}

// --------------------------------------------------------- daemon and setup

void StartDaemon() {
  auto start = Clock::now();
  // Ready once its socket accepts connections (probes closed at once: the
  // reader process is forked before this process holds a connection).
  g_daemon = trellis::bench::StartDaemon(
      g_trellisd, {"--size", g_arena, "--reserve", "--instance-id", "7"});
  g_socket = g_daemon->socket();
  std::fprintf(stderr,
               "store_bench: trellisd %s --size %s --reserve up in %.2f s\n",
               g_socket.c_str(), g_arena.c_str(), Seconds(start, Clock::now()));
}

void StartReader() {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    Die("socketpair failed");
  }
  // Forked before any thread or large buffer exists in this process.
  pid_t pid = fork();
  if (pid < 0) Die("fork failed");
  if (pid == 0) {
    close(sv[0]);
    ReaderMain(sv[1]);
  }
  close(sv[1]);
  g_reader = pid;
  g_reader_fd = sv[0];
}

void Shutdown() {
  if (g_reader > 0) {
    ReaderRequest quit{kQuit, 0, 0};
    (void)WriteFull(g_reader_fd, &quit, sizeof(quit));
    waitpid(g_reader, nullptr, 0);
    g_reader = -1;
  }
  g_client.reset();
  g_daemon.reset();  // SIGTERM, wait, remove its socket dir
}

uint8_t* PrefaultedBuffer(size_t n) {
  void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (p == MAP_FAILED) Die("cannot allocate " + std::to_string(n) + " bytes");
  auto* b = static_cast<uint8_t*>(p);
  for (size_t i = 0; i < n; i += 4096) b[i] = static_cast<uint8_t>(i >> 12);
  return b;
}

void DeleteAll(trellis::Client& client, std::vector<ObjectID>* ids) {
  for (size_t i = 0; i < ids->size(); i += 10000) {
    std::vector<ObjectID> chunk(
        ids->begin() + i, ids->begin() + std::min(ids->size(), i + 10000));
    (void)Must(client.Delete(chunk, /*deep=*/true, /*force=*/false), "Delete");
  }
  ids->clear();
}

void SetRatio(benchmark::State& state, double total_seconds) {
  auto it = g_memcpy_ns.find(state.range(0));
  if (it == g_memcpy_ns.end() || state.iterations() == 0) return;
  double mean_ns =
      total_seconds * 1e9 / static_cast<double>(state.iterations());
  state.counters["vs_memcpy"] = mean_ns / it->second;
}

// ------------------------------------------------------- large-buffer cases

void BM_Memcpy(benchmark::State& state) {
  size_t n = static_cast<size_t>(state.range(0));
  double total = 0;
  for (auto _ : state) {
    auto t0 = Clock::now();
    std::memcpy(g_dst, g_src, n);
    benchmark::ClobberMemory();
    auto t1 = Clock::now();
    state.SetIterationTime(Seconds(t0, t1));
    total += Seconds(t0, t1);
  }
  g_memcpy_ns[state.range(0)] =
      total * 1e9 / static_cast<double>(state.iterations());
  state.SetBytesProcessed(state.iterations() * state.range(0));
}

// One put: create + copy + seal, timed; returns the new blob's id.
ObjectID TimedPut(trellis::Client& client, size_t n, double* seconds) {
  auto t0 = Clock::now();
  auto writer = Must(client.CreateBlob(n), "CreateBlob");
  trellis::ParallelMemcpy(writer->data(), g_src, n);
  ObjectID id = Must(writer->Seal(), "Seal");
  *seconds = Seconds(t0, Clock::now());
  return id;
}

void BM_Put(benchmark::State& state) {
  size_t n = static_cast<size_t>(state.range(0));
  double total = 0;
  for (auto _ : state) {
    double s;
    std::vector<ObjectID> ids = {TimedPut(*g_client, n, &s)};
    state.SetIterationTime(s);
    total += s;
    // Not timed. Deleting at once lets the next put reuse the same range, as
    // Memcpy/N reuses its buffers: both compare cache-warm (small N) and
    // page-table-warm destinations.
    DeleteAll(*g_client, &ids);
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
  SetRatio(state, total);
}

void BM_PutFresh(benchmark::State& state) {
  size_t n = static_cast<size_t>(state.range(0));
  double total = 0, connect = 0;
  for (auto _ : state) {
    auto c0 = Clock::now();
    auto client = Must(trellis::Client::Connect(g_socket), "Connect");
    connect += Seconds(c0, Clock::now());
    double s;
    std::vector<ObjectID> ids = {TimedPut(*client, n, &s)};
    state.SetIterationTime(s);
    total += s;
    DeleteAll(*client, &ids);
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
  state.counters["connect_us"] =
      connect * 1e6 / static_cast<double>(state.iterations());
  SetRatio(state, total);
}

void BM_Get(benchmark::State& state) {
  size_t n = static_cast<size_t>(state.range(0));
  double unused;
  std::vector<ObjectID> ids = {TimedPut(*g_client, n, &unused)};
  double total = 0;
  for (auto _ : state) {
    double s = ReaderRun(kGetEach, ids, n);
    state.SetIterationTime(s);
    total += s;
  }
  DeleteAll(*g_client, &ids);
  SetRatio(state, total);
}

// ------------------------------------------------------- small-object rates

void SetRate(benchmark::State& state, size_t per_iteration) {
  state.counters["objects_per_s"] = benchmark::Counter(
      static_cast<double>(state.iterations() * per_iteration),
      benchmark::Counter::kIsRate);
  state.SetItemsProcessed(state.iterations() *
                          static_cast<int64_t>(per_iteration));
}

const uint8_t* SmallPayload() {
  static uint8_t payload[kSmallSize];
  for (int64_t i = 0; i < kSmallSize; ++i) payload[i] = static_cast<uint8_t>(i);
  return payload;
}

std::vector<ObjectID> PutSmallPool(size_t count) {
  std::vector<std::pair<const void*, uint64_t>> payloads(
      kBatch, {SmallPayload(), kSmallSize});
  std::vector<ObjectID> ids;
  while (ids.size() < count) {
    auto batch = Must(g_client->PutBlobs(payloads), "PutBlobs");
    ids.insert(ids.end(), batch.begin(), batch.end());
  }
  ids.resize(count);  // count is a multiple of kBatch
  return ids;
}

void BM_SmallPut(benchmark::State& state) {
  const uint8_t* payload = SmallPayload();
  std::vector<ObjectID> ids;
  ids.reserve(1 << 20);
  for (auto _ : state) {
    auto t0 = Clock::now();
    ObjectID id = Must(g_client->PutBlob(payload, kSmallSize), "PutBlob");
    state.SetIterationTime(Seconds(t0, Clock::now()));
    ids.push_back(id);
  }
  DeleteAll(*g_client, &ids);
  SetRate(state, 1);
}

void BM_SmallPutBatch(benchmark::State& state) {
  std::vector<std::pair<const void*, uint64_t>> payloads(
      kBatch, {SmallPayload(), kSmallSize});
  std::vector<ObjectID> ids;
  for (auto _ : state) {
    auto t0 = Clock::now();
    auto batch = Must(g_client->PutBlobs(payloads), "PutBlobs");
    state.SetIterationTime(Seconds(t0, Clock::now()));
    ids.insert(ids.end(), batch.begin(), batch.end());
  }
  DeleteAll(*g_client, &ids);
  SetRate(state, kBatch);
}

// SmallGet (kGetEach) and SmallGetBatch (kGetBatch).
template <ReaderOp kOp>
void BM_SmallGet(benchmark::State& state) {
  std::vector<ObjectID> ids = PutSmallPool(kSmallPool);
  for (auto _ : state) {
    state.SetIterationTime(ReaderRun(kOp, ids, kSmallSize));
  }
  DeleteAll(*g_client, &ids);
  SetRate(state, kSmallPool);
}

const int64_t* TensorData() {
  static int64_t data[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
  return data;
}

void BM_TensorPut(benchmark::State& state) {
  std::vector<ObjectID> ids;
  for (auto _ : state) {
    auto t0 = Clock::now();
    ObjectID id =
        Must(trellis::Tensor::Put(*g_client, "<i8", {12}, TensorData()), "Put");
    state.SetIterationTime(Seconds(t0, Clock::now()));
    ids.push_back(id);
  }
  DeleteAll(*g_client, &ids);
  SetRate(state, 1);
}

void BM_TensorGet(benchmark::State& state) {
  std::vector<ObjectID> ids;
  for (size_t i = 0; i < kSmallPool; ++i) {
    ids.push_back(Must(
        trellis::Tensor::Put(*g_client, "<i8", {12}, TensorData()), "Put"));
  }
  for (auto _ : state) {
    state.SetIterationTime(ReaderRun(kTensorEach, ids));
  }
  DeleteAll(*g_client, &ids);
  SetRate(state, kSmallPool);
}

// ------------------------------------------------------------ latency floor

void BM_RoundTrip(benchmark::State& state) {
  for (auto _ : state) {
    auto t0 = Clock::now();
    (void)Must(g_client->GetBlobs({}), "GetBlobs");
    state.SetIterationTime(Seconds(t0, Clock::now()));
  }
  SetRate(state, 1);
}

void BM_SocketPingPong(benchmark::State& state) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    Die("socketpair failed");
  }
  std::thread echo([fd = sv[1]] {
    uint8_t buf[32];
    while (ReadFull(fd, buf, sizeof(buf)) && WriteFull(fd, buf, sizeof(buf))) {
    }
  });
  uint8_t buf[32] = {};
  for (auto _ : state) {
    auto t0 = Clock::now();
    if (!WriteFull(sv[0], buf, sizeof(buf)) ||
        !ReadFull(sv[0], buf, sizeof(buf))) {
      Die("ping-pong failed");
    }
    state.SetIterationTime(Seconds(t0, Clock::now()));
  }
  shutdown(sv[0], SHUT_RDWR);
  echo.join();
  close(sv[0]);
  close(sv[1]);
  SetRate(state, 1);
}

void RegisterAll() {
  std::vector<int64_t> sizes;
  for (int64_t n :
       {kKiB, 64 * kKiB, kMiB, 16 * kMiB, 64 * kMiB, 256 * kMiB, kGiB}) {
    if (static_cast<uint64_t>(n) <= g_max_size) sizes.push_back(n);
  }
  auto sized = [&](const char* name, void (*fn)(benchmark::State&)) {
    auto* b = benchmark::RegisterBenchmark(name, fn);
    for (int64_t n : sizes) b->Arg(n);
    b->UseManualTime()->Unit(benchmark::kMicrosecond);
  };
  sized("Memcpy", BM_Memcpy);
  sized("Put", BM_Put);
  sized("PutFresh", BM_PutFresh);
  sized("Get", BM_Get);
  for (auto [name, fn] :
       std::vector<std::pair<const char*, void (*)(benchmark::State&)>>{
           {"SmallPut", BM_SmallPut},
           {"SmallGet", BM_SmallGet<kGetEach>},
           {"SmallPutBatch", BM_SmallPutBatch},
           {"SmallGetBatch", BM_SmallGet<kGetBatch>},
           {"TensorPut", BM_TensorPut},
           {"TensorGet", BM_TensorGet},
           {"RoundTrip", BM_RoundTrip},
           {"SocketPingPong", BM_SocketPingPong}}) {
    benchmark::RegisterBenchmark(name, fn)->UseManualTime()->Unit(
        benchmark::kMicrosecond);
  }
}

}  // namespace

int main(int argc, char** argv) {
  // Our own flags first; the rest goes to Google Benchmark.
  CLI::App app{
      "store_bench: trellis against memcpy and a socket ping-pong (see the "
      "comment at the top of bench/store_bench.cc). Other arguments go to "
      "Google Benchmark (--benchmark_filter=..., --benchmark_out=...).",
      "store_bench"};
  trellis::bench::AddTrellisdFlag(app, &g_trellisd);
  app.add_option("--arena", g_arena, "trellisd --size, run with --reserve")
      ->capture_default_str();
  trellis::bench::AddSizeFlag(app, "--max-size", &g_max_size,
                              "largest N of the sized cases (default 1G)");
  app.allow_extras();
  CLI11_PARSE(app, argc, argv);
  std::vector<std::string> extras = app.remaining();
  std::vector<char*> rest = {argv[0]};
  for (std::string& a : extras) rest.push_back(a.data());
  int bench_argc = static_cast<int>(rest.size());
  rest.push_back(nullptr);
  benchmark::Initialize(&bench_argc, rest.data());
  if (benchmark::ReportUnrecognizedArguments(bench_argc, rest.data())) return 1;
  signal(SIGPIPE, SIG_IGN);

  StartDaemon();
  StartReader();
  g_client = Must(trellis::Client::Connect(g_socket), "Connect");
  g_src = PrefaultedBuffer(static_cast<size_t>(g_max_size));
  g_dst = PrefaultedBuffer(static_cast<size_t>(g_max_size));
  benchmark::AddCustomContext("trellisd",
                              g_trellisd + " --size " + g_arena + " --reserve");
  benchmark::AddCustomContext("small_object_bytes", std::to_string(kSmallSize));
  RegisterAll();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  Shutdown();
  return 0;
}
