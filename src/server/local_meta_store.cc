// The local MetaStore backend: maps in daemon memory.
#include <fnmatch.h>

#include <map>
#include <unordered_map>
#include <unordered_set>

#include "server/meta_store.h"

namespace trellis::server {
namespace {

class LocalMetaStore final : public MetaStore {
 public:
  std::string backend() const override { return "local"; }

  Status PutName(const std::string& name, ObjectID id,
                 bool overwrite) override {
    if (name.empty()) return Status::Invalid("a name must not be empty");
    auto it = names_.find(name);
    if (it != names_.end()) {
      if (!overwrite) {
        return Status::ObjectExists("name '" + name + "' is bound to " +
                                    it->second.ToString());
      }
      UnindexName(name, it->second);
      it->second = id;
    } else {
      names_.emplace(name, id);
    }
    names_of_[id].insert(name);
    NotifyNameBound(name, id);
    return Status::OK();
  }

  Result<ObjectID> GetName(const std::string& name) const override {
    auto it = names_.find(name);
    if (it == names_.end()) {
      return Status::ObjectNotFound("name '" + name + "' not found");
    }
    return it->second;
  }

  Status DropName(const std::string& name) override {
    auto it = names_.find(name);
    if (it == names_.end()) {
      return Status::ObjectNotFound("name '" + name + "' not found");
    }
    UnindexName(name, it->second);
    names_.erase(it);
    return Status::OK();
  }

  std::vector<std::pair<std::string, ObjectID>> ListNames(
      const std::string& pattern, size_t limit) const override {
    std::vector<std::pair<std::string, ObjectID>> out;
    for (const auto& [name, id] : names_) {
      if (out.size() >= limit) break;
      if (fnmatch(pattern.c_str(), name.c_str(), 0) == 0) {
        out.emplace_back(name, id);
      }
    }
    return out;
  }

  void DropNamesOf(ObjectID id) override {
    auto it = names_of_.find(id);
    if (it == names_of_.end()) return;
    for (const std::string& name : it->second) names_.erase(name);
    names_of_.erase(it);
  }

  Status Publish(ObjectID id, const nlohmann::json& tree) override {
    published_[id] = tree;
    return Status::OK();
  }
  void Unpublish(ObjectID id) override { published_.erase(id); }
  bool IsPublished(ObjectID id) const override {
    return published_.count(id) > 0;
  }

 private:
  void UnindexName(const std::string& name, ObjectID id) {
    auto it = names_of_.find(id);
    if (it == names_of_.end()) return;
    it->second.erase(name);
    if (it->second.empty()) names_of_.erase(it);
  }

  std::map<std::string, ObjectID> names_;  // sorted: ListNames is ordered
  std::unordered_map<ObjectID, std::unordered_set<std::string>> names_of_;
  std::unordered_map<ObjectID, nlohmann::json> published_;
};

}  // namespace

std::unique_ptr<MetaStore> MakeLocalMetaStore() {
  return std::make_unique<LocalMetaStore>();
}

}  // namespace trellis::server
