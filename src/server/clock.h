// Clock: the daemon's notion of time, injected so that tests control it
// (src/testing/fake_clock.h) and nothing in the daemon reads the system
// clock or sleeps. Timeouts today (GetName with wait), leases and TTLs later.
#pragma once

#include <chrono>
#include <functional>

namespace trellis::server {

class Clock {
 public:
  using Duration = std::chrono::steady_clock::duration;
  using TimePoint = std::chrono::steady_clock::time_point;

  virtual ~Clock() = default;

  // Monotonic time. Never blocks.
  virtual TimePoint Now() const = 0;
  // Runs `fn` on the daemon's loop thread once Now() has reached `when`:
  // never inside this call, even if `when` has passed. Never blocks. A timer
  // cannot be cancelled: `fn` checks whether it is still wanted. Timers still
  // pending when the clock is destroyed are dropped, never run.
  virtual void RunAt(TimePoint when, std::function<void()> fn) = 0;

  // RunAt(Now() + delay, fn).
  void RunAfter(Duration delay, std::function<void()> fn) {
    RunAt(Now() + delay, std::move(fn));
  }
};

}  // namespace trellis::server
