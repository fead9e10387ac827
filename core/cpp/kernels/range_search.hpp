// Exact brute-force range search (every row within an inclusive Hamming threshold of each
// query, as CSR), the per-query hit lists every search fills, and the thread pool that runs
// both kernels. Knows nothing of Python.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "kernels/cpu.hpp"

namespace hashmatch {

// CSR result: rows[offsets[i]:offsets[i+1]] are the hits of query i ordered by (distance, row);
// truncated[i] is 1 when query i had more hits than the cap and only the closest were kept.
struct Csr {
    std::vector<int64_t> offsets;
    std::vector<int64_t> rows;
    std::vector<int32_t> distances;
    std::vector<uint8_t> truncated;
};

// What a search keeps. max_per_query: 0 keeps every hit, else only the closest (distance, then
// row) of each query, trimmed while hits are collected so a query never holds more than about
// twice that many. dead: ascending rows to leave out (tombstones), n_dead of them.
struct HitLimits {
    size_t max_per_query = 0;
    const int64_t* dead = nullptr;
    size_t n_dead = 0;
};

// Per-query lists of packed hits (see pack_hit in scan.hpp). A query's list is only written
// by the one thread that searches that query.
class HitLists {
public:
    HitLists(size_t nq, const HitLimits& limits);
    std::vector<uint64_t>& operator[](size_t q) { return lists_[q]; }
    void add(size_t q, uint64_t hit) {
        auto& list = lists_[q];
        list.push_back(hit);
        if (trim_at_ && list.size() >= trim_at_) trim(q);
    }
    // Drops dead rows, then keeps the closest max_per_query (marking the query truncated).
    void trim(size_t q);
    // Trims when a list has grown past the bound since the last trim (used by the scans,
    // which append without add()).
    void trim_if_long(size_t q) {
        if (trim_at_ && lists_[q].size() >= trim_at_) trim(q);
    }
    void mark_truncated(size_t q) { truncated_[q] = 1; }
    bool truncated(size_t q) const { return truncated_[q] != 0; }
    // Trims and sorts every list and moves them into a CSR.
    Csr finish(int threads);

private:
    std::vector<std::vector<uint64_t>> lists_;
    std::vector<uint8_t> truncated_;
    HitLimits limits_;
    size_t trim_at_;
};

// One sorted result to merge: per query, ids[offsets[i]:offsets[i+1]] ordered by (distance, id).
struct SortedPart {
    const int64_t* offsets;  // nq + 1
    const uint64_t* ids;
    const int32_t* distances;
};

// Parts merged per query into one list ordered by (distance, id) without sorting again (a
// k-way merge of the already ordered lists); at most max_per_query a query (0: all), with
// truncated[i] = 1 where hits were left out. parts[k] says which part each hit came from.
struct Merged {
    std::vector<int64_t> offsets;
    std::vector<uint64_t> ids;
    std::vector<int32_t> distances;
    std::vector<uint8_t> parts;
    std::vector<uint8_t> truncated;
};
Merged merge_parts(const std::vector<SortedPart>& parts, size_t nq, size_t max_per_query);

// Throws std::invalid_argument unless 0 <= threshold <= 256.
void check_threshold(int threshold);

// queries: nq x 4 words, hashes: n x 4 words, both C-contiguous. threads <= 0 means one per
// hardware thread. Runs the given CPU path.
Csr range_search(const uint64_t* queries, size_t nq, const uint64_t* hashes, size_t n,
                 int threshold, CpuPath path, int threads, const HitLimits& limits = {});

// The scan itself, into caller-owned lists (the index sends the queries its tables do not
// serve here).
void scan_into(const uint64_t* queries, size_t nq, const uint64_t* hashes, size_t n,
               int threshold, CpuPath path, int threads, HitLists& hits);

// Runs fn(begin, end) over [0, count) split into up to `threads` contiguous parts (<= 0: one
// per hardware thread). The parts run on the caller and on one process-wide pool of
// hardware_threads() - 1 threads, started once, so however many callers search at once the
// kernels add at most that many threads. The first exception a part throws is rethrown here
// once every started part has finished; parts not yet started are skipped.
void parallel_for(size_t count, int threads, const std::function<void(size_t, size_t)>& fn);

int hardware_threads();

// Test-only faults, set from Python (_kernels.set_test_fault) so tests can prove that they
// fail when the tables lose hits and that a worker's exception reaches the caller.
enum class TestFault { none = 0, drop_hits = 1, throw_in_worker = 2 };
TestFault test_fault();
void set_test_fault(TestFault fault);

}  // namespace hashmatch
