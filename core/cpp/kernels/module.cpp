#include <pybind11/pybind11.h>
PYBIND11_MODULE(_kernels, m) { m.attr("VERSION") = HASHMATCH_VERSION; }
