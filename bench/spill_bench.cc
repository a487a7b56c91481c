// spill_bench: spilling and reloading against what the disk does, in one run.
//
//   spill_bench [--trellisd=PATH] [--dir=DIR] [--blob=16M] [--count=64]
//               [--reps=5] [--put-reps=9] [--json=FILE] [--md=FILE]
//
// DIR (default /var/tmp/trellis-spill-bench.PID, removed at the end) is the
// disk directory under test: trellisd spills there, and dd writes and reads
// the same amount there, interleaved with trellis in every repetition so both
// see the same machine load. Measures (median of --reps unless said):
//
//   dd        write, buffered:    dd bs=8M count=N/8M (page cache, no flush)
//             write, fdatasync:   the same with conv=fdatasync (reaches disk)
//             read, cold / warm:  dd to /dev/null after dropping the page cache
//                                 / right after (file cached)
//   spill     Evict of all COUNT blobs (one request; the daemon writes them
//             with its worker threads, no fsync): buffered, compare with dd's
//             buffered write. Then fdatasync of every spill file: spill +
//             fdatasync compares with dd conv=fdatasync.
//   files     reference: COUNT separate BLOB-sized files (the layout of spill
//             files) read one after another by this process, cold.
//   reload    a fresh client GetBlob's each evicted blob in turn (one reload
//             at a time), page cache dropped first (cold) or not (warm); and
//             GetBlobs of all of them in one request (reloads in parallel),
//             cold. Every reloaded byte is checked afterwards (not timed).
//   put       PutBlob of a new 64 MiB and 1 MiB blob (median of --put-reps)
//             into an empty arena, and into an arena full of cold, unheld
//             16 MiB blobs (--spill-high 1.0, so nothing spills ahead of
//             time: the put waits for LRU blobs to be spilled first), with
//             --spill-low 1.0 (spill just enough) and 0.7 (the default:
//             spill down to 70 % once the put fits; the rest continues in
//             the background and is let settle before the next repetition).
//
// Dropping the page cache needs root (sync; echo 3 > drop_caches); if that is
// not possible the cold figures are reported as unavailable. Writes
// --json (all samples, medians, ratios, machine) and --md (tables; the
// hand-written text after the "## Findings" line of an existing --md file is
// kept).
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "bench_support.h"
#include "trellis/client.h"

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;
using trellis::ObjectID;
using trellis::bench::Die;
using trellis::bench::Must;

constexpr uint64_t kMiB = 1ull << 20;

std::string g_trellisd;  // --trellisd, by default the one built here
std::string g_dir;
bool g_own_dir = false;
uint64_t g_blob = 16 * kMiB;
int g_count = 64;
int g_reps = 5;
int g_put_reps = 9;
std::string g_json_path = "spill_bench.json";
std::string g_md_path = "spill_bench.md";
// Stopped by StopDaemon, or on Die by its destructor (static objects are
// destroyed on exit).
std::unique_ptr<trellis::testing::DaemonProcess> g_daemon;
std::string g_socket;
bool g_can_drop = true;

double Since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string Shell(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  pclose(p);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) {
    out.pop_back();
  }
  return out;
}

std::string LoadAverage() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return a + " " + b + " " + c;
}

// Flushes dirty pages and empties the page cache, so reads come from disk.
bool DropCaches() {
  sync();
  if (!g_can_drop) return false;
  int fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
  bool ok = fd >= 0 && write(fd, "3\n", 2) == 2;
  if (fd >= 0) close(fd);
  if (!ok) {
    std::fprintf(stderr,
                 "spill_bench: cannot drop the page cache (%s); cold figures "
                 "are not available\n",
                 std::strerror(errno));
    g_can_drop = false;
  }
  return ok;
}

// Bytes of blob `index`, at word granularity, so mix-ups are detected.
void FillBlob(uint8_t* p, uint64_t n, uint64_t index) {
  auto* w = reinterpret_cast<uint64_t*>(p);
  for (uint64_t i = 0; i < n / 8; ++i) w[i] = (index << 40) ^ i;
}
bool CheckBlob(const uint8_t* p, uint64_t n, uint64_t index) {
  const auto* w = reinterpret_cast<const uint64_t*>(p);
  for (uint64_t i = 0; i < n / 8; ++i) {
    if (w[i] != ((index << 40) ^ i)) return false;
  }
  return true;
}

// ------------------------------------------------------------------- dd

// Runs dd and returns its wall time in seconds (measured here, around the
// whole process, like the trellis figures).
double RunDd(const std::string& args) {
  std::string cmd = "dd " + args + " status=none";
  auto t0 = Clock::now();
  int rc = std::system(cmd.c_str());
  double s = Since(t0);
  if (rc != 0) Die("failed: " + cmd);
  return s;
}

// ------------------------------------------------------------------- daemon

void StopDaemon() { g_daemon.reset(); }  // SIGTERM, wait, remove socket dir

void StartDaemon(const std::string& size, const std::vector<std::string>& extra,
                 std::string* command) {
  std::vector<std::string> args = {
      "--size", size, "--reserve", "--spill-dir", g_dir, "--instance-id", "9"};
  args.insert(args.end(), extra.begin(), extra.end());
  *command = "trellisd --size " + size + " --reserve --spill-dir DIR";
  for (const auto& e : extra) *command += " " + e;
  g_daemon = trellis::bench::StartDaemon(g_trellisd, args);
  g_socket = g_daemon->socket();
}

// Waits until background spills are over (the daemon's spill counters and
// usage stop moving).
void Settle(trellis::Client& client) {
  uint64_t last = UINT64_MAX, last_used = UINT64_MAX;
  int stable = 0;
  while (stable < 5) {
    auto st = Must(client.Status(), "Status");
    uint64_t now = st.spill_count + st.spill_failures;
    stable = (now == last && st.used == last_used) ? stable + 1 : 0;
    last = now;
    last_used = st.used;
    usleep(20000);
  }
}

// fdatasync of every spill file; returns the seconds it took.
double SyncSpillFiles() {
  auto t0 = Clock::now();
  for (const auto& e : std::filesystem::directory_iterator(g_dir)) {
    int fd = open(e.path().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;  // removed meanwhile
    fdatasync(fd);
    close(fd);
  }
  return Since(t0);
}

// The layout spill files have, without trellis: COUNT files of BLOB bytes
// read one after another with 8 MiB preads, after dropping the page cache.
// Returns the seconds, or a negative value if the cache cannot be dropped.
double ReadSeparateFilesCold(const std::vector<uint8_t>& block) {
  std::vector<std::string> paths;
  for (int i = 0; i < g_count; ++i) {
    paths.push_back(g_dir + "/ref" + std::to_string(i));
    int fd = open(paths.back().c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, block.data(), block.size()) !=
                      static_cast<ssize_t>(block.size())) {
      Die("cannot write " + paths.back());
    }
    close(fd);
  }
  double seconds = -1;
  std::vector<uint8_t> buf(block.size());
  if (DropCaches()) {
    auto t0 = Clock::now();
    for (const std::string& path : paths) {
      int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
      uint64_t done = 0;
      while (fd >= 0 && done < buf.size()) {
        ssize_t n = pread(fd, buf.data() + done,
                          std::min<uint64_t>(8 * kMiB, buf.size() - done),
                          static_cast<off_t>(done));
        if (n <= 0) Die("cannot read " + path);
        done += static_cast<uint64_t>(n);
      }
      if (fd >= 0) close(fd);
    }
    seconds = Since(t0);
  }
  for (const std::string& path : paths) unlink(path.c_str());
  sync();
  return seconds;
}

// ------------------------------------------------------ a: throughput

struct Throughput {
  std::map<std::string, std::vector<double>> seconds;  // name -> samples
};

json RunThroughput(std::string* daemon_cmd) {
  const uint64_t total = g_blob * static_cast<uint64_t>(g_count);
  // Room for every blob below the default high watermark (nothing spills
  // until evicted).
  uint64_t arena = total + total / 2;
  StartDaemon(std::to_string(arena / kMiB) + "M", {}, daemon_cmd);
  auto client = Must(trellis::Client::Connect(g_socket), "Connect");
  std::vector<uint8_t> src(g_blob);
  std::vector<ObjectID> ids;
  for (int i = 0; i < g_count; ++i) {
    FillBlob(src.data(), g_blob, static_cast<uint64_t>(i));
    ids.push_back(Must(client->PutBlob(src.data(), g_blob), "PutBlob"));
  }
  std::fprintf(stderr,
               "spill_bench: %d x %llu MiB blobs put (arena %llu MiB)\n",
               g_count, static_cast<unsigned long long>(g_blob / kMiB),
               static_cast<unsigned long long>(arena / kMiB));

  const std::string dd_file = g_dir + "/ddtest";
  const std::string dd_count =
      " bs=8M count=" + std::to_string(total / (8 * kMiB));
  std::map<std::string, std::vector<double>> s;
  uint64_t checked = 0, bad = 0;
  auto evict = [&](const char* name) {
    // The previous reader's holds are dropped when the daemon sees it
    // disconnect, which may come after our next request: wait for that.
    while (Must(client->Status(), "Status").held_bytes > 0) usleep(1000);
    sync();  // no dirty backlog from the previous step
    auto t0 = Clock::now();
    uint64_t bytes = Must(client->Evict(ids), "Evict");
    s[name].push_back(Since(t0));
    if (bytes != total) Die("Evict wrote " + std::to_string(bytes) + " bytes");
  };
  auto verify = [&](const std::vector<trellis::Blob>& blobs) {
    for (size_t i = 0; i < blobs.size(); ++i) {
      checked++;
      if (blobs[i].size() != g_blob || !CheckBlob(blobs[i].data(), g_blob, i)) {
        bad++;
      }
    }
  };
  auto reload_each = [&](const char* name) {
    auto fresh = Must(trellis::Client::Connect(g_socket), "Connect");
    std::vector<trellis::Blob> blobs;
    auto t0 = Clock::now();
    for (ObjectID id : ids)
      blobs.push_back(Must(fresh->GetBlob(id), "GetBlob"));
    s[name].push_back(Since(t0));
    verify(blobs);
  };
  auto reload_batch = [&](const char* name) {
    auto fresh = Must(trellis::Client::Connect(g_socket), "Connect");
    auto t0 = Clock::now();
    auto blobs = Must(fresh->GetBlobs(ids), "GetBlobs");
    s[name].push_back(Since(t0));
    verify(blobs);
  };

  for (int rep = 0; rep < g_reps; ++rep) {
    std::fprintf(stderr, "spill_bench: throughput repetition %d/%d (load %s)\n",
                 rep + 1, g_reps, LoadAverage().c_str());
    // dd on the same directory, same amount.
    sync();
    unlink(dd_file.c_str());
    s["dd_write_buffered"].push_back(
        RunDd("if=/dev/zero of=" + dd_file + dd_count));
    sync();
    unlink(dd_file.c_str());
    sync();
    s["dd_write_fdatasync"].push_back(
        RunDd("if=/dev/zero of=" + dd_file + dd_count + " conv=fdatasync"));
    if (DropCaches()) {
      s["dd_read_cold"].push_back(
          RunDd("if=" + dd_file + " of=/dev/null bs=8M"));
    }
    s["dd_read_warm"].push_back(RunDd("if=" + dd_file + " of=/dev/null bs=8M"));
    unlink(dd_file.c_str());
    sync();
    double separate = ReadSeparateFilesCold(src);
    if (separate > 0) s["files_read_cold"].push_back(separate);

    // Spill (buffered) + fdatasync of the files; reload from disk.
    evict("spill_buffered");
    s["spill_fdatasync"].push_back(s["spill_buffered"].back() +
                                   SyncSpillFiles());
    if (DropCaches()) reload_each("reload_each_cold");
    // Spill again; reload from the page cache.
    evict("spill_buffered");
    reload_each("reload_each_warm");
    // Spill again; reload everything in one request, from disk.
    evict("spill_buffered");
    if (DropCaches()) {
      reload_batch("reload_batch_cold");
    } else {
      reload_batch("reload_batch_warm");
    }
  }
  auto st = Must(client->Status(), "Status");
  client.reset();
  StopDaemon();

  json out;
  out["bytes"] = total;
  out["blob_bytes"] = g_blob;
  out["blobs"] = g_count;
  out["arena_bytes"] = arena;
  out["checked_blobs"] = checked;
  out["corrupt_blobs"] = bad;
  out["daemon_spill_failures"] = st.spill_failures;
  out["daemon_reload_failures"] = st.reload_failures;
  for (auto& [name, samples] : s) {
    std::vector<double> gbps;
    for (double sec : samples)
      gbps.push_back(static_cast<double>(total) / sec / 1e9);
    out["results"][name] = {{"seconds", samples},
                            {"gb_per_s", gbps},
                            {"median_gb_per_s", Median(gbps)}};
  }
  if (bad) Die(std::to_string(bad) + " reloaded blobs had wrong contents");
  return out;
}

// ------------------------------------------------------ c: put latency

json RunPutLatency(const std::string& low, std::string* daemon_cmd) {
  const uint64_t arena = g_blob * static_cast<uint64_t>(g_count);  // 1 GiB
  StartDaemon(std::to_string(arena / kMiB) + "M",
              {"--spill-high", "1.0", "--spill-low", low}, daemon_cmd);
  auto client = Must(trellis::Client::Connect(g_socket), "Connect");
  const std::vector<uint64_t> sizes = {64 * kMiB, 1 * kMiB};
  std::vector<uint8_t> src(64 * kMiB);
  FillBlob(src.data(), src.size(), 999);
  std::vector<uint8_t> cold(g_blob);
  FillBlob(cold.data(), cold.size(), 7);

  std::vector<ObjectID> cold_ids;
  // Puts cold 16 MiB blobs until the arena has no room for another.
  auto fill = [&] {
    while (true) {
      auto st = Must(client->Status(), "Status");
      if (st.free < g_blob) break;
      cold_ids.push_back(Must(client->PutBlob(cold.data(), g_blob), "PutBlob"));
    }
    Settle(*client);
  };
  json out;
  for (uint64_t size : sizes) {
    std::vector<double> empty_ms, full_ms, spills;
    // Empty arena: everything deleted; the put reuses touched pages.
    for (int rep = 0; rep < g_put_reps + 1; ++rep) {
      auto t0 = Clock::now();
      ObjectID id = Must(client->PutBlob(src.data(), size), "PutBlob");
      double ms = Since(t0) * 1e3;
      if (rep > 0) empty_ms.push_back(ms);  // the first warms the range up
      Must(client->Delete({id}).status(), "Delete");
    }
    // Full arena of cold blobs: the put must spill first.
    for (int rep = 0; rep < g_put_reps; ++rep) {
      fill();
      auto before = Must(client->Status(), "Status");
      if (before.free >= size) Die("the arena is not full");
      auto t0 = Clock::now();
      ObjectID id = Must(client->PutBlob(src.data(), size), "PutBlob");
      full_ms.push_back(Since(t0) * 1e3);
      Settle(*client);
      auto after = Must(client->Status(), "Status");
      spills.push_back(
          static_cast<double>(after.spill_count - before.spill_count));
      Must(client->Delete({id}).status(), "Delete");
    }
    Must(client->Delete(cold_ids).status(), "Delete");
    cold_ids.clear();
    Settle(*client);
    std::string key = std::to_string(size / kMiB) + "MiB";
    out[key] = {{"bytes", size},
                {"empty_ms", empty_ms},
                {"full_ms", full_ms},
                {"median_empty_ms", Median(empty_ms)},
                {"median_full_ms", Median(full_ms)},
                {"ratio_full_over_empty", Median(full_ms) / Median(empty_ms)},
                {"blobs_spilled_per_put", Median(spills)}};
    std::fprintf(stderr,
                 "spill_bench: put %s, --spill-low %s: empty %.2f ms, full "
                 "%.2f ms (%.0f blobs spilled)\n",
                 key.c_str(), low.c_str(), Median(empty_ms), Median(full_ms),
                 Median(spills));
  }
  client.reset();
  StopDaemon();
  return out;
}

// ------------------------------------------------------------- report

std::string Fmt(double v, int digits = 2) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

std::string KeptFindings() {
  std::ifstream f(g_md_path);
  if (!f) return "";
  std::stringstream ss;
  ss << f.rdbuf();
  std::string text = ss.str();
  auto pos = text.find("\n## Findings");
  return pos == std::string::npos ? "" : text.substr(pos + 1);
}

void WriteMarkdown(const json& j) {
  std::string findings = KeptFindings();
  std::ofstream md(g_md_path);
  const json& t = j["throughput"]["results"];
  auto gbps = [&](const std::string& k) -> std::string {
    return t.contains(k) ? Fmt(t[k]["median_gb_per_s"].get<double>())
                         : std::string("n/a");
  };
  auto samples = [&](const std::string& k) -> std::string {
    if (!t.contains(k)) return "";
    std::string s;
    for (double v : t[k]["gb_per_s"]) s += (s.empty() ? "" : ", ") + Fmt(v);
    return s;
  };
  const json& m = j["machine"];
  md << "# spill_bench: spilling and reloading vs the same disk (dd)\n\n"
     << "Written by `bench/spill_bench` (`bash bench/run.sh`); the section "
        "\"Findings\" at the end is hand-written and kept across runs.\n\n"
     << "Command: `" << j["command"].get<std::string>() << "`  \n"
     << "Date: " << m["date"].get<std::string>() << "  \n"
     << "Machine: " << m["cpu"].get<std::string>() << ", "
     << m["nproc"].get<std::string>() << " CPUs, "
     << m["memory"].get<std::string>() << " memory, kernel "
     << m["kernel"].get<std::string>() << "  \n"
     << "Spill directory: `" << m["spill_dir"].get<std::string>() << "` — "
     << m["spill_fs"].get<std::string>() << "  \n"
     << "Load average: before " << m["load_before"].get<std::string>()
     << ", after " << m["load_after"].get<std::string>() << "  \n"
     << "Page cache dropped for cold reads: "
     << (j["page_cache_dropped"].get<bool>() ? "yes (root, sync; echo 3 > "
                                               "/proc/sys/vm/drop_caches)"
                                             : "no (not permitted): cold "
                                               "figures unavailable")
     << "\n\n";

  const json& tp = j["throughput"];
  md << "## Spill and reload throughput\n\n"
     << tp["blobs"].get<int>() << " blobs of "
     << tp["blob_bytes"].get<uint64_t>() / kMiB << " MiB = "
     << Fmt(static_cast<double>(tp["bytes"].get<uint64_t>()) / (1 << 30), 2)
     << " GiB, daemon `" << tp["daemon"].get<std::string>() << "`. Medians of "
     << j["reps"].get<int>()
     << " repetitions, dd interleaved with trellis in each; GB = 1e9 bytes; "
        "times are wall-clock around the whole request/process.\n\n"
     << "| operation | trellis GB/s | dd GB/s (same dir, same bytes) | "
        "trellis / dd | samples (trellis GB/s) |\n|---|---:|---:|---:|---|\n";
  auto row = [&](const std::string& label, const std::string& ours,
                 const std::string& dd) {
    std::string ratio = "—";
    if (t.contains(ours) && t.contains(dd)) {
      ratio = Fmt(t[ours]["median_gb_per_s"].get<double>() /
                  t[dd]["median_gb_per_s"].get<double>()) +
              "x";
    }
    md << "| " << label << " | " << gbps(ours) << " | "
       << (dd.empty() ? "—" : gbps(dd)) << " | " << ratio << " | "
       << samples(ours) << " |\n";
  };
  row("spill (Evict), buffered vs dd buffered write", "spill_buffered",
      "dd_write_buffered");
  row("spill + fdatasync of the files vs dd conv=fdatasync", "spill_fdatasync",
      "dd_write_fdatasync");
  row("reload, GetBlob each, cold cache vs dd read cold", "reload_each_cold",
      "dd_read_cold");
  row("reload, GetBlob each, cold cache vs the same files read without "
      "trellis",
      "reload_each_cold", "files_read_cold");
  row("reload, GetBlobs of all, cold cache vs dd read cold",
      "reload_batch_cold", "dd_read_cold");
  row("reload, GetBlob each, warm cache vs dd read warm", "reload_each_warm",
      "dd_read_warm");
  row("reference: " + std::to_string(j["throughput"]["blobs"].get<int>()) +
          " separate files read one by one (the spill layout), cold, vs dd "
          "of one file",
      "files_read_cold", "dd_read_cold");
  if (t.contains("reload_batch_warm")) {
    row("reload, GetBlobs of all, warm cache vs dd read warm",
        "reload_batch_warm", "dd_read_warm");
  }
  md << "\nEvery reloaded blob was compared word by word with what was put ("
     << tp["checked_blobs"].get<uint64_t>() << " blobs checked, "
     << tp["corrupt_blobs"].get<uint64_t>() << " wrong). Target (issue 4): "
     << "trellis >= 0.5x of the disk's bandwidth, like for like: "
     << j["target"]["summary"].get<std::string>() << ".\n\n";

  md << "## Put latency: empty arena vs arena full of cold objects\n\n"
     << "`PutBlob` (CreateBlobs + copy + Seal) of a new blob, median of "
     << j["put_reps"].get<int>()
     << " repetitions. *Full*: the arena is filled with unheld "
     << g_blob / kMiB
     << " MiB blobs and `--spill-high 1.0` keeps them all in memory, so the "
        "put "
        "waits for least recently used blobs to be spilled. *Empty*: "
        "everything deleted.\n\n"
     << "| daemon | size | empty ms | full ms | full / empty | blobs spilled "
        "per put |\n|---|---:|---:|---:|---:|---:|\n";
  for (const auto& [label, entry] : j["put_latency"].items()) {
    for (const auto& [size, r] : entry["sizes"].items()) {
      md << "| `" << entry["daemon"].get<std::string>() << "` | " << size
         << " | " << Fmt(r["median_empty_ms"].get<double>(), 3) << " | "
         << Fmt(r["median_full_ms"].get<double>(), 2) << " | "
         << Fmt(r["ratio_full_over_empty"].get<double>(), 1) << "x | "
         << Fmt(r["blobs_spilled_per_put"].get<double>(), 0) << " |\n";
    }
  }
  md << "\n";
  if (!findings.empty()) {
    md << findings;
  } else {
    md << "## Findings\n\n(to be written)\n";
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir_arg;
  CLI::App app{
      "spill_bench: spilling and reloading against dd on the same disk (see "
      "the comment at the top of bench/spill_bench.cc)",
      "spill_bench"};
  trellis::bench::AddTrellisdFlag(app, &g_trellisd);
  app.add_option("--dir", dir_arg,
                 "disk directory under test (default: a fresh "
                 "/var/tmp/trellis-spill-bench.PID, removed at the end)");
  trellis::bench::AddSizeFlag(app, "--blob", &g_blob,
                              "blob size, a multiple of 8M (default 16M)");
  app.add_option("--count", g_count, "blobs")->capture_default_str();
  app.add_option("--reps", g_reps, "throughput repetitions")
      ->capture_default_str();
  app.add_option("--put-reps", g_put_reps, "put latency repetitions")
      ->capture_default_str();
  app.add_option("--json", g_json_path, "results as JSON")
      ->capture_default_str();
  app.add_option("--md", g_md_path, "results as Markdown tables")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (g_blob < kMiB || g_blob % (8 * kMiB) != 0 || g_count < 1 || g_reps < 1 ||
      g_put_reps < 1) {
    Die("--blob must be a multiple of 8M; --count/--reps/--put-reps >= 1");
  }
  signal(SIGPIPE, SIG_IGN);
  if (dir_arg.empty()) {
    g_dir = "/var/tmp/trellis-spill-bench." + std::to_string(getpid());
    if (mkdir(g_dir.c_str(), 0700) != 0) Die("cannot create " + g_dir);
    g_own_dir = true;
  } else {
    g_dir = dir_arg;
    std::filesystem::create_directories(g_dir);
  }

  json j;
  std::vector<std::string> cmd(argv, argv + argc);
  std::string command = "spill_bench";
  for (size_t i = 1; i < cmd.size(); ++i) {
    if (cmd[i].rfind("--json=", 0) == 0 || cmd[i].rfind("--md=", 0) == 0 ||
        cmd[i].rfind("--trellisd=", 0) == 0) {
      continue;
    }
    command += " " + cmd[i];
  }
  j["command"] = command;
  j["machine"] = {
      {"cpu", Shell("lscpu | sed -n 's/^Model name: *//p' | head -1")},
      {"nproc", Shell("nproc")},
      {"memory", Shell("free -g | awk '/^Mem:/ {print $2 \" GiB\"}'")},
      {"kernel", Shell("uname -r")},
      {"date", Shell("date -u '+%Y-%m-%d %H:%M UTC'")},
      {"spill_dir", g_own_dir ? "/var/tmp/trellis-spill-bench.PID" : g_dir},
      {"spill_fs", Shell("df -T " + g_dir +
                         " | awk 'NR==2 {print $1 \", \" $2 \", \" $5 \" "
                         "free of \" $3 \" KiB\"}'")},
      {"load_before", LoadAverage()}};
  std::fprintf(stderr, "spill_bench: dir %s (%s), load %s\n", g_dir.c_str(),
               j["machine"]["spill_fs"].get<std::string>().c_str(),
               LoadAverage().c_str());
  j["reps"] = g_reps;
  j["put_reps"] = g_put_reps;

  std::string daemon_cmd;
  j["throughput"] = RunThroughput(&daemon_cmd);
  j["throughput"]["daemon"] = daemon_cmd;
  j["page_cache_dropped"] = g_can_drop;
  for (const char* low : {"1.0", "0.7"}) {
    json r = RunPutLatency(low, &daemon_cmd);
    j["put_latency"][std::string("spill_low_") + low] = {{"daemon", daemon_cmd},
                                                         {"sizes", r}};
  }
  j["machine"]["load_after"] = LoadAverage();

  // Target: >= 0.5x like for like (buffered vs buffered, disk vs disk).
  const json& t = j["throughput"]["results"];
  auto ratio = [&](const char* ours, const char* dd) -> double {
    if (!t.contains(ours) || !t.contains(dd)) return -1;
    return t[ours]["median_gb_per_s"].get<double>() /
           t[dd]["median_gb_per_s"].get<double>();
  };
  json target;
  target["spill_buffered_vs_dd_buffered"] =
      ratio("spill_buffered", "dd_write_buffered");
  target["spill_fdatasync_vs_dd_fdatasync"] =
      ratio("spill_fdatasync", "dd_write_fdatasync");
  target["reload_each_cold_vs_dd_read_cold"] =
      ratio("reload_each_cold", "dd_read_cold");
  target["reload_batch_cold_vs_dd_read_cold"] =
      ratio("reload_batch_cold", "dd_read_cold");
  // Warm reloads read the page cache, not the disk: reported, not judged.
  bool met = true;
  std::string summary;
  for (const auto& [k, v] : target.items()) {
    double r = v.get<double>();
    if (r < 0) continue;
    if (r < 0.5) met = false;
    summary += (summary.empty() ? "" : ", ") + k + " " + Fmt(r) + "x";
  }
  target["met"] = met;
  target["summary"] =
      std::string(met ? "met" : "NOT met") + " (" + summary + ")";
  j["target"] = target;

  std::ofstream(g_json_path) << j.dump(2) << "\n";
  WriteMarkdown(j);
  std::fprintf(stderr, "spill_bench: target %s\nspill_bench: wrote %s and %s\n",
               target["summary"].get<std::string>().c_str(),
               g_json_path.c_str(), g_md_path.c_str());
  if (g_own_dir) std::filesystem::remove_all(g_dir);
  return 0;
}
