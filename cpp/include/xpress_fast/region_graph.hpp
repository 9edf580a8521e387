// Region adjacency graph of a fragment volume with boundary-affinity statistics per edge.
//
// Every voxel v "owns" its three lower edges {v, v - e_c} (c = z, y, x), whose affinity is
// affs[c][v]. An edge of the graph joins two different non-zero fragments that touch across at
// least one such voxel edge; for each graph edge we collect, over the voxel edges between the
// two fragments: their number, the sum, min and max of the affinities, and a sparse 256-bin
// histogram (the bin of affinity a is min(floor(a * 256), 255), waterz's discretisation, which
// maps a uint8 affinity k to bin k). The histogram is stored as (bin, count) pairs for the
// non-empty bins only, so an edge costs 8 bytes per distinct bin instead of waterz's 1 KB.
//
// Voxels in the first `context[d]` planes along axis d own no edges: a block processed with a
// one-plane overlap at its lower faces then counts every voxel edge of the full volume exactly
// once, and the per-block graphs add up to the graph of the whole volume.
//
// Edges are found with a PairMap (pair_map.hpp) keyed by the fragment pair (u < v); the
// volume is split into z-slabs processed by separate threads whose partial graphs are merged.
// Histograms are counted after a slab's scan, from the (edge, bin) of each voxel edge.
// The output is sorted by (u, v).
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <vector>

#include "pair_map.hpp"
#include "parallel.hpp"
#include "watershed.hpp"

namespace xpress_fast {

// waterz's histogram resolution: a uint8 affinity k falls in bin k (exported to Python as
// _segment.HISTOGRAM_BINS).
constexpr int kHistogramBins = 256;

inline int histogram_bin(std::uint8_t a) { return a; }
// min(floor(a * 256), 255) clamped at 0, NaN as 0, without branches (checked equal to the
// branching form for all 2^32 float bit patterns)
inline int histogram_bin(float a) {
  float t = a * static_cast<float>(kHistogramBins);
  t = 0.0f < t ? t : 0.0f;
  t = t < static_cast<float>(kHistogramBins - 1) ? t : static_cast<float>(kHistogramBins - 1);
  return static_cast<int>(t);
}

// A sparse histogram: entries (count << kBinBits | bin), sorted by bin. One word per non-empty
// bin; adding two entries of the same bin adds their counts.
using SparseHistogram = std::vector<std::uint64_t>;
constexpr int kBinBits = 8;  // the bin of an entry is its low byte: kHistogramBins == 1 << kBinBits
static_assert(kHistogramBins == 1 << kBinBits, "a histogram entry keeps its bin in the low kBinBits bits");
inline std::uint64_t histogram_entry(std::uint64_t count, int bin) {
  return (count << kBinBits) | static_cast<std::uint64_t>(bin);
}
inline int entry_bin(std::uint64_t entry) { return static_cast<int>(entry & (kHistogramBins - 1)); }
inline std::uint64_t entry_count(std::uint64_t entry) { return entry >> kBinBits; }

template <typename Label>
struct RegionGraphData {
  std::vector<Label> u, v;
  std::vector<std::uint64_t> count;
  std::vector<double> sum;
  std::vector<float> min, max;
  std::vector<SparseHistogram> hist;  // empty if no histograms were asked for

  std::size_t size() const { return u.size(); }
};

namespace detail {

// Appends the non-empty bins of a dense histogram to h, by bin, and clears them.
inline void take_dense_histogram(std::uint64_t dense[kHistogramBins], SparseHistogram& h) {
  for (int b = 0; b < kHistogramBins; ++b)
    if (dense[b] != 0) {
      h.push_back(histogram_entry(dense[b], b));
      dense[b] = 0;
    }
}

// Sparse histograms of many edges from the bins of their voxel edges, given as (edge, bin) in any
// order: a counting sort by edge, then each edge's bins counted in a dense array. A
// sparse histogram updated per voxel edge would scan its entries every time (a quarter of the
// whole graph's time on noisy affinities).
inline std::vector<SparseHistogram> histograms_of(const std::vector<std::uint32_t>& edge,
                                                 const std::vector<std::uint8_t>& bin,
                                                 const std::vector<std::uint64_t>& count) {
  const std::size_t m = count.size();
  std::vector<std::uint64_t> start(m + 1, 0);
  for (std::size_t e = 0; e < m; ++e) start[e + 1] = start[e] + count[e];
  std::vector<std::uint8_t> sorted(bin.size());
  {
    std::vector<std::uint64_t> fill(start.begin(), start.end() - 1);
    for (std::size_t k = 0; k < edge.size(); ++k) sorted[fill[edge[k]]++] = bin[k];
  }
  std::vector<SparseHistogram> out(m);
  std::uint64_t dense[kHistogramBins] = {0};
  for (std::size_t e = 0; e < m; ++e) {
    for (std::uint64_t k = start[e]; k < start[e + 1]; ++k) ++dense[sorted[k]];
    SparseHistogram& h = out[e];
    if (start[e + 1] - start[e] < 32) {  // few voxel edges: visit only their bins
      for (std::uint64_t k = start[e]; k < start[e + 1]; ++k) {
        const int b = sorted[k];
        if (dense[b] == 0) continue;
        h.push_back(histogram_entry(dense[b], b));
        dense[b] = 0;
      }
      std::sort(h.begin(), h.end(), [](std::uint64_t a, std::uint64_t b) { return entry_bin(a) < entry_bin(b); });
    } else {
      take_dense_histogram(dense, h);
    }
  }
  return out;
}

}  // namespace detail

// A further affinity channel: channel `channel` at voxel v links v to v + offset (z, y, x).
struct OffsetChannel {
  std::int64_t channel;
  std::int64_t offset[3];
};

namespace detail {

template <typename Aff, typename Label>
void region_graph_slab(const Aff* affs, Shape3 shape, const Label* labels, const std::int64_t context[3],
                       std::int64_t z0, std::int64_t z1, bool histogram, RegionGraphData<Label>& out,
                       bool nearest, const std::vector<OffsetChannel>& further) {
  const std::int64_t n = shape.size();
  const std::int64_t sz = shape.y * shape.x, sy = shape.x;
  const std::int64_t step[3] = {sz, sy, 1};
  PairMap<std::int64_t> index;  // (u, v) -> edge
  std::vector<std::uint32_t> hist_edge;  // (edge, bin) of every voxel edge, for histograms_of
  std::vector<std::uint8_t> hist_bin;
  Label last_u = 0, last_v = 0;
  std::int64_t last_e = -1;
  // one voxel edge between fragments a and b (both non-zero, different), owned by v along c
  auto add = [&](Label a, Label b, std::int64_t v, int c) {
    const Label lo = a < b ? a : b, hi = a < b ? b : a;
    std::int64_t e;
    if (lo == last_u && hi == last_v) {
      e = last_e;
    } else {
      bool inserted;
      std::int64_t& edge = index.value(lo, hi, inserted);
      if (inserted) edge = static_cast<std::int64_t>(out.u.size());
      e = edge;
      if (inserted) {
        if (out.u.size() >= std::numeric_limits<std::uint32_t>::max())
          throw std::length_error("more than 2^32 region graph edges in one slab");
        out.u.push_back(lo);
        out.v.push_back(hi);
        out.count.push_back(0);
        out.sum.push_back(0.0);
        out.min.push_back(1.0f);
        out.max.push_back(0.0f);
      }
      last_u = lo;
      last_v = hi;
      last_e = e;
    }
    const Aff raw = affs[c * n + v];
    const float value = affinity_value(raw);
    out.count[e] += 1;
    out.sum[e] += value;
    if (value < out.min[e]) out.min[e] = value;
    if (value > out.max[e]) out.max[e] = value;
    if (histogram) {
      hist_edge.push_back(static_cast<std::uint32_t>(e));
      hist_bin.push_back(static_cast<std::uint8_t>(histogram_bin(raw)));
    }
  };
  // row by row, one channel at a time: the comparisons run over contiguous rows and the rare
  // boundary takes the branch (the order of the voxel edges does not matter but for the last
  // bits of the sums, which already depend on the slabs)
  const std::int64_t x0 = context[2];
  // further channels: the voxel edge {v, v + offset} belongs to v, like the nearest ones
  for (const OffsetChannel& ch : further) {
    const std::int64_t* o = ch.offset;
    const std::int64_t step_o = o[0] * sz + o[1] * sy + o[2];
    const std::int64_t ylo = std::max(context[1], -o[1]), yhi = std::min(shape.y, shape.y - o[1]);
    const std::int64_t xlo = std::max(x0, -o[2]), xhi = std::min(shape.x, shape.x - o[2]);
    for (std::int64_t z = std::max({z0, context[0], -o[0]}); z < std::min(z1, shape.z - o[0]); ++z)
      for (std::int64_t y = ylo; y < yhi; ++y) {
        const std::int64_t r = (z * shape.y + y) * shape.x;
        const Label* row = labels + r;
        const Label* nb = row + step_o;
        for (std::int64_t x = xlo; x < xhi; ++x) {
          const Label a = row[x], b = nb[x];
          if (a == b || a == 0 || b == 0) continue;
          add(a, b, r + x, static_cast<int>(ch.channel));
        }
      }
  }
  for (std::int64_t z = std::max(z0, context[0]); nearest && z < z1; ++z)
    for (std::int64_t y = context[1]; y < shape.y; ++y) {
      const std::int64_t r = (z * shape.y + y) * shape.x;
      const Label* row = labels + r;
      const bool has[3] = {z > 0, y > 0, true};
      for (int c = 0; c < 3; ++c) {
        if (!has[c]) continue;
        const Label* nb = row - step[c];
        for (std::int64_t x = std::max<std::int64_t>(x0, c == 2 ? 1 : 0); x < shape.x; ++x) {
          const Label a = row[x], b = nb[x];
          if (a == b || a == 0 || b == 0) continue;
          add(a, b, r + x, c);
        }
      }
    }
  if (histogram) {
    out.hist = histograms_of(hist_edge, hist_bin, out.count);
  }
}

}  // namespace detail

// Merges the (unsorted, possibly overlapping) partial graphs into one graph sorted by (u, v),
// with histograms sorted by bin.
template <typename Label>
RegionGraphData<Label> merge_region_graphs(std::vector<RegionGraphData<Label>>& parts) {
  struct Ref {
    Label u, v;
    std::uint32_t part;
    std::int64_t e;
  };
  std::vector<Ref> refs;
  bool histogram = false;
  for (std::uint32_t p = 0; p < parts.size(); ++p) {
    histogram = histogram || !parts[p].hist.empty();
    for (std::size_t e = 0; e < parts[p].size(); ++e)
      refs.push_back({parts[p].u[e], parts[p].v[e], p, static_cast<std::int64_t>(e)});
  }
  std::sort(refs.begin(), refs.end(), [](const Ref& a, const Ref& b) {
    return a.u < b.u || (a.u == b.u && (a.v < b.v || (a.v == b.v && a.part < b.part)));
  });
  RegionGraphData<Label> out;
  std::uint64_t dense[kHistogramBins] = {0};
  for (std::size_t i = 0; i < refs.size();) {
    std::size_t j = i;
    const auto& first = parts[refs[i].part];
    const std::int64_t fe = refs[i].e;
    out.u.push_back(refs[i].u);
    out.v.push_back(refs[i].v);
    std::uint64_t count = first.count[fe];
    double sum = first.sum[fe];
    float mn = first.min[fe], mx = first.max[fe];
    SparseHistogram h;
    if (histogram) h.swap(parts[refs[i].part].hist[fe]);
    bool merged = false;
    for (++j; j < refs.size() && refs[j].u == refs[i].u && refs[j].v == refs[i].v; ++j) {
      auto& p = parts[refs[j].part];
      const std::int64_t e = refs[j].e;
      count += p.count[e];
      sum += p.sum[e];
      mn = std::min(mn, p.min[e]);
      mx = std::max(mx, p.max[e]);
      if (histogram) {
        if (!merged)
          for (auto entry : h) dense[entry_bin(entry)] += entry_count(entry);
        merged = true;
        for (auto entry : p.hist[e]) dense[entry_bin(entry)] += entry_count(entry);
      }
    }
    if (merged) {  // an edge found in several slabs: the sum of their histograms, by bin
      h.clear();
      detail::take_dense_histogram(dense, h);
    }
    if (histogram) {
      h.shrink_to_fit();
      out.hist.push_back(std::move(h));
    }
    out.count.push_back(count);
    out.sum.push_back(sum);
    out.min.push_back(mn);
    out.max.push_back(mx);
    i = j;
  }
  return out;
}

template <typename Aff, typename Label>
RegionGraphData<Label> region_graph(const Aff* affs, Shape3 shape, const Label* labels, const std::int64_t context[3],
                                    bool histogram, int n_threads, bool nearest = true,
                                    const std::vector<OffsetChannel>& further = {}) {
  for (int d = 0; d < 3; ++d)
    if (context[d] < 0) throw std::invalid_argument("context must be non-negative");
  if (n_threads < 1) n_threads = 1;
  const std::int64_t zspan = shape.z;
  if (zspan < 2 * n_threads) n_threads = 1;
  std::vector<RegionGraphData<Label>> parts(static_cast<std::size_t>(n_threads));
  // slab t is z0 = zspan * t / n_threads to z1, whichever thread runs it (the calling thread runs
  // those whose thread could not start)
  detail::run_threads(n_threads, [&](int t) {
    const std::int64_t z0 = zspan * t / n_threads, z1 = zspan * (t + 1) / n_threads;
    detail::region_graph_slab(affs, shape, labels, context, z0, z1, histogram, parts[static_cast<std::size_t>(t)],
                              nearest, further);
  });
  return merge_region_graphs(parts);
}

}  // namespace xpress_fast
