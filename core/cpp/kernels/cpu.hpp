// Which SIMD path the kernels run: chosen at run time from what the CPU reports, so one build
// runs on any x86-64 (no -march=native). Knows nothing of Python.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace hashmatch {

enum class CpuPath { portable = 0, avx2 = 1, avx512 = 2 };

bool cpu_supports(CpuPath path);
CpuPath best_cpu_path();
const char* cpu_path_name(CpuPath path);
// Throws std::invalid_argument for an unknown name or a path this CPU cannot run.
CpuPath parse_cpu_path(const std::string& name);
std::vector<CpuPath> supported_cpu_paths();

// Bytes of the largest CPU cache the OS reports (L3 on x86), or 32 MiB where it reports none.
size_t last_level_cache_bytes();

// The process-wide path, best_cpu_path() unless set_cpu_path() chose another.
CpuPath active_cpu_path();
void set_cpu_path(CpuPath path);

}  // namespace hashmatch
