// Run-time choice of the kernel's instruction set (merge_driver.cpp has the threaded driver).
#include <cstdlib>
#include <stdexcept>

#include "merge_kernel.h"

namespace chatvec {

namespace baseline {
size_t kernel_range(const KernelCall& call, size_t begin, size_t end, const Pass& pass);
}
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CHATVEC_HAVE_X86_VARIANTS 1
namespace x86_64_v3 {
size_t kernel_range(const KernelCall& call, size_t begin, size_t end, const Pass& pass);
}
namespace x86_64_v4 {
size_t kernel_range(const KernelCall& call, size_t begin, size_t end, const Pass& pass);
}
#endif

namespace {

using RangeFn = size_t (*)(const KernelCall&, size_t, size_t, const Pass&);

struct Variant {
  const char* name;
  RangeFn fn;
  bool supported;
};

std::vector<Variant> variants() {
  std::vector<Variant> v;
#if CHATVEC_HAVE_X86_VARIANTS
  __builtin_cpu_init();
  v.push_back({"x86-64-v4", x86_64_v4::kernel_range, __builtin_cpu_supports("x86-64-v4") > 0});
  v.push_back({"x86-64-v3", x86_64_v3::kernel_range, __builtin_cpu_supports("x86-64-v3") > 0});
#endif
  v.push_back({"baseline", baseline::kernel_range, true});
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

}  // namespace

size_t kernel_range(const KernelCall& call, size_t begin, size_t end, const Pass& pass) {
  return active().fn(call, begin, end, pass);
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

}  // namespace chatvec
