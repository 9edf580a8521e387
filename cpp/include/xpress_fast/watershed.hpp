// Seeded watershed on a 3D nearest-neighbour affinity graph (a seeded maximum spanning forest).
//
// Affinities are (C, Z, Y, X); channel c (c = 0, 1, 2 for z, y, x) at voxel v holds the affinity
// of the edge {v, v - e_c} (the waterz / gunpowder convention). Extra channels are ignored.
//
// Result: every voxel joins the seed that it reaches over the path whose weakest edge is
// strongest (the maximin or "watershed cut" assignment, which a priority flood from the seeds
// also computes). We compute it Kruskal-style, which reads memory in raster order instead of
// following a flood front around the volume (the flood was cache-miss bound, ~5x slower):
// voxel edges are taken from the highest affinity to the lowest and each one joins the
// components of its two voxels (union-find, union by rank, path halving) unless both already
// hold different seeds. A component takes the seed of whichever part had one.
//
// Edge order: affinities quantised to 256 levels (uint8 affinities as they are, float ones as
// floor(a * 255 + 0.5)), high to low; within a level, raster order of the owning voxel v, then
// channel z, y, x. The sort is a counting sort over bands of levels, each band gathered by one
// pass over the affinities, so the edge buffer holds at most max(N / 4, the largest level's
// count) entries of 8 bytes, besides a 4-byte parent, a 1-byte rank and 1 byte of flags per voxel.
//
// Voxels outside the mask stay 0 and edges touching them are ignored; voxels of components
// without a seed stay 0.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <vector>

namespace xpress_fast {

// The flood priority of an affinity: 0..255.
inline int affinity_level(std::uint8_t a) { return a; }
inline int affinity_level(float a) {
  if (!(a > 0.0f)) return 0;
  if (a >= 1.0f) return 255;
  int level = static_cast<int>(a * 255.0f + 0.5f);  // a > 0: truncation is floor
  return level > 255 ? 255 : level;
}

// Affinity as a float in [0, 1]: uint8 k means k / 255 (computed in float, as numpy does for
// `affs.astype(np.float32) / 255`).
inline float affinity_value(std::uint8_t a) { return static_cast<float>(a) / 255.0f; }
inline float affinity_value(float a) { return a; }

struct Shape3 {
  std::int64_t z, y, x;
  std::int64_t size() const { return z * y * x; }
};

namespace detail {

template <typename Index, typename Aff, typename Label>
void seeded_kruskal(const Aff* affs, Shape3 shape, Label* labels, const std::uint8_t* mask) {
  const std::int64_t n = shape.size();
  const std::int64_t sz = shape.y * shape.x, sy = shape.x;
  const std::int64_t step[3] = {sz, sy, 1};
  auto inside = [&](std::int64_t i) { return mask == nullptr || mask[i] != 0; };

  // level histogram of the voxel edges that can join two in-mask voxels
  std::vector<std::int64_t> count(256, 0);
  auto for_edges = [&](auto fn) {
    for (std::int64_t z = 0, v = 0; z < shape.z; ++z)
      for (std::int64_t y = 0; y < shape.y; ++y)
        for (std::int64_t x = 0; x < shape.x; ++x, ++v) {
          if (!inside(v)) continue;
          const bool has[3] = {z > 0, y > 0, x > 0};
          for (int c = 0; c < 3; ++c)
            if (has[c] && inside(v - step[c])) fn(v, c, affinity_level(affs[c * n + v]));
        }
  };

  std::vector<Index> parent(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) parent[i] = static_cast<Index>(i);
  std::vector<std::uint8_t> rank(static_cast<std::size_t>(n), 0);
  auto find = [&](Index x) {
    while (parent[x] != x) {
      parent[x] = parent[parent[x]];
      x = parent[x];
    }
    return x;
  };

  auto join = [&](std::int64_t v, int c) {
    Index a = find(static_cast<Index>(v)), b = find(static_cast<Index>(v - step[c]));
    if (a == b) return;
    const Label la = labels[a], lb = labels[b];
    if (la != 0 && lb != 0 && la != lb) return;  // two different seeds stay apart
    if (rank[a] < rank[b]) std::swap(a, b);
    parent[b] = a;
    if (rank[a] == rank[b]) ++rank[a];
    labels[a] = la != 0 ? la : lb;
  };

  // Pre-pass (Boruvka's first step, raster order, cache friendly): every voxel without a seed
  // joins over its first incident edge in the Kruskal order. Kruskal accepts that edge anyway
  // (the voxel is still alone and unseeded when it comes), and accepting it early changes no
  // later decision: a component glued to such voxels carries no extra seed. On smooth
  // affinities these trees are large, and the edges inside them are dropped below by a local
  // test instead of being visited in affinity order (random access).
  for (std::int64_t z = 0, v = 0; z < shape.z; ++z)
    for (std::int64_t y = 0; y < shape.y; ++y)
      for (std::int64_t x = 0; x < shape.x; ++x, ++v) {
        if (labels[v] != 0 || !inside(v)) continue;
        // candidates in Kruskal order for equal levels: owner v (channels z, y, x), then the
        // owners v + e_x, v + e_y, v + e_z
        const bool own[3] = {z > 0, y > 0, x > 0};
        const bool nb[3] = {z + 1 < shape.z, y + 1 < shape.y, x + 1 < shape.x};
        int best_level = -1;
        std::int64_t best_owner = 0;
        int best_c = 0;
        for (int c = 0; c < 3; ++c) {
          if (!own[c] || !inside(v - step[c])) continue;
          const int level = affinity_level(affs[c * n + v]);
          if (level > best_level) {
            best_level = level;
            best_owner = v;
            best_c = c;
          }
        }
        for (int c = 2; c >= 0; --c) {
          if (!nb[c] || !inside(v + step[c])) continue;
          const int level = affinity_level(affs[c * n + v + step[c]]);
          if (level > best_level) {
            best_level = level;
            best_owner = v + step[c];
            best_c = c;
          }
        }
        if (best_level >= 0) join(best_owner, best_c);
      }
  for (std::int64_t i = 0; i < n; ++i) parent[i] = find(static_cast<Index>(i));  // flatten
  // edges whose voxels already share a component need not be visited (Kruskal would skip
  // them); the test is frozen now (one bit per edge), as later path halving changes parents
  std::vector<std::uint8_t> open_bits(static_cast<std::size_t>(n), 0);
  for_edges([&](std::int64_t v, int c, int level) {
    if (parent[v] != parent[v - step[c]]) {
      open_bits[v] |= static_cast<std::uint8_t>(1 << c);
      ++count[level];
    }
  });
  auto open = [&](std::int64_t v, int c) { return (open_bits[v] >> c) & 1; };

  // bands of consecutive levels, high to low, each holding at most max(n / 4, one level) edges
  const std::int64_t band_limit = std::max<std::int64_t>(n / 4, 1);
  std::vector<std::uint64_t> edges;
  std::vector<std::int64_t> start(257);
  int hi = 255;
  while (hi >= 0) {
    int lo = hi;
    std::int64_t total = count[hi];
    while (lo > 0 && total + count[lo - 1] <= band_limit) total += count[--lo];
    if (total > 0 && lo == hi) {
      // a single level (possibly more than the band limit): its raster order is the pass order
      for_edges([&](std::int64_t v, int c, int level) {
        if (level == hi && open(v, c)) join(v, c);
      });
    } else if (total > 0) {
      // counting sort of the band's edges by level (descending), raster order within a level
      start[hi + 1] = 0;
      for (int l = hi; l >= lo; --l) start[l] = start[l + 1] + count[l];
      // start[l] is the end of level l's range; fill backwards from it
      std::vector<std::int64_t> fill(start.begin(), start.end());
      edges.resize(static_cast<std::size_t>(total));
      // levels hi..lo occupy [0, total): level l at [start[l+1], start[l])
      for (int l = hi; l >= lo; --l) fill[l] = start[l + 1];
      // (fewer edges may be open now than were counted: each level fills a prefix of its range)
      for_edges([&](std::int64_t v, int c, int level) {
        if (level < lo || level > hi || !open(v, c)) return;
        edges[fill[level]++] = (static_cast<std::uint64_t>(v) << 2) | static_cast<std::uint64_t>(c);
      });
      std::size_t used = 0;  // compact the filled prefixes, keeping the level order
      for (int l = hi; l >= lo; --l)
        for (std::int64_t i = start[l + 1]; i < fill[l]; ++i) edges[used++] = edges[i];
      edges.resize(used);
      // edges of one level lie scattered over the volume: fetch ahead to overlap the cache misses
      constexpr std::size_t ahead = 16;
      for (std::size_t i = 0; i < edges.size(); ++i) {
        if (i + ahead < edges.size()) {
          const std::uint64_t f = edges[i + ahead];
          const std::int64_t v = static_cast<std::int64_t>(f >> 2);
          __builtin_prefetch(&parent[v]);
          __builtin_prefetch(&parent[v - step[f & 3]]);
        }
        join(static_cast<std::int64_t>(edges[i] >> 2), static_cast<int>(edges[i] & 3));
      }
    }
    hi = lo - 1;
  }
  std::vector<std::uint64_t>().swap(edges);
  // every voxel takes its component's seed (0: no seed reachable)
  for (std::int64_t i = 0; i < n; ++i) {
    if (!inside(i)) {
      labels[i] = 0;
      continue;
    }
    const Index r = find(static_cast<Index>(i));
    if (r != static_cast<Index>(i)) labels[i] = labels[r];
  }
}

}  // namespace detail

// labels: in = seeds (0 = unlabelled), out = fragments. mask may be null (everything inside).
// affs: pointer to channel 0 of a C-contiguous (C, Z, Y, X) array; channel stride = Z*Y*X.
template <typename Aff, typename Label>
void seeded_watershed(const Aff* affs, Shape3 shape, Label* labels, const std::uint8_t* mask) {
  const std::int64_t n = shape.size();
  if (n == 0) return;
  if (mask) {
    for (std::int64_t i = 0; i < n; ++i)
      if (!mask[i]) labels[i] = 0;
  }
  if (n < (std::int64_t(1) << 32))
    detail::seeded_kruskal<std::uint32_t>(affs, shape, labels, mask);
  else
    detail::seeded_kruskal<std::uint64_t>(affs, shape, labels, mask);
}

// 1 where the mean of the first three affinity channels is > threshold (the "inside" map of the
// distance-transform seeds), else 0.
template <typename Aff>
void inside_map(const Aff* affs, Shape3 shape, float threshold, std::uint8_t* out) {
  const std::int64_t n = shape.size();
  for (std::int64_t i = 0; i < n; ++i) {
    const float m = (affinity_value(affs[i]) + affinity_value(affs[n + i]) + affinity_value(affs[2 * n + i])) / 3.0f;
    out[i] = m > threshold ? 1 : 0;
  }
}

// Sets to 0 every fragment whose mean affinity (mean over its voxels of the mean of the first
// three channels) is below `level`. Returns the number of fragments removed.
template <typename Aff, typename Label>
std::int64_t filter_fragments(const Aff* affs, Shape3 shape, Label* labels, float level) {
  const std::int64_t n = shape.size();
  std::unordered_map<Label, std::pair<double, std::int64_t>> stats;
  Label last = 0;
  std::pair<double, std::int64_t>* cur = nullptr;
  for (std::int64_t i = 0; i < n; ++i) {
    const Label l = labels[i];
    if (l == 0) continue;
    if (cur == nullptr || l != last) {
      cur = &stats[l];
      last = l;
    }
    const double m = (static_cast<double>(affinity_value(affs[i])) + affinity_value(affs[n + i]) +
                      affinity_value(affs[2 * n + i])) / 3.0;
    cur->first += m;
    cur->second += 1;
  }
  std::unordered_map<Label, bool> drop;
  std::int64_t removed = 0;
  for (const auto& kv : stats) {
    const bool d = kv.second.first / static_cast<double>(kv.second.second) < static_cast<double>(level);
    drop[kv.first] = d;
    removed += d;
  }
  if (removed == 0) return 0;
  last = 0;
  bool last_drop = false;
  for (std::int64_t i = 0; i < n; ++i) {
    const Label l = labels[i];
    if (l == 0) continue;
    if (l != last) {
      last = l;
      last_drop = drop[l];
    }
    if (last_drop) labels[i] = 0;
  }
  return removed;
}

// ------------------------------------------------------------------ distance-transform seeds

namespace detail {

// Runs fn(begin, end) over [0, n) split among n_threads threads.
template <typename Fn>
void parallel_for(std::int64_t n, int n_threads, Fn fn) {
  if (n_threads <= 1 || n < 2 * n_threads) {
    fn(std::int64_t(0), n);
    return;
  }
  std::vector<std::thread> threads;
  for (int t = 1; t < n_threads; ++t)
    threads.emplace_back(fn, n * t / n_threads, n * (t + 1) / n_threads);
  fn(std::int64_t(0), n / n_threads);
  for (auto& th : threads) th.join();
}

// 1D squared distance transform (Felzenszwalb & Huttenlocher 2012) of f (inf = no site),
// in place; the lower envelope is built over the finite sites only.
inline void edt_line(float* f, std::int64_t n, std::vector<std::int64_t>& v, std::vector<double>& z,
                     std::vector<float>& copy) {
  const float inf = std::numeric_limits<float>::infinity();
  copy.assign(f, f + n);
  std::int64_t k = -1;
  for (std::int64_t q = 0; q < n; ++q) {
    if (copy[q] == inf) continue;
    const double fq = copy[q] + static_cast<double>(q) * q;
    double s = -std::numeric_limits<double>::infinity();
    while (k >= 0) {
      const std::int64_t p = v[k];
      s = (fq - (copy[p] + static_cast<double>(p) * p)) / (2.0 * (q - p));
      if (s > z[k]) break;
      --k;
    }
    if (k < 0) s = -std::numeric_limits<double>::infinity();
    ++k;
    v[k] = q;
    z[k] = s;
  }
  if (k < 0) return;  // no site on this line: stays inf
  std::int64_t j = 0;
  for (std::int64_t q = 0; q < n; ++q) {
    while (j < k && z[j + 1] <= q) ++j;
    const double d = static_cast<double>(q - v[j]);
    f[q] = static_cast<float>(d * d + copy[v[j]]);
  }
}

// Applies fn(line buffer) to every line along `axis` of a (Z, Y, X) float volume.
template <typename Fn>
void for_lines(float* data, Shape3 shape, int axis, int n_threads, Fn fn) {
  const std::int64_t dims[3] = {shape.z, shape.y, shape.x};
  const std::int64_t strides[3] = {shape.y * shape.x, shape.x, 1};
  const std::int64_t len = dims[axis], stride = strides[axis];
  const int a = axis == 0 ? 1 : 0, b = axis == 2 ? 1 : 2;  // the other two axes, outer a, inner b
  parallel_for(dims[a], n_threads, [&](std::int64_t begin, std::int64_t end) {
    std::vector<float> line(static_cast<std::size_t>(len));
    auto state = fn.make_state(len);
    for (std::int64_t i = begin; i < end; ++i)
      for (std::int64_t j = 0; j < dims[b]; ++j) {
        float* base = data + i * strides[a] + j * strides[b];
        for (std::int64_t q = 0; q < len; ++q) line[q] = base[q * stride];
        fn(line.data(), len, state);
        for (std::int64_t q = 0; q < len; ++q) base[q * stride] = line[q];
      }
  });
}

struct EdtPass {
  struct State {
    std::vector<std::int64_t> v;
    std::vector<double> z;
    std::vector<float> copy;
  };
  State make_state(std::int64_t n) const {
    return {std::vector<std::int64_t>(n + 1), std::vector<double>(n + 1), std::vector<float>()};
  }
  void operator()(float* f, std::int64_t n, State& s) const { edt_line(f, n, s.v, s.z, s.copy); }
};

// Sliding-window maximum over [q - size/2, q - size/2 + size - 1], truncated at the ends
// (for a maximum this equals scipy.ndimage.maximum_filter with mode 'reflect' or 'nearest').
struct MaxPass {
  std::int64_t size;
  struct State {
    std::vector<float> copy;
    std::vector<std::int64_t> dq;
  };
  State make_state(std::int64_t n) const { return {std::vector<float>(), std::vector<std::int64_t>(n)}; }
  void operator()(float* f, std::int64_t n, State& s) const {
    s.copy.assign(f, f + n);
    const std::int64_t left = size / 2, right = size - 1 - left;
    std::int64_t head = 0, tail = 0, next = 0;  // deque of indices with decreasing values
    for (std::int64_t q = 0; q < n; ++q) {
      for (; next <= std::min(q + right, n - 1); ++next) {
        while (tail > head && s.copy[s.dq[tail - 1]] <= s.copy[next]) --tail;
        s.dq[tail++] = next;
      }
      while (s.dq[head] < q - left) ++head;
      f[q] = s.copy[s.dq[head]];
    }
  }
};

}  // namespace detail

// Squared Euclidean distance (voxels) of each voxel to the nearest voxel with inside == 0;
// +inf if there is none (the volume's border is not background, as in scipy).
inline void squared_distance_transform(const std::uint8_t* inside, Shape3 shape, float* out, int n_threads) {
  const std::int64_t n = shape.size();
  const float inf = std::numeric_limits<float>::infinity();
  for (std::int64_t i = 0; i < n; ++i) out[i] = inside[i] ? inf : 0.0f;
  for (int axis = 2; axis >= 0; --axis) detail::for_lines(out, shape, axis, n_threads, detail::EdtPass{});
}

// Seeds: 1 where inside and the squared distance equals the maximum of a size^3 window.
inline void distance_maxima(const std::uint8_t* inside, Shape3 shape, std::int64_t size, std::uint8_t* out,
                            int n_threads) {
  const std::int64_t n = shape.size();
  std::vector<float> dist(static_cast<std::size_t>(n));
  squared_distance_transform(inside, shape, dist.data(), n_threads);
  std::vector<float> filtered(dist);
  for (int axis = 2; axis >= 0; --axis)
    detail::for_lines(filtered.data(), shape, axis, n_threads, detail::MaxPass{size});
  for (std::int64_t i = 0; i < n; ++i) out[i] = (inside[i] && filtered[i] == dist[i]) ? 1 : 0;
}

}  // namespace xpress_fast
