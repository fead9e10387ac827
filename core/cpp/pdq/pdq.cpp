// PDQ: float32 luma -> two-pass Jarosz (tent) blur -> 64x64 decimation -> quality metric ->
// 16x16 corner of the 2-D DCT -> one bit per coefficient above the median.
//
// Exactness notes (each step matches the reference's float operations one for one):
// - luma: float coefficients, products and sums in float, left to right;
// - box filter: running float sum with an add then a separate subtract, divided by the int count;
//   the column pass runs over whole rows at once (one running sum per column), which keeps each
//   column's sequence of operations and is cache friendly;
// - DCT matrix: float(float(sqrt(2/64)) * cos(double)); sums in float, k ascending;
// - median: the 128th smallest of 256 (what the reference's Torben selection returns).
// Built without -ffast-math and without FMA contraction so that no operation is fused or
// reordered.
#include "pdq/pdq.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>

#if defined(__FAST_MATH__)
#error "PDQ must be built without -ffast-math: the hash depends on exact float rounding"
#endif

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace hashmatch::pdq {

static_assert(std::numeric_limits<float>::is_iec559, "PDQ needs IEEE-754 binary32 floats");
static_assert(sizeof(float) == 4, "PDQ needs 32-bit floats");
static_assert(sizeof(Hash) == 32, "a PDQ hash is 256 bits");

namespace {

constexpr int kDown = 64;     // decimated image side
constexpr int kDct = 16;      // DCT coefficients kept per axis
constexpr int kJaroszPasses = 2;

const float kLumaR = 0.299f;
const float kLumaG = 0.587f;
const float kLumaB = 0.114f;

using Buffer64 = float[kDown][kDown];
using Buffer16x64 = float[kDct][kDown];
using Buffer16 = float[kDct][kDct];

const std::vector<float>& dct() {
  static const std::vector<float> matrix = [] {
    constexpr double pi = 3.14159265358979323846;
    const float scale = static_cast<float>(std::sqrt(2.0 / double{kDown}));
    std::vector<float> m(kDct * kDown);
    for (std::size_t i = 0; i < kDct; i++) {
      for (std::size_t j = 0; j < kDown; j++) {
        m[i * kDown + j] = static_cast<float>(
            scale * std::cos((pi / 2.0 / double{kDown}) * (i + 1) * (2 * j + 1)));
      }
    }
    return m;
  }();
  return matrix;
}

struct BoxPhases {
  int p1, p2, p3, p4;
};

BoxPhases box_phases(int length, int window) {
  const int half = (window + 2) / 2;
  return {half - 1, window - half + 1, length - window, half - 1};
}

// One box-filter pass along a contiguous vector.
void box_1d(const float* in, float* out, int length, int window) {
  const BoxPhases ph = box_phases(length, window);
  int li = 0, ri = 0, oi = 0, count = 0;
  float sum = 0.0f;
  for (int i = 0; i < ph.p1; i++) {
    sum += in[ri++];
    count++;
  }
  for (int i = 0; i < ph.p2; i++) {
    sum += in[ri++];
    count++;
    out[oi++] = sum / count;
  }
  for (int i = 0; i < ph.p3; i++) {
    sum += in[ri++];
    sum -= in[li++];
    out[oi++] = sum / count;
  }
  for (int i = 0; i < ph.p4; i++) {
    sum -= in[li++];
    count--;
    out[oi++] = sum / count;
  }
}

void box_along_rows(const float* in, float* out, int rows, int cols, int window) {
  for (int r = 0; r < rows; r++) {
    box_1d(in + static_cast<std::size_t>(r) * cols, out + static_cast<std::size_t>(r) * cols,
           cols, window);
  }
}

// The same filter down every column at once: sums[c] is column c's running sum, so each column
// sees exactly the operations box_1d would apply to it.
void box_along_cols(const float* in, float* out, int rows, int cols, int window,
                    std::vector<float>& sums) {
  const BoxPhases ph = box_phases(rows, window);
  sums.assign(cols, 0.0f);
  float* s = sums.data();
  const auto at = [cols](int r) { return static_cast<std::size_t>(r) * cols; };
  int li = 0, ri = 0, oi = 0, count = 0;
  for (int i = 0; i < ph.p1; i++, ri++) {
    const float* a = in + at(ri);
    for (int c = 0; c < cols; c++) s[c] += a[c];
    count++;
  }
  for (int i = 0; i < ph.p2; i++, ri++, oi++) {
    const float* a = in + at(ri);
    float* o = out + at(oi);
    count++;
    for (int c = 0; c < cols; c++) {
      s[c] += a[c];
      o[c] = s[c] / count;
    }
  }
  for (int i = 0; i < ph.p3; i++, ri++, li++, oi++) {
    const float* a = in + at(ri);
    const float* d = in + at(li);
    float* o = out + at(oi);
    for (int c = 0; c < cols; c++) {
      s[c] += a[c];
      s[c] -= d[c];
      o[c] = s[c] / count;
    }
  }
  for (int i = 0; i < ph.p4; i++, li++, oi++) {
    const float* d = in + at(li);
    float* o = out + at(oi);
    count--;
    for (int c = 0; c < cols; c++) {
      s[c] -= d[c];
      o[c] = s[c] / count;
    }
  }
}

void jarosz_filter(float* buffer1, float* buffer2, int rows, int cols) {
  const int window_along_rows = jarosz_window_size(cols, kDown);
  const int window_along_cols = jarosz_window_size(rows, kDown);
  std::vector<float> sums;
  for (int pass = 0; pass < kJaroszPasses; pass++) {
    box_along_rows(buffer1, buffer2, rows, cols, window_along_rows);
    box_along_cols(buffer2, buffer1, rows, cols, window_along_cols, sums);
  }
}

// Samples the centre of each of the 64x64 target cells.
void decimate(const float* in, int rows, int cols, Buffer64 out) {
  for (int oi = 0; oi < kDown; oi++) {
    const int ii = static_cast<int>(((oi + 0.5) * rows) / kDown);
    for (int oj = 0; oj < kDown; oj++) {
      const int ij = static_cast<int>(((oj + 0.5) * cols) / kDown);
      out[oi][oj] = in[static_cast<std::size_t>(ii) * cols + ij];
    }
  }
}

int quality_metric(const Buffer64 b) {
  int gradient_sum = 0;
  for (int i = 0; i < kDown - 1; i++) {
    for (int j = 0; j < kDown; j++) {
      const int d = static_cast<int>(((b[i][j] - b[i + 1][j]) * 100) / 255);
      gradient_sum += std::abs(d);
    }
  }
  for (int i = 0; i < kDown; i++) {
    for (int j = 0; j < kDown - 1; j++) {
      const int d = static_cast<int>(((b[i][j] - b[i][j + 1]) * 100) / 255);
      gradient_sum += std::abs(d);
    }
  }
  return std::min(gradient_sum / 90, 100);
}

// B = D A D^t with T = D A as the intermediate, keeping only the 16x16 low-frequency corner
// (without the DC row/column).
void dct_64_to_16(const Buffer64 a, Buffer16x64 t, Buffer16 b) {
  const float* d = dct().data();
  for (int i = 0; i < kDct; i++) {
    const float* di = d + i * kDown;
    for (int j = 0; j < kDown; j++) {
      float sum = 0.0f;
      for (int k = 0; k < kDown; k++) sum += di[k] * a[k][j];
      t[i][j] = sum;
    }
  }
  for (int i = 0; i < kDct; i++) {
    for (int j = 0; j < kDct; j++) {
      const float* dj = d + j * kDown;
      float sum = 0.0f;
      for (int k = 0; k < kDown; k++) sum += t[i][k] * dj[k];
      b[i][j] = sum;
    }
  }
}

Hash bits_from_dct(const Buffer16 b) {
  float sorted[kDct * kDct];
  std::memcpy(sorted, &b[0][0], sizeof(sorted));
  constexpr int kMedianRank = (kDct * kDct + 1) / 2 - 1;  // 127
  std::nth_element(sorted, sorted + kMedianRank, sorted + kDct * kDct);
  const float median = sorted[kMedianRank];

  // Bit k = i * 16 + j lives in 16-bit word i, bit j; words are printed from 15 down to 0.
  Hash hash{};
  for (int i = 0; i < kDct; i++) {
    unsigned word = 0;
    for (int j = 0; j < kDct; j++) {
      if (b[i][j] > median) word |= 1u << j;
    }
    hash[2 * (kDct - 1 - i)] = static_cast<uint8_t>(word >> 8);
    hash[2 * (kDct - 1 - i) + 1] = static_cast<uint8_t>(word & 0xff);
  }
  return hash;
}

// Signs and transposes that turn the DCT of an image into the DCT of its rotation or flip.
enum class Dihedral { kOriginal, kRotate90, kRotate180, kRotate270, kFlipX, kFlipY, kFlipPlus1,
                      kFlipMinus1 };

void dihedral_dct(Dihedral kind, const Buffer16 a, Buffer16 out) {
  for (int i = 0; i < kDct; i++) {
    for (int j = 0; j < kDct; j++) {
      const float v = a[i][j];
      switch (kind) {
        case Dihedral::kOriginal: out[i][j] = v; break;
        case Dihedral::kRotate90: out[j][i] = (j & 1) ? v : -v; break;
        case Dihedral::kRotate180: out[i][j] = ((i + j) & 1) ? -v : v; break;
        case Dihedral::kRotate270: out[j][i] = (i & 1) ? v : -v; break;
        case Dihedral::kFlipX: out[i][j] = (i & 1) ? v : -v; break;
        case Dihedral::kFlipY: out[i][j] = (j & 1) ? v : -v; break;
        case Dihedral::kFlipPlus1: out[j][i] = v; break;
        case Dihedral::kFlipMinus1: out[j][i] = ((i + j) & 1) ? -v : v; break;
      }
    }
  }
}

struct Work {
  Buffer64 b64;
  Buffer16x64 b16x64;
  Buffer16 b16;
};

// The reference copies a 64x64 luma plane as is (no blur) in its single-hash path, but always
// blurs in its dihedral path; `allow_shortcut` keeps both behaviours.
int dct_from_luma(float* luma, float* scratch, int rows, int cols, bool allow_shortcut, Work& w) {
  if (allow_shortcut && rows == kDown && cols == kDown) {
    std::memcpy(&w.b64[0][0], luma, sizeof(w.b64));
  } else {
    jarosz_filter(luma, scratch, rows, cols);
    decimate(luma, rows, cols, w.b64);
  }
  const int quality = quality_metric(w.b64);
  dct_64_to_16(w.b64, w.b16x64, w.b16);
  return quality;
}

void check_dims(int rows, int cols) {
  if (rows <= 0 || cols <= 0) {
    throw std::invalid_argument("image must have at least one row and one column, got " +
                                std::to_string(rows) + "x" + std::to_string(cols));
  }
}

}  // namespace

int jarosz_window_size(int old_dim, int new_dim) {
  return (old_dim + 2 * new_dim - 1) / (2 * new_dim);
}

std::vector<float> dct_matrix() { return dct(); }

void luma_from_rgb(const RgbView& rgb, float* luma) {
  for (int r = 0; r < rgb.rows; r++) {
    const uint8_t* p = rgb.data + r * rgb.row_stride;
    float* out = luma + static_cast<std::size_t>(r) * rgb.cols;
    for (int c = 0; c < rgb.cols; c++, p += rgb.col_stride) {
      const int red = p[0];
      const int green = p[rgb.channel_stride];
      const int blue = p[2 * rgb.channel_stride];
      out[c] = kLumaR * red + kLumaG * green + kLumaB * blue;
    }
  }
}

Result hash_luma_inplace(float* luma, float* scratch, int rows, int cols) {
  check_dims(rows, cols);
  Result result;
  if (rows < kMinHashableDim || cols < kMinHashableDim) return result;
  auto work = std::make_unique<Work>();
  result.quality = dct_from_luma(luma, scratch, rows, cols, true, *work);
  result.hash = bits_from_dct(work->b16);
  return result;
}

DihedralResult hash_luma_dihedral_inplace(float* luma, float* scratch, int rows, int cols) {
  check_dims(rows, cols);
  DihedralResult result;
  if (rows < kMinHashableDim || cols < kMinHashableDim) return result;
  auto work = std::make_unique<Work>();
  result.quality = dct_from_luma(luma, scratch, rows, cols, false, *work);
  Buffer16 variant;
  for (int k = 0; k < kDihedralCount; k++) {
    dihedral_dct(static_cast<Dihedral>(k), work->b16, variant);
    result.hashes[k] = bits_from_dct(variant);
  }
  return result;
}

namespace {
template <class R, class F>
R hash_rgb_with(const RgbView& rgb, F hash_fn) {
  check_dims(rgb.rows, rgb.cols);
  const std::size_t n = static_cast<std::size_t>(rgb.rows) * rgb.cols;
  std::vector<float> luma(n), scratch(n);
  luma_from_rgb(rgb, luma.data());
  return hash_fn(luma.data(), scratch.data(), rgb.rows, rgb.cols);
}
}  // namespace

Result hash_rgb(const RgbView& rgb) {
  return hash_rgb_with<Result>(rgb, hash_luma_inplace);
}

DihedralResult hash_rgb_dihedral(const RgbView& rgb) {
  return hash_rgb_with<DihedralResult>(rgb, hash_luma_dihedral_inplace);
}

}  // namespace hashmatch::pdq
