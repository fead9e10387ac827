// The one file that knows Python: converts NumPy arrays to pointers and results back to NumPy.
// Shape errors throw std::invalid_argument, which pybind11 raises as ValueError.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include "kernels/cpu.hpp"
#include "kernels/mih.hpp"
#include "kernels/range_search.hpp"
#include "kernels/scan.hpp"

namespace py = pybind11;
using namespace hashmatch;

namespace {

using Words = py::array_t<uint64_t, py::array::c_style>;

template <class T>
py::array_t<T> to_numpy(std::vector<T>&& v) {
    auto* owned = new std::vector<T>(std::move(v));
    py::capsule owner(owned, [](void* p) { delete static_cast<std::vector<T>*>(p); });
    return py::array_t<T>(static_cast<py::ssize_t>(owned->size()), owned->data(), owner);
}

py::tuple csr_to_numpy(Csr&& csr) {
    return py::make_tuple(to_numpy(std::move(csr.offsets)), to_numpy(std::move(csr.rows)),
                          to_numpy(std::move(csr.distances)),
                          to_numpy(std::move(csr.truncated)).attr("view")("bool"));
}

using Rows = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

// max_per_query and the dead rows (ascending int64, or None) as limits; `dead` must stay alive
// while they are used (it is the caller's argument).
HitLimits limits_of(size_t max_per_query, const std::optional<Rows>& dead) {
    HitLimits limits;
    limits.max_per_query = max_per_query;
    if (dead && dead->size()) {
        if (dead->ndim() != 1) throw std::invalid_argument("dead must be a 1-d array of rows");
        limits.dead = dead->data();
        limits.n_dead = static_cast<size_t>(dead->size());
    }
    return limits;
}

void check_words(const Words& a, const char* name) {
    if (a.ndim() != 2 || a.shape(1) != kWords)
        throw std::invalid_argument(std::string(name) +
                                    " must have shape (n, 4) of uint64 words, got " +
                                    (a.ndim() == 2 ? "(" + std::to_string(a.shape(0)) + ", " +
                                                         std::to_string(a.shape(1)) + ")"
                                                   : std::to_string(a.ndim()) + " dimensions"));
}

py::tuple py_range_search(const Words& queries, const Words& hashes, int threshold,
                          int threads, size_t max_per_query, const std::optional<Rows>& dead) {
    check_words(queries, "queries");
    check_words(hashes, "hashes");
    const uint64_t* q = queries.data();
    const uint64_t* h = hashes.data();
    const size_t nq = static_cast<size_t>(queries.shape(0));
    const size_t n = static_cast<size_t>(hashes.shape(0));
    const CpuPath path = active_cpu_path();
    const HitLimits limits = limits_of(max_per_query, dead);
    Csr csr;
    {
        py::gil_scoped_release release;  // the arrays stay alive: their owners are our args
        csr = range_search(q, nq, h, n, threshold, path, threads, limits);
    }
    return csr_to_numpy(std::move(csr));
}

using Ids = py::array_t<uint64_t, py::array::c_style | py::array::forcecast>;
using Offsets = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;
using Distances = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;

// parts: a list of (offsets, ids, distances) CSR results over the same queries, each ordered
// by (distance, id) per query.
py::tuple py_merge(const py::list& parts, size_t max_per_query) {
    std::vector<Offsets> offsets;
    std::vector<Ids> ids;
    std::vector<Distances> distances;
    std::vector<SortedPart> views;
    size_t nq = 0;
    for (size_t k = 0; k < parts.size(); ++k) {
        const py::tuple part = parts[k].cast<py::tuple>();
        offsets.push_back(part[0].cast<Offsets>());
        ids.push_back(part[1].cast<Ids>());
        distances.push_back(part[2].cast<Distances>());
        const size_t here = static_cast<size_t>(offsets.back().size());
        if (here == 0 || (k && here != nq + 1))
            throw std::invalid_argument("every part needs the same number of queries");
        nq = here - 1;
        const int64_t m = offsets.back().data()[nq];
        if (offsets.back().data()[0] != 0 || ids.back().size() != m ||
            distances.back().size() != m)
            throw std::invalid_argument("part " + std::to_string(k) +
                                        " is not a CSR: offsets must run from 0 to len(ids)");
    }
    for (size_t k = 0; k < parts.size(); ++k)
        views.push_back({offsets[k].data(), ids[k].data(), distances[k].data()});
    Merged merged;
    {
        py::gil_scoped_release release;
        merged = merge_parts(views, nq, max_per_query);
    }
    return py::make_tuple(to_numpy(std::move(merged.offsets)), to_numpy(std::move(merged.ids)),
                          to_numpy(std::move(merged.distances)),
                          to_numpy(std::move(merged.truncated)).attr("view")("bool"),
                          to_numpy(std::move(merged.parts)));
}

// Keeps the hashes array alive for as long as the index that points into it.
struct PyMihIndex {
    Words hashes;
    std::unique_ptr<MihIndex> index;
};

std::unique_ptr<PyMihIndex> make_mih(const Words& hashes, int threads, int slots,
                                     size_t scan_ratio, std::optional<bool> sort_by_row,
                                     int row_bytes, std::optional<bool> chain) {
    check_words(hashes, "hashes");
    auto out = std::make_unique<PyMihIndex>();
    out->hashes = hashes;
    const uint64_t* h = hashes.data();
    const size_t n = static_cast<size_t>(hashes.shape(0));
    py::gil_scoped_release release;
    out->index = std::make_unique<MihIndex>(h, n, threads, slots, scan_ratio,
                                            sort_by_row ? int(*sort_by_row) : -1, row_bytes,
                                            chain ? int(*chain) : -1);
    return out;
}

py::tuple mih_search(const PyMihIndex& self, const Words& queries, int threshold, int threads,
                     size_t max_per_query, const std::optional<Rows>& dead) {
    check_words(queries, "queries");
    const uint64_t* q = queries.data();
    const size_t nq = static_cast<size_t>(queries.shape(0));
    const CpuPath path = active_cpu_path();
    const HitLimits limits = limits_of(max_per_query, dead);
    Csr csr;
    {
        py::gil_scoped_release release;  // the index is immutable; many threads may search it
        csr = self.index->search(q, nq, threshold, path, threads, limits);
    }
    return csr_to_numpy(std::move(csr));
}

}  // namespace

PYBIND11_MODULE(_kernels, m) {
    m.doc() = "hashmatch compiled kernels: Hamming range search with run-time CPU dispatch.";
    m.attr("VERSION") = HASHMATCH_VERSION;
    py::dict info;
    info["version"] = HASHMATCH_VERSION;
    info["compiler"] = __VERSION__;
    info["compiled_paths"] = py::make_tuple("avx512", "avx2", "portable");
    info["dispatch"] = "run time (__builtin_cpu_supports), per-function target attributes";
    m.attr("BUILD_INFO") = info;

    m.def("range_search", &py_range_search, py::arg("queries"), py::arg("hashes"),
          py::arg("threshold"), py::arg("threads") = 1, py::arg("max_per_query") = 0,
          py::arg("dead") = py::none(),
          "(offsets, rows, distances, truncated): rows with distance <= threshold, ordered by "
          "(distance, row), at most max_per_query a query (0: all), dead rows left out; GIL "
          "released.");
    m.def("merge", &py_merge, py::arg("parts"), py::arg("max_per_query") = 0,
          "(offsets, ids, distances, truncated, part) of CSR parts (offsets, ids, distances) "
          "ordered by (distance, id) per query, merged without sorting, at most max_per_query "
          "a query (0: all).");
    m.def("set_test_fault",
          [](const std::string& name) {
              if (name == "none") set_test_fault(TestFault::none);
              else if (name == "drop_hits") set_test_fault(TestFault::drop_hits);
              else if (name == "throw_in_worker") set_test_fault(TestFault::throw_in_worker);
              else
                  throw std::invalid_argument(
                      "fault must be none, drop_hits or throw_in_worker, got '" + name + "'");
          },
          py::arg("name"), "Tests only: make the index drop hits or its workers throw.");
    m.def("cpu_path", [] { return std::string(cpu_path_name(active_cpu_path())); });
    m.def("set_cpu_path", [](const std::string& name) { set_cpu_path(parse_cpu_path(name)); },
          py::arg("name"));
    m.def("supported_cpu_paths", [] {
        std::vector<std::string> out;
        for (CpuPath p : supported_cpu_paths()) out.emplace_back(cpu_path_name(p));
        return out;
    });
    m.def("hardware_threads", &hardware_threads);

    py::class_<PyMihIndex>(m, "MihIndex",
                           "Immutable multi-index hashing tables over hashes uint64[n, 4].")
        .def(py::init(&make_mih), py::arg("hashes"), py::arg("threads") = 0, py::arg("slots") = 0,
             py::arg("scan_ratio") = MihIndex::kScanRatio, py::arg("sort_by_row") = py::none(),
             py::arg("row_bytes") = 0, py::arg("chain") = py::none())
        .def("search", &mih_search, py::arg("queries"), py::arg("threshold"),
             py::arg("threads") = 1, py::arg("max_per_query") = 0, py::arg("dead") = py::none())
        .def("memory_bytes", [](const PyMihIndex& self) { return self.index->memory_bytes(); })
        .def_property_readonly("row_bytes",
                               [](const PyMihIndex& self) { return self.index->row_bytes(); })
        .def("__len__", [](const PyMihIndex& self) { return self.index->size(); })
        .def_property_readonly("max_indexed_threshold",
                               [](const PyMihIndex& self) {
                                   return self.index->max_indexed_threshold();
                               })
        .def_property_readonly("slot_widths", [](const PyMihIndex& self) {
            std::vector<int> widths;
            for (const auto& s : self.index->slots()) widths.push_back(s.width);
            return widths;
        })
        .def_property_readonly("chained",
                               [](const PyMihIndex& self) { return self.index->chained(); })
        .def_property_readonly("sorts_by_row",
                               [](const PyMihIndex& self) { return self.index->sorts_by_row(); })
        .def_property_readonly("offset_bytes",
                               [](const PyMihIndex& self) { return self.index->offset_bytes(); })
        .def_property_readonly("escaped_buckets",
                               [](const PyMihIndex& self) { return self.index->escaped_buckets(); })
        .def_property_readonly("key_bits", [](const PyMihIndex& self) {
            std::vector<int> bits;
            for (const auto& s : self.index->slots()) bits.push_back(s.key_bits);
            return bits;
        });
}
