// The three scan kernels. CPU-specific code is compiled per function with target attributes
// and only called after cpu_supports() said yes.
#include "kernels/scan.hpp"

#include <immintrin.h>

namespace hashmatch {

static_assert(sizeof(uint64_t) * kWords == 32, "a hash is 32 bytes");
static_assert((uint64_t{kMaxDistance} << kRowBits) >> kRowBits == kMaxDistance,
              "a distance must fit above the row bits");

void scan_portable(const uint64_t* q, int nq, const uint64_t* h, size_t row0, size_t row1,
                   int threshold, std::vector<uint64_t>* out) {
    for (size_t j = row0; j < row1; ++j) {
        const uint64_t* hj = h + j * kWords;
        for (int i = 0; i < nq; ++i) {
            const uint64_t* qi = q + i * kWords;
            int d = __builtin_popcountll(qi[0] ^ hj[0]) + __builtin_popcountll(qi[1] ^ hj[1]) +
                    __builtin_popcountll(qi[2] ^ hj[2]) + __builtin_popcountll(qi[3] ^ hj[3]);
            if (d <= threshold) out[i].push_back(pack_hit(j, d));
        }
    }
}

__attribute__((target("avx2,popcnt"))) void scan_avx2(const uint64_t* q, int nq,
                                                      const uint64_t* h, size_t row0,
                                                      size_t row1, int threshold,
                                                      std::vector<uint64_t>* out) {
    // Queries are transposed into 4 lanes per register (word w of queries g*4..g*4+3), so one
    // hash word is broadcast once and compared with 4 queries; popcount by nibble lookup.
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1,
                                         2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    const __m256i tv = _mm256_set1_epi64x(threshold);
    for (int g0 = 0; g0 < nq; g0 += 8) {
        const int ng = nq - g0 < 8 ? nq - g0 : 8;
        alignas(32) uint64_t qt[2][kWords][4];
        for (int k = 0; k < 8; ++k) {
            const int src = g0 + (k < ng ? k : 0);
            for (int w = 0; w < kWords; ++w) qt[k / 4][w][k % 4] = q[src * kWords + w];
        }
        __m256i Q[2][kWords];
        for (int g = 0; g < 2; ++g)
            for (int w = 0; w < kWords; ++w)
                Q[g][w] = _mm256_load_si256(reinterpret_cast<const __m256i*>(qt[g][w]));
        const unsigned valid = ng == 8 ? 0xffu : ((1u << ng) - 1u);
        for (size_t j = row0; j < row1; ++j) {
            const uint64_t* hj = h + j * kWords;
            unsigned hits = 0;
            for (int g = 0; g < 2; ++g) {
                __m256i bytes = _mm256_setzero_si256();
                for (int w = 0; w < kWords; ++w) {
                    __m256i x = _mm256_xor_si256(Q[g][w], _mm256_set1_epi64x(
                                                              static_cast<long long>(hj[w])));
                    __m256i lo = _mm256_and_si256(x, low4);
                    __m256i hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), low4);
                    bytes = _mm256_add_epi8(bytes, _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo),
                                                                   _mm256_shuffle_epi8(lut, hi)));
                }
                __m256i d = _mm256_sad_epu8(bytes, _mm256_setzero_si256());
                __m256i over = _mm256_cmpgt_epi64(d, tv);
                unsigned m = (~static_cast<unsigned>(_mm256_movemask_pd(_mm256_castsi256_pd(over)))) & 0xfu;
                hits |= m << (4 * g);
            }
            hits &= valid;
            while (hits) {
                const int k = __builtin_ctz(hits);
                hits &= hits - 1;
                const uint64_t* qi = q + (g0 + k) * kWords;
                int d = __builtin_popcountll(qi[0] ^ hj[0]) + __builtin_popcountll(qi[1] ^ hj[1]) +
                        __builtin_popcountll(qi[2] ^ hj[2]) + __builtin_popcountll(qi[3] ^ hj[3]);
                out[g0 + k].push_back(pack_hit(j, d));
            }
        }
    }
}

__attribute__((target("avx512f,avx512vpopcntdq,popcnt"))) void scan_avx512(
    const uint64_t* q, int nq, const uint64_t* h, size_t row0, size_t row1, int threshold,
    std::vector<uint64_t>* out) {
    // 32 queries transposed into 4 groups x 4 words of 8 lanes; each hash word is broadcast
    // once per pass and meets all 32 queries.
    alignas(64) uint64_t qt[4][kWords][8];
    for (int k = 0; k < kQueryBlock; ++k) {
        const int src = k < nq ? k : 0;
        for (int w = 0; w < kWords; ++w) qt[k / 8][w][k % 8] = q[src * kWords + w];
    }
    const int groups = (nq + 7) / 8;
    __m512i Q[4][kWords];
    for (int g = 0; g < 4; ++g)
        for (int w = 0; w < kWords; ++w) Q[g][w] = _mm512_load_si512(qt[g][w]);
    __mmask8 valid[4];
    for (int g = 0; g < 4; ++g) {
        const int n = nq - g * 8;
        valid[g] = n >= 8 ? 0xff : (n <= 0 ? 0 : static_cast<__mmask8>((1u << n) - 1u));
    }
    const __m512i tv = _mm512_set1_epi64(threshold);
    for (size_t j = row0; j < row1; ++j) {
        const uint64_t* hj = h + j * kWords;
        const __m512i h0 = _mm512_set1_epi64(static_cast<long long>(hj[0]));
        const __m512i h1 = _mm512_set1_epi64(static_cast<long long>(hj[1]));
        const __m512i h2 = _mm512_set1_epi64(static_cast<long long>(hj[2]));
        const __m512i h3 = _mm512_set1_epi64(static_cast<long long>(hj[3]));
        for (int g = 0; g < groups; ++g) {
            __m512i d = _mm512_add_epi64(
                _mm512_add_epi64(_mm512_popcnt_epi64(_mm512_xor_si512(Q[g][0], h0)),
                                 _mm512_popcnt_epi64(_mm512_xor_si512(Q[g][1], h1))),
                _mm512_add_epi64(_mm512_popcnt_epi64(_mm512_xor_si512(Q[g][2], h2)),
                                 _mm512_popcnt_epi64(_mm512_xor_si512(Q[g][3], h3))));
            __mmask8 m = _mm512_mask_cmple_epu64_mask(valid[g], d, tv);
            if (m) {
                alignas(64) uint64_t dist[8];
                _mm512_store_si512(dist, d);
                unsigned bits = m;
                while (bits) {
                    const int k = __builtin_ctz(bits);
                    bits &= bits - 1;
                    out[g * 8 + k].push_back(pack_hit(j, static_cast<int>(dist[k])));
                }
            }
        }
    }
}

ScanFn scan_for(CpuPath path) {
    switch (path) {
        case CpuPath::avx512: return scan_avx512;
        case CpuPath::avx2: return scan_avx2;
        case CpuPath::portable: break;
    }
    return scan_portable;
}

}  // namespace hashmatch
