// Clang thread-safety analysis attributes (-Wthread-safety), as macros that
// compile to nothing elsewhere (gcc). `make check-thread-safety` builds the
// libraries with clang and -Werror=thread-safety, so a member read without
// the mutex that guards it, or a *Locked helper called without that mutex,
// fails the build. See https://clang.llvm.org/docs/ThreadSafetyAnalysis.html.
//
// libstdc++'s std::mutex carries no capability attributes; use
// trellis::Mutex and trellis::MutexLock (common/mutex.h) for annotated code.
#pragma once

#if defined(__clang__)
#define TRELLIS_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define TRELLIS_THREAD_ANNOTATION(x)
#endif

// On a class: its objects are a capability (a lock) named `x` in messages.
#define TRELLIS_CAPABILITY(x) TRELLIS_THREAD_ANNOTATION(capability(x))
// On a class: an RAII object that holds a capability for its lifetime.
#define TRELLIS_SCOPED_CAPABILITY TRELLIS_THREAD_ANNOTATION(scoped_lockable)
// On a member: reading or writing it needs `x` held.
#define TRELLIS_GUARDED_BY(x) TRELLIS_THREAD_ANNOTATION(guarded_by(x))
// On a pointer member: what it points to needs `x` held (the pointer itself
// does not).
#define TRELLIS_PT_GUARDED_BY(x) TRELLIS_THREAD_ANNOTATION(pt_guarded_by(x))
// On a function: callers must hold the capabilities.
#define TRELLIS_REQUIRES(...) \
  TRELLIS_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
// On a function: callers must not hold them (it acquires them itself).
#define TRELLIS_EXCLUDES(...) \
  TRELLIS_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
// On a function: it acquires / releases the capabilities (none named: this
// object's own).
#define TRELLIS_ACQUIRE(...) \
  TRELLIS_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define TRELLIS_RELEASE(...) \
  TRELLIS_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
// On a function: it acquires the capabilities iff it returns `result`.
#define TRELLIS_TRY_ACQUIRE(...) \
  TRELLIS_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
// On a function: the analysis does not look inside it. Say why where used.
#define TRELLIS_NO_THREAD_SAFETY_ANALYSIS \
  TRELLIS_THREAD_ANNOTATION(no_thread_safety_analysis)
