// Mutex and MutexLock: std::mutex and a scoped lock of it, annotated for
// clang's thread-safety analysis (common/thread_annotations.h), which
// std::mutex of libstdc++ is not.
//
//   Mutex mutex_;
//   int count_ TRELLIS_GUARDED_BY(mutex_) = 0;
//   void Bump() TRELLIS_EXCLUDES(mutex_) {
//     MutexLock lock(&mutex_);
//     ++count_;
//   }
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "common/thread_annotations.h"

namespace trellis {

class TRELLIS_CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() TRELLIS_ACQUIRE() { mutex_.lock(); }
  void Unlock() TRELLIS_RELEASE() { mutex_.unlock(); }
  // Takes the mutex if no one holds it; never blocks. True if taken.
  bool TryLock() TRELLIS_TRY_ACQUIRE(true) { return mutex_.try_lock(); }

 private:
  friend class CondVar;
  std::mutex mutex_;
};

// A condition variable for a Mutex: a wait releases the mutex while it
// sleeps and holds it again on return (spurious wake-ups included, so wait
// in a loop that checks the condition).
class CondVar {
 public:
  void WaitUntil(Mutex* mutex, std::chrono::steady_clock::time_point deadline)
      TRELLIS_REQUIRES(mutex) {
    std::unique_lock<std::mutex> lock(mutex->mutex_, std::adopt_lock);
    cv_.wait_until(lock, deadline);
    lock.release();  // the caller holds it again
  }
  void NotifyOne() { cv_.notify_one(); }

 private:
  std::condition_variable cv_;
};

// Holds a Mutex from construction to destruction.
class TRELLIS_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex* mutex) TRELLIS_ACQUIRE(mutex) : mutex_(mutex) {
    mutex_->Lock();
  }
  ~MutexLock() TRELLIS_RELEASE() { mutex_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mutex_;
};

}  // namespace trellis
