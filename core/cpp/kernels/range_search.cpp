#include "kernels/range_search.hpp"

#include <stdexcept>
#include <string>

#include "kernels/scan.hpp"

namespace hashmatch {

// Rows per tile: 8192 hashes are 256 KiB, small enough to stay in L2 while every query block
// passes over them.
constexpr size_t kTileRows = 8192;

void check_threshold(int threshold) {
    if (threshold < 0 || threshold > kMaxDistance)
        throw std::invalid_argument("threshold must be between 0 and 256 (inclusive), got " +
                                    std::to_string(threshold));
}

int hardware_threads() {
    unsigned n = std::thread::hardware_concurrency();
    return n ? static_cast<int>(n) : 1;
}

Csr hits_to_csr(std::vector<std::vector<uint64_t>>& hits) {
    Csr out;
    out.offsets.resize(hits.size() + 1);
    size_t total = 0;
    for (size_t i = 0; i < hits.size(); ++i) {
        out.offsets[i] = static_cast<int64_t>(total);
        total += hits[i].size();
    }
    out.offsets[hits.size()] = static_cast<int64_t>(total);
    out.rows.resize(total);
    out.distances.resize(total);
    size_t k = 0;
    for (auto& list : hits) {
        for (uint64_t hit : list) {
            out.rows[k] = static_cast<int64_t>(hit_row(hit));
            out.distances[k] = hit_distance(hit);
            ++k;
        }
        std::vector<uint64_t>().swap(list);
    }
    return out;
}

Csr range_search(const uint64_t* queries, size_t nq, const uint64_t* hashes, size_t n,
                 int threshold, CpuPath path, int threads) {
    check_threshold(threshold);
    if (!cpu_supports(path))
        throw std::invalid_argument(std::string("cpu path '") + cpu_path_name(path) +
                                    "' is not supported by this CPU");
    const ScanFn scan = scan_for(path);
    std::vector<std::vector<uint64_t>> hits(nq);
    const size_t blocks = (nq + kQueryBlock - 1) / kQueryBlock;
    // Small work is not worth a thread start.
    if (static_cast<double>(nq) * static_cast<double>(n) < 4e6) threads = 1;
    parallel_for(blocks, threads, [&](size_t b0, size_t b1) {
        for (size_t r0 = 0; r0 < n; r0 += kTileRows) {
            const size_t r1 = r0 + kTileRows < n ? r0 + kTileRows : n;
            for (size_t b = b0; b < b1; ++b) {
                const size_t q0 = b * kQueryBlock;
                const int count = static_cast<int>(nq - q0 < kQueryBlock ? nq - q0 : kQueryBlock);
                scan(queries + q0 * kWords, count, hashes, r0, r1, threshold, &hits[q0]);
            }
        }
    });
    return hits_to_csr(hits);
}

}  // namespace hashmatch
