// The threaded driver: one call split over the thread pool. An FP8 output
// takes two parallel passes over the chunk (each group's largest finite
// |result|, then the quantization), with the group scales computed and
// written in between; the inputs are still in cache for the second pass.
#include <algorithm>
#include <vector>

#include "merge_kernel.h"
#include "thread_pool.h"

namespace chatvec {

namespace {

// Elements per task: big enough that the hand-off (~5 us) is noise, small
// enough that 2-64 threads share a 4 MiB chunk evenly.
constexpr size_t kTaskElements = 64 * 1024;

struct Split {
  size_t tasks = 1;
  size_t per_task = 0;
  size_t begin(size_t t, size_t n) const { return std::min(n, t * per_task); }
  size_t end(size_t t, size_t n) const { return std::min(n, begin(t, n) + per_task); }
};

Split split(size_t n, int threads) {
  if (threads <= 0) threads = available_cpus();
  const size_t tasks = std::min<size_t>(static_cast<size_t>(threads), (n + kTaskElements - 1) / kTaskElements);
  if (tasks <= 1) return {1, n};
  // Equal contiguous slices, rounded to 64 elements (a cache line of f16/bf16
  // outputs, so no two threads write the same line).
  return {tasks, ((n + tasks - 1) / tasks + 63) / 64 * 64};
}

template <typename Fn>
void for_tasks(const Split& s, size_t n, const Fn& fn) {
  if (s.tasks <= 1) {
    fn(size_t{0}, size_t{0}, n);
    return;
  }
  ThreadPool::instance().parallel_for(s.tasks, static_cast<int>(s.tasks), [&](size_t t) {
    if (s.begin(t, n) < s.end(t, n)) fn(t, s.begin(t, n), s.end(t, n));
  });
}

// Tasks split the chunk anywhere (a block-row of a 7168-column tensor is most
// of a 1M-element chunk), so each task folds the amax of the groups its range
// touches into its own rows; the rows are merged here.
size_t run_fp8_out(const KernelCall& c, const Split& s) {
  const ScaleLayout g = out_groups(c.out_scale);
  const size_t unit = group_unit(g);
  const size_t per_unit = g.blocks_per_row();
  const size_t groups = (c.n + unit - 1) / unit * per_unit;
  const size_t num_k = static_cast<size_t>(c.num_outputs);
  std::vector<Pass> passes(s.tasks);
  std::vector<size_t> offsets(s.tasks, 0);
  size_t total = 0;
  for (size_t t = 0; t < s.tasks; ++t) {
    const size_t begin = s.begin(t, c.n), end = s.end(t, c.n);
    passes[t].kind = Pass::kAmax;
    if (begin < end) {
      passes[t].first_group = begin / unit * per_unit;
      passes[t].groups = ((end - 1) / unit - begin / unit + 1) * per_unit;
    }
    offsets[t] = total;
    total += num_k * passes[t].groups;
  }
  std::vector<uint64_t> amax(total, 0);
  for (size_t t = 0; t < s.tasks; ++t) passes[t].amax = amax.data() + offsets[t];
  for_tasks(s, c.n, [&](size_t t, size_t b, size_t e) { kernel_range(c, b, e, passes[t]); });
  std::vector<uint64_t> best(num_k * groups, 0);
  for (size_t t = 0; t < s.tasks; ++t)
    for (size_t k = 0; k < num_k; ++k)
      for (size_t j = 0; j < passes[t].groups; ++j) {
        uint64_t& b = best[k * groups + passes[t].first_group + j];
        b = std::max(b, passes[t].amax[k * passes[t].groups + j]);
      }
  for (size_t k = 0; k < num_k; ++k)
    for (size_t j = 0; j < groups; ++j) store_scale(c.out_scale.scales[k], j, fp8_group_scale(best[k * groups + j]));
  Pass quantize;
  quantize.kind = Pass::kQuantize;
  for_tasks(s, c.n, [&](size_t, size_t b, size_t e) { kernel_range(c, b, e, quantize); });
  return 0;
}

}  // namespace

size_t run(const KernelCall& c, int threads) {
  if (c.n == 0 || c.num_outputs == 0) return 0;
  const Split s = split(c.n, threads);
  if (c.out_scale.layout.kind != kNoScale) return run_fp8_out(c, s);
  std::vector<size_t> counts(s.tasks, 0);
  for_tasks(s, c.n, [&](size_t t, size_t b, size_t e) { counts[t] = kernel_range(c, b, e, Pass{}); });
  size_t total = 0;
  for (size_t count : counts) total += count;
  return total;
}

}  // namespace chatvec
