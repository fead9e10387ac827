// Brute-force Hamming scans over packed 256-bit hashes, one implementation per CPU path.
// A hit is packed as (distance << 55) | row into one uint64, so per-query lists stay flat and
// sorting them orders hits by distance, then row.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/cpu.hpp"

namespace hashmatch {

constexpr int kWords = 4;             // a hash is 4 little-endian uint64 words (32 bytes)
constexpr int kMaxDistance = 256;
constexpr int kQueryBlock = 32;       // queries compared against each hash per pass
constexpr int kRowBits = 55;           // distances 0..256 take the 9 bits above the row
constexpr uint64_t kRowMask = (uint64_t{1} << kRowBits) - 1;

inline uint64_t pack_hit(uint64_t row, int distance) {
    return (static_cast<uint64_t>(distance) << kRowBits) | row;
}
inline uint64_t hit_row(uint64_t hit) { return hit & kRowMask; }
inline int hit_distance(uint64_t hit) { return static_cast<int>(hit >> kRowBits); }

// Compares queries[0..nq) (nq <= kQueryBlock) with hashes rows [row0, row1); appends every hit
// with distance <= threshold to out[i] in ascending row order.
using ScanFn = void (*)(const uint64_t* queries, int nq, const uint64_t* hashes, size_t row0,
                        size_t row1, int threshold, std::vector<uint64_t>* out);

void scan_portable(const uint64_t*, int, const uint64_t*, size_t, size_t, int,
                   std::vector<uint64_t>*);
void scan_avx2(const uint64_t*, int, const uint64_t*, size_t, size_t, int,
               std::vector<uint64_t>*);
void scan_avx512(const uint64_t*, int, const uint64_t*, size_t, size_t, int,
                 std::vector<uint64_t>*);

ScanFn scan_for(CpuPath path);

}  // namespace hashmatch
