#include "kernels/cpu.hpp"

#include <unistd.h>

#include <atomic>
#include <stdexcept>

namespace hashmatch {
namespace {
std::atomic<int> g_path{-1};
}

size_t last_level_cache_bytes() {
    long bytes = 0;
#if defined(_SC_LEVEL3_CACHE_SIZE)
    bytes = sysconf(_SC_LEVEL3_CACHE_SIZE);
    if (bytes <= 0) bytes = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
    return bytes > 0 ? static_cast<size_t>(bytes) : size_t{32} << 20;
}

namespace {
// What the CPU reports, asked once per process: bit p set when CpuPath p can run.
int probe_cpu() {
    int bits = 1 << static_cast<int>(CpuPath::portable);
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt"))
        bits |= 1 << static_cast<int>(CpuPath::avx2);
    // The index's verification uses 256-bit AVX-512 forms, hence VL as well.
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512vpopcntdq") && __builtin_cpu_supports("popcnt"))
        bits |= 1 << static_cast<int>(CpuPath::avx512);
#endif
    return bits;
}
}  // namespace

bool cpu_supports(CpuPath path) {
    static const int supported = probe_cpu();
    return (supported >> static_cast<int>(path)) & 1;
}

CpuPath best_cpu_path() {
    if (cpu_supports(CpuPath::avx512)) return CpuPath::avx512;
    if (cpu_supports(CpuPath::avx2)) return CpuPath::avx2;
    return CpuPath::portable;
}

const char* cpu_path_name(CpuPath path) {
    switch (path) {
        case CpuPath::portable: return "portable";
        case CpuPath::avx2: return "avx2";
        case CpuPath::avx512: return "avx512";
    }
    return "unknown";
}

CpuPath parse_cpu_path(const std::string& name) {
    CpuPath path;
    if (name == "portable") path = CpuPath::portable;
    else if (name == "avx2") path = CpuPath::avx2;
    else if (name == "avx512") path = CpuPath::avx512;
    else
        throw std::invalid_argument("cpu path must be one of avx512, avx2, portable, got '" +
                                    name + "'");
    if (!cpu_supports(path))
        throw std::invalid_argument("cpu path '" + name + "' is not supported by this CPU");
    return path;
}

std::vector<CpuPath> supported_cpu_paths() {
    std::vector<CpuPath> out;
    for (CpuPath p : {CpuPath::avx512, CpuPath::avx2, CpuPath::portable})
        if (cpu_supports(p)) out.push_back(p);
    return out;
}

CpuPath active_cpu_path() {
    int p = g_path.load(std::memory_order_relaxed);
    if (p < 0) {
        p = static_cast<int>(best_cpu_path());
        g_path.store(p, std::memory_order_relaxed);
    }
    return static_cast<CpuPath>(p);
}

void set_cpu_path(CpuPath path) {
    if (!cpu_supports(path))
        throw std::invalid_argument(std::string("cpu path '") + cpu_path_name(path) +
                                    "' is not supported by this CPU");
    g_path.store(static_cast<int>(path), std::memory_order_relaxed);
}

}  // namespace hashmatch
