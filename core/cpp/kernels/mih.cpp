#include "kernels/mih.hpp"

#include <immintrin.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

#include "kernels/scan.hpp"

namespace hashmatch {

void* allocate_huge(size_t bytes) {
    constexpr size_t kHuge = size_t{2} << 20;
    void* p = nullptr;
    if (bytes < kHuge) {
        p = std::malloc(bytes ? bytes : 1);
    } else if (posix_memalign(&p, kHuge, bytes) == 0) {
#if defined(MADV_HUGEPAGE)
        madvise(p, bytes, MADV_HUGEPAGE);  // advice only: without THP it fails harmlessly
#endif
    } else {
        p = nullptr;
    }
    if (!p) throw std::bad_alloc();
    return p;
}

namespace {

static_assert(MihIndex::kMaxKeyBits <= 32, "a key must fit 32 bits");

// The table key of a hash in slot s: the slot's first key_bits bits.
inline uint32_t key_of(const uint64_t* hash, MihIndex::Slot s) {
    const int word = s.start >> 6, shift = s.start & 63;
    uint64_t v = hash[word] >> shift;
    if (shift + s.key_bits > 64) v |= hash[word + 1] << (64 - shift);
    return static_cast<uint32_t>(v & ((uint64_t{1} << s.key_bits) - 1));
}

inline uint32_t read_row(const uint8_t* rows, size_t i, int row_bytes) {
    uint32_t v;
    std::memcpy(&v, rows + i * row_bytes, 4);  // the rows buffer carries 1 byte of padding
    return row_bytes == 3 ? (v & 0xFFFFFFu) : v;
}

// Candidates of slot k that pass the full distance are kept only if no earlier slot j < k had its
// key within its radius: that slot's table found (or will find) the same row, so each hit is
// reported exactly once without a set. (The key, not the whole slot, decides what a table finds.)
inline bool found_earlier(const uint64_t* x, const MihIndex::Slot* slots, const int* radii,
                          int k) {
    for (int j = 0; j < k; ++j)
        if (__builtin_popcount(key_of(x, slots[j])) <= radii[j]) return true;
    return false;
}

// Distance in 16-bit slot j of x (a query's XOR with a hash).
inline int slot16_distance(const uint64_t* x, int j) {
    return __builtin_popcountll((x[j >> 2] >> ((j & 3) * 16)) & 0xFFFF);
}

// The chain filter's twin of found_earlier: table j found the row (and will report it) when
// x_j <= r_j and x_j + x_(j+1) <= r_j + r_(j+1) + 1, so table k reports it only if no j < k did.
inline bool chain_found_earlier(const uint64_t* x, const int* radii, int k) {
    for (int j = 0; j < k; ++j) {
        const int here = slot16_distance(x, j);
        if (here <= radii[j] &&
            here + slot16_distance(x, (j + 1) & 15) <= radii[j] + radii[(j + 1) & 15] + 1)
            return true;
    }
    return false;
}

// A candidate is packed as row << 32 | query-in-batch << 4 | slot.
inline uint64_t pack_pair(uint32_t row, uint32_t query, int slot) {
    return (uint64_t{row} << 32) | (uint64_t{query} << 4) | static_cast<uint64_t>(slot);
}
constexpr uint32_t kMaxBatch = 1u << 20;

struct VerifyArgs {
    const uint64_t* queries;  // the batch's queries
    size_t first;             // index of the batch's first query in the search
    const uint64_t* hashes;
    const uint64_t* pairs;    // sorted by row block
    size_t count;
    int threshold;
    const MihIndex::Slot* slots;
    const int* radii;
    bool chain;  // the chain filter found the candidates (see chain_found_earlier)

    bool reported_earlier(const uint64_t* x, int k) const {
        return chain ? chain_found_earlier(x, radii, k) : found_earlier(x, slots, radii, k);
    }
};

constexpr size_t kHashAhead = 16;

template <bool kPrefetch>
inline void verify_scalar(const VerifyArgs& a, HitLists& hits) {
    for (size_t c = 0; c < a.count; ++c) {
        if (kPrefetch && c + kHashAhead < a.count)
            __builtin_prefetch(a.hashes + (a.pairs[c + kHashAhead] >> 32) * kWords);
        const uint64_t pair = a.pairs[c];
        const uint32_t row = static_cast<uint32_t>(pair >> 32);
        const uint32_t qi = static_cast<uint32_t>(pair >> 4) & (kMaxBatch - 1);
        const int k = static_cast<int>(pair & 15);
        const uint64_t* h = a.hashes + size_t{row} * kWords;
        const uint64_t* q = a.queries + size_t{qi} * kWords;
        const uint64_t x[4] = {q[0] ^ h[0], q[1] ^ h[1], q[2] ^ h[2], q[3] ^ h[3]};
        const int d = __builtin_popcountll(x[0]) + __builtin_popcountll(x[1]) +
                      __builtin_popcountll(x[2]) + __builtin_popcountll(x[3]);
        if (d <= a.threshold && !a.reported_earlier(x, k))
            hits.add(a.first + qi, pack_hit(row, d));
    }
}

void verify_portable(const VerifyArgs& a, HitLists& hits) {
    verify_scalar<false>(a, hits);
}

__attribute__((target("popcnt"))) void verify_popcnt(const VerifyArgs& a,
                                                     HitLists& hits) {
    verify_scalar<true>(a, hits);
}

__attribute__((target("avx512f,avx512vl,avx512vpopcntdq,popcnt"))) void verify_avx512(
    const VerifyArgs& a, HitLists& hits) {
    for (size_t c = 0; c < a.count; ++c) {
        if (c + kHashAhead < a.count)
            __builtin_prefetch(a.hashes + (a.pairs[c + kHashAhead] >> 32) * kWords);
        const uint64_t pair = a.pairs[c];
        const uint32_t row = static_cast<uint32_t>(pair >> 32);
        const uint32_t qi = static_cast<uint32_t>(pair >> 4) & (kMaxBatch - 1);
        const __m256i x = _mm256_xor_si256(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.queries + size_t{qi} * kWords)),
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.hashes + size_t{row} * kWords)));
        const __m256i pc = _mm256_popcnt_epi64(x);
        const __m128i s2 =
            _mm_add_epi64(_mm256_castsi256_si128(pc), _mm256_extracti128_si256(pc, 1));
        const int d = static_cast<int>(_mm_cvtsi128_si64(s2) + _mm_extract_epi64(s2, 1));
        if (d > a.threshold) continue;
        alignas(32) uint64_t xs[4];
        _mm256_store_si256(reinterpret_cast<__m256i*>(xs), x);
        if (!a.reported_earlier(xs, static_cast<int>(pair & 15)))
            hits.add(a.first + qi, pack_hit(row, d));
    }
}

// The chain filter over a table's probed buckets: appends position << 32 | tag for each place
// in the table whose stored next-slot bits are within the probe's next_limit of the query's
// (`want`). The row at that place is read later, prefetched (MihIndex::verify).
struct ChainScan {
    const uint16_t* next;      // the table's next-slot bits, in bucket order
    const uint64_t* queries;   // the batch's queries
    MihIndex::Slot after;      // the next slot, whose bits `next` holds
    int slot;                  // the table's slot

    uint32_t want(const MihIndex::Probe& p) const { return key_of(queries + p.query * kWords, after); }
    uint64_t tag(const MihIndex::Probe& p) const { return pack_pair(0, p.query, slot); }
};
constexpr size_t kBucketsAhead = 16;

// Every cache line of a bucket's next-slot bits (at 10M a bucket spans about 5).
inline void prefetch_bucket(const uint16_t* next, const MihIndex::Probe& p) {
    for (uint32_t i = p.begin; i < p.end; i += 32) __builtin_prefetch(next + i);
}

template <bool kPrefetch>
inline void chain_filter_scalar(const ChainScan& c, const MihIndex::Probe* probes, size_t count,
                                std::vector<uint64_t>& pairs) {
    for (size_t p = 0; p < count; ++p) {
        if (kPrefetch && p + kBucketsAhead < count) prefetch_bucket(c.next, probes[p + kBucketsAhead]);
        const MihIndex::Probe pr = probes[p];
        const uint32_t want = c.want(pr);
        for (uint32_t i = pr.begin; i < pr.end; ++i)
            if (__builtin_popcount(c.next[i] ^ want) <= pr.next_limit)
                pairs.push_back((uint64_t{i} << 32) | c.tag(pr));
    }
}

void chain_filter_portable(const ChainScan& c, const MihIndex::Probe* probes, size_t count,
                           std::vector<uint64_t>& pairs) {
    chain_filter_scalar<false>(c, probes, count, pairs);
}

__attribute__((target("popcnt"))) void chain_filter_popcnt(const ChainScan& c,
                                                          const MihIndex::Probe* probes,
                                                          size_t count,
                                                          std::vector<uint64_t>& pairs) {
    chain_filter_scalar<true>(c, probes, count, pairs);
}

// 32 rows a step: XOR, 16-bit popcount (BITALG) and compare, then the few survivors one by one.
__attribute__((target("avx512f,avx512bw,avx512bitalg,popcnt"))) void chain_filter_bitalg(
    const ChainScan& c, const MihIndex::Probe* probes, size_t count,
    std::vector<uint64_t>& pairs) {
    for (size_t p = 0; p < count; ++p) {
        if (p + kBucketsAhead < count) prefetch_bucket(c.next, probes[p + kBucketsAhead]);
        const MihIndex::Probe pr = probes[p];
        const __m512i want = _mm512_set1_epi16(static_cast<short>(c.want(pr)));
        const __m512i limit = _mm512_set1_epi16(static_cast<short>(pr.next_limit));
        for (uint32_t i = pr.begin; i < pr.end; i += 32) {
            const uint32_t left = pr.end - i;
            const __mmask32 in = left >= 32 ? ~__mmask32{0} : (__mmask32{1} << left) - 1;
            const __m512i bits = _mm512_maskz_loadu_epi16(in, c.next + i);
            const __m512i d = _mm512_popcnt_epi16(_mm512_xor_si512(bits, want));
            for (uint32_t pass = _mm512_mask_cmple_epu16_mask(in, d, limit); pass;
                 pass &= pass - 1) {
                pairs.push_back((uint64_t{i + __builtin_ctz(pass)} << 32) | c.tag(pr));
            }
        }
    }
}

bool cpu_has_bitalg() {
#if defined(__x86_64__)
    static const bool has = [] {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512bitalg");
    }();
    return has;
#else
    return false;
#endif
}

// Sorts v by bits [shift, shift + bits) of each value (LSD radix, stable, `digit` bits a pass),
// with spare as scratch; the sorted values end in v.
void radix_sort(std::vector<uint64_t>& v, std::vector<uint64_t>& spare, int shift, int bits,
                int digit) {
    spare.resize(v.size());
    std::vector<uint32_t> count(size_t{1} << digit);
    const uint64_t mask = (uint64_t{1} << digit) - 1;
    for (int at = shift; at < shift + bits; at += digit) {
        std::fill(count.begin(), count.end(), 0);
        for (uint64_t x : v) ++count[(x >> at) & mask];
        uint32_t sum = 0;
        for (auto& c : count) {
            const uint32_t here = c;
            c = sum;
            sum += here;
        }
        for (uint64_t x : v) spare[count[(x >> at) & mask]++] = x;
        v.swap(spare);
    }
}

std::vector<MihIndex::Slot> layout_for(size_t n, int count, int chain) {
    if (count != 0 && count != 8 && count != 16)
        throw std::invalid_argument("slots must be 0 (automatic), 8 or 16, got " +
                                    std::to_string(count));
    if (chain < -1 || chain > 1)
        throw std::invalid_argument("chain must be -1 (automatic), 0 or 1, got " +
                                    std::to_string(chain));
    if (chain == 1 && count == 8)
        throw std::invalid_argument("the chain filter needs 16 slots, got slots 8");
    if (count == 0) count = chain == 1 || n < MihIndex::kWideFrom ? 16 : 8;
    const int width = 256 / count;
    // 16-bit slots are keyed whole. 32-bit slots are keyed on about log2(n) - 1 bits (22 from
    // 8M: two rows a bucket), so their tables stay a byte a bucket.
    int key_bits = width;
    if (width > 16) {
        key_bits = 10;
        while (key_bits < MihIndex::kMaxKeyBits && (size_t{2} << key_bits) < n) ++key_bits;
    }
    std::vector<MihIndex::Slot> slots;
    for (int i = 0; i < count; ++i) slots.push_back({i * width, width, key_bits});
    return slots;
}

int row_bytes_for(size_t n, int forced) {
    if (forced != 0 && forced != 3 && forced != 4)
        throw std::invalid_argument("row_bytes must be 0 (automatic), 3 or 4, got " +
                                    std::to_string(forced));
    if (forced == 3 && n >= (size_t{1} << 24))
        throw std::invalid_argument("row_bytes 3 holds fewer than 2^24 rows, got " +
                                    std::to_string(n));
    return forced ? forced : (n < (size_t{1} << 24) ? 3 : 4);
}

}  // namespace

MihIndex::MihIndex(const uint64_t* hashes, size_t n, int threads, int slots, size_t scan_ratio,
                   int sort_by_row, int row_bytes, int chain)
    : hashes_(hashes),
      n_(n),
      row_bytes_(row_bytes_for(n, row_bytes)),
      scan_limit_(scan_ratio ? n / scan_ratio : SIZE_MAX),
      slots_(layout_for(n, slots, chain)) {
    const bool chained = chain != 0 && slots_.size() == 16;
    // A row the probes reach costs the chain filter 2 bytes, not the 32 of a verified hash: the
    // scan takes over at 16x the reach (n / 4 at the default ratio). On 60k PDQ hashes of
    // generated pictures, whose clustered slots make crowded buckets, that searched 1.16x faster
    // (median of 7 alternating runs, load 2-5.6; a random list never reaches either limit).
    if (chained && scan_ratio) scan_limit_ = n / scan_ratio * 16;
    // Sorting a batch's candidates by row, so the hashes stream in order, pays only where they
    // do not fit the last-level cache with room to spare: at 1M (32 MB of hashes) 1.5x faster on
    // Zen 4 (32 MiB L3), 1.2-1.5x slower on a Xeon with 260 MiB; slower at 10M on both, where the
    // wide slots find fewer candidates per listed hash.
    // The chain filter leaves a few candidates a query: nothing to sort.
    sort_by_row_ = sort_by_row >= 0 ? sort_by_row == 1
                                    : slots_.size() == 16 && !chained &&
                                          n * kWords * 8 > last_level_cache_bytes() / 2;
    if (n > 0xFFFFFFFFull) throw std::invalid_argument("MihIndex holds at most 2^32 - 1 hashes");
    probes_.resize(kMaxKeyBits + 1);
    for (const Slot& s : slots_) {
        auto& by_radius = probes_[s.key_bits];
        if (!by_radius.empty()) continue;
        // One ascending pass over the keys: a mask joins the list of every radius it is within.
        by_radius.resize(kMaxProbeRadius + 1);
        for (uint32_t mask = 0; mask < (uint32_t{1} << s.key_bits); ++mask)
            for (int r = __builtin_popcount(mask); r <= kMaxProbeRadius; ++r)
                by_radius[r].push_back(mask);
    }
    const size_t m = slots_.size();
    offsets_.resize(m);
    rows_.resize(m);
    largest_bucket_.resize(m);
    if (chained) next_.resize(m);
    parallel_for(m, threads, [&](size_t k0, size_t k1) {
        std::vector<uint32_t> values(n_);  // this slot of every row, read once from the hashes
        for (size_t k = k0; k < k1; ++k) {
            const Slot s = slots_[k];
            std::vector<uint32_t> off((size_t{1} << s.key_bits) + 1, 0);
            for (size_t i = 0; i < n_; ++i) values[i] = key_of(hashes_ + i * kWords, s);
            for (size_t i = 0; i < n_; ++i) ++off[values[i] + 1];
            for (size_t b = 0; b + 1 < off.size(); ++b) off[b + 1] += off[b];
            // Rows are written in ascending order within each bucket: off[v] is the next free
            // place of bucket v, and the bounds are restored by shifting afterwards.
            auto& rows = rows_[k];
            rows.assign(n_ * row_bytes_ + 1, 0);
            uint8_t* out = rows.data();
            if (row_bytes_ == 3) {
                for (size_t i = 0; i < n_; ++i) {
                    const uint32_t row = static_cast<uint32_t>(i);
                    std::memcpy(out + size_t(off[values[i]]++) * 3, &row, 3);
                }
            } else {
                for (size_t i = 0; i < n_; ++i) {
                    const uint32_t row = static_cast<uint32_t>(i);
                    std::memcpy(out + size_t(off[values[i]]++) * 4, &row, 4);
                }
            }
            for (size_t b = off.size() - 1; b > 0; --b) off[b] = off[b - 1];
            off[0] = 0;
            if (chained) {
                // Slot k+1 of each row, where rows_[k] holds the row (32 spare entries let a
                // vector filter read past a table's last bucket).
                const Slot after = slots_[(k + 1) % m];
                auto& next = next_[k];
                next.assign(n_ + 32, 0);
                std::vector<uint32_t> place(off.begin(), off.end() - 1);
                for (size_t i = 0; i < n_; ++i)
                    next[place[values[i]]++] =
                        static_cast<uint16_t>(key_of(hashes_ + i * kWords, after));
            }
            offsets_[k].build(off, n_);
            for (size_t b = 0; b + 1 < off.size(); ++b)
                largest_bucket_[k] = std::max(largest_bucket_[k], off[b + 1] - off[b]);
        }
    });
}

void MihIndex::Offsets::build(const std::vector<uint32_t>& starts, size_t rows) {
    const size_t count = starts.size();
    // Groups of up to 64 buckets, small enough that a group averages at most 160 rows (so a
    // uniform list escapes almost nothing: 255 is 7 standard deviations up); with 40 rows a
    // bucket or more, plain starts (the table is then small beside the rows).
    const double per_bucket = static_cast<double>(rows) / static_cast<double>(count - 1);
    if (per_bucket >= 40) {
        full.assign(starts.begin(), starts.end());
        return;
    }
    shift = 6;
    while (shift > 0 && per_bucket * (1 << shift) > 160) --shift;
    group.resize(((count - 1) >> shift) + 1);
    for (size_t g = 0; g < group.size(); ++g) group[g] = starts[g << shift];
    within.resize(count);
    for (size_t b = 0; b < count; ++b) {
        const uint32_t w = starts[b] - group[b >> shift];
        within[b] = w < kEscape ? static_cast<uint8_t>(w) : kEscape;
        if (w >= kEscape) escaped.push_back((uint64_t{b} << 32) | starts[b]);
    }
    escaped.shrink_to_fit();
}

uint32_t MihIndex::Offsets::escaped_start(uint32_t bucket) const {
    const auto it = std::lower_bound(escaped.begin(), escaped.end(), uint64_t{bucket} << 32);
    return static_cast<uint32_t>(*it);  // present: every escaped bucket was recorded
}

std::vector<int> MihIndex::offset_bytes() const {
    std::vector<int> out;
    for (const Offsets& off : offsets_) out.push_back(off.within.empty() ? 4 : 1);
    return out;
}

std::vector<size_t> MihIndex::escaped_buckets() const {
    std::vector<size_t> out;
    for (const Offsets& off : offsets_) out.push_back(off.escaped.size());
    return out;
}

int MihIndex::max_indexed_threshold() const {
    return static_cast<int>(slots_.size()) * (kMaxProbeRadius + 1) - 1;
}

MihIndex::Radii MihIndex::radii_for(int threshold) const {
    // sum (r_k + 1) = threshold + 1 exactly; the spare bits go to the narrowest slots, whose
    // probe balls are smallest (slots are laid out narrowest first).
    const int m = static_cast<int>(slots_.size());
    const int base = (threshold + 1) / m, extra = (threshold + 1) % m;
    Radii r(m);
    for (int k = 0; k < m; ++k) r[k] = base - 1 + (k < extra ? 1 : 0);
    return r;
}

size_t MihIndex::memory_bytes() const {
    size_t total = 0;
    for (size_t k = 0; k < slots_.size(); ++k)
        total += offsets_[k].bytes() + rows_[k].capacity();
    for (const auto& next : next_) total += next.capacity() * sizeof(uint16_t);
    return total;
}

bool MihIndex::collect(const uint64_t* q, uint32_t qi, const Radii& radii,
                       std::vector<Probe>& probes, std::vector<uint64_t>& pairs) const {
    // Bucket bounds first (offsets tables), then the rows of the buckets (bucket lists), each
    // pass prefetching ahead so the random reads overlap.
    constexpr size_t kAhead = 16;
    const int m = static_cast<int>(slots_.size());
    size_t probe_start[kMaxSlots + 1];
    probes.clear();
    size_t total = 0;
    for (int k = 0; k < m; ++k) {
        probe_start[k] = probes.size();
        if (radii[k] < 0) continue;
        const Slot s = slots_[k];
        const uint32_t v = key_of(q, s);
        const Offsets& off = offsets_[k];
        const std::vector<uint32_t>& probe_masks = probes_[s.key_bits][radii[k]];
        const uint32_t* masks = probe_masks.data();
        const size_t np = probe_masks.size();
        for (size_t p = 0; p < np && p < kAhead; ++p) __builtin_prefetch(off.address(v ^ masks[p]));
        for (size_t p = 0; p < np; ++p) {
            if (p + kAhead < np) __builtin_prefetch(off.address(v ^ masks[p + kAhead]));
            const uint32_t b = v ^ masks[p];
            const uint32_t begin = off.at(b), end = off.at(b + 1);
            if (begin != end) probes.push_back({begin, end, 0, qi});
            total += end - begin;
        }
    }
    if (total > scan_limit_) return false;
    probe_start[m] = probes.size();
    for (int k = 0; k < m; ++k) {
        const uint8_t* rows = rows_[k].data();
        const size_t p0 = probe_start[k], p1 = probe_start[k + 1];
        for (size_t p = p0; p < p1 && p < p0 + kAhead; ++p)
            __builtin_prefetch(rows + size_t{probes[p].begin} * row_bytes_);
        for (size_t p = p0; p < p1; ++p) {
            if (p + kAhead < p1)
                __builtin_prefetch(rows + size_t{probes[p + kAhead].begin} * row_bytes_);
            for (uint32_t i = probes[p].begin; i < probes[p].end; ++i)
                pairs.push_back(pack_pair(read_row(rows, i, row_bytes_), qi, k));
        }
    }
    return true;
}

size_t MihIndex::reach(const uint64_t* q, const Radii& radii) const {
    size_t total = 0;
    for (size_t k = 0; k < slots_.size(); ++k) {
        if (radii[k] < 0) continue;
        const uint32_t v = key_of(q, slots_[k]);
        const Offsets& off = offsets_[k];
        for (uint32_t mask : probes_[slots_[k].key_bits][radii[k]])
            total += off.at((v ^ mask) + 1) - off.at(v ^ mask);
    }
    return total;
}

void MihIndex::join_chain(const uint64_t* queries, size_t first, size_t last, const Radii& radii,
                          CpuPath path, uint8_t* use_scan, std::vector<uint64_t>& keys,
                          std::vector<uint64_t>& spare, std::vector<Probe>& probes,
                          std::vector<uint64_t>& pairs) const {
    const uint64_t* batch = queries + first * kWords;
    const size_t count = last - first;
    const int m = static_cast<int>(slots_.size());
    // Where even the largest buckets cannot add up to scan_limit_ rows (uniform lists), no
    // query is handed to the scan and its reach need not be counted.
    size_t most = 0;
    for (int k = 0; k < m; ++k)
        if (radii[k] >= 0)
            most += probes_[slots_[k].key_bits][radii[k]].size() * size_t{largest_bucket_[k]};
    for (size_t i = 0; i < count; ++i)
        use_scan[first + i] = most > scan_limit_ && reach(batch + i * kWords, radii) > scan_limit_;
    std::vector<uint64_t> low;  // per probe mask: the next slot's limit, as a key's low bits
    for (int k = 0; k < m; ++k) {
        if (radii[k] < 0) continue;
        const Slot s = slots_[k];
        const std::vector<uint32_t>& masks = probes_[s.key_bits][radii[k]];
        const int pair_limit = radii[k] + radii[(k + 1) % m] + 1;
        low.resize(masks.size());
        for (size_t p = 0; p < masks.size(); ++p)
            low[p] = static_cast<uint64_t>(pair_limit - __builtin_popcount(masks[p]));
        // A probe key: bucket << 32 | query-in-batch << 4 | the next slot's limit.
        keys.clear();
        for (size_t i = 0; i < count; ++i) {
            if (use_scan[first + i]) continue;
            const uint32_t v = key_of(batch + i * kWords, s);
            const uint64_t query = uint64_t{i} << 4;
            for (size_t p = 0; p < masks.size(); ++p)
                keys.push_back((uint64_t{v ^ masks[p]} << 32) | query | low[p]);
        }
        if (keys.size() < 1024)  // a few queries: a radix pass would mostly clear its counts
            std::sort(keys.begin(), keys.end());
        else
            radix_sort(keys, spare, 32, s.key_bits, 8);
        const Offsets& off = offsets_[k];
        probes.clear();
        for (uint64_t key : keys) {
            const uint32_t b = static_cast<uint32_t>(key >> 32);
            const uint32_t begin = off.at(b), end = off.at(b + 1);
            if (begin != end)
                probes.push_back({begin, end, static_cast<int>(key & 15),
                                  static_cast<uint32_t>(key >> 4) & (kMaxBatch - 1)});
        }
        const ChainScan scan{next_[k].data(), batch, slots_[(k + 1) % m], k};
        for (size_t p = 0; p < probes.size() && p < kBucketsAhead; ++p)
            prefetch_bucket(scan.next, probes[p]);
        if (path == CpuPath::avx512 && cpu_has_bitalg())
            chain_filter_bitalg(scan, probes.data(), probes.size(), pairs);
        else if (path == CpuPath::portable)
            chain_filter_portable(scan, probes.data(), probes.size(), pairs);
        else
            chain_filter_popcnt(scan, probes.data(), probes.size(), pairs);
    }
}

void MihIndex::verify(const uint64_t* queries, size_t first, int threshold, const Radii& radii,
                      CpuPath path, std::vector<uint64_t>& pairs, std::vector<uint64_t>& sorted,
                      HitLists& hits) const {
    // With sort_by_row_, a batch's candidates are sorted by row (LSD radix, 12 bits a pass) once
    // they are a good share of the list (n / 2), so the hashes are read in ascending order,
    // which the hardware prefetcher streams, instead of at random from memory. Else they are
    // verified in the order found, prefetched a few ahead.
    if (test_fault() == TestFault::drop_hits) pairs.clear();  // tests only: see TestFault
    if (chained()) {
        // The chain filter gave places in its tables: read their rows, prefetched ahead.
        constexpr size_t kRowsAhead = 16;
        const size_t count = pairs.size();
        for (size_t c = 0; c < count; ++c) {
            if (c + kRowsAhead < count) {
                const uint64_t ahead = pairs[c + kRowsAhead];
                __builtin_prefetch(rows_[ahead & 15].data() + (ahead >> 32) * row_bytes_);
            }
            const uint64_t pair = pairs[c];
            const uint32_t row = read_row(rows_[pair & 15].data(), pair >> 32, row_bytes_);
            pairs[c] = (uint64_t{row} << 32) | (pair & 0xFFFFFFFFu);
        }
    }
    if (!sort_by_row_ || pairs.size() < n_ / 2) {
        sorted.swap(pairs);
    } else {
        int row_bits = 1;
        while (row_bits < 32 && (size_t{1} << row_bits) < n_) ++row_bits;
        radix_sort(pairs, sorted, 32, row_bits, 12);
        pairs.swap(sorted);  // the sorted candidates end in `sorted`
    }
    const VerifyArgs args{queries + first * kWords, first,         hashes_,
                          sorted.data(),           sorted.size(),  threshold,
                          slots_.data(),           radii.data(),   chained()};
    switch (path) {
        case CpuPath::avx512: verify_avx512(args, hits); break;
        case CpuPath::avx2: verify_popcnt(args, hits); break;
        case CpuPath::portable: verify_portable(args, hits); break;
    }
    pairs.clear();
    sorted.clear();
}

Csr MihIndex::search(const uint64_t* queries, size_t nq, int threshold, CpuPath path,
                     int threads, const HitLimits& limits) const {
    check_threshold(threshold);
    if (!cpu_supports(path))
        throw std::invalid_argument(std::string("cpu path '") + cpu_path_name(path) +
                                    "' is not supported by this CPU");
    HitLists hits(nq, limits);
    std::vector<uint8_t> use_scan(nq, 1);
    if (threshold <= max_indexed_threshold() && n_ > 0) {
        const Radii radii = radii_for(threshold);
        // A batch is verified together once its candidates reach n / 2 (at most 8M, 64 MiB)
        // where they will be sorted by row; else at 2 MiB of candidates, which stay in L2.
        const size_t flush_at =
            sort_by_row_ ? std::min<size_t>(std::max<size_t>(n_ / 2, 1 << 16), 1 << 23)
                         : size_t{1} << 18;
        parallel_for(nq, nq < 4 ? 1 : threads, [&](size_t b, size_t e) {
            if (test_fault() == TestFault::throw_in_worker) throw std::bad_alloc();
            std::vector<Probe> probes;
            std::vector<uint64_t> pairs, sorted, keys;
            if (chained()) {
                for (size_t first = b; first < e; first += kJoinBatch) {
                    const size_t last = std::min(e, first + kJoinBatch);
                    join_chain(queries, first, last, radii, path, use_scan.data(), keys, sorted,
                               probes, pairs);
                    verify(queries, first, threshold, radii, path, pairs, sorted, hits);
                }
                return;
            }
            size_t first = b;
            for (size_t i = b; i < e; ++i) {
                use_scan[i] = !collect(queries + i * kWords, static_cast<uint32_t>(i - first),
                                       radii, probes, pairs);
                if (i + 1 == e || pairs.size() >= flush_at || i + 1 - first == kMaxBatch) {
                    verify(queries, first, threshold, radii, path, pairs, sorted, hits);
                    first = i + 1;
                }
            }
        });
    }
    std::vector<size_t> scan;
    for (size_t i = 0; i < nq; ++i)
        if (use_scan[i]) scan.push_back(i);
    if (!scan.empty()) {
        std::vector<uint64_t> sub(scan.size() * kWords);
        for (size_t j = 0; j < scan.size(); ++j)
            std::memcpy(&sub[j * kWords], queries + scan[j] * kWords, sizeof(uint64_t) * kWords);
        HitLists scanned(scan.size(), limits);
        scan_into(sub.data(), scan.size(), hashes_, n_, threshold, path, threads, scanned);
        for (size_t j = 0; j < scan.size(); ++j) {
            scanned.trim(j);
            hits[scan[j]].swap(scanned[j]);
            if (scanned.truncated(j)) hits.mark_truncated(scan[j]);
        }
    }
    return hits.finish(threads);
}

}  // namespace hashmatch
