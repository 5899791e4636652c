// A small persistent thread pool: the merge calls the kernel once per chunk
// (thousands of times a run), and spawning threads each time would cost
// ~30 us per thread per call.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace chatvec {

class ThreadPool {
 public:
  // The process-wide pool (re-created in a forked child, whose threads are gone).
  static ThreadPool& instance();

  // Calls fn(t) for t in [0, num_tasks) on up to `threads` threads, the caller
  // included, and returns when all calls are done. Calls from several Python
  // threads are serialised: each job uses the whole pool.
  void parallel_for(size_t num_tasks, int threads, const std::function<void(size_t)>& fn);

  ~ThreadPool();

 private:
  void grow(int workers);
  void worker_loop(int index);
  void run_tasks(std::unique_lock<std::mutex>& lock);

  std::mutex job_mutex_;  // one job at a time
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  std::vector<std::thread> workers_;
  const std::function<void(size_t)>* fn_ = nullptr;
  size_t num_tasks_ = 0;
  size_t next_task_ = 0;
  size_t finished_tasks_ = 0;
  int active_workers_ = 0;  // workers allowed to take part in the current job
  unsigned long generation_ = 0;
  bool stop_ = false;
};

// Number of CPUs this process may run on (sched_getaffinity where available).
int available_cpus();

}  // namespace chatvec
