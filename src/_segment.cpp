// Bindings for watershed, region graph and agglomeration: only translation between numpy arrays
// and the kernels in cpp/include/xpress_fast; the Python modules validate every input first.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <stdexcept>

#if defined(__GLIBC__)
#include <malloc.h>
#endif
#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

#include "xpress_fast/agglomeration.hpp"
#include "xpress_fast/merge_functions.hpp"
#include "xpress_fast/merge_history_labels.hpp"
#include "xpress_fast/mutex_watershed.hpp"
#include "xpress_fast/region_graph.hpp"
#include "xpress_fast/distance_transform.hpp"
#include "xpress_fast/watershed.hpp"

namespace py = pybind11;
using namespace xpress_fast;

template <typename T>
using carray = py::array_t<T, py::array::c_style>;

namespace {

Shape3 affs_shape(const py::buffer_info& a) {
  if (a.ndim != 4 || a.shape[0] < 3) throw std::invalid_argument("affs must have shape (C >= 3, Z, Y, X)");
  return {a.shape[1], a.shape[2], a.shape[3]};
}

void check_volume(const py::buffer_info& v, Shape3 s, const char* name) {
  if (v.ndim != 3 || v.shape[0] != s.z || v.shape[1] != s.y || v.shape[2] != s.x)
    throw std::invalid_argument(std::string(name) + " must have the spatial shape of affs");
}

// The uint8 mask of a volume of shape s, or nullptr for None; `keep` holds the array.
const std::uint8_t* optional_mask(const py::object& mask, Shape3 s, carray<std::uint8_t>& keep) {
  if (mask.is_none()) return nullptr;
  keep = mask.cast<carray<std::uint8_t>>();
  const auto mb = keep.request();
  check_volume(mb, s, "mask");
  return static_cast<const std::uint8_t*>(mb.ptr);
}

// The kernels' large temporaries (block buffers, distance maps) are freed in worker threads'
// malloc arenas, which glibc keeps (its mmap threshold grows to their size): hand the free
// pages back, so the stages after a watershed do not carry them (measured at 256^3: the memory
// held after `agglomerate` drops from 13.8 to 12.2 bytes per voxel; its peak is unchanged).
void release_freed_memory() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

// A zeroed C-contiguous array for kernels to fill, its pages faulted in here without transparent
// huge pages, each thread zeroing one contiguous part. Measured on a 2-core VM at 384^3 (453 MB
// of labels): kernels whose threads first touched one fresh volume at interleaved places spent
// 3.5-4.5 s in page faults (they contend for the same page-table locks), one sequential pass
// 0.3-0.4 s and two threads on two halves 0.16 s; and numpy's huge-page advice on large arrays
// made the first touch stall on memory compaction now and then (0.1-1.9 s).
template <typename T>
carray<T> prefaulted(const std::vector<py::ssize_t>& shape, int threads) {
  carray<T> out(shape);
  T* p = out.mutable_data();
  const std::int64_t n = static_cast<std::int64_t>(out.size());
  {
    py::gil_scoped_release nogil;
#if defined(__linux__) && defined(MADV_NOHUGEPAGE)
    const std::uintptr_t page = static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE));
    const std::uintptr_t begin = (reinterpret_cast<std::uintptr_t>(p) + page - 1) / page * page;
    const std::uintptr_t end = (reinterpret_cast<std::uintptr_t>(p + n)) / page * page;
    if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_NOHUGEPAGE);  // advice only
#endif
    detail::parallel_for(n, n < detail::kItemsPerThread ? 1 : threads, [&](std::int64_t b, std::int64_t e) {
      std::memset(static_cast<void*>(p + b), 0, static_cast<std::size_t>(e - b) * sizeof(T));
    });
  }
  return out;
}

const std::array<std::int64_t, 3> kDefaultBlock{default_watershed_block.z, default_watershed_block.y,
                                               default_watershed_block.x};

// block: the side of the first-level boxes (a tuning knob; the result does not depend on it)
template <typename Aff>
void watershed(carray<Aff> affs, carray<std::uint64_t> labels, py::object mask, int threads,
               std::array<std::int64_t, 3> block) {
  const auto ab = affs.request();
  const Shape3 s = affs_shape(ab);
  auto lb = labels.request(true);
  check_volume(lb, s, "labels");
  carray<std::uint8_t> m;  // holds the mask while the kernel reads it
  const std::uint8_t* mptr = optional_mask(mask, s, m);
  const Aff* aptr = static_cast<const Aff*>(ab.ptr);
  auto* lptr = static_cast<std::uint64_t*>(lb.ptr);
  py::gil_scoped_release nogil;
  if (block[0] < 1 || block[1] < 1 || block[2] < 1 || block[0] * block[1] * block[2] >= (std::int64_t(1) << 30))
    throw std::invalid_argument("block sides must be positive and hold fewer than 2^30 voxels");
  seeded_watershed(aptr, s, lptr, mptr, std::max(threads, 1), Shape3{block[0], block[1], block[2]});
  release_freed_memory();
}

template <typename Aff>
carray<std::uint8_t> inside(carray<Aff> affs, float threshold) {
  const auto ab = affs.request();
  const Shape3 s = affs_shape(ab);
  carray<std::uint8_t> out({s.z, s.y, s.x});
  auto* optr = out.mutable_data();
  const Aff* aptr = static_cast<const Aff*>(ab.ptr);
  {
    py::gil_scoped_release nogil;
    inside_map(aptr, s, threshold, optr);
  }
  return out;
}

template <typename Aff>
std::int64_t filter(carray<Aff> affs, carray<std::uint64_t> labels, float level) {
  const auto ab = affs.request();
  const Shape3 s = affs_shape(ab);
  auto lb = labels.request(true);
  check_volume(lb, s, "labels");
  const Aff* aptr = static_cast<const Aff*>(ab.ptr);
  auto* lptr = static_cast<std::uint64_t*>(lb.ptr);
  py::gil_scoped_release nogil;
  return filter_fragments(aptr, s, lptr, level);
}

// out: None clears labels in place; else a volume of labels' shape that receives the cleared copy
template <typename Aff>
std::int64_t clear(carray<Aff> affs, carray<std::uint64_t> labels, float threshold, int threads, py::object out) {
  const auto ab = affs.request();
  const Shape3 s = affs_shape(ab);
  auto lb = labels.request(out.is_none());  // written only when cleared in place
  check_volume(lb, s, "labels");
  auto* lptr = static_cast<std::uint64_t*>(lb.ptr);
  std::uint64_t* optr = lptr;
  carray<std::uint64_t> o;
  if (!out.is_none()) {
    o = out.cast<carray<std::uint64_t>>();
    auto obuf = o.request(true);
    check_volume(obuf, s, "out");
    optr = static_cast<std::uint64_t*>(obuf.ptr);
  }
  const Aff* aptr = static_cast<const Aff*>(ab.ptr);
  py::gil_scoped_release nogil;
  return clear_boundary(aptr, s, threshold, lptr, optr, std::max(threads, 1));
}

// offsets, strides: (C, 3) int64; bias: (C,) float32 (the Python side checks every value)
template <typename Aff>
carray<std::uint64_t> mutex(carray<Aff> affs, carray<std::int64_t> offsets, carray<std::int64_t> strides,
                            carray<float> bias, py::object mask, int threads) {
  const auto ab = affs.request();
  if (ab.ndim != 4) throw std::invalid_argument("affs must have shape (C, Z, Y, X)");
  const Shape3 s{ab.shape[1], ab.shape[2], ab.shape[3]};
  const auto n_channels = ab.shape[0];
  if (offsets.ndim() != 2 || offsets.shape(0) != n_channels || offsets.shape(1) != 3 || strides.ndim() != 2 ||
      strides.shape(0) != n_channels || strides.shape(1) != 3 || bias.ndim() != 1 || bias.shape(0) != n_channels)
    throw std::invalid_argument("offsets and strides must be (C, 3) and bias (C,)");
  std::vector<MutexChannel> channels(static_cast<std::size_t>(n_channels));
  for (py::ssize_t c = 0; c < n_channels; ++c) {
    auto& ch = channels[static_cast<std::size_t>(c)];
    for (int a = 0; a < 3; ++a) {
      ch.offset[a] = offsets.at(c, a);
      ch.stride[a] = strides.at(c, a);
      if (ch.stride[a] < 1) throw std::invalid_argument("strides must be >= 1");
    }
    ch.bias = bias.at(c);
  }
  carray<std::uint8_t> m;  // holds the mask while the kernel reads it
  const std::uint8_t* mptr = optional_mask(mask, s, m);
  carray<std::uint64_t> labels({s.z, s.y, s.x});
  auto* lptr = labels.mutable_data();
  const Aff* aptr = static_cast<const Aff*>(ab.ptr);
  {
    py::gil_scoped_release nogil;
    mutex_watershed(aptr, s, channels, mptr, lptr, std::max(threads, 1));
    release_freed_memory();
  }
  return labels;
}

carray<std::uint8_t> maxima(carray<std::uint8_t> inside, std::int64_t size, int threads) {
  const auto ib = inside.request();
  if (ib.ndim != 3) throw std::invalid_argument("inside must be 3-dimensional");
  const Shape3 s{ib.shape[0], ib.shape[1], ib.shape[2]};
  if (size < 1) throw std::invalid_argument("size must be positive");
  carray<std::uint8_t> out({s.z, s.y, s.x});
  auto* optr = out.mutable_data();
  const auto* iptr = static_cast<const std::uint8_t*>(ib.ptr);
  {
    py::gil_scoped_release nogil;
    distance_maxima(iptr, s, size, optr, threads);
  }
  return out;
}

carray<float> squared_edt(carray<std::uint8_t> inside, int threads) {
  const auto ib = inside.request();
  if (ib.ndim != 3) throw std::invalid_argument("inside must be 3-dimensional");
  const Shape3 s{ib.shape[0], ib.shape[1], ib.shape[2]};
  carray<float> out({s.z, s.y, s.x});
  auto* optr = out.mutable_data();
  const auto* iptr = static_cast<const std::uint8_t*>(ib.ptr);
  {
    py::gil_scoped_release nogil;
    squared_distance_transform(iptr, s, optr, threads);
  }
  return out;
}

// The automatic seeds, uint64 (0 elsewhere), ids id_offset + 1, ... in scipy.ndimage.label's
// order, and their number. The output is the watershed's labels array next, so it is prefaulted,
// once the distance maps are gone.
py::tuple seeds(carray<std::uint8_t> inside, std::int64_t size, std::uint64_t id_offset, int threads) {
  const auto ib = inside.request();
  if (ib.ndim != 3) throw std::invalid_argument("inside must be 3-dimensional");
  const Shape3 s{ib.shape[0], ib.shape[1], ib.shape[2]};
  if (size < 1) throw std::invalid_argument("size must be positive");
  const auto* iptr = static_cast<const std::uint8_t*>(ib.ptr);
  SeedPoints points;
  {
    py::gil_scoped_release nogil;
    points = distance_seed_points(iptr, s, size, threads);
    release_freed_memory();
  }
  auto out = prefaulted<std::uint64_t>({s.z, s.y, s.x}, threads);
  auto* optr = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    write_seeds(points, id_offset, optr);
  }
  return py::make_tuple(out, points.count);
}

template <typename T>
carray<T> to_numpy(const std::vector<T>& v) {
  carray<T> out(static_cast<py::ssize_t>(v.size()));
  if (!v.empty()) std::memcpy(out.mutable_data(), v.data(), v.size() * sizeof(T));
  return out;
}

template <typename Aff>
// further: (K, 4) int64 rows (channel, dz, dy, dx) of further channels; nearest: count channels 0-2
py::dict graph(carray<std::uint64_t> fragments, carray<Aff> affs, std::int64_t cz, std::int64_t cy, std::int64_t cx,
               bool histogram, int threads, bool nearest, carray<std::int64_t> further) {
  const auto ab = affs.request();
  const Shape3 s = affs_shape(ab);
  if (further.ndim() != 2 || further.shape(1) != 4) throw std::invalid_argument("further must be (K, 4)");
  std::vector<OffsetChannel> channels;
  for (py::ssize_t k = 0; k < further.shape(0); ++k) {
    const std::int64_t c = further.at(k, 0);
    if (c < 0 || c >= ab.shape[0]) throw std::invalid_argument("further channel out of range");
    channels.push_back({c, {further.at(k, 1), further.at(k, 2), further.at(k, 3)}});
  }
  const auto fb = fragments.request();
  check_volume(fb, s, "fragments");
  const std::int64_t context[3] = {cz, cy, cx};
  const Aff* aptr = static_cast<const Aff*>(ab.ptr);
  const auto* fptr = static_cast<const std::uint64_t*>(fb.ptr);
  RegionGraphData<std::uint64_t> g;
  std::vector<std::int64_t> offsets;
  std::vector<std::uint8_t> bins;
  std::vector<std::uint64_t> counts;
  {
    py::gil_scoped_release nogil;
    g = region_graph(aptr, s, fptr, context, histogram, threads, nearest, channels);
    if (histogram) {
      offsets.resize(g.size() + 1, 0);
      std::size_t total = 0;
      for (std::size_t e = 0; e < g.size(); ++e) {
        total += g.hist[e].size();
        offsets[e + 1] = static_cast<std::int64_t>(total);
      }
      bins.reserve(total);
      counts.reserve(total);
      for (auto& h : g.hist) {
        for (auto entry : h) {
          bins.push_back(static_cast<std::uint8_t>(entry_bin(entry)));
          counts.push_back(entry_count(entry));
        }
        SparseHistogram().swap(h);
      }
    }
    release_freed_memory();  // the slabs' per-voxel-edge histogram lists
  }
  py::dict out;
  out["u"] = to_numpy(g.u);
  out["v"] = to_numpy(g.v);
  out["count"] = to_numpy(g.count);
  out["sum"] = to_numpy(g.sum);
  out["min"] = to_numpy(g.min);
  out["max"] = to_numpy(g.max);
  if (histogram) {
    out["hist_offsets"] = to_numpy(offsets);
    out["hist_bins"] = to_numpy(bins);
    out["hist_counts"] = to_numpy(counts);
  }
  return out;
}

py::tuple agglomerate(std::int64_t n_nodes, carray<std::int64_t> u, carray<std::int64_t> v, carray<std::uint64_t> count,
                      carray<double> sum, carray<float> mn, carray<float> mx, carray<std::int64_t> hist_offsets,
                      carray<std::uint8_t> hist_bins, carray<std::uint64_t> hist_counts, int statistic, int quantile,
                      bool init_with_max, double stop) {
  const py::ssize_t m = u.size();
  if (v.size() != m || count.size() != m || sum.size() != m || mn.size() != m || mx.size() != m)
    throw std::invalid_argument("edge arrays differ in length");
  if (statistic < static_cast<int>(Statistic::Mean) || statistic > static_cast<int>(Statistic::Quantile))
    throw std::invalid_argument("unknown statistic");
  MergeFunction f;
  f.statistic = static_cast<Statistic>(statistic);
  f.quantile = quantile;
  f.init_with_max = init_with_max;
  if (f.needs_histogram() && hist_offsets.size() != m + 1)
    throw std::invalid_argument("a quantile merge function needs histograms");
  const std::int64_t* up = u.data();
  const std::int64_t* vp = v.data();
  const std::uint64_t* cp = count.data();
  const double* sp = sum.data();
  const float* minp = mn.data();
  const float* maxp = mx.data();
  const std::int64_t* op = hist_offsets.data();
  const std::uint8_t* bp = hist_bins.data();
  const std::uint64_t* hp = hist_counts.data();
  const py::ssize_t nh = hist_bins.size();
  if (hist_counts.size() != nh) throw std::invalid_argument("hist_bins and hist_counts differ in length");
  MergeHistory history;
  {
    py::gil_scoped_release nogil;
    std::vector<std::int64_t> eu(up, up + m), ev(vp, vp + m);
    std::vector<EdgeStatistics> stats(static_cast<std::size_t>(m));
    for (py::ssize_t e = 0; e < m; ++e) {
      auto& st = stats[e];
      st.count = cp[e];
      st.sum = sp[e];
      st.min = minp[e];
      st.max = maxp[e];
      if (f.needs_histogram()) {
        if (op[e] < 0 || op[e + 1] < op[e] || op[e + 1] > nh) throw std::invalid_argument("bad hist_offsets");
        if (op[e + 1] == op[e]) throw std::invalid_argument("an edge has an empty histogram");
        st.hist.reserve(static_cast<std::size_t>(op[e + 1] - op[e]));
        for (std::int64_t k = op[e]; k < op[e + 1]; ++k) {
          if (k > op[e] && bp[k] <= bp[k - 1]) throw std::invalid_argument("histogram bins must be increasing");
          st.hist.push_back(histogram_entry(hp[k], bp[k]));
        }
      }
    }
    history = agglomerate_graph(n_nodes, eu, ev, std::move(stats), f, stop);
  }
  return py::make_tuple(to_numpy(history.u), to_numpy(history.v), to_numpy(history.score), to_numpy(history.level));
}

carray<std::int64_t> components(std::int64_t n_nodes, carray<std::int64_t> u, carray<std::int64_t> v, std::int64_t k) {
  if (k < 0 || k > u.size() || k > v.size()) throw std::invalid_argument("k out of range");
  const std::int64_t* up = u.data();
  const std::int64_t* vp = v.data();
  std::vector<std::int64_t> out;
  {
    py::gil_scoped_release nogil;
    out = merge_components(n_nodes, up, vp, k);
  }
  return to_numpy(out);
}

// (T, n_items) labels of a fixed set of fragments after each prefix of the merge history.
carray<std::uint64_t> history_labels(carray<std::uint64_t> fragment_ids, carray<std::int64_t> u, carray<std::int64_t> v,
                                     carray<std::int64_t> prefix, carray<std::int64_t> item_fragment,
                                     carray<std::uint64_t> item_id) {
  if (u.ndim() != 1 || v.ndim() != 1 || u.size() != v.size()) throw std::invalid_argument("u and v differ in length");
  if (prefix.ndim() != 1) throw std::invalid_argument("prefix must be 1-D");
  if (item_fragment.ndim() != 1 || item_id.ndim() != 1 || item_fragment.size() != item_id.size())
    throw std::invalid_argument("item_fragment and item_id differ in length");
  const py::ssize_t rows = prefix.size(), n = item_id.size();
  carray<std::uint64_t> out({rows, n});
  const std::uint64_t* ids = fragment_ids.data();
  const std::int64_t *up = u.data(), *vp = v.data(), *pp = prefix.data(), *fp = item_fragment.data();
  const std::uint64_t* ip = item_id.data();
  std::uint64_t* op = out.mutable_data();
  const std::int64_t n_fragments = fragment_ids.size(), n_merges = u.size();
  {
    py::gil_scoped_release nogil;
    merge_history_labels(n_fragments, ids, up, vp, n_merges, pp, rows, fp, ip, n, op);
  }
  return out;
}

template <typename Label>
carray<std::uint64_t> map(carray<Label> in, carray<std::uint64_t> keys, carray<std::uint64_t> values) {
  if (keys.size() != values.size()) throw std::invalid_argument("keys and values differ in length");
  const auto ib = in.request();
  // numpy's own allocation: a sweep frees each volume before the next, and huge pages freed a
  // moment ago are faulted in fast (prefaulting without them measured 4x slower here)
  carray<std::uint64_t> out(std::vector<py::ssize_t>(ib.shape.begin(), ib.shape.end()));
  const Label* ip = static_cast<const Label*>(ib.ptr);
  std::uint64_t* op = out.mutable_data();
  const std::uint64_t* kp = keys.data();
  const std::uint64_t* vp = values.data();
  const std::int64_t n = static_cast<std::int64_t>(in.size()), m = static_cast<std::int64_t>(keys.size());
  {
    py::gil_scoped_release nogil;
    // a dense table when the ids are small enough (at most 128 MiB, or a byte per voxel)
    std::vector<std::uint64_t> dense;
    const std::uint64_t max_key = m ? kp[m - 1] : 0;
    const bool use_dense = m > 0 && (max_key < (std::uint64_t(1) << 24) || max_key < static_cast<std::uint64_t>(n / 8));
    if (use_dense) {
      dense.resize(static_cast<std::size_t>(max_key) + 1);
      for (std::uint64_t i = 0; i <= max_key; ++i) dense[i] = i;
      for (std::int64_t j = 0; j < m; ++j) dense[kp[j]] = vp[j];
    }
    auto work = [&](std::int64_t begin, std::int64_t end) {
      if (use_dense) {
        const std::uint64_t* d = dense.data();
        for (std::int64_t i = begin; i < end; ++i) {
          const std::uint64_t x = static_cast<std::uint64_t>(ip[i]);
          op[i] = x <= max_key ? d[x] : x;
        }
      } else {
        map_labels(ip + begin, end - begin, kp, vp, m, op + begin);
      }
    };
    detail::parallel_for(n, n > detail::kItemsPerThread ? 2 : 1, work);  // two halves
  }
  return out;
}

}  // namespace

PYBIND11_MODULE(_segment, m) {
  const char* const kWatershedDoc =
      "Seeded watershed of (C, Z, Y, X) affs into the (Z, Y, X) labels, in place; mask: None or uint8.";
  const char* const kInsideDoc =
      "uint8 map of the voxels whose mean of the first three affinity channels exceeds threshold.";
  const char* const kFilterDoc =
      "Set the fragments of labels whose mean affinity is below level to 0, in place; returns how many.";
  const char* const kClearDoc =
      "Set labels outside the inside map to 0, in place (out None) or into out; returns the voxels cleared.";
  const char* const kMutexDoc =
      "Mutex watershed of (C, Z, Y, X) affs, offsets and strides (C, 3), bias (C,); returns uint64 labels.";
  const char* const kGraphDoc =
      "Region graph of fragments: u, v, count, sum, min, max per edge (and histograms if asked).";
  const char* const kMapDoc =
      "labels (uint64) with each of the sorted unique keys replaced by its value; other ids kept.";
  m.doc() = "xpress_fast segmentation kernels (internal; use xpress_fast.watershed / region_graph / agglomerate)";
  // The codes and limits the Python side passes or checks, read from here so that they cannot drift.
  m.attr("STATISTIC_MEAN") = static_cast<int>(Statistic::Mean);
  m.attr("STATISTIC_MAX") = static_cast<int>(Statistic::Max);
  m.attr("STATISTIC_MIN") = static_cast<int>(Statistic::Min);
  m.attr("STATISTIC_QUANTILE") = static_cast<int>(Statistic::Quantile);
  m.attr("HISTOGRAM_BINS") = kHistogramBins;
  m.attr("NO_FRAGMENT") = kNoFragment;
  m.attr("MUTEX_MAX_EDGES") = kMutexMaxEdges;
  m.def("watershed_float32", &watershed<float>, py::arg("affs"), py::arg("labels"), py::arg("mask"),
        py::arg("threads") = 1, py::arg("block") = kDefaultBlock, kWatershedDoc);
  m.def("watershed_uint8", &watershed<std::uint8_t>, py::arg("affs"), py::arg("labels"), py::arg("mask"),
        py::arg("threads") = 1, py::arg("block") = kDefaultBlock, kWatershedDoc);
  m.def("zeros_uint64", &prefaulted<std::uint64_t>, py::arg("shape"), py::arg("threads"),
        "A zeroed C-contiguous uint64 array of shape, its pages first touched by threads threads.");
  m.def("inside_float32", &inside<float>, py::arg("affs"), py::arg("threshold"), kInsideDoc);
  m.def("inside_uint8", &inside<std::uint8_t>, py::arg("affs"), py::arg("threshold"), kInsideDoc);
  m.def("filter_float32", &filter<float>, py::arg("affs"), py::arg("labels"), py::arg("level"), kFilterDoc);
  m.def("filter_uint8", &filter<std::uint8_t>, py::arg("affs"), py::arg("labels"), py::arg("level"), kFilterDoc);
  m.def("clear_boundary_float32", &clear<float>, py::arg("affs"), py::arg("labels"), py::arg("threshold"),
        py::arg("threads"), py::arg("out") = py::none(), kClearDoc);
  m.def("clear_boundary_uint8", &clear<std::uint8_t>, py::arg("affs"), py::arg("labels"), py::arg("threshold"),
        py::arg("threads"), py::arg("out") = py::none(), kClearDoc);
  m.def("mutex_watershed_float32", &mutex<float>, py::arg("affs"), py::arg("offsets"), py::arg("strides"),
        py::arg("bias"), py::arg("mask"), py::arg("threads"), kMutexDoc);
  m.def("mutex_watershed_uint8", &mutex<std::uint8_t>, py::arg("affs"), py::arg("offsets"), py::arg("strides"),
        py::arg("bias"), py::arg("mask"), py::arg("threads"), kMutexDoc);
  m.def("distance_maxima", &maxima, py::arg("inside"), py::arg("size"), py::arg("threads"),
        "uint8 map of the inside voxels whose distance to the outside is the maximum of the size^3 window.");
  m.def("squared_edt", &squared_edt, py::arg("inside"), py::arg("threads"),
        "Squared Euclidean distance (voxels) of each voxel of the uint8 inside map to the nearest outside voxel.");
  m.def("distance_seeds", &seeds, py::arg("inside"), py::arg("size"), py::arg("id_offset"), py::arg("threads"),
        "(seeds, n): the distance-transform maxima of inside as uint64 ids id_offset + 1, ... (0 elsewhere).");
  m.def("region_graph_float32", &graph<float>, py::arg("fragments"), py::arg("affs"), py::arg("cz"), py::arg("cy"),
        py::arg("cx"), py::arg("histogram"), py::arg("threads"), py::arg("nearest"), py::arg("further"), kGraphDoc);
  m.def("region_graph_uint8", &graph<std::uint8_t>, py::arg("fragments"), py::arg("affs"), py::arg("cz"),
        py::arg("cy"), py::arg("cx"), py::arg("histogram"), py::arg("threads"), py::arg("nearest"),
        py::arg("further"), kGraphDoc);
  m.def("agglomerate", &agglomerate, py::arg("n_nodes"), py::arg("u"), py::arg("v"), py::arg("count"), py::arg("sum"),
        py::arg("min"), py::arg("max"), py::arg("hist_offsets"), py::arg("hist_bins"), py::arg("hist_counts"),
        py::arg("statistic"), py::arg("quantile"), py::arg("init_with_max"), py::arg("stop"),
        "(u, v, score, level): the merge history of agglomerating the region graph up to stop.");
  m.def("merge_components", &components, py::arg("n_nodes"), py::arg("u"), py::arg("v"), py::arg("k"),
        "Representative (smallest node index of its region) of each of n_nodes after the first k merges.");
  m.def("merge_history_labels", &history_labels, py::arg("fragment_ids"), py::arg("u"), py::arg("v"),
        py::arg("prefix"), py::arg("item_fragment"), py::arg("item_id"),
        "(T, n_items) labels of the item fragments after each prefix of the merge history.");
  m.def("map_labels_uint64", &map<std::uint64_t>, py::arg("labels"), py::arg("keys"), py::arg("values"), kMapDoc);
  m.def("map_labels_uint32", &map<std::uint32_t>, py::arg("labels"), py::arg("keys"), py::arg("values"), kMapDoc);
}
