// A shared-memory file in transparent huge pages whatever the kernel's
// shmem_enabled policy: an unlinked file on a tmpfs of its own, mounted
// with huge=within_size. Internal to trellisd (Arena::Create).
//
// Why a mount: shmem_enabled (Debian's default: never) governs the kernel's
// internal shmem mount, the one memfds live on; every tmpfs mount has its
// own huge= option, which only shmem_enabled's emergency "deny" overrides.
// On the VMs this project runs on, a process's first touch of a 4 KiB page
// costs ~6 us however it is mapped, so a reader of a fresh 40 KB object
// pays ~70 us in 4 KiB pages and ~10-20 us in 2 MiB ones
// (bench/results/small_frames_huge_pages.md).
#pragma once

#include <cstdint>

#include "common/fd_passing.h"
#include "trellis/status.h"

namespace trellis::server {

// Opens a read-write, close-on-exec file of `size` bytes (sparse) on a new
// tmpfs mounted with huge=within_size and size=`size` rounded up to 2 MiB,
// and unlinks it. The mount is made by a short-lived child process in a
// private mount namespace (and, when not root, a user namespace of its own,
// which the kernel allows unprivileged processes unless configured not to),
// so this process's view of the file system is untouched; the open file
// keeps the mount alive after the child exits and until the last
// descriptor and mapping of it are gone.
//
// IOError, naming the step and errno, where the mount cannot be made
// (no privilege, user namespaces off, a kernel without THP); the caller
// then falls back to a memfd.
Result<UniqueFd> OpenHugePageTmpfsFile(uint64_t size);

}  // namespace trellis::server
