#include <pybind11/pybind11.h>

PYBIND11_MODULE(_metrics, m) { m.doc() = "xpress_fast evaluation kernels"; }
