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
// Edges are found with an open-addressing hash map keyed by the fragment pair (u < v); the
// volume is split into z-slabs processed by separate threads whose partial graphs are merged.
// The output is sorted by (u, v).
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>
#include <stdexcept>
#include <thread>
#include <vector>

#include "watershed.hpp"

namespace xpress_fast {

inline int histogram_bin(std::uint8_t a) { return a; }
inline int histogram_bin(float a) {
  if (!(a > 0.0f)) return 0;
  if (a >= 1.0f) return 255;
  const int b = static_cast<int>(a * 256.0f);
  return b > 255 ? 255 : b;
}

// Open-addressing hash map from a pair of non-zero labels to an index.
template <typename Label>
class PairIndexMap {
 public:
  PairIndexMap() { rehash(1024); }

  // index of (u, v), inserting `next` if absent; sets `inserted`.
  std::int64_t find_or_insert(Label u, Label v, std::int64_t next, bool& inserted) {
    if ((size_ + 1) * 2 > cap_) rehash(cap_ * 2);
    std::size_t i = hash(u, v) & (cap_ - 1);
    while (true) {
      if (ku_[i] == 0) {
        ku_[i] = u;
        kv_[i] = v;
        val_[i] = next;
        ++size_;
        inserted = true;
        return next;
      }
      if (ku_[i] == u && kv_[i] == v) {
        inserted = false;
        return val_[i];
      }
      i = (i + 1) & (cap_ - 1);
    }
  }

 private:
  static std::size_t hash(Label u, Label v) {
    std::uint64_t h = static_cast<std::uint64_t>(u) * 0x9E3779B97F4A7C15ull ^
                      (static_cast<std::uint64_t>(v) + 0x632BE59BD9B4E019ull) * 0xC2B2AE3D27D4EB4Full;
    h ^= h >> 31;
    return static_cast<std::size_t>(h);
  }
  void rehash(std::size_t cap) {
    std::vector<Label> ou(cap, 0), ov(cap, 0);
    std::vector<std::int64_t> oval(cap, 0);
    ou.swap(ku_);
    ov.swap(kv_);
    oval.swap(val_);
    cap_ = cap;
    for (std::size_t j = 0; j < ou.size(); ++j) {
      if (ou[j] == 0) continue;
      std::size_t i = hash(ou[j], ov[j]) & (cap_ - 1);
      while (ku_[i] != 0) i = (i + 1) & (cap_ - 1);
      ku_[i] = ou[j];
      kv_[i] = ov[j];
      val_[i] = oval[j];
    }
  }
  std::vector<Label> ku_, kv_;
  std::vector<std::int64_t> val_;
  std::size_t cap_ = 0, size_ = 0;
};

// A sparse histogram: entries (count << 8 | bin), sorted by bin once finished.
using SparseHistogram = std::vector<std::uint64_t>;

inline void histogram_add(SparseHistogram& h, int bin, std::uint64_t count = 1) {
  for (auto& e : h)
    if (static_cast<int>(e & 0xFF) == bin) {
      e += count << 8;
      return;
    }
  h.push_back((count << 8) | static_cast<std::uint64_t>(bin));
}

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

template <typename Aff, typename Label>
void region_graph_slab(const Aff* affs, Shape3 shape, const Label* labels, const std::int64_t context[3],
                       std::int64_t z0, std::int64_t z1, bool histogram, RegionGraphData<Label>& out) {
  const std::int64_t n = shape.size();
  const std::int64_t sz = shape.y * shape.x, sy = shape.x;
  const std::int64_t step[3] = {sz, sy, 1};
  PairIndexMap<Label> index;
  Label last_u = 0, last_v = 0;
  std::int64_t last_e = -1;
  for (std::int64_t z = std::max(z0, context[0]); z < z1; ++z)
    for (std::int64_t y = context[1]; y < shape.y; ++y) {
      std::int64_t v = (z * shape.y + y) * shape.x + context[2];
      for (std::int64_t x = context[2]; x < shape.x; ++x, ++v) {
        const Label a = labels[v];
        if (a == 0) continue;
        const bool has[3] = {z > 0, y > 0, x > 0};
        for (int c = 0; c < 3; ++c) {
          if (!has[c]) continue;
          const Label b = labels[v - step[c]];
          if (b == 0 || b == a) continue;
          const Label lo = a < b ? a : b, hi = a < b ? b : a;
          std::int64_t e;
          if (lo == last_u && hi == last_v) {
            e = last_e;
          } else {
            bool inserted;
            e = index.find_or_insert(lo, hi, static_cast<std::int64_t>(out.u.size()), inserted);
            if (inserted) {
              out.u.push_back(lo);
              out.v.push_back(hi);
              out.count.push_back(0);
              out.sum.push_back(0.0);
              out.min.push_back(1.0f);
              out.max.push_back(0.0f);
              if (histogram) out.hist.emplace_back();
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
          if (histogram) histogram_add(out.hist[e], histogram_bin(raw));
        }
      }
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
    for (++j; j < refs.size() && refs[j].u == refs[i].u && refs[j].v == refs[i].v; ++j) {
      auto& p = parts[refs[j].part];
      const std::int64_t e = refs[j].e;
      count += p.count[e];
      sum += p.sum[e];
      mn = std::min(mn, p.min[e]);
      mx = std::max(mx, p.max[e]);
      if (histogram)
        for (auto entry : p.hist[e]) histogram_add(h, static_cast<int>(entry & 0xFF), entry >> 8);
    }
    if (histogram) {
      std::sort(h.begin(), h.end(), [](std::uint64_t a, std::uint64_t b) { return (a & 0xFF) < (b & 0xFF); });
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
                                    bool histogram, int n_threads) {
  for (int d = 0; d < 3; ++d)
    if (context[d] < 0) throw std::invalid_argument("context must be non-negative");
  if (n_threads < 1) n_threads = 1;
  const std::int64_t zspan = shape.z;
  if (zspan < 2 * n_threads) n_threads = 1;
  std::vector<RegionGraphData<Label>> parts(static_cast<std::size_t>(n_threads));
  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(n_threads));
  for (int t = 0; t < n_threads; ++t) {
    const std::int64_t z0 = zspan * t / n_threads, z1 = zspan * (t + 1) / n_threads;
    auto work = [&, t, z0, z1] {
      try {
        detail::region_graph_slab(affs, shape, labels, context, z0, z1, histogram, parts[static_cast<std::size_t>(t)]);
      } catch (...) {
        errors[static_cast<std::size_t>(t)] = std::current_exception();
      }
    };
    if (t + 1 == n_threads)
      work();
    else
      threads.emplace_back(work);
  }
  for (auto& th : threads) th.join();
  for (auto& err : errors)
    if (err) std::rethrow_exception(err);
  return merge_region_graphs(parts);
}

}  // namespace xpress_fast
