// PeerFetcher: moves the bytes of an object that lives on another daemon of
// the cluster into this one's arena, for GetMeta {fetch: true}
// (docs/protocol.md, "Fetching").
//
// The Store decides what is copied and owns the result; the fetcher only
// talks to the peer. One fetch, in steps:
//   1. (fetch thread) GetMeta {ids: [id], relocate: true} on the peer: its
//      expanded tree, with the blobs held there for this daemon.
//   2. (loop) `plan(tree, reply)`: the Store allocates the blobs it does not
//      have yet (replica blobs, CREATED) and replies with where each one's
//      bytes go, or with an error that ends the fetch.
//   3. (fetch thread) ReadBlobs of the planned blobs straight into those
//      destinations; the peer's holds are released.
//   4. (loop) `done(tree)`, or `done(error)`: the peer's error, the plan's,
//      or Disconnected naming the peer when the connection fails or stays
//      silent for the timeout (a peer killed mid-transfer). After an error
//      the destinations hold a part of the bytes at most; the Store aborts
//      them.
// Fetches run one after another on one thread, each step in order, so a
// large transfer gets the whole link and the loop never blocks on a peer.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "server/memory_manager.h"
#include "trellis/object_id.h"
#include "trellis/status.h"

namespace trellis::server {

// One blob to copy from the peer: `size` bytes into dst.
struct BlobCopy {
  ObjectID id;
  uint64_t size = 0;
  uint8_t* dst = nullptr;
};

class PeerFetcher {
 public:
  using json = nlohmann::json;
  using PlanReply = std::function<void(Result<std::vector<BlobCopy>>)>;
  // Called on the loop with the peer's tree; must call `reply` exactly
  // once, on the loop, now or later. The destinations stay valid until
  // `done` is called.
  using Plan = std::function<void(const json& tree, PlanReply reply)>;
  using Done = std::function<void(Result<json>)>;

  virtual ~PeerFetcher() = default;
  // Fetches object `id` from the daemon serving RPC at `endpoint`, as above.
  // Called on the loop; `plan` and `done` run there.
  virtual void Fetch(const std::string& endpoint, ObjectID id, Plan plan,
                     Done done) = 0;
};

struct RpcFetcherOptions {
  std::string token;  // presented to peers (trellisd --rpc-token)
  // Longest a connect, send or receive may wait for a peer.
  std::chrono::milliseconds timeout = std::chrono::seconds(30);
};

// The fetcher of trellisd: libtrellis's remote client (ClientCore over the
// TCP transport), one cached connection per peer. `run_on_fetch_thread`
// runs the blocking steps on one dedicated thread (FIFO) and posts their
// completions to the loop; whoever owns that thread joins it before the
// Store (whose arena the copies write) is destroyed.
std::unique_ptr<PeerFetcher> MakeRpcFetcher(RunInBackground run_on_fetch_thread,
                                            RpcFetcherOptions options);

}  // namespace trellis::server
