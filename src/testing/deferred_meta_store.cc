#include "testing/deferred_meta_store.h"

namespace trellis::testing {

using server::InstanceInfo;
using server::MetaStore;

DeferredMetaStore::DeferredMetaStore(std::unique_ptr<MetaStore> inner,
                                     ManualExecutor* loop, Mode mode)
    : inner_(std::move(inner)),
      loop_(loop),
      mode_(mode),
      in_flight_(std::make_shared<size_t>(0)) {
  inner_->SetNameListener([this](const std::string& name, ObjectID id) {
    if (mode_ == Mode::kCall) return NotifyNameBound(name, id);
    Post([this, name, id] { NotifyNameBound(name, id); });
  });
}

void DeferredMetaStore::Post(std::function<void()> job) {
  ++*in_flight_;
  std::weak_ptr<size_t> alive = in_flight_;
  loop_->Post([alive, job = std::move(job)] {
    auto in_flight = alive.lock();
    if (!in_flight) return;  // destroyed: dropped
    --*in_flight;
    job();
  });
}

template <typename Arg>
std::function<void(Arg)> DeferredMetaStore::Later(
    std::function<void(Arg)> done) {
  if (mode_ == Mode::kCall) return done;
  return [this, done = std::move(done)](Arg result) {
    Post([done, result = std::move(result)] { done(result); });
  };
}

void DeferredMetaStore::Defer(std::function<void(MetaStore*)> call) {
  if (mode_ == Mode::kCompletion) return call(inner_.get());
  MetaStore* inner = inner_.get();
  Post([inner, call = std::move(call)] { call(inner); });
}

void DeferredMetaStore::Register(InstanceInfo self, Callback<uint16_t> done) {
  Defer([self = std::move(self), done = Later(std::move(done))](MetaStore* m) {
    m->Register(self, done);
  });
}

void DeferredMetaStore::PutName(const std::string& name, ObjectID id,
                                bool overwrite, StatusCallback done) {
  Defer([name, id, overwrite, done = Later(std::move(done))](MetaStore* m) {
    m->PutName(name, id, overwrite, done);
  });
}

void DeferredMetaStore::GetName(const std::string& name,
                                Callback<ObjectID> done) {
  Defer([name, done = Later(std::move(done))](MetaStore* m) {
    m->GetName(name, done);
  });
}

void DeferredMetaStore::DropName(const std::string& name, StatusCallback done) {
  Defer([name, done = Later(std::move(done))](MetaStore* m) {
    m->DropName(name, done);
  });
}

void DeferredMetaStore::ListNames(const std::string& pattern, size_t limit,
                                  Callback<NameList> done) {
  Defer([pattern, limit, done = Later(std::move(done))](MetaStore* m) {
    m->ListNames(pattern, limit, done);
  });
}

void DeferredMetaStore::DropNamesOf(ObjectID id, StatusCallback done) {
  Defer([id, done = Later(std::move(done))](MetaStore* m) {
    m->DropNamesOf(id, done);
  });
}

void DeferredMetaStore::Publish(ObjectID id, const nlohmann::json& tree,
                                StatusCallback done) {
  Defer([id, tree, done = Later(std::move(done))](MetaStore* m) {
    m->Publish(id, tree, done);
  });
}

void DeferredMetaStore::Unpublish(ObjectID id, StatusCallback done) {
  Defer([id, done = Later(std::move(done))](MetaStore* m) {
    m->Unpublish(id, done);
  });
}

void DeferredMetaStore::GetPublished(ObjectID id,
                                     Callback<nlohmann::json> done) {
  Defer([id, done = Later(std::move(done))](MetaStore* m) {
    m->GetPublished(id, done);
  });
}

void DeferredMetaStore::ListInstances(
    Callback<std::vector<InstanceInfo>> done) {
  Defer([done = Later(std::move(done))](MetaStore* m) {
    m->ListInstances(done);
  });
}

}  // namespace trellis::testing
