// Cache sizes for the GEMM's blocking (fusednn/cpu_caches.h). Compiled for the
// baseline only: every instruction set's GEMM asks this one copy.
#include "fusednn/cpu_caches.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>

namespace fusednn::cpu {
namespace {

constexpr std::int64_t kKiB = 1024;

// "48K" / "2048K" / "1M" as the kernel writes a cache's size, in bytes; 0 if unreadable.
std::int64_t parse_size(const std::string& text) {
  std::size_t used = 0;
  long long value = 0;
  try {
    value = std::stoll(text, &used);
  } catch (...) {
    return 0;
  }
  const char unit = used < text.size() ? text[used] : ' ';
  if (unit == 'K') return value * kKiB;
  if (unit == 'M') return value * kKiB * kKiB;
  if (unit == 'G') return value * kKiB * kKiB * kKiB;
  return value;
}

// How many CPUs a shared_cpu_list such as "0-1,4,6-7" names.
int count_cpus(const std::string& list) {
  int count = 0;
  std::size_t pos = 0;
  while (pos < list.size()) {
    const std::size_t comma = list.find(',', pos);
    const std::string part = list.substr(pos, comma == std::string::npos ? comma : comma - pos);
    const std::size_t dash = part.find('-');
    try {
      count += dash == std::string::npos ? 1 : std::stoi(part.substr(dash + 1)) -
                                                   std::stoi(part.substr(0, dash)) + 1;
    } catch (...) {
      return 0;
    }
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return count;
}

std::string read_line(const std::string& path) {
  std::ifstream file(path);
  std::string line;
  std::getline(file, line);
  return line;
}

// Linux: each /sys/.../cache/indexN says its level, type, size and the CPUs sharing it.
bool from_sysfs(CacheSizes& sizes) {
  const std::string base = "/sys/devices/system/cpu/cpu0/cache/index";
  bool any = false;
  for (int index = 0; index < 8; ++index) {
    const std::string dir = base + std::to_string(index) + "/";
    const std::string level = read_line(dir + "level");
    if (level.empty()) break;
    const std::string type = read_line(dir + "type");
    const std::int64_t size = parse_size(read_line(dir + "size"));
    if (size <= 0 || type == "Instruction") continue;
    const int sharing = count_cpus(read_line(dir + "shared_cpu_list"));
    if (level == "1") sizes.l1d = size;
    if (level == "2") sizes.l2 = size;
    if (level == "3") sizes.l3_per_core = size / (sharing > 0 ? sharing : 1);
    any = true;
  }
  return any;
}

// FUSEDNN_CPU_CACHES="L1d,L2,L3 per core" in sysfs's notation ("32K,512K,4M")
// replaces what the system reports: for a virtual machine that reports wrong
// sizes, and for tests of the blocking another CPU gets (Zen 3's 512 KiB L2
// sends the GEMM down the columns of C).
CacheSizes forced_sizes(const std::string& text) {
  constexpr std::int64_t kMaxForced = kKiB * kKiB * kKiB;
  // A size: digits, then at most one unit letter, K or M; 0 if malformed.
  const auto size_of = [](const std::string& field) -> std::int64_t {
    std::size_t digits = 0;
    while (digits < field.size() && field[digits] >= '0' && field[digits] <= '9') ++digits;
    if (digits == 0 || digits + 1 < field.size()) return 0;
    if (digits < field.size() && field[digits] != 'K' && field[digits] != 'M') return 0;
    return parse_size(field);
  };
  std::int64_t sizes[3];
  std::size_t pos = 0;
  for (int i = 0; i < 3; ++i) {
    const std::size_t end = i < 2 ? text.find(',', pos) : text.size();
    sizes[i] = end == std::string::npos ? 0 : size_of(text.substr(pos, end - pos));
    if (sizes[i] <= 0 || sizes[i] > kMaxForced) {
      throw std::invalid_argument(
          "FUSEDNN_CPU_CACHES: expected three sizes 'L1d,L2,L3 per core' such as "
          "'32K,512K,4M' (bytes, or K or M; each at most 1024M), got '" + text + "'");
    }
    pos = end + 1;
  }
  return CacheSizes{sizes[0], sizes[1], sizes[2], true};
}

CacheSizes detect() {
  const char* forced = std::getenv("FUSEDNN_CPU_CACHES");
  if (forced != nullptr && *forced != '\0') return forced_sizes(forced);
  CacheSizes sizes{32 * kKiB, 1024 * kKiB, 2048 * kKiB, false};
  if (from_sysfs(sizes)) {
    sizes.measured = true;
    return sizes;
  }
#if defined(_SC_LEVEL1_DCACHE_SIZE) && defined(_SC_LEVEL2_CACHE_SIZE)
  // glibc: sizes only (an L3 here is the whole cache; its sharing is unknown, so
  // it is left at the typical per-core share).
  const long l1d = sysconf(_SC_LEVEL1_DCACHE_SIZE);
  const long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
  if (l1d > 0 && l2 > 0) {
    sizes.l1d = l1d;
    sizes.l2 = l2;
    sizes.measured = true;
  }
#endif
  return sizes;
}

}  // namespace

const CacheSizes& cache_sizes() {
  static const CacheSizes sizes = detect();
  return sizes;
}

}  // namespace fusednn::cpu
