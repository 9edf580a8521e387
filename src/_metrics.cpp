// Bindings of the evaluation kernels: translation only (arrays in, arrays and dicts out).
// Validation and policy live in python/xpress_fast/metrics.py.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "xpress_fast/graph_components.hpp"
#include "xpress_fast/merge_locations.hpp"
#include "xpress_fast/rand_voi.hpp"
#include "xpress_fast/skeleton_index.hpp"
#include "xpress_fast/skeleton_metrics.hpp"

namespace py = pybind11;
namespace xf = xpress_fast;

template <typename T>
using carray = py::array_t<T, py::array::c_style | py::array::forcecast>;

namespace {

template <typename T>
py::array_t<T> to_numpy(const std::vector<T>& v) {
  py::array_t<T> out(static_cast<py::ssize_t>(v.size()));
  std::copy(v.begin(), v.end(), out.mutable_data());
  return out;
}

// A scalar output under its dict key, read from a kernel's result struct.
template <typename T, typename Source>
struct Field {
  const char* name;
  T (*get)(const Source&);
};

// The Rand/VOI sums: one list for the skeleton scores and rand_voi.
constexpr Field<double, xf::ContingencySums> kSumFields[] = {
    {"sum_n2", [](const xf::ContingencySums& s) { return s.sum_n2; }},
    {"sum_a2", [](const xf::ContingencySums& s) { return s.sum_a2; }},
    {"sum_b2", [](const xf::ContingencySums& s) { return s.sum_b2; }},
    {"h_joint", [](const xf::ContingencySums& s) { return s.h_joint; }},
    {"h_truth", [](const xf::ContingencySums& s) { return s.h_truth; }},
    {"h_test", [](const xf::ContingencySums& s) { return s.h_test; }},
};

void put_sums(py::dict& d, const xf::ContingencySums& s) {
  for (const auto& f : kSumFields) d[f.name] = f.get(s);
}

// The per-row scalars of a skeleton score besides the sums: the single call returns them as
// numbers, the batched one as one array each.
constexpr Field<double, xf::SkeletonScores> kScoreDoubles[] = {
    {"erl", [](const xf::SkeletonScores& s) { return s.erl; }},
    {"total_length", [](const xf::SkeletonScores& s) { return s.total_length; }},
};
constexpr Field<std::int64_t, xf::SkeletonScores> kScoreInts[] = {
    {"split_count", [](const xf::SkeletonScores& s) { return s.split_count; }},
    {"merge_count", [](const xf::SkeletonScores& s) { return s.merge_count; }},
    {"n_voxels", [](const xf::SkeletonScores& s) { return s.n_voxels; }},
};

void put_scalars(py::dict& d, const xf::SkeletonScores& s) {
  for (const auto& f : kScoreDoubles) d[f.name] = f.get(s);
  for (const auto& f : kScoreInts) d[f.name] = f.get(s);
  put_sums(d, s.sums);
}

// One array per field for `rows` rows (allocated with the GIL held), filled row by row without it.
template <typename T, typename Source, std::size_t N>
class Columns {
 public:
  Columns(const Field<T, Source> (&fields)[N], py::ssize_t rows) : fields_(fields) {
    for (std::size_t k = 0; k < N; ++k) {
      arrays_[k] = py::array_t<T>(rows);
      data_[k] = arrays_[k].mutable_data();
    }
  }
  void set(py::ssize_t t, const Source& row) {
    for (std::size_t k = 0; k < N; ++k) data_[k][t] = fields_[k].get(row);
  }
  void put(py::dict& d) const {
    for (std::size_t k = 0; k < N; ++k) d[fields_[k].name] = arrays_[k];
  }

 private:
  const Field<T, Source> (&fields_)[N];
  std::array<py::array_t<T>, N> arrays_;
  std::array<T*, N> data_{};
};

py::array_t<std::int64_t> components(std::int64_t n_nodes, carray<std::int64_t> edges) {
  std::vector<std::int64_t> comp;
  const std::int64_t n_edges = edges.ndim() == 2 ? edges.shape(0) : 0;
  {
    py::gil_scoped_release nogil;
    comp = xf::connected_components(n_nodes, edges.data(), n_edges);
  }
  return to_numpy(comp);
}

// The kernel's input for the first row of `labels` (1-D: the only row; 2-D: row 0, rows are
// n_nodes apart), after checking that the arrays agree.
xf::SkeletonScoreInput skeleton_input(const carray<std::uint64_t>& labels, const carray<std::int64_t>& voxel,
                                      std::int64_t n_voxels, const carray<std::int64_t>& skeleton,
                                      std::int64_t n_skeletons, const carray<std::int64_t>& edges,
                                      const carray<double>& edge_length, bool skip_first_skeleton,
                                      bool zero_is_unsegmented) {
  xf::SkeletonScoreInput in;
  in.labels = labels.data();
  in.voxel = voxel.data();
  in.n_voxels = n_voxels;
  in.skeleton = skeleton.data();
  in.n_nodes = labels.shape(labels.ndim() - 1);
  in.n_skeletons = n_skeletons;
  in.edges = edges.data();
  in.edge_length = edge_length.data();
  in.n_edges = edge_length.shape(0);
  in.skip_first_skeleton = skip_first_skeleton;
  in.zero_is_unsegmented = zero_is_unsegmented;
  if (voxel.shape(0) != in.n_nodes || skeleton.shape(0) != in.n_nodes)
    throw std::invalid_argument("labels, voxel and skeleton must have one entry per node");
  if (in.n_edges > 0 && (edges.ndim() != 2 || edges.shape(0) != in.n_edges || edges.shape(1) != 2))
    throw std::invalid_argument("edges must be (E, 2) with one length per edge");
  return in;
}

py::dict score_skeleton_labels(carray<std::uint64_t> labels, carray<std::int64_t> voxel, std::int64_t n_voxels,
                               carray<std::int64_t> skeleton, std::int64_t n_skeletons, carray<std::int64_t> edges,
                               carray<double> edge_length, bool skip_first_skeleton, bool zero_is_unsegmented) {
  if (labels.ndim() != 1) throw std::invalid_argument("labels must be (n_nodes,)");
  const xf::SkeletonScoreInput in = skeleton_input(labels, voxel, n_voxels, skeleton, n_skeletons, edges, edge_length,
                                                   skip_first_skeleton, zero_is_unsegmented);
  xf::SkeletonScores s;
  {
    py::gil_scoped_release nogil;
    s = xf::score_skeleton_labels(in);
  }
  py::dict d;
  put_scalars(d, s);
  d["skeleton_length"] = to_numpy(s.skeleton_length);
  d["skeleton_erl"] = to_numpy(s.skeleton_erl);
  d["split_edges"] = to_numpy(s.split_edges);
  d["node_segment"] = to_numpy(s.node_segment);
  d["segment_merged"] = to_numpy(s.segment_merged);
  return d;
}

// The same for T label vectors at once (a threshold sweep): per-row scalars and per-skeleton
// run lengths as arrays; the per-node / per-edge outputs (locations) are left to the single call.
py::dict score_skeleton_labels_many(carray<std::uint64_t> labels, carray<std::int64_t> voxel, std::int64_t n_voxels,
                                    carray<std::int64_t> skeleton, std::int64_t n_skeletons,
                                    carray<std::int64_t> edges, carray<double> edge_length, bool skip_first_skeleton,
                                    bool zero_is_unsegmented) {
  if (labels.ndim() != 2) throw std::invalid_argument("labels must be (T, n_nodes)");
  const py::ssize_t rows = labels.shape(0), n = labels.shape(1);
  const xf::SkeletonScoreInput in = skeleton_input(labels, voxel, n_voxels, skeleton, n_skeletons, edges, edge_length,
                                                   skip_first_skeleton, zero_is_unsegmented);
  Columns doubles(kScoreDoubles, rows);
  Columns ints(kScoreInts, rows);
  Columns sums(kSumFields, rows);
  py::array_t<double> skel_erl({rows, static_cast<py::ssize_t>(n_skeletons)});
  py::array_t<double> skel_length(static_cast<py::ssize_t>(n_skeletons));
  {
    py::gil_scoped_release nogil;
    xf::SkeletonScorer scorer(in, /*many=*/true);  // checks and lays out the nodes once for every row
    xf::SkeletonScores s;
    for (py::ssize_t t = 0; t < rows; ++t) {
      const std::uint64_t* row = labels.data() + t * n;
      // Neighbouring thresholds of a sweep often have no merge between them: the same labels
      // give the same scores, so the previous row's are reused.
      const bool same = t > 0 && std::equal(row, row + n, row - n);
      if (!same) s = scorer.score(row, /*details=*/false);
      doubles.set(t, s);
      ints.set(t, s);
      sums.set(t, s.sums);
      std::copy(s.skeleton_erl.begin(), s.skeleton_erl.end(), skel_erl.mutable_data() + t * n_skeletons);
      if (t == 0) std::copy(s.skeleton_length.begin(), s.skeleton_length.end(), skel_length.mutable_data());
    }
  }
  py::dict d;
  doubles.put(d);
  ints.put(d);
  sums.put(d);
  d["skeleton_erl"] = skel_erl;
  d["skeleton_length"] = skel_length;
  return d;
}

py::dict merge_locations(carray<std::int64_t> node_segment, carray<std::int64_t> skeleton, carray<double> positions,
                         carray<std::uint8_t> merged) {
  const std::int64_t n = node_segment.shape(0);
  if (skeleton.shape(0) != n || positions.ndim() != 2 || positions.shape(0) != n || positions.shape(1) != 3)
    throw std::invalid_argument("node_segment, skeleton and positions (n, 3) must agree in length");
  for (std::int64_t i = 0; i < n; ++i)
    if (node_segment.data()[i] < 0 || node_segment.data()[i] >= merged.shape(0))
      throw std::invalid_argument("node_segment outside 0..len(merged)-1");
  std::vector<xf::MergeLocation> locs;
  {
    py::gil_scoped_release nogil;
    locs = xf::merge_locations(node_segment.data(), skeleton.data(), positions.data(), n, merged.data());
  }
  std::vector<std::int64_t> seg, sa, sb, na, nb;
  std::vector<double> dist;
  for (const auto& l : locs) {
    seg.push_back(l.segment);
    sa.push_back(l.skeleton_a);
    sb.push_back(l.skeleton_b);
    na.push_back(l.node_a);
    nb.push_back(l.node_b);
    dist.push_back(l.distance);
  }
  py::dict d;
  d["segment"] = to_numpy(seg);
  d["skeleton_a"] = to_numpy(sa);
  d["skeleton_b"] = to_numpy(sb);
  d["node_a"] = to_numpy(na);
  d["node_b"] = to_numpy(nb);
  d["distance"] = to_numpy(dist);
  return d;
}

// (M, 3) int64 array from a flat vector.
py::array_t<std::int64_t> to_numpy_rows(const std::vector<std::int64_t>& v, py::ssize_t width) {
  py::array_t<std::int64_t> out({static_cast<py::ssize_t>(v.size()) / width, width});
  std::copy(v.begin(), v.end(), out.mutable_data());
  return out;
}

py::dict skeleton_node_voxels(carray<double> positions, carray<std::int64_t> edges, std::array<double, 3> begin,
                              std::array<double, 3> end, std::array<double, 3> offset,
                              std::array<double, 3> voxel_size, std::array<std::int64_t, 3> shape) {
  if (positions.ndim() != 2 || positions.shape(1) != 3) throw std::invalid_argument("positions must be (N, 3)");
  const std::int64_t n_nodes = positions.shape(0);
  const std::int64_t n_edges = edges.size() == 0 ? 0 : edges.shape(0);
  if (n_edges > 0 && (edges.ndim() != 2 || edges.shape(1) != 2)) throw std::invalid_argument("edges must be (E, 2)");
  for (py::ssize_t i = 0; i < edges.size(); ++i)
    if (edges.data()[i] < 0 || edges.data()[i] >= n_nodes) throw std::invalid_argument("edge end outside 0..N-1");
  for (int d = 0; d < 3; ++d)
    if (shape[d] < 1 || !(voxel_size[d] > 0)) throw std::invalid_argument("shape and voxel_size must be positive");
  xf::SkeletonNodeVoxels r;
  {
    py::gil_scoped_release nogil;
    r = xf::skeleton_node_voxels(positions.data(), n_nodes, edges.data(), n_edges, begin.data(), end.data(),
                                 offset.data(), voxel_size.data(), shape.data());
  }
  py::dict d;
  d["nodes"] = to_numpy(r.nodes);
  d["voxels"] = to_numpy_rows(r.voxels, 3);
  d["voxel_index"] = to_numpy(r.voxel_index);
  d["voxel_group"] = to_numpy(r.voxel_group);
  d["n_voxels"] = r.n_voxels;
  d["edges"] = to_numpy_rows(r.edges, 2);
  d["edge_ids"] = to_numpy(r.edge_ids);
  d["edge_length"] = to_numpy(r.edge_length);
  return d;
}

template <typename T>
// threads: chosen by the Python side (xpress_fast._validate.check_threads), as for every kernel
py::dict rand_voi_sums(carray<T> test, carray<T> truth, carray<T> ignore, int threads) {
  if (test.size() != truth.size()) throw std::invalid_argument("test and truth must have the same size");
  std::vector<T> ignore_labels(ignore.data(), ignore.data() + ignore.size());
  xf::RandVoiSums s;
  {
    py::gil_scoped_release nogil;
    s = xf::rand_voi_sums<T>(test.data(), truth.data(), static_cast<std::int64_t>(test.size()), ignore_labels,
                             threads);
  }
  py::dict d;
  d["n"] = s.n;
  put_sums(d, s.sums);
  return d;
}

}  // namespace

PYBIND11_MODULE(_metrics, m) {
  const char* const kRandVoiDoc =
      "Contingency-table sums (Rand; entropies in bits) of test against truth, the voxels whose truth is in "
      "ignore left out.";
  m.doc() = "xpress_fast evaluation kernels (private; use xpress_fast.erl / xpress_scores / rand_voi)";
  m.def("components", &components, py::arg("n_nodes"), py::arg("edges"),
        "Connected component of each of n_nodes nodes of the undirected (E, 2) edges, numbered by first node.");
  m.def("skeleton_node_voxels", &skeleton_node_voxels, py::arg("positions"), py::arg("edges"), py::arg("begin"),
        py::arg("end"), py::arg("offset"), py::arg("voxel_size"), py::arg("shape"),
        "Skeleton nodes inside the box [begin, end) nm, their voxels in a volume of shape, and the edges kept.");
  m.def("score_skeleton_labels", &score_skeleton_labels, py::arg("labels"), py::arg("voxel"), py::arg("n_voxels"),
        py::arg("skeleton"),
        py::arg("n_skeletons"), py::arg("edges"), py::arg("edge_length"), py::arg("skip_first_skeleton"),
        py::arg("zero_is_unsegmented"),
        "ERL, split and merge counts and Rand/VOI sums of one (n_nodes,) label per node.");
  m.def("score_skeleton_labels_many", &score_skeleton_labels_many, py::arg("labels"), py::arg("voxel"),
        py::arg("n_voxels"), py::arg("skeleton"), py::arg("n_skeletons"), py::arg("edges"), py::arg("edge_length"),
        py::arg("skip_first_skeleton"), py::arg("zero_is_unsegmented"),
        "score_skeleton_labels for each row of (T, n_nodes) labels (a threshold sweep), without locations.");
  m.def("merge_locations", &merge_locations, py::arg("node_segment"), py::arg("skeleton"), py::arg("positions"),
        py::arg("merged"),
        "For each merged segment, the closest nodes of each pair of skeletons on it.");
  m.def("rand_voi_sums_uint8", &rand_voi_sums<std::uint8_t>, py::arg("test"), py::arg("truth"), py::arg("ignore"),
        py::arg("threads"), kRandVoiDoc);
  m.def("rand_voi_sums_uint16", &rand_voi_sums<std::uint16_t>, py::arg("test"), py::arg("truth"), py::arg("ignore"),
        py::arg("threads"), kRandVoiDoc);
  m.def("rand_voi_sums_uint32", &rand_voi_sums<std::uint32_t>, py::arg("test"), py::arg("truth"), py::arg("ignore"),
        py::arg("threads"), kRandVoiDoc);
  m.def("rand_voi_sums_uint64", &rand_voi_sums<std::uint64_t>, py::arg("test"), py::arg("truth"), py::arg("ignore"),
        py::arg("threads"), kRandVoiDoc);
}
