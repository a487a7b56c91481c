// DeferredMetaStore: a MetaStore that completes later, as a remote backend
// does. Calls go to a wrapped store through a ManualExecutor (standing in
// for the network and the daemon's loop), in one of two ways:
// * kCall: each call is queued and carried out by the wrapped store, with
//   its completion and the name notifications it causes, when the test runs
//   that job. Tests choose the order, so racing calls are applied in any.
// * kCompletion: each call is carried out at once, but its completion, and
//   each name notification, is a queued job. A notification can so reach the
//   daemon before the completion of a call applied earlier, as with a watch.
//
// Destroying it drops its queued jobs: they do nothing when run later, and
// completions are never called (the MetaStore contract).
//
// Not thread-safe: one test thread.
#pragma once

#include <memory>
#include <string>

#include "server/meta_store.h"
#include "testing/manual_executor.h"

namespace trellis::testing {

class DeferredMetaStore final : public server::MetaStore {
 public:
  enum class Mode { kCall, kCompletion };

  // `loop` must outlive the store.
  DeferredMetaStore(std::unique_ptr<server::MetaStore> inner,
                    ManualExecutor* loop, Mode mode = Mode::kCall);

  std::string backend() const override { return inner_->backend(); }
  void Register(server::InstanceInfo self, Callback<uint16_t> done) override;
  void PutName(const std::string& name, ObjectID id, bool overwrite,
               StatusCallback done) override;
  void GetName(const std::string& name, Callback<ObjectID> done) override;
  void DropName(const std::string& name, StatusCallback done) override;
  void ListNames(const std::string& pattern, size_t limit,
                 Callback<NameList> done) override;
  void DropNamesOf(ObjectID id, StatusCallback done) override;
  void Publish(ObjectID id, const nlohmann::json& tree,
               StatusCallback done) override;
  void Unpublish(ObjectID id, StatusCallback done) override;
  void GetPublished(ObjectID id, Callback<nlohmann::json> done) override;
  void ListInstances(Callback<std::vector<server::InstanceInfo>> done) override;

  // The wrapped store, to inspect (or change) its state at once.
  server::MetaStore* inner() { return inner_.get(); }
  // Jobs queued and not yet run.
  size_t calls_in_flight() const { return *in_flight_; }

 private:
  // kCall: queues `call(inner)`. kCompletion: calls it now (it must pass
  // its completion through Later).
  void Defer(std::function<void(server::MetaStore*)> call);
  // kCompletion: `done` wrapped to run as a queued job.
  template <typename Arg>
  std::function<void(Arg)> Later(std::function<void(Arg)> done);
  // Queues `job` unless this is destroyed first.
  void Post(std::function<void()> job);

  std::unique_ptr<server::MetaStore> inner_;
  ManualExecutor* loop_;
  Mode mode_;
  // Shared with the queued calls; expired once this is destroyed.
  std::shared_ptr<size_t> in_flight_;
};

}  // namespace trellis::testing
