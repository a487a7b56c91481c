// The local MetaStore backend: maps in daemon memory. Every call completes
// before it returns.
#include <fnmatch.h>

#include <map>
#include <random>
#include <unordered_map>
#include <unordered_set>

#include "server/meta_store.h"

namespace trellis::server {
namespace {

class LocalMetaStore final : public MetaStore {
 public:
  explicit LocalMetaStore(uint16_t instance_id) : instance_id_(instance_id) {}

  std::string backend() const override { return "local"; }

  void Register(InstanceInfo self, Callback<uint16_t> done) override {
    if (instance_id_ == 0) {
      std::random_device rd;
      instance_id_ = static_cast<uint16_t>(rd() % 65535 + 1);
    }
    self.instance_id = instance_id_;
    self_ = std::move(self);
    done(instance_id_);
  }

  void PutName(const std::string& name, ObjectID id, bool overwrite,
               StatusCallback done) override {
    if (name.empty()) return done(Status::Invalid("a name must not be empty"));
    auto it = names_.find(name);
    if (it != names_.end()) {
      if (!overwrite) {
        return done(Status::ObjectExists("name '" + name + "' is bound to " +
                                         it->second.ToString()));
      }
      UnindexName(name, it->second);
      it->second = id;
    } else {
      names_.emplace(name, id);
    }
    names_of_[id].insert(name);
    NotifyNameBound(name, id);
    done(Status::OK());
  }

  void GetName(const std::string& name, Callback<ObjectID> done) override {
    auto it = names_.find(name);
    if (it == names_.end()) return done(NameNotFound(name));
    done(it->second);
  }

  void DropName(const std::string& name, StatusCallback done) override {
    auto it = names_.find(name);
    if (it == names_.end()) return done(NameNotFound(name));
    UnindexName(name, it->second);
    names_.erase(it);
    done(Status::OK());
  }

  void ListNames(const std::string& pattern, size_t limit,
                 Callback<NameList> done) override {
    NameList out;
    for (const auto& [name, id] : names_) {
      if (out.size() >= limit) break;
      if (fnmatch(pattern.c_str(), name.c_str(), 0) == 0) {
        out.emplace_back(name, id);
      }
    }
    done(std::move(out));
  }

  void DropNamesOf(ObjectID id, StatusCallback done) override {
    auto it = names_of_.find(id);
    if (it != names_of_.end()) {
      for (const std::string& name : it->second) names_.erase(name);
      names_of_.erase(it);
    }
    done(Status::OK());
  }

  void Publish(ObjectID id, const nlohmann::json& tree,
               StatusCallback done) override {
    published_[id] = tree;
    done(Status::OK());
  }

  void Unpublish(ObjectID id, StatusCallback done) override {
    published_.erase(id);
    done(Status::OK());
  }

  void GetPublished(ObjectID id, Callback<nlohmann::json> done) override {
    auto it = published_.find(id);
    if (it == published_.end()) {
      return done(Status::ObjectNotFound("object " + id.ToString() +
                                         " is not published"));
    }
    done(it->second);
  }

  void UpdateUsage(uint64_t arena_used) override {
    self_.arena_used = arena_used;
  }

  void ListInstances(Callback<std::vector<InstanceInfo>> done) override {
    std::vector<InstanceInfo> instances;
    if (self_.instance_id != 0) instances.push_back(self_);
    done(std::move(instances));
  }

 private:
  static Status NameNotFound(const std::string& name) {
    return Status::ObjectNotFound("name '" + name + "' not found");
  }

  void UnindexName(const std::string& name, ObjectID id) {
    auto it = names_of_.find(id);
    if (it == names_of_.end()) return;
    it->second.erase(name);
    if (it->second.empty()) names_of_.erase(it);
  }

  uint16_t instance_id_;  // 0 until Register if none was given
  InstanceInfo self_;
  std::map<std::string, ObjectID> names_;  // sorted: ListNames is ordered
  std::unordered_map<ObjectID, std::unordered_set<std::string>> names_of_;
  std::unordered_map<ObjectID, nlohmann::json> published_;
};

}  // namespace

std::unique_ptr<MetaStore> MakeLocalMetaStore(uint16_t instance_id) {
  return std::make_unique<LocalMetaStore>(instance_id);
}

}  // namespace trellis::server
