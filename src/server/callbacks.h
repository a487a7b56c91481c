// Small helpers for callback-style code on the daemon's loop thread.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <utility>

#include "trellis/status.h"

namespace trellis::server {

// A callback to be called exactly `count` times (count > 0); after the last
// call, `done` gets the first error passed to it, or OK. With count == 0,
// `done(OK)` runs at once and the returned callback must not be called.
inline std::function<void(Status)> JoinStatuses(
    size_t count, std::function<void(Status)> done) {
  if (count == 0) {
    done(Status::OK());
    return nullptr;
  }
  struct State {
    size_t remaining;
    Status first_error;
    std::function<void(Status)> done;
  };
  auto state =
      std::make_shared<State>(State{count, Status::OK(), std::move(done)});
  return [state](Status st) {
    if (!st.ok() && state->first_error.ok()) state->first_error = std::move(st);
    if (--state->remaining == 0) state->done(state->first_error);
  };
}

}  // namespace trellis::server
