// Page-cache write-back control for the output writer.
//
// Writing 2.2 GB into the page cache and calling fsync at the end took
// 1.9-2.9 s here; asking the kernel to start write-back of each chunk as soon
// as it is written (and waiting for the chunk 8 places behind, which bounds
// the dirty memory) took 1.0-1.2 s for the same bytes, with fsync then free.
#pragma once

#include <cstdint>

namespace chatvec {

// Starts asynchronous write-back of [offset, offset + nbytes) of fd.
// Returns 0, or an errno value. A no-op returning 0 where unsupported.
int start_writeback(int fd, int64_t offset, int64_t nbytes);

// Waits until [offset, offset + nbytes) of fd has been written back
// (starting the write-back first if needed). Returns 0 or an errno value.
int wait_writeback(int fd, int64_t offset, int64_t nbytes);

}  // namespace chatvec
