// pybind11 bindings of hashmatch::pdq as hashmatch.core._pdq: checks and converts types, releases
// the GIL around the hashing so several Python threads can hash at once. No algorithm here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <climits>
#include <stdexcept>
#include <string>
#include <vector>

#include "pdq/pdq.h"

namespace py = pybind11;
namespace pdq = hashmatch::pdq;

namespace {

std::string shape_text(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); i++) {
    if (i) s += ", ";
    s += std::to_string(a.shape(i));
  }
  if (a.ndim() == 1) s += ",";
  return s + ")";
}

std::string dtype_text(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

int checked_dim(py::ssize_t n, const char* what) {
  if (n <= 0) {
    throw std::invalid_argument(std::string("image is empty: ") + what + " is 0");
  }
  if (n > INT_MAX / 4) {
    throw std::invalid_argument(std::string("image too large: ") + what + " is " +
                                std::to_string(n));
  }
  return static_cast<int>(n);
}

pdq::RgbView rgb_view(const py::array& rgb) {
  if (rgb.dtype().kind() != 'u' || rgb.dtype().itemsize() != 1) {
    throw std::invalid_argument("rgb must be a uint8 array, got dtype " + dtype_text(rgb));
  }
  if (rgb.ndim() != 3 || rgb.shape(2) != 3) {
    throw std::invalid_argument("rgb must have shape (height, width, 3), got " +
                                shape_text(rgb));
  }
  return pdq::RgbView{static_cast<const uint8_t*>(rgb.data()), checked_dim(rgb.shape(0), "height"),
                      checked_dim(rgb.shape(1), "width"), rgb.strides(0), rgb.strides(1),
                      rgb.strides(2)};
}

py::bytes to_bytes(const pdq::Hash& h) {
  return py::bytes(reinterpret_cast<const char*>(h.data()), h.size());
}

py::tuple pdq_hash(const py::array& rgb) {
  const pdq::RgbView view = rgb_view(rgb);
  pdq::Result r;
  {
    py::gil_scoped_release release;
    r = pdq::hash_rgb(view);
  }
  return py::make_tuple(to_bytes(r.hash), r.quality);
}

py::tuple pdq_hash_dihedral(const py::array& rgb) {
  const pdq::RgbView view = rgb_view(rgb);
  pdq::DihedralResult r;
  {
    py::gil_scoped_release release;
    r = pdq::hash_rgb_dihedral(view);
  }
  py::tuple hashes(pdq::kDihedralCount);
  for (int k = 0; k < pdq::kDihedralCount; k++) hashes[k] = to_bytes(r.hashes[k]);
  return py::make_tuple(hashes, r.quality);
}

py::tuple pdq_hash_luma(const py::array& luma_in) {
  if (luma_in.dtype().kind() != 'f' || luma_in.dtype().itemsize() != 4) {
    throw std::invalid_argument("luma must be a float32 array, got dtype " + dtype_text(luma_in));
  }
  if (luma_in.ndim() != 2) {
    throw std::invalid_argument("luma must have shape (height, width), got " +
                                shape_text(luma_in));
  }
  const int rows = checked_dim(luma_in.shape(0), "height");
  const int cols = checked_dim(luma_in.shape(1), "width");
  // The hash overwrites its input, so it works on a C-contiguous copy.
  auto luma = py::array_t<float, py::array::c_style>(luma_in);
  std::vector<float> work(luma.data(), luma.data() + static_cast<std::size_t>(rows) * cols);
  std::vector<float> scratch(work.size());
  pdq::Result r;
  {
    py::gil_scoped_release release;
    r = pdq::hash_luma_inplace(work.data(), scratch.data(), rows, cols);
  }
  return py::make_tuple(to_bytes(r.hash), r.quality);
}

py::array_t<float> luma_from_rgb(const py::array& rgb) {
  const pdq::RgbView view = rgb_view(rgb);
  py::array_t<float> out({view.rows, view.cols});
  float* dst = out.mutable_data();
  {
    py::gil_scoped_release release;
    pdq::luma_from_rgb(view, dst);
  }
  return out;
}

py::array_t<float> dct_matrix() {
  const std::vector<float> m = pdq::dct_matrix();
  py::array_t<float> out({16, 64});
  std::copy(m.begin(), m.end(), out.mutable_data());
  return out;
}

}  // namespace

PYBIND11_MODULE(_pdq, m) {
  m.doc() = "PDQ image hashing (exact port of Meta's C++ reference); see hashmatch.core.pdq";
  m.attr("VERSION") = HASHMATCH_VERSION;
  m.attr("HASH_BYTES") = pdq::kHashBytes;
  m.attr("MIN_HASHABLE_DIM") = pdq::kMinHashableDim;
  m.def("pdq_hash", &pdq_hash, py::arg("rgb"),
        "uint8[h, w, 3] RGB -> (32-byte hash in printed order, quality 0..100)");
  m.def("pdq_hash_dihedral", &pdq_hash_dihedral, py::arg("rgb"),
        "uint8[h, w, 3] RGB -> (8 hashes: original, rot90, rot180, rot270, flipx, flipy, "
        "flipplus1, flipminus1; quality)");
  m.def("pdq_hash_luma", &pdq_hash_luma, py::arg("luma"),
        "float32[h, w] luma -> (32-byte hash, quality); the input is not modified");
  m.def("luma_from_rgb", &luma_from_rgb, py::arg("rgb"),
        "uint8[h, w, 3] RGB -> float32[h, w] luma, the reference's float32 formula");
  m.def("jarosz_window_size", &pdq::jarosz_window_size, py::arg("old_dim"), py::arg("new_dim"),
        "box-filter window for downscaling old_dim to new_dim: ceil(old_dim / (2 new_dim))");
  m.def("dct_matrix", &dct_matrix, "float32[16, 64]: the DCT rows 1..16 PDQ keeps");
}
