#include "server/names.h"

#include <vector>

namespace trellis::server {

NameWaiters::NameWaiters(Clock* clock)
    : clock_(clock), self_(std::make_shared<NameWaiters*>(this)) {}

uint64_t NameWaiters::Add(ClientId client, std::string name,
                          std::chrono::milliseconds timeout, Done done) {
  uint64_t id = next_id_++;
  if (timeout.count() > 0) {
    std::weak_ptr<NameWaiters*> weak = self_;
    clock_->RunAfter(timeout, [weak, id, name, timeout] {
      auto self = weak.lock();
      if (!self) return;
      (*self)->Answer(
          id, Status::Timeout("no object was named '" + name + "' within " +
                              std::to_string(timeout.count()) + " ms"));
    });
  }
  waiters_.emplace(id, Waiter{client, std::move(name), std::move(done)});
  return id;
}

void NameWaiters::Answer(uint64_t waiter, Result<ObjectID> result) {
  auto it = waiters_.find(waiter);
  if (it == waiters_.end()) return;
  Done done = std::move(it->second.done);
  waiters_.erase(it);
  done(std::move(result));
}

void NameWaiters::Bound(const std::string& name, ObjectID id) {
  std::vector<Done> ready;
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    if (it->second.name != name) {
      ++it;
      continue;
    }
    ready.push_back(std::move(it->second.done));
    it = waiters_.erase(it);
  }
  for (Done& done : ready) done(id);
}

void NameWaiters::DropClient(ClientId client) {
  std::erase_if(waiters_,
                [client](const auto& w) { return w.second.client == client; });
}

void NameLocks::Acquire(const std::string& name, std::function<void()> fn) {
  auto [it, free] = queues_.try_emplace(name);
  if (!free) {
    it->second.push_back(std::move(fn));
    return;
  }
  fn();
}

void NameLocks::Release(const std::string& name) {
  auto it = queues_.find(name);
  if (it == queues_.end()) return;
  if (it->second.empty()) {
    queues_.erase(it);
    return;
  }
  std::function<void()> next = std::move(it->second.front());
  it->second.pop_front();
  next();  // the lock passes to it
}

}  // namespace trellis::server
