// The production StoreHooks: timers on the daemon's asio io_context and
// background work on an asio thread pool. Tests use src/testing/fake_clock.h
// and src/testing/manual_executor.h instead.
#pragma once

#include <asio.hpp>
#include <memory>

#include "server/clock.h"
#include "server/memory_manager.h"

namespace trellis::server {

// The steady clock; timers are asio steady_timers on `io` (their handlers
// run on the thread running `io`). `io` must outlive the clock.
class AsioClock final : public Clock {
 public:
  explicit AsioClock(asio::io_context& io) : io_(io) {}

  TimePoint Now() const override { return std::chrono::steady_clock::now(); }

  void RunAt(TimePoint when, std::function<void()> fn) override {
    auto timer = std::make_shared<asio::steady_timer>(io_, when);
    timer->async_wait([timer, fn = std::move(fn)](const asio::error_code& ec) {
      if (!ec) fn();
    });
  }

 private:
  asio::io_context& io_;
};

// Runs `work` on `pool`, then posts `done` to `io`. Both must outlive every
// job: the daemon joins the pool before it destroys the store.
inline RunInBackground PostToPool(asio::io_context& io,
                                  asio::thread_pool& pool) {
  return [&io, &pool](std::function<void()> work, std::function<void()> done) {
    asio::post(pool,
               [&io, work = std::move(work), done = std::move(done)]() mutable {
                 work();
                 asio::post(io, std::move(done));
               });
  };
}

}  // namespace trellis::server
