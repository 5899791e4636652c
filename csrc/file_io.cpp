#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE
#endif
#include "file_io.h"

#include <cerrno>

#if defined(__linux__)
#include <fcntl.h>
#endif

namespace chatvec {

int start_writeback(int fd, int64_t offset, int64_t nbytes) {
#if defined(__linux__)
  if (sync_file_range(fd, offset, nbytes, SYNC_FILE_RANGE_WRITE) != 0) return errno;
#else
  (void)fd, (void)offset, (void)nbytes;
#endif
  return 0;
}

int wait_writeback(int fd, int64_t offset, int64_t nbytes) {
#if defined(__linux__)
  const unsigned flags = SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER;
  if (sync_file_range(fd, offset, nbytes, flags) != 0) return errno;
#else
  (void)fd, (void)offset, (void)nbytes;
#endif
  return 0;
}

}  // namespace chatvec
