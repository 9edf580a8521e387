// Distance-transform seeds (the XPRESS baseline's): the squared Euclidean distance transform of
// the "inside" map (Felzenszwalb & Huttenlocher's lower envelope, one axis at a time) and the
// voxels where it equals its maximum over a size^3 window.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "parallel.hpp"
#include "watershed.hpp"

namespace xpress_fast {

namespace detail {

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
