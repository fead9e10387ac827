// PDQ: float32 luma -> two-pass Jarosz (tent) blur -> 64x64 decimation -> quality metric ->
// 16x16 corner of the 2-D DCT -> one bit per coefficient above the median.
//
// Exactness notes (each step matches the reference's float operations one for one):
// - luma: float coefficients, products and sums in float, left to right (the products
//   float(0.299f * R) etc. are tabulated, which gives the very same values);
// - box filter: running float sum with an add then a separate subtract, divided by the int count;
//   many rows (or columns) are filtered side by side, each keeping its own chain of operations;
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

// One box-filter pass down the columns of `in` (rows x cols, row-major), all columns at once:
// sums[c] is column c's running float sum, so every column sees exactly the reference's
// sequence of operations (add, then a separate subtract, then divide by the int count).
void box_down_columns(const float* in, float* out, int rows, int cols, int window,
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

// One box-filter pass along the rows. A row's running sum is a serial chain, so kLanes rows are
// transposed into a small tile and filtered together by box_down_columns (independent chains,
// vector instructions), then written back. With `keep_cols`, only those columns are written, to
// out[rows][keep_cols.size()].
constexpr int kLanes = 8;

void box_along_rows(const float* in, float* out, int rows, int cols, int window,
                    const std::vector<int>* keep_cols = nullptr) {
  std::vector<float> tile_in(static_cast<std::size_t>(cols) * kLanes, 0.0f);
  std::vector<float> tile_out(tile_in.size());
  std::vector<float> sums;
  const int kept = keep_cols ? static_cast<int>(keep_cols->size()) : 0;
  for (int r0 = 0; r0 < rows; r0 += kLanes) {
    const int n = std::min(kLanes, rows - r0);
    for (int k = 0; k < n; k++) {
      const float* row = in + static_cast<std::size_t>(r0 + k) * cols;
      for (int c = 0; c < cols; c++) tile_in[static_cast<std::size_t>(c) * kLanes + k] = row[c];
    }
    box_down_columns(tile_in.data(), tile_out.data(), cols, kLanes, window, sums);
    for (int k = 0; k < n; k++) {
      if (keep_cols) {
        float* row = out + static_cast<std::size_t>(r0 + k) * kept;
        for (int j = 0; j < kept; j++) {
          row[j] = tile_out[static_cast<std::size_t>((*keep_cols)[j]) * kLanes + k];
        }
      } else {
        float* row = out + static_cast<std::size_t>(r0 + k) * cols;
        for (int c = 0; c < cols; c++) row[c] = tile_out[static_cast<std::size_t>(c) * kLanes + k];
      }
    }
  }
}

// The reference's sample points: the centre of each of the 64 target cells.
std::vector<int> sample_points(int length) {
  std::vector<int> points(kDown);
  for (int i = 0; i < kDown; i++) points[i] = static_cast<int>(((i + 0.5) * length) / kDown);
  return points;
}

// Two Jarosz passes (box along rows, then down columns, twice) followed by decimation to 64x64.
// The reference filters the whole image in the second pass too; as columns are independent and
// each output keeps its own chain of operations, only the 64 sampled columns are carried through
// the last column pass, which gives the same values for less work. `luma` and `scratch` are
// rows x cols and are overwritten.
void blur_and_decimate(float* luma, float* scratch, int rows, int cols, Buffer64 out) {
  static_assert(kJaroszPasses == 2, "the pass structure below is written for two passes");
  const int window_along_rows = jarosz_window_size(cols, kDown);
  const int window_along_cols = jarosz_window_size(rows, kDown);
  const std::vector<int> sample_rows = sample_points(rows);
  const std::vector<int> sample_cols = sample_points(cols);
  std::vector<float> sums;

  box_along_rows(luma, scratch, rows, cols, window_along_rows);
  box_down_columns(scratch, luma, rows, cols, window_along_cols, sums);

  std::vector<float> kept(static_cast<std::size_t>(rows) * kDown);
  std::vector<float> filtered(kept.size());
  box_along_rows(luma, kept.data(), rows, cols, window_along_rows, &sample_cols);
  box_down_columns(kept.data(), filtered.data(), rows, kDown, window_along_cols, sums);
  for (int i = 0; i < kDown; i++) {
    std::memcpy(out[i], filtered.data() + static_cast<std::size_t>(sample_rows[i]) * kDown,
                sizeof(float) * kDown);
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
    blur_and_decimate(luma, scratch, rows, cols, w.b64);
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
  // float(coefficient * v) for each 8-bit v, so the loop does the reference's two float
  // additions (left to right) on the very same products, without a multiply per pixel.
  struct Tables {
    float r[256], g[256], b[256];
    Tables() {
      for (int v = 0; v < 256; v++) {
        r[v] = kLumaR * v;
        g[v] = kLumaG * v;
        b[v] = kLumaB * v;
      }
    }
  };
  static const Tables t;
  const std::ptrdiff_t cs = rgb.channel_stride;
  for (int r = 0; r < rgb.rows; r++) {
    const uint8_t* p = rgb.data + r * rgb.row_stride;
    float* out = luma + static_cast<std::size_t>(r) * rgb.cols;
    if (rgb.col_stride == 3 && cs == 1) {
      for (int c = 0; c < rgb.cols; c++, p += 3) out[c] = t.r[p[0]] + t.g[p[1]] + t.b[p[2]];
    } else {
      for (int c = 0; c < rgb.cols; c++, p += rgb.col_stride) {
        out[c] = t.r[p[0]] + t.g[p[cs]] + t.b[p[2 * cs]];
      }
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
  // Uninitialised: every element is written before it is read.
  std::unique_ptr<float[]> luma(new float[n]);
  std::unique_ptr<float[]> scratch(new float[n]);
  luma_from_rgb(rgb, luma.get());
  return hash_fn(luma.get(), scratch.get(), rgb.rows, rgb.cols);
}
}  // namespace

Result hash_rgb(const RgbView& rgb) {
  return hash_rgb_with<Result>(rgb, hash_luma_inplace);
}

DihedralResult hash_rgb_dihedral(const RgbView& rgb) {
  return hash_rgb_with<DihedralResult>(rgb, hash_luma_dihedral_inplace);
}

}  // namespace hashmatch::pdq
