#include "thread_pool.h"

#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#endif

namespace chatvec {

namespace {
ThreadPool* g_pool = nullptr;
std::once_flag g_atfork_once;

#if defined(__linux__)
// The child of fork() has only the forking thread: forget the old pool (its
// mutexes may be held by threads that no longer exist) and build a new one.
void forget_pool_in_child() { g_pool = nullptr; }
#endif
}  // namespace

ThreadPool& ThreadPool::instance() {
  std::call_once(g_atfork_once, [] {
#if defined(__linux__)
    pthread_atfork(nullptr, nullptr, forget_pool_in_child);
#endif
  });
  static std::mutex create_mutex;
  std::lock_guard<std::mutex> lock(create_mutex);
  if (g_pool == nullptr) g_pool = new ThreadPool();  // lives until exit
  return *g_pool;
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::grow(int workers) {
  while (static_cast<int>(workers_.size()) < workers) {
    const int index = static_cast<int>(workers_.size());
    workers_.emplace_back([this, index] { worker_loop(index); });
  }
}

void ThreadPool::run_tasks(std::unique_lock<std::mutex>& lock) {
  // Entered and left with `lock` held; released while a task runs.
  while (next_task_ < num_tasks_) {
    const size_t task = next_task_++;
    const auto* fn = fn_;
    lock.unlock();
    (*fn)(task);
    lock.lock();
    if (++finished_tasks_ == num_tasks_) done_.notify_all();
  }
}

void ThreadPool::worker_loop(int index) {
  unsigned long seen = 0;
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    wake_.wait(lock, [&] { return stop_ || (generation_ != seen && index < active_workers_); });
    if (stop_) return;
    seen = generation_;
    run_tasks(lock);
  }
}

void ThreadPool::parallel_for(size_t num_tasks, int threads, const std::function<void(size_t)>& fn) {
  if (num_tasks == 0) return;
  if (threads <= 1 || num_tasks == 1) {
    for (size_t t = 0; t < num_tasks; ++t) fn(t);
    return;
  }
  std::lock_guard<std::mutex> job_lock(job_mutex_);
  const int workers = static_cast<int>(std::min<size_t>(threads - 1, num_tasks - 1));
  std::unique_lock<std::mutex> lock(mutex_);
  grow(workers);
  fn_ = &fn;
  num_tasks_ = num_tasks;
  next_task_ = 0;
  finished_tasks_ = 0;
  active_workers_ = workers;
  ++generation_;
  wake_.notify_all();
  run_tasks(lock);  // the caller works too
  done_.wait(lock, [&] { return finished_tasks_ == num_tasks_; });
  fn_ = nullptr;
  active_workers_ = 0;
}

int available_cpus() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return CPU_COUNT(&set);
#endif
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

}  // namespace chatvec
