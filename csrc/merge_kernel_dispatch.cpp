// Run-time choice of the kernel's instruction set, and the threaded driver.
#include <cstdlib>
#include <stdexcept>

#include "merge_kernel.h"
#include "thread_pool.h"

namespace chatvec {

namespace baseline {
size_t merge_range(const MergeArgs& args, size_t begin, size_t end);
}
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CHATVEC_HAVE_X86_VARIANTS 1
namespace x86_64_v3 {
size_t merge_range(const MergeArgs& args, size_t begin, size_t end);
}
namespace x86_64_v4 {
size_t merge_range(const MergeArgs& args, size_t begin, size_t end);
}
#endif

namespace {

using RangeFn = size_t (*)(const MergeArgs&, size_t, size_t);

struct Variant {
  const char* name;
  RangeFn fn;
  bool supported;
};

std::vector<Variant> variants() {
  std::vector<Variant> v;
#if CHATVEC_HAVE_X86_VARIANTS
  __builtin_cpu_init();
  v.push_back({"x86-64-v4", x86_64_v4::merge_range, __builtin_cpu_supports("x86-64-v4") > 0});
  v.push_back({"x86-64-v3", x86_64_v3::merge_range, __builtin_cpu_supports("x86-64-v3") > 0});
#endif
  v.push_back({"baseline", baseline::merge_range, true});
  return v;
}

// Best supported variant, unless CHATVEC_ISA names another (tests use it to
// check that every variant gives the same bits).
Variant pick_default() {
  const char* forced = std::getenv("CHATVEC_ISA");
  for (const Variant& v : variants()) {
    if (forced != nullptr && *forced != '\0') {
      if (std::string(forced) == v.name && v.supported) return v;
    } else if (v.supported) {
      return v;
    }
  }
  return variants().back();
}

Variant& active() {
  static Variant chosen = pick_default();
  return chosen;
}

// Elements per task: big enough that the hand-off (~5 us) is noise, small
// enough that 2-64 threads share a 4 MiB chunk evenly.
constexpr size_t kTaskElements = 64 * 1024;

}  // namespace

size_t merge_range(const MergeArgs& args, size_t begin, size_t end) { return active().fn(args, begin, end); }

bool valid_mode(const MergeArgs& a) {
  const bool merge = a.base && a.chat && a.cp;
  const bool apply = !a.base && a.chat && a.cp;
  const bool extract = a.base && a.chat && !a.cp && a.num_outputs == 1;
  const bool convert = !a.base && !a.chat && a.cp;
  return merge || apply || extract || convert;
}

std::string active_isa() { return active().name; }

std::vector<std::string> supported_isas() {
  std::vector<std::string> names;
  for (const Variant& v : variants())
    if (v.supported) names.push_back(v.name);
  return names;
}

void set_isa(const std::string& name) {
  for (const Variant& v : variants()) {
    if (name == v.name) {
      if (!v.supported) throw std::invalid_argument("this CPU does not support " + name);
      active() = v;
      return;
    }
  }
  throw std::invalid_argument("unknown instruction set '" + name + "'");
}

size_t merge(const MergeArgs& args, int threads) {
  if (args.n == 0 || args.num_outputs == 0) return 0;
  if (threads <= 0) threads = available_cpus();
  const size_t tasks = std::min<size_t>(static_cast<size_t>(threads), (args.n + kTaskElements - 1) / kTaskElements);
  if (tasks <= 1) return merge_range(args, 0, args.n);
  // Equal contiguous slices, rounded to 64 elements (a cache line of f16/bf16
  // outputs, so no two threads write the same line).
  const size_t per_task = ((args.n + tasks - 1) / tasks + 63) / 64 * 64;
  std::vector<size_t> counts(tasks, 0);
  ThreadPool::instance().parallel_for(tasks, static_cast<int>(tasks), [&](size_t t) {
    const size_t begin = std::min(args.n, t * per_task);
    const size_t end = std::min(args.n, begin + per_task);
    if (begin < end) counts[t] = merge_range(args, begin, end);
  });
  size_t total = 0;
  for (size_t c : counts) total += c;
  return total;
}

}  // namespace chatvec
