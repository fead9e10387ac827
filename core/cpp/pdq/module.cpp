#include <pybind11/pybind11.h>
PYBIND11_MODULE(_pdq, m) { m.attr("VERSION") = HASHMATCH_VERSION; }
