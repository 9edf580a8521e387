// Seeded watershed on a 3D nearest-neighbour affinity graph (priority flood).
//
// Affinities are (C, Z, Y, X); channel c (c = 0, 1, 2 for z, y, x) at voxel v holds the affinity
// of the edge {v, v - e_c} (the waterz / gunpowder convention). Extra channels are ignored.
//
// Algorithm: a priority flood on *edges*, high affinity first. Every seed voxel (label != 0)
// offers its edges to unlabelled neighbours; the queue always hands out the offered edge with the
// highest affinity, and the target voxel takes the label of the voxel that offered it if it has
// no label yet (label on pop, so a voxel always joins the neighbour behind its strongest
// reachable edge, not the first one that happened to see it). The newly labelled voxel then
// offers its own edges. This is the maximin ("watershed cut") assignment: every voxel is joined
// to the seed that it reaches over the path whose weakest edge is strongest.
//
// The queue is a 256-level bucket queue (O(1) per operation, O(N) overall): priorities are
// affinities quantised to 1/255 (uint8 affinities are used as they are; float affinities are
// rounded, floor(a * 255 + 0.5)). Within a level, edges leave in the order they were offered
// (FIFO), which makes the result deterministic and easy to reproduce in a reference.
//
// Voxels outside the mask stay 0 and are never flooded through; voxels that no seed reaches stay 0.
// Each queue entry is one uint64: the target voxel index shifted left by 3, plus the direction
// (0..5) in which the offering voxel lies, so the queue costs 8 bytes per pending edge.
#pragma once

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

// labels: in = seeds (0 = unlabelled), out = fragments. mask may be null (everything inside).
// affs: pointer to channel 0 of a C-contiguous (C, Z, Y, X) array; channel stride = Z*Y*X.
template <typename Aff, typename Label>
void seeded_watershed(const Aff* affs, Shape3 shape, Label* labels, const std::uint8_t* mask) {
  const std::int64_t n = shape.size();
  if (n == 0) return;
  if (n > (std::int64_t(1) << 60)) throw std::invalid_argument("volume too large for the watershed queue");
  const std::int64_t sz = shape.y * shape.x, sy = shape.x;
  // direction d: 0 -z, 1 +z, 2 -y, 3 +y, 4 -x, 5 +x (where the neighbour lies)
  const std::int64_t step[6] = {-sz, sz, -sy, sy, -1, 1};

  if (mask) {
    for (std::int64_t i = 0; i < n; ++i)
      if (!mask[i]) labels[i] = 0;
  }

  std::vector<std::vector<std::uint64_t>> buckets(256);
  int top = -1;  // highest possibly non-empty level

  auto inside = [&](std::int64_t i) { return mask == nullptr || mask[i] != 0; };

  // offers all edges of labelled voxel v (at z, y, x) to unlabelled neighbours
  auto offer = [&](std::int64_t v, std::int64_t z, std::int64_t y, std::int64_t x) {
    const bool has[6] = {z > 0, z + 1 < shape.z, y > 0, y + 1 < shape.y, x > 0, x + 1 < shape.x};
    for (int d = 0; d < 6; ++d) {
      if (!has[d]) continue;
      const std::int64_t w = v + step[d];
      if (labels[w] != 0 || !inside(w)) continue;
      // edge {v, w}: stored at the voxel with the larger coordinate, channel d / 2
      const std::int64_t owner = (d & 1) ? w : v;
      const int level = affinity_level(affs[static_cast<std::int64_t>(d >> 1) * n + owner]);
      // from w, v lies in the opposite direction d ^ 1
      buckets[level].push_back((static_cast<std::uint64_t>(w) << 3) | static_cast<std::uint64_t>(d ^ 1));
      if (level > top) top = level;
    }
  };

  for (std::int64_t z = 0, v = 0; z < shape.z; ++z)
    for (std::int64_t y = 0; y < shape.y; ++y)
      for (std::int64_t x = 0; x < shape.x; ++x, ++v)
        if (labels[v] != 0) offer(v, z, y, x);

  const double inv_sz = 1.0 / static_cast<double>(sz), inv_sy = 1.0 / static_cast<double>(sy);
  while (top >= 0) {
    auto& bucket = buckets[top];
    if (bucket.empty()) {
      --top;
      continue;
    }
    const std::uint64_t entry = bucket.back();
    bucket.pop_back();
    const std::int64_t w = static_cast<std::int64_t>(entry >> 3);
    if (labels[w] != 0) continue;
    labels[w] = labels[w + step[entry & 7]];
    // coordinates without 64-bit divisions (tens of cycles each): a double multiply, corrected
    std::int64_t z = static_cast<std::int64_t>(static_cast<double>(w) * inv_sz);
    if (z * sz > w) --z; else if ((z + 1) * sz <= w) ++z;
    const std::int64_t r = w - z * sz;
    std::int64_t y = static_cast<std::int64_t>(static_cast<double>(r) * inv_sy);
    if (y * sy > r) --y; else if ((y + 1) * sy <= r) ++y;
    offer(w, z, y, r - y * sy);  // may raise `top`
  }
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
