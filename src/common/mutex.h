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
  std::mutex mutex_;
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
