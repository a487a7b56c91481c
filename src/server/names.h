// Helpers of the Store's name requests (docs/protocol.md, PutName/GetName):
// GetNames that wait for a name, and the per-name lock that keeps this
// daemon's binds of one name in order while the MetaStore completes later.
//
// Not thread-safe: loop thread only, like the Store.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>

#include "server/clock.h"
#include "server/object_table.h"
#include "trellis/object_id.h"
#include "trellis/status.h"

namespace trellis::server {

class NameWaiters {
 public:
  using Done = std::function<void(Result<ObjectID>)>;

  // `clock` must outlive the waiters.
  explicit NameWaiters(Clock* clock);
  NameWaiters(const NameWaiters&) = delete;
  NameWaiters& operator=(const NameWaiters&) = delete;

  // Adds a waiter for `name` on behalf of `client` and returns its id.
  // `done` is called exactly once, unless the client is dropped first: with
  // the object when Bound(name, ...) or Answer(id, ...) is called, or with
  // Timeout once `timeout` has passed on the clock (zero: never).
  uint64_t Add(ClientId client, std::string name,
               std::chrono::milliseconds timeout, Done done);
  // Answers one waiter; nothing if it was answered or dropped already.
  void Answer(uint64_t waiter, Result<ObjectID> result);
  // Answers every waiter for `name`, oldest first.
  void Bound(const std::string& name, ObjectID id);
  // Drops the client's waiters without calling them.
  void DropClient(ClientId client);
  size_t size() const { return waiters_.size(); }

 private:
  struct Waiter {
    ClientId client;
    std::string name;
    Done done;
  };

  Clock* clock_;
  uint64_t next_id_ = 1;
  std::map<uint64_t, Waiter> waiters_;  // by id: oldest first
  // Timers outlive the waiters (they cannot be cancelled): they hold a weak
  // pointer to this and do nothing once it has expired.
  std::shared_ptr<NameWaiters*> self_;
};

// Serialises this daemon's binds of each name. A check of whether a name is
// bound and the bind that follows it (CreateObject with overwrite=false) then
// see no other bind of that name from this daemon in between, however late
// the MetaStore completes.
class NameLocks {
 public:
  // Runs `fn` now if nobody holds the lock of `name`, else once the holders
  // queued before it have released it. Whoever `fn` is run for holds the
  // lock and must call Release(name) exactly once.
  void Acquire(const std::string& name, std::function<void()> fn);
  void Release(const std::string& name);
  bool held(const std::string& name) const { return queues_.count(name) > 0; }

 private:
  // A name is present while its lock is held; the queue holds who waits.
  std::unordered_map<std::string, std::deque<std::function<void()>>> queues_;
};

}  // namespace trellis::server
