// PDQ perceptual image hash, re-implemented to give bit-for-bit the output of Meta's C++
// reference (facebook/ThreatExchange pdq/cpp) on the same pixels. Platforms hash with that
// reference, so every step below keeps its 32-bit float arithmetic and its order of operations.
//
// Plain C++17, no Python: the pybind11 bindings (bindings.cpp) only convert types.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace hashmatch::pdq {

constexpr int kHashBytes = 32;
// Images with fewer rows or columns than this hash to all zeros with quality 0 (as the reference).
constexpr int kMinHashableDim = 5;

// Hash bytes in the order PDQ tools print them: hex(hash) is the usual 64-digit string, first
// byte = the most significant bits (DCT row 15, columns 15..8).
using Hash = std::array<uint8_t, kHashBytes>;

struct Result {
  Hash hash{};
  int quality = 0;
};

// Dihedral variants in the reference's order: original, rotate90, rotate180, rotate270, flipX,
// flipY, flipPlus1 (transpose), flipMinus1 (anti-transpose).
constexpr int kDihedralCount = 8;
struct DihedralResult {
  std::array<Hash, kDihedralCount> hashes{};
  int quality = 0;
};

// A view of interleaved 8-bit RGB pixels; strides are in bytes, so any NumPy layout works
// without a copy. Pixel (r, c) channel k is at data[r * row_stride + c * col_stride + k * channel_stride].
struct RgbView {
  const uint8_t* data;
  int rows;
  int cols;
  std::ptrdiff_t row_stride;
  std::ptrdiff_t col_stride;
  std::ptrdiff_t channel_stride;
};

// luma[rows * cols] (row-major) = 0.299 R + 0.587 G + 0.114 B in float32, summed left to right.
void luma_from_rgb(const RgbView& rgb, float* luma);

// Hashes a float32 luma plane. `luma` (rows * cols, row-major) is used as scratch and
// overwritten; `scratch` must hold rows * cols floats.
Result hash_luma_inplace(float* luma, float* scratch, int rows, int cols);
DihedralResult hash_luma_dihedral_inplace(float* luma, float* scratch, int rows, int cols);

// Convenience: allocate, compute luma, hash.
Result hash_rgb(const RgbView& rgb);
DihedralResult hash_rgb_dihedral(const RgbView& rgb);

// Exposed for tests of the individual stages.
int jarosz_window_size(int old_dim, int new_dim);
std::vector<float> dct_matrix();  // 16 x 64, row-major

}  // namespace hashmatch::pdq
