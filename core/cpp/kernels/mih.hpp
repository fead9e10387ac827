// Multi-index hashing over 256-bit hashes: exact Hamming range search, sub-linear in the list.
//
// The hash is cut into m disjoint slots. If popcount(q ^ h) <= t then, by pigeonhole, some slot
// k has popcount(q_k ^ h_k) <= r_k whenever sum_k (r_k + 1) >= t + 1. Each slot has a
// direct-addressed table keyed on the slot's first `key_bits` bits (2^key_bits buckets -> rows
// with that key, ascending); a key is within r_k of the query's whenever the whole slot is, so a
// query probes every key within r_k in table k and verifies the rows found against the full
// hash. Below 8M hashes the slots are 16 x 16 bits keyed whole; from 8M they are 8 x 32 bits
// keyed on up to 22 (radius 3 each at threshold 31), which keeps the tables at about 28 bytes
// a hash (3-byte rows, 1-byte bucket starts): the compact layout.
//
// The speed layout (chain filter, 16 x 16-bit slots at any size) adds the pigeonring chain of
// Qin & Xiao (PVLDB 12(1), 2018): with the 16 slot distances x_k on a ring and radii r_k with
// sum (r_k + 1) = t + 1, a hash within t has some start k with x_k <= r_k AND
// x_k + x_(k+1) <= r_k + r_(k+1) + 1. Table k stores slot k+1's 16 bits beside each row, so a
// probe rejects almost every row of its bucket with one 16-bit popcount, without reading the
// row's hash (1M, t = 31: about 11 hashes read a query instead of 4,150), for 2 more bytes a row
// a table. A hit is reported by its first such start only, so no set is needed.
// An immutable object: built once, then searched from any number of threads.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "kernels/cpu.hpp"
#include "kernels/range_search.hpp"

namespace hashmatch {

void* allocate_huge(size_t bytes);  // see HugePageAllocator; freed with std::free

// Puts allocations of 2 MiB and more on transparent huge pages (madvise) where the OS allows:
// searches read the tables at random, and with 4 KiB pages TLB misses were a large part of a
// 10M search. Smaller ones come from malloc as usual.
template <class T>
struct HugePageAllocator {
    using value_type = T;
    HugePageAllocator() = default;
    template <class U>
    HugePageAllocator(const HugePageAllocator<U>&) {}
    T* allocate(size_t n) { return static_cast<T*>(allocate_huge(n * sizeof(T))); }
    void deallocate(T* p, size_t) { std::free(p); }
    bool operator==(const HugePageAllocator&) const { return true; }
    bool operator!=(const HugePageAllocator&) const { return false; }
};
template <class T>
using TableVector = std::vector<T, HugePageAllocator<T>>;

class MihIndex {
public:
    static constexpr int kMaxSlots = 16;
    static constexpr int kMaxKeyBits = 22;
    static constexpr int kMaxProbeRadius = 3;
    static constexpr size_t kWideFrom = size_t{1} << 23;  // lists this long get 8 wide slots
    // By default a query whose probes would visit more than n / 64 rows is scanned instead
    // (n / 4 with the chain filter, where a visited row costs 2 bytes, not 32).
    static constexpr size_t kScanRatio = 64;
    // Queries whose chain-filter probes are sorted together (8 MiB of probes per table at most).
    static constexpr size_t kJoinBatch = 8192;

    // One bucket to read: rows [begin, end) of a table, and (chain filter) the most the next
    // slot's distance may add and the query (in its batch) that probes it.
    struct Probe {
        uint32_t begin, end;
        int next_limit;
        uint32_t query;
    };

    struct Slot {
        int start;     // first bit (bit i is bit i % 64 of word i / 64)
        int width;     // bits the pigeonhole counts
        int key_bits;  // leading bits of the slot that address its table (<= width)
    };

    // hashes: n x 4 words, C-contiguous; must outlive this object (it is not copied).
    // slots: 16 or 8 forces a layout, 0 picks one from n. scan_ratio: see kScanRatio; 0 never
    // scans a query the tables can serve (tests set it so that small lists reach the tables). sort_by_row: 0 or 1 forces the verification
    // order (see sorts_by_row), -1 picks it from n and the cache size. row_bytes: 3 or 4 forces
    // the width of a stored row (tests cover 4-byte rows without 2^24 hashes), 0 picks it.
    // chain: 1 stores the chain filter's bits (16 slots at any n; slots must be 0 or 16), 0 does
    // not, -1 stores them whenever the layout has 16 slots.
    MihIndex(const uint64_t* hashes, size_t n, int threads, int slots = 0,
             size_t scan_ratio = kScanRatio, int sort_by_row = -1, int row_bytes = 0,
             int chain = -1);

    // Same contract as range_search(): CSR ordered by (distance, row) per query, exact for
    // every threshold (queries the tables cannot serve cheaply are answered by the scan
    // kernel), within `limits`.
    Csr search(const uint64_t* queries, size_t nq, int threshold, CpuPath path, int threads,
               const HitLimits& limits = {}) const;

    size_t size() const { return n_; }
    int row_bytes() const { return row_bytes_; }
    bool sorts_by_row() const { return sort_by_row_; }
    bool chained() const { return !next_.empty(); }
    const std::vector<Slot>& slots() const { return slots_; }
    // Per slot table: bytes a bucket start takes (1 or 4) and buckets escaped (see Offsets).
    std::vector<int> offset_bytes() const;
    std::vector<size_t> escaped_buckets() const;
    // Largest threshold the tables can serve (above it every query is scanned).
    int max_indexed_threshold() const;
    // Bytes of the tables (offsets and rows), not counting the hashes themselves.
    size_t memory_bytes() const;

private:
    using Radii = std::vector<int>;
    Radii radii_for(int threshold) const;
    // Appends the candidates of one query (index qi in its batch) to pairs; false (nothing
    // appended) when they would be more than scan_limit_ rows. Tables without the chain filter.
    bool collect(const uint64_t* query, uint32_t qi, const Radii& radii,
                 std::vector<Probe>& probes, std::vector<uint64_t>& pairs) const;
    // Rows a query's probes reach (before any filter).
    size_t reach(const uint64_t* query, const Radii& radii) const;
    // The chain filter over queries [first, last) of the search (at most kJoinBatch): per
    // table, the batch's probes sorted by bucket, so the buckets are read in ascending order
    // and a bucket probed by several queries is read once; the survivors (place in the table
    // << 32 | query-in-batch << 4 | slot) are appended to pairs. Marks in use_scan the queries
    // whose probes reach more than scan_limit_ rows (left to the scan).
    void join_chain(const uint64_t* queries, size_t first, size_t last, const Radii& radii,
                    CpuPath path, uint8_t* use_scan, std::vector<uint64_t>& keys,
                    std::vector<uint64_t>& spare, std::vector<Probe>& probes,
                    std::vector<uint64_t>& pairs) const;
    // Verifies a batch's candidates (queries first, first + 1, ...) against the full hashes
    // into hits.
    void verify(const uint64_t* queries, size_t first, int threshold, const Radii& radii,
                CpuPath path, std::vector<uint64_t>& pairs, std::vector<uint64_t>& sorted,
                HitLists& hits) const;

    // Bucket starts of one slot table, 2^key_bits + 1 of them. Where buckets hold a few rows
    // (the usual case): a uint32 start per group of 2^shift buckets plus a uint8 offset per
    // bucket, about 1.06 bytes a bucket; a bucket whose offset would be 255 or more (after a
    // crowded bucket of a skewed slot, as PDQ lists have) holds kEscape and its start sits in
    // `escaped`, found by binary search. Where buckets are crowded (16-bit keys over millions
    // of rows, so the table is small beside the rows) plain uint32 starts.
    struct Offsets {
        static constexpr uint8_t kEscape = 255;
        int shift = 0;
        TableVector<uint32_t> full;        // plain starts, or empty
        TableVector<uint32_t> group;       // start of each group of 2^shift buckets
        TableVector<uint8_t> within;       // start - group start, or kEscape
        std::vector<uint64_t> escaped;     // bucket << 32 | start, ascending by bucket

        void build(const std::vector<uint32_t>& starts, size_t rows);
        uint32_t escaped_start(uint32_t bucket) const;
        uint32_t at(uint32_t bucket) const {
            if (within.empty()) return full[bucket];
            const uint32_t w = within[bucket];
            return w != kEscape ? group[bucket >> shift] + w : escaped_start(bucket);
        }
        const void* address(uint32_t bucket) const {
            return within.empty() ? static_cast<const void*>(&full[bucket])
                                  : static_cast<const void*>(&within[bucket]);
        }
        size_t bytes() const {
            return full.capacity() * 4 + group.capacity() * 4 + within.capacity() +
                   escaped.capacity() * 8;
        }
    };

    const uint64_t* hashes_;
    size_t n_;
    int row_bytes_;  // 3 while n < 2^24, else 4
    size_t scan_limit_;  // candidates a query may have before it is scanned instead
    std::vector<uint32_t> largest_bucket_;  // per slot table: the most rows one bucket holds
    bool sort_by_row_;   // verify big candidate batches in row order (see the constructor)
    std::vector<Slot> slots_;
    std::vector<Offsets> offsets_;                // per slot
    std::vector<TableVector<uint8_t>> rows_;      // per slot: n rows of row_bytes_, + padding
    // Chain filter only, per slot k: slot k+1's 16 bits of each row, in the order of rows_[k].
    std::vector<TableVector<uint16_t>> next_;
    // probes_[key_bits][r]: every key mask with popcount <= r, ascending, so masks that differ
    // only in their low bits (neighbouring buckets, one cache line) are probed together.
    std::vector<std::vector<std::vector<uint32_t>>> probes_;
};

}  // namespace hashmatch
