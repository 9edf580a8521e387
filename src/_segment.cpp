// Bindings for watershed, region graph and agglomeration (filled in by the segmentation work).
#include <pybind11/pybind11.h>

PYBIND11_MODULE(_segment, m) { m.doc() = "xpress_fast segmentation kernels"; }
