// FakeClock: a Clock whose time moves only when the test advances it.
//
// Not thread-safe: one test thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <utility>

#include "server/clock.h"

namespace trellis::testing {

class FakeClock final : public server::Clock {
 public:
  TimePoint Now() const override { return now_; }

  void RunAt(TimePoint when, std::function<void()> fn) override {
    timers_.emplace(std::make_pair(when, next_seq_++), std::move(fn));
  }

  // Moves time forward by `delay`, running every timer that falls due, in
  // the order of their times (ties: in the order they were set), with Now()
  // at each timer's time; timers they set run too if they fall due. A timer
  // set for a time already passed runs at the next Advance, even Advance(0).
  void Advance(Duration delay) {
    TimePoint end = now_ + delay;
    while (!timers_.empty() && timers_.begin()->first.first <= end) {
      auto it = timers_.begin();
      if (it->first.first > now_) now_ = it->first.first;
      std::function<void()> fn = std::move(it->second);
      timers_.erase(it);
      fn();
    }
    now_ = end;
  }

  size_t pending_timers() const { return timers_.size(); }

 private:
  TimePoint now_{};  // the epoch of steady_clock: tests use differences
  uint64_t next_seq_ = 0;
  std::map<std::pair<TimePoint, uint64_t>, std::function<void()>> timers_;
};

}  // namespace trellis::testing
