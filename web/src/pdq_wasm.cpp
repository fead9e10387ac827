// The page's PDQ: the project's own C++ PDQ (core/cpp/pdq/pdq.cpp, the source `hashmatch hash`
// uses) behind one C function, compiled to WebAssembly by scripts/build_web.sh. The page hands
// it the RGBA pixels of a canvas; alpha is skipped through the strides, as the core drops it, and
// an EXIF orientation the browser applied is undone through the strides too (web/static/pdq.js).
#include <cstdint>
#include <cstring>

#include "pdq/pdq.h"

extern "C" {

// Hashes rows x cols pixels into out[32] (printed order): pixel (r, c) has its R, G, B bytes at
// first + r * row_stride + c * col_stride (+0, +1, +2); strides in bytes, may be negative.
// Returns the quality 0..100, or -1 when the image has no pixels.
__attribute__((used)) int hm_pdq_rgba(const uint8_t* first, int rows, int cols, int row_stride,
                                      int col_stride, uint8_t* out) {
  if (rows < 1 || cols < 1) return -1;
  const hashmatch::pdq::RgbView view{first, rows, cols, row_stride, col_stride, 1};
  const hashmatch::pdq::Result r = hashmatch::pdq::hash_rgb(view);
  std::memcpy(out, r.hash.data(), r.hash.size());
  return r.quality;
}

}  // extern "C"
