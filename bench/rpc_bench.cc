// rpc_bench: moving blob bytes over trellisd's TCP server (loopback) against
// memcpy of the same bytes, in one run.
//
//   rpc_bench [--trellisd=PATH] [--blob=1G] [--reps=5]
//
// Runs trellisd --reserve with an arena of 2 BLOB + 256M and --rpc on
// 127.0.0.1, puts one BLOB-sized blob over IPC, then measures (median of
// --reps, GB/s = 1e9 bytes/s):
//
//   memcpy     the blob from the arena mapping (IPC GetBlob) into a
//              pre-faulted buffer of this process;
//   ReadBlobs  the blob over TCP (testing::RpcTestClient) into the same
//              pre-faulted buffer: request, reply, bulk frames;
//   WriteBlob  the buffer over TCP into a new blob (CreateBlobs, WriteBlob
//              chunks, Seal; the blob is deleted after each rep) in the
//              reserved arena.
//
// Compare with `iperf3 -s -1 -p PORT` / `iperf3 -c 127.0.0.1 -p PORT -t 3`
// on the same machine for what one TCP stream does on loopback. Prints a
// table on stdout; every copied byte is checked once (not timed).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "bench_support.h"
#include "common/protocol.h"
#include "testing/rpc_client.h"
#include "trellis/client.h"

namespace trellis::bench {
namespace {

using protocol::json;
using protocol::MessageType;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int Main(int argc, char** argv) {
  CLI::App app{"rpc_bench: blob bytes over loopback TCP vs memcpy"};
  std::string trellisd;
  uint64_t blob = 1ull << 30;
  int reps = 5;
  AddTrellisdFlag(app, &trellisd);
  AddSizeFlag(app, "--blob", &blob, "bytes per transfer (default 1G)");
  app.add_option("--reps", reps, "repetitions (default 5)");
  CLI11_PARSE(app, argc, argv);

  testing::DaemonOptions options;
  options.trellisd = trellisd;
  options.args = {"--size", std::to_string(2 * blob + (256u << 20)),
                  "--reserve"};
  options.rpc = "127.0.0.1:0";
  options.start_timeout = std::chrono::seconds(120);
  auto daemon = Must(testing::DaemonProcess::Start(options), "trellisd");

  // The blob, put over IPC.
  auto ipc = Must(Client::Connect(daemon->socket()), "connect");
  auto writer = Must(ipc->CreateBlob(blob), "CreateBlob");
  for (uint64_t i = 0; i < blob; i += 8) {
    uint64_t v = i * 0x9e3779b97f4a7c15ull;
    std::memcpy(writer->data() + i, &v, std::min<uint64_t>(8, blob - i));
  }
  ObjectID id = Must(writer->Seal(), "Seal");
  Blob source = Must(ipc->GetBlob(id), "GetBlob");
  // The destination, pre-faulted (fresh pages would dominate otherwise).
  std::vector<uint8_t> buffer(blob, 1);

  auto tcp =
      Must(testing::RpcTestClient::Connect("127.0.0.1", daemon->rpc_port()),
           "connect tcp");
  Must(tcp->Hello().status(), "Hello");

  std::vector<double> copy, read, write;
  for (int rep = 0; rep < reps; ++rep) {
    auto start = Clock::now();
    std::memcpy(buffer.data(), source.data(), blob);
    copy.push_back(Seconds(start));

    std::memset(buffer.data(), 0, 4096);  // so the check below means something
    start = Clock::now();
    auto sizes = Must(tcp->StartReadBlobs({id}), "ReadBlobs");
    Must(tcp->ReceiveBlobs({id}, sizes, buffer.data()), "receive");
    read.push_back(Seconds(start));
    if (std::memcmp(buffer.data(), source.data(), blob) != 0) {
      Die("ReadBlobs bytes differ");
    }

    start = Clock::now();
    json created =
        Must(tcp->Call(MessageType::kCreateBlobs, {{"sizes", {blob}}}),
             "CreateBlobs");
    ObjectID copy_id(created["ids"][0].get<uint64_t>());
    Must(tcp->WriteBlob(copy_id, buffer.data(), blob), "WriteBlob");
    Must(tcp->Call(MessageType::kSeal, {{"ids", {copy_id.value()}}}).status(),
         "Seal");
    write.push_back(Seconds(start));
    Blob written = Must(ipc->GetBlob(copy_id), "GetBlob copy");
    if (std::memcmp(written.data(), source.data(), blob) != 0) {
      Die("WriteBlob bytes differ");
    }
    written = Blob();
    Must(ipc->Delete({copy_id}).status(), "Delete");
  }
  auto rate = [blob](double seconds) { return blob / seconds / 1e9; };
  std::printf("%-34s %10s %10s\n", "operation (median of reps)", "seconds",
              "GB/s");
  std::printf("%-34s %10.3f %10.2f\n", "memcpy arena -> buffer", Median(copy),
              rate(Median(copy)));
  std::printf("%-34s %10.3f %10.2f\n", "ReadBlobs over TCP -> buffer",
              Median(read), rate(Median(read)));
  std::printf("%-34s %10.3f %10.2f\n", "WriteBlob buffer over TCP -> arena",
              Median(write), rate(Median(write)));
  std::printf("(%llu-byte blob, %d reps)\n",
              static_cast<unsigned long long>(blob), reps);
  return 0;
}

}  // namespace
}  // namespace trellis::bench

int main(int argc, char** argv) { return trellis::bench::Main(argc, argv); }
