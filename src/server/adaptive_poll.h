// AdaptivePoll: how long trellisd's event loop polls for its next event
// before it sleeps (--busy-poll-us auto). Internal to trellisd.
//
// Polling saves the wake of a sleeping daemon, which on the VMs this
// project runs on costs 30-80 us a request once the daemon has been idle
// for more than ~200 us (the host stops polling the halted virtual CPU:
// bench/results/wake_latency.md), but it burns a CPU while nothing comes.
// So the window follows the gaps between events, as KVM's halt polling does
// (virt/kvm/kvm_main.c: grow_halt_poll_ns, shrink_halt_poll_ns): a gap a
// longer window would have caught grows it, one beyond the cap halves it,
// and a gap inside it leaves it. An idle daemon's window decays to zero;
// the CPU burnt on polls nothing answers is at most one window (<= the
// cap) per idle gap, and there is no poll while other tasks want the CPUs
// (Contended, Yielded).
#pragma once

#include <algorithm>
#include <chrono>
#include <string_view>

namespace trellis::server {

class AdaptivePoll {
 public:
  using Micros = std::chrono::microseconds;
  // Windows below this are not worth a poll: they become zero.
  static constexpr Micros kMinWindow{10};

  // `cap`: the longest window. `adaptive` false: the window is always `cap`
  // (--busy-poll-us N); true: it starts at zero and adapts.
  AdaptivePoll(Micros cap, bool adaptive)
      : cap_(cap), adaptive_(adaptive), window_(adaptive ? Micros(0) : cap) {}

  // How long to poll for the next event before sleeping.
  Micros window() const { return window_; }

  // A yield between two polls longer than this means another task had the
  // CPU meanwhile.
  static constexpr Micros kContended{20};

  // A sched_yield between two polls took `took`. Long, another task wanted
  // this CPU: polling would take CPU others need (a batch job's workers),
  // so the window closes (the daemon sleeps now) until a short gap opens it
  // again. On a busy machine a poll thus costs one yield.
  void Yielded(Micros took) {
    if (took > kContended) Contended();
  }

  // Other tasks want the CPUs (more runnable tasks than CPUs, see
  // RunnableTasks): a spinning daemon would keep one of them from a CPU
  // (the scheduler balances only onto idle ones), so the window closes
  // until a short gap opens it again.
  void Contended() {
    if (adaptive_) window_ = Micros(0);
  }

  bool adaptive() const { return adaptive_; }

  // The next event came `gap` after the last one was handled.
  void Observe(Micros gap) {
    if (!adaptive_ || gap <= window_) return;  // fixed, or the poll caught it
    if (gap <= cap_) {  // a window of twice this gap would catch the next
      window_ = std::min(cap_, std::max({2 * window_, 2 * gap, kMinWindow}));
    } else {  // beyond any window: the poll was wasted
      window_ /= 2;
      if (window_ < kMinWindow) window_ = Micros(0);
    }
  }

 private:
  const Micros cap_;
  const bool adaptive_;
  Micros window_;
};

// The number of runnable tasks in /proc/loadavg's text `loadavg` (its
// fourth field, "running/total"; the caller counts itself among them), or
// -1 if the text is not in that form.
inline long RunnableTasks(std::string_view loadavg) {
  size_t at = 0;
  for (int field = 0; field < 3; ++field) {
    at = loadavg.find(' ', at);
    if (at == std::string_view::npos) return -1;
    ++at;
  }
  size_t slash = loadavg.find('/', at);
  if (slash == std::string_view::npos || slash == at) return -1;
  long running = 0;
  for (size_t i = at; i < slash; ++i) {
    if (loadavg[i] < '0' || loadavg[i] > '9') return -1;
    running = running * 10 + (loadavg[i] - '0');
  }
  return running;
}

}  // namespace trellis::server
