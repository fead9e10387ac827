// Exact brute-force range search: every row within an inclusive Hamming threshold of each
// query, as CSR. Knows nothing of Python.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/cpu.hpp"

namespace hashmatch {

// CSR result: rows[offsets[i]:offsets[i+1]] (ascending) are the hits of query i.
struct Csr {
    std::vector<int64_t> offsets;
    std::vector<int64_t> rows;
    std::vector<int32_t> distances;
};

// Throws std::invalid_argument unless 0 <= threshold <= 256.
void check_threshold(int threshold);

// Turns per-query hit lists (packed, see scan.hpp) into a CSR.
Csr hits_to_csr(std::vector<std::vector<uint64_t>>& hits);

// queries: nq x 4 words, hashes: n x 4 words, both C-contiguous. threads <= 0 means one per
// hardware thread. Runs the given CPU path.
Csr range_search(const uint64_t* queries, size_t nq, const uint64_t* hashes, size_t n,
                 int threshold, CpuPath path, int threads);

// Runs fn(begin, end) over [0, count) split into contiguous parts on up to `threads` threads.
template <class Fn>
void parallel_for(size_t count, int threads, Fn&& fn);

int hardware_threads();

}  // namespace hashmatch

#include <thread>

namespace hashmatch {
template <class Fn>
void parallel_for(size_t count, int threads, Fn&& fn) {
    if (threads <= 0) threads = hardware_threads();
    if (static_cast<size_t>(threads) > count) threads = static_cast<int>(count);
    if (threads <= 1) {
        if (count) fn(size_t{0}, count);
        return;
    }
    std::vector<std::thread> pool;
    const size_t step = (count + threads - 1) / threads;
    for (int t = 1; t < threads; ++t) {
        const size_t b = t * step, e = b + step < count ? b + step : count;
        if (b < e) pool.emplace_back([&fn, b, e] { fn(b, e); });
    }
    fn(size_t{0}, step < count ? step : count);
    for (auto& th : pool) th.join();
}
}  // namespace hashmatch
