#include "server/fetcher.h"

#include <unordered_map>
#include <utility>

#include "client/client_core.h"
#include "client/transport.h"
#include "common/protocol.h"

namespace trellis::server {
namespace {

using protocol::MessageType;

class RpcFetcher final : public PeerFetcher {
 public:
  RpcFetcher(RunInBackground run, RpcFetcherOptions options)
      : run_(std::move(run)), options_(std::move(options)) {}

  void Fetch(const std::string& endpoint, ObjectID id, Plan plan,
             Done done) override {
    auto job = std::make_shared<Job>();
    job->endpoint = endpoint;
    job->id = id;
    job->plan = std::move(plan);
    job->done = std::move(done);
    run_([this, job] { GetTree(*job); },
         [this, job] {
           if (!job->tree.ok()) return job->done(job->tree.status());
           job->plan(*job->tree, [this, job](Result<std::vector<BlobCopy>> c) {
             job->copies = std::move(c);
             run_([this, job] { CopyAndRelease(*job); },
                  [job] { job->done(std::move(job->tree)); });
           });
         });
  }

 private:
  // One fetch's state, handed between the loop and the fetch thread (never
  // touched by both at once: each step starts when the one before ended).
  struct Job {
    std::string endpoint;
    ObjectID id;
    Plan plan;
    Done done;
    std::shared_ptr<ClientCore> peer;
    Result<json> tree = Status::Invalid("not fetched");
    std::vector<ObjectID> held;  // at the peer, for this fetch
    Result<std::vector<BlobCopy>> copies = Status::Invalid("no plan");
  };

  // --- on the fetch thread ---

  // The cached connection to `endpoint`, or a new one.
  Result<std::shared_ptr<ClientCore>> Connection(const std::string& endpoint) {
    auto it = peers_.find(endpoint);
    if (it != peers_.end()) return it->second;
    TRELLIS_ASSIGN_OR_RAISE(auto transport,
                            ConnectTcpTransport(endpoint, options_.timeout));
    TRELLIS_ASSIGN_OR_RAISE(
        auto core, ClientCore::Start(std::move(transport), options_.token));
    peers_[endpoint] = core;
    return core;
  }

  Result<json> CallPeer(Job& job, MessageType type, const json& body) {
    for (int attempt = 0;; ++attempt) {
      TRELLIS_ASSIGN_OR_RAISE(job.peer, Connection(job.endpoint));
      Result<json> reply = job.peer->Call(type, body);
      if (reply.ok() || !reply.status().IsDisconnected()) return reply;
      peers_.erase(job.endpoint);
      // A cached connection may have gone stale (the peer restarted): one
      // more try on a fresh one.
      if (attempt > 0) return reply;
    }
  }

  void GetTree(Job& job) {
    Result<json> reply = CallPeer(
        job, MessageType::kGetMeta,
        json{{"ids", protocol::IdsToJson({job.id})}, {"relocate", true}});
    if (!reply.ok()) {
      job.tree = Failed(job, reply.status());
      return;
    }
    auto held = protocol::GetIds(*reply, "held");
    auto trees = reply->find("trees");
    if (!held.ok() || trees == reply->end() || !trees->is_array() ||
        trees->size() != 1) {
      job.tree = Status::Invalid("malformed GetMeta reply from the peer at " +
                                 job.endpoint);
      return;
    }
    job.held = std::move(*held);
    job.tree = std::move((*trees)[0]);
  }

  void CopyAndRelease(Job& job) {
    Status copied = job.copies.status();
    if (copied.ok() && !job.copies->empty()) {
      std::vector<ObjectID> ids;
      std::vector<uint64_t> sizes;
      std::vector<uint8_t*> dsts;
      for (const BlobCopy& c : *job.copies) {
        ids.push_back(c.id);
        sizes.push_back(c.size);
        dsts.push_back(c.dst);
      }
      copied = job.peer->ReadBlobsInto(ids, sizes, dsts);
      if (copied.IsDisconnected()) peers_.erase(job.endpoint);
    }
    // Sent with the next request on this connection (or dropped with it).
    job.peer->Release(std::move(job.held));
    if (!copied.ok()) job.tree = Failed(job, copied);
  }

  static Status Failed(const Job& job, const Status& st) {
    return Status(st.code(), "fetching " + job.id.ToString() + " from " +
                                 job.endpoint + ": " + st.message());
  }

  const RunInBackground run_;
  const RpcFetcherOptions options_;
  // Fetch thread only.
  std::unordered_map<std::string, std::shared_ptr<ClientCore>> peers_;
};

}  // namespace

std::unique_ptr<PeerFetcher> MakeRpcFetcher(RunInBackground run_on_fetch_thread,
                                            RpcFetcherOptions options) {
  return std::make_unique<RpcFetcher>(std::move(run_on_fetch_thread),
                                      std::move(options));
}

}  // namespace trellis::server
