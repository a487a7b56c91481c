// ManualExecutor: a queue of jobs that runs only when the test says so, in
// the order it chooses. Stands in for the worker pool
// (StoreHooks::run_in_background: a job is `work` then `done`, both run by
// Run on the test's thread) and for a remote service's completions posted to
// the loop (DeferredMetaStore).
//
// Not thread-safe: one test thread.
#pragma once

#include <cassert>
#include <cstddef>
#include <deque>
#include <functional>
#include <utility>

#include "server/memory_manager.h"

namespace trellis::testing {

class ManualExecutor {
 public:
  // Queues `job` at the end.
  void Post(std::function<void()> job) { jobs_.push_back(std::move(job)); }

  // A run_in_background that queues `work` followed by `done` as one job.
  // The executor must outlive its users.
  server::RunInBackground AsRunInBackground() {
    return [this](std::function<void()> work, std::function<void()> done) {
      Post([work = std::move(work), done = std::move(done)] {
        work();
        done();
      });
    };
  }

  size_t pending() const { return jobs_.size(); }

  // Runs the job at `index` (0: the oldest); false if there is none. Jobs it
  // posts are queued at the end.
  bool Run(size_t index = 0) {
    if (index >= jobs_.size()) return false;
    std::function<void()> job = std::move(jobs_[index]);
    jobs_.erase(jobs_.begin() + static_cast<std::ptrdiff_t>(index));
    job();
    return true;
  }
  // Runs the newest job; false if there is none.
  bool RunNewest() { return !jobs_.empty() && Run(jobs_.size() - 1); }

  // Runs jobs oldest first, including those they post, until none is left.
  // Returns how many ran. Asserts after `limit` jobs (a livelock).
  size_t RunAll(size_t limit = 1000000) {
    size_t ran = 0;
    while (Run(0)) {
      ++ran;
      assert(ran < limit && "jobs keep posting jobs");
    }
    return ran;
  }

  // Drops every queued job without running it.
  void Clear() { jobs_.clear(); }

 private:
  std::deque<std::function<void()>> jobs_;
};

}  // namespace trellis::testing
