// Multi-index hashing over 256-bit hashes: exact Hamming range search, sub-linear in the list.
//
// The hash is cut into m disjoint slots. If popcount(q ^ h) <= t then, by pigeonhole, some slot
// k has popcount(q_k ^ h_k) <= r_k whenever sum_k (r_k + 1) >= t + 1. Each slot has a
// direct-addressed table (2^width buckets -> rows with that slot value, ascending), so a query
// probes every value within r_k of its slot in table k and verifies the rows found against the
// full hash. Slot width grows with the list (16 x 16 bits below 8M hashes, 8 x 21 + 4 x 22
// above) so buckets stay a few rows deep. An immutable object: built once, then searched from
// any number of threads.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/cpu.hpp"
#include "kernels/range_search.hpp"

namespace hashmatch {

class MihIndex {
public:
    static constexpr int kMaxSlots = 16;
    static constexpr int kMaxSlotBits = 22;
    static constexpr int kMaxProbeRadius = 3;
    static constexpr size_t kWideFrom = size_t{1} << 23;  // lists this long get 12 wide slots
    // A query whose probes would visit more than n / kScanRatio rows is scanned instead.
    static constexpr size_t kScanRatio = 64;

    struct Slot {
        int start;  // first bit (bit i is bit i % 64 of word i / 64)
        int width;
    };

    // hashes: n x 4 words, C-contiguous; must outlive this object (it is not copied).
    // slots: 16 or 12 forces a layout, 0 picks one from n.
    MihIndex(const uint64_t* hashes, size_t n, int threads, int slots = 0);

    // Same contract as range_search(): CSR with ascending rows per query, exact for every
    // threshold (queries the tables cannot serve cheaply are answered by the scan kernel).
    Csr search(const uint64_t* queries, size_t nq, int threshold, CpuPath path,
               int threads) const;

    size_t size() const { return n_; }
    int row_bytes() const { return row_bytes_; }
    const std::vector<Slot>& slots() const { return slots_; }
    // Largest threshold the tables can serve (above it every query is scanned).
    int max_indexed_threshold() const;
    // Bytes of the tables (offsets and rows), not counting the hashes themselves.
    size_t memory_bytes() const;

private:
    using Radii = std::vector<int>;
    Radii radii_for(int threshold) const;
    // Appends the candidates of one query (index qi in its batch) to pairs; false (nothing
    // appended) when they would be more than `limit` rows.
    bool collect(const uint64_t* query, uint32_t qi, const Radii& radii, size_t limit,
                 std::vector<uint64_t>& probes, std::vector<uint64_t>& pairs) const;
    // Verifies a batch's candidates against the full hashes; hits[i] gets query i's hits.
    void verify(const uint64_t* batch, int threshold, const Radii& radii, CpuPath path,
                std::vector<uint64_t>& pairs, std::vector<uint64_t>& sorted,
                std::vector<uint64_t>* hits) const;

    // Bucket starts of one slot table, 2^width + 1 of them. Stored as a uint32 base per group of
    // 64 buckets plus a uint16 offset per bucket (2.06 bytes a bucket instead of 4) unless some
    // group holds 65536 rows or more, which only very skewed slots do.
    struct Offsets {
        static constexpr int kGroupShift = 6;
        std::vector<uint32_t> full;
        std::vector<uint32_t> group;
        std::vector<uint16_t> within;

        void compress();
        uint32_t at(uint32_t bucket) const {
            return full.empty() ? group[bucket >> kGroupShift] + within[bucket] : full[bucket];
        }
        const void* address(uint32_t bucket) const {
            return full.empty() ? static_cast<const void*>(&within[bucket])
                                : static_cast<const void*>(&full[bucket]);
        }
        size_t bytes() const {
            return full.capacity() * 4 + group.capacity() * 4 + within.capacity() * 2;
        }
    };

    const uint64_t* hashes_;
    size_t n_;
    int row_bytes_;  // 3 while n < 2^24, else 4
    std::vector<Slot> slots_;
    std::vector<Offsets> offsets_;                // per slot
    std::vector<std::vector<uint8_t>> rows_;      // per slot: n rows of row_bytes_, + padding
    std::vector<std::vector<uint32_t>> masks_;    // per width: masks by popcount (<= radius 3)
    std::vector<std::vector<size_t>> within_;     // per width: masks with popcount <= r
};

}  // namespace hashmatch
