// Distance-transform seeds (the XPRESS baseline's): the squared Euclidean distance transform of
// the "inside" map, the voxels where it equals its maximum over a size^3 window, and their
// connected components numbered as scipy.ndimage.label numbers them.
//
// Layout of the work, for speed (the results depend neither on it nor on the thread count):
//  - pass A, one z-slice at a time: distance along x to the nearest outside voxel of the row (two
//    scans: on a binary map no lower envelope is needed), then the transform along y;
//  - pass B, one y-slab (Z rows of X voxels, in cache) at a time: the transform along z (the
//    final distances, in place);
//  - pass C, the z-slices of each thread's range in order: the maximum filter along y, then along
//    x (16 rows at a time, transposed), into the few slices that the maximum along z needs next
//    (streamed, so that no second volume holds filtered values: fresh memory costs about 1 ms per
//    MB to first touch on some VMs), compared with the distance on the fly: only the maxima's
//    indices are kept (they are few), in raster order, and their components are found by a
//    union-find over that list.
// The transforms along y and z run over 16 columns side by side (contiguous along x, SSE): a
// direct minimum over the rows within sqrt(current best) of each row, which is short because the
// inside map is cut into cells; columns where that reach exceeds 64 rows fall back to the lower
// envelope of Felzenszwalb & Huttenlocher on transposed, contiguous lines. The maximum filter is
// van Herk / Gil-Werman (three scans whatever the size), over whole rows along y, slices along z.
// This replaced a per-line envelope and a deque filter on strided lines, and scipy's label:
// 1.7-2 s -> 0.25 s at 256^3 on 2 threads.
//
// Exactness: squared distances are integers below 2^24 for any volume under 4096 voxels a side,
// so float holds them and every sum of them exactly; the envelope compares its intersections by
// cross-multiplying integers (exact in double), so the results equal scipy's
// distance_transform_edt squared, and the maxima and labels equal scipy's.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#if defined(__SSE2__) || defined(_M_X64)
#include <xmmintrin.h>
#endif

#include "parallel.hpp"
#include "union_find.hpp"
#include "watershed.hpp"

namespace xpress_fast {

namespace detail {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Squared distance along a row of the binary map to its nearest 0 (inf if the row has none): the
// first pass of the transform, where every line's sites are 0 or absent.
inline void edt_row(const std::uint8_t* in, float* out, std::int64_t n) {
  constexpr std::int64_t none = std::int64_t(1) << 40;
  std::int64_t last = -none;  // the nearest 0 at or before q
  for (std::int64_t q = 0; q < n; ++q) {
    if (!in[q]) last = q;
    out[q] = static_cast<float>(q - last);  // exact: < 2^24 when there was a 0, else huge
  }
  std::int64_t next = none;  // the nearest 0 at or after q
  for (std::int64_t q = n - 1; q >= 0; --q) {
    if (!in[q]) next = q;
    const std::int64_t d = std::min(static_cast<std::int64_t>(out[q]), next - q);
    out[q] = d >= (std::int64_t(1) << 30) ? kInf : static_cast<float>(d * d);
  }
}

// 1D squared distance transform (Felzenszwalb & Huttenlocher 2012) of the contiguous line f
// (inf = no site) into d (not aliasing f); the lower envelope is built over the finite sites only.
// The intersection of the parabolas of sites p < q, s = (F_q - F_p) / (2 (q - p)) with
// F_p = f_p + p^2, is kept as its numerator and denominator and compared by cross-multiplying:
// every product is an integer below 2^53, so the comparisons are exact and need no division
// (whose latency dominated the envelope's loop). Scratch: v, num, den of n + 1 entries.
inline void edt_line(const float* f, float* d, std::int64_t n, std::int32_t* v, double* num, double* den) {
  std::int64_t k = -1;
  double Fk = 0.0;  // F of the site v[k]
  for (std::int64_t q = 0; q < n; ++q) {
    if (f[q] == kInf) continue;
    const double Fq = f[q] + static_cast<double>(q) * q;
    double a = -1.0, b = 0.0;  // -inf: a / b with b = 0 compares below everything
    while (k >= 0) {
      a = Fq - Fk;
      b = 2.0 * static_cast<double>(q - v[k]);
      if (a * den[k] > num[k] * b) break;  // s > z[k]
      if (--k >= 0) Fk = f[v[k]] + static_cast<double>(v[k]) * v[k];
      a = -1.0;
      b = 0.0;
    }
    ++k;
    v[k] = static_cast<std::int32_t>(q);
    num[k] = a;
    den[k] = b;
    Fk = Fq;
  }
  if (k < 0) {  // no site on this line
    std::fill(d, d + n, kInf);
    return;
  }
  std::int64_t j = 0;
  for (std::int64_t q = 0; q < n; ++q) {
    while (j < k && num[j + 1] <= static_cast<double>(q) * den[j + 1]) ++j;  // z[j + 1] <= q
    const std::int64_t dq = q - v[j];
    d[q] = static_cast<float>(dq * dq) + f[v[j]];  // both integers < 2^24: exact
  }
}

// Where the window's prefix part lies, for a window ending at hi: the prefix maximum g[hi], or
// past the end of the line the part of hi's block inside the line (g[n - 1]) if the last voxel
// is in hi's block, or nothing (-1) if hi's block starts after the line: then the window's first
// voxel's suffix maximum alone covers it (left truncation needs no care: a window starting before
// 0 always starts in block 0).
inline std::int64_t window_prefix(std::int64_t hi, std::int64_t n, std::int64_t left, std::int64_t size) {
  if (hi < n) return hi;
  return (hi + left) / size == (n - 1 + left) / size ? n - 1 : -1;
}

// Maximum over the window [q - size/2, q - size/2 + size - 1] truncated to [0, n) (for a maximum
// this equals scipy.ndimage.maximum_filter with mode 'reflect' or 'nearest'), by van Herk /
// Gil-Werman: with blocks of `size` aligned so that every whole window is one block or the end of
// one block and the start of the next, the window maximum is max(suffix max of its first voxel's
// block, prefix max of its last voxel's block); three branch-light scans, whatever the size.
// Works on "voxels" that are rows of w contiguous floats (w = 1: a plain line), row p at in + p * in_step,
// so the strided axes run as elementwise maxima over contiguous rows. g, h: scratch of n * w.
inline void max_rows(const float* in, std::int64_t in_step, float* out, std::int64_t out_step, std::int64_t n,
                     std::int64_t w, std::int64_t size, float* g, float* h) {
  const std::int64_t left = size / 2, right = size - 1 - left;
  if (size == 1 || n == 1) {
    for (std::int64_t p = 0; p < n; ++p) std::copy(in + p * in_step, in + p * in_step + w, out + p * out_step);
    return;
  }
  // block b holds the p with (p + left) / size == b; phase = (p + left) % size, counted (short
  // rows would pay a division each)
  std::int64_t phase = left % size;
  for (std::int64_t p = 0; p < n; ++p) {
    const float* a = in + p * in_step;
    float* gp = g + p * w;
    if (p == 0 || phase == 0) {
      std::copy(a, a + w, gp);
    } else {
      const float* prev = gp - w;
      for (std::int64_t x = 0; x < w; ++x) gp[x] = std::max(prev[x], a[x]);
    }
    if (++phase == size) phase = 0;
  }
  phase = (n - 1 + left) % size;
  for (std::int64_t p = n - 1; p >= 0; --p) {
    const float* a = in + p * in_step;
    float* hp = h + p * w;
    if (p == n - 1 || phase == size - 1) {
      std::copy(a, a + w, hp);
    } else {
      const float* next = hp + w;
      for (std::int64_t x = 0; x < w; ++x) hp[x] = std::max(next[x], a[x]);
    }
    if (--phase < 0) phase = size - 1;
  }
  for (std::int64_t q = 0; q < n; ++q) {
    const float* hl = h + std::max<std::int64_t>(0, q - left) * w;
    float* o = out + q * out_step;
    const std::int64_t hi = window_prefix(q + right, n, left, size);
    if (hi < 0) {
      std::copy(hl, hl + w, o);
      continue;
    }
    const float* gh = g + hi * w;
    for (std::int64_t x = 0; x < w; ++x) o[x] = std::max(hl[x], gh[x]);
  }
}

// dst (cols x rows, row-major, row pitch dst_step) = transpose of src (rows x cols, row pitch
// src_step), by 4 x 4 tiles in SSE registers inside 16 x 16 tiles, so that both sides stay in
// cache lines (a plain strided copy cost a fifth of the transform).
inline void transpose(const float* src, std::int64_t src_step, float* dst, std::int64_t dst_step, std::int64_t rows,
                      std::int64_t cols) {
  constexpr std::int64_t T = 16;
  for (std::int64_t r0 = 0; r0 < rows; r0 += T)
    for (std::int64_t c0 = 0; c0 < cols; c0 += T) {
      const std::int64_t r1 = std::min(rows, r0 + T), c1 = std::min(cols, c0 + T);
      std::int64_t r = r0;
#if defined(__SSE2__) || defined(_M_X64)
      for (; r + 4 <= r1; r += 4) {
        std::int64_t c = c0;
        for (; c + 4 <= c1; c += 4) {
          const float* s = src + r * src_step + c;
          __m128 a = _mm_loadu_ps(s), b = _mm_loadu_ps(s + src_step), e = _mm_loadu_ps(s + 2 * src_step),
                 f = _mm_loadu_ps(s + 3 * src_step);
          _MM_TRANSPOSE4_PS(a, b, e, f);
          float* d = dst + c * dst_step + r;
          _mm_storeu_ps(d, a);
          _mm_storeu_ps(d + dst_step, b);
          _mm_storeu_ps(d + 2 * dst_step, e);
          _mm_storeu_ps(d + 3 * dst_step, f);
        }
        for (; c < c1; ++c)
          for (std::int64_t i = r; i < r + 4; ++i) dst[c * dst_step + i] = src[i * src_step + c];
      }
#endif
      for (; r < r1; ++r)
        for (std::int64_t c = c0; c < c1; ++c) dst[c * dst_step + r] = src[r * src_step + c];
    }
}

// A buffer that is written before it is read: no value-initialisation (64 MB for the volumes).
template <typename T>
std::unique_ptr<T[]> uninitialized(std::int64_t n) {
  return std::unique_ptr<T[]>(new T[static_cast<std::size_t>(std::max<std::int64_t>(n, 1))]);
}

// The direct minimum (below) looks at most this many rows either side; a chunk of columns that
// needs more goes to the lower envelope, whose cost does not grow with the distance. Measured on
// 2 cores: the transform of the real 250^3 volume's inside map (larger cells than the synthetic
// ones) took 0.31-0.37 s with 32, 0.11-0.20 s with 64, no faster with more; 16 and 8 were slower
// (the envelope's transposes and divisions cost more than the rows they spare).
constexpr std::int64_t kDirectReach = 64;
constexpr std::int64_t kLanes = 16;

// Per-thread scratch of the column transform (n rows).
struct ColumnScratch {
  std::unique_ptr<float[]> cols, line;
  std::unique_ptr<std::int32_t[]> v;
  std::unique_ptr<double[]> num, den;
  explicit ColumnScratch(std::int64_t n)
      : cols(uninitialized<float>(n * kLanes)), line(uninitialized<float>(n)), v(uninitialized<std::int32_t>(n + 1)),
        num(uninitialized<double>(n + 1)), den(uninitialized<double>(n + 1)) {}
};

// out row q = min over rows p of f row p + (q - p)^2, for kLanes columns side by side (rows at
// f + p * f_pitch): at each q only the p with (q - p)^2 < the current best of some lane can lower
// a lane, so the search stops after about sqrt(best) rows (the result, typically small: the
// inside map is cut into cells), and the inner loops run over the 16 lanes (vectorised).
// Returns false, leaving out partly written, if some row needs more than kDirectReach rows.
// Exact: all values are integers and the sums stay below 2^24 (volumes under 4096 a side).
inline bool direct_columns(const float* f, std::int64_t f_pitch, float* out, std::int64_t out_pitch, std::int64_t n) {
#if defined(__SSE2__) || defined(_M_X64)
  static_assert(kLanes == 16, "four SSE registers");
  for (std::int64_t q = 0; q < n; ++q) {
    const float* fq = f + q * f_pitch;
    __m128 b0 = _mm_loadu_ps(fq), b1 = _mm_loadu_ps(fq + 4), b2 = _mm_loadu_ps(fq + 8), b3 = _mm_loadu_ps(fq + 12);
    // any lane whose best exceeds k^2 may still be lowered by the rows at distance k
    auto open = [&](float kk) {
      const __m128 m = _mm_max_ps(_mm_max_ps(b0, b1), _mm_max_ps(b2, b3));
      return _mm_movemask_ps(_mm_cmpgt_ps(m, _mm_set1_ps(kk))) != 0;
    };
    std::int64_t k = 1;
    for (; open(static_cast<float>(k * k)); ++k) {
      if (k > kDirectReach) return false;
      const __m128 kk = _mm_set1_ps(static_cast<float>(k * k));
      const bool below = q >= k, above = q + k < n;
      if (!below && !above) break;  // every row seen (inf stays inf: those columns have no site)
      if (below) {
        const float* a = fq - k * f_pitch;
        b0 = _mm_min_ps(b0, _mm_add_ps(_mm_loadu_ps(a), kk));
        b1 = _mm_min_ps(b1, _mm_add_ps(_mm_loadu_ps(a + 4), kk));
        b2 = _mm_min_ps(b2, _mm_add_ps(_mm_loadu_ps(a + 8), kk));
        b3 = _mm_min_ps(b3, _mm_add_ps(_mm_loadu_ps(a + 12), kk));
      }
      if (above) {
        const float* a = fq + k * f_pitch;
        b0 = _mm_min_ps(b0, _mm_add_ps(_mm_loadu_ps(a), kk));
        b1 = _mm_min_ps(b1, _mm_add_ps(_mm_loadu_ps(a + 4), kk));
        b2 = _mm_min_ps(b2, _mm_add_ps(_mm_loadu_ps(a + 8), kk));
        b3 = _mm_min_ps(b3, _mm_add_ps(_mm_loadu_ps(a + 12), kk));
      }
    }
    float* o = out + q * out_pitch;
    _mm_storeu_ps(o, b0);
    _mm_storeu_ps(o + 4, b1);
    _mm_storeu_ps(o + 8, b2);
    _mm_storeu_ps(o + 12, b3);
  }
  return true;
#else
  for (std::int64_t q = 0; q < n; ++q) {
    float best[kLanes];
    const float* fq = f + q * f_pitch;
    for (std::int64_t x = 0; x < kLanes; ++x) best[x] = fq[x];
    auto open = [&](float kk) {
      for (std::int64_t x = 0; x < kLanes; ++x)
        if (best[x] > kk) return true;
      return false;
    };
    std::int64_t k = 1;
    for (; open(static_cast<float>(k * k)); ++k) {
      if (k > kDirectReach) return false;
      const float kk = static_cast<float>(k * k);
      const bool below = q >= k, above = q + k < n;
      if (!below && !above) break;
      if (below)
        for (std::int64_t x = 0; x < kLanes; ++x) best[x] = std::min(best[x], fq[x - k * f_pitch] + kk);
      if (above)
        for (std::int64_t x = 0; x < kLanes; ++x) best[x] = std::min(best[x], fq[x + k * f_pitch] + kk);
    }
    for (std::int64_t x = 0; x < kLanes; ++x) out[q * out_pitch + x] = best[x];
  }
  return true;
#endif
}

// The squared distance transform along the rows of a block of n rows of w columns: out row q =
// min over p of f row p + (q - p)^2 (inf where a column has no finite value). Chunks of kLanes
// columns go to direct_columns; those far from any site (or with none), and the last chunk if
// narrower, are transposed into contiguous lines for the lower envelope. out must not alias f.
inline void edt_columns(const float* f, std::int64_t f_pitch, float* out, std::int64_t out_pitch, std::int64_t n,
                        std::int64_t w, ColumnScratch& s) {
  for (std::int64_t x0 = 0; x0 < w; x0 += kLanes) {
    const std::int64_t lanes = std::min(kLanes, w - x0);
    if (lanes == kLanes && direct_columns(f + x0, f_pitch, out + x0, out_pitch, n)) continue;
    transpose(f + x0, f_pitch, s.cols.get(), n, n, lanes);  // lanes lines of n
    for (std::int64_t x = 0; x < lanes; ++x) {
      float* c = s.cols.get() + x * n;
      edt_line(c, s.line.get(), n, s.v.get(), s.num.get(), s.den.get());
      std::copy(s.line.get(), s.line.get() + n, c);
    }
    transpose(s.cols.get(), n, out + x0, out_pitch, lanes, n);
  }
}

// Pass A: x then y, one z-slice at a time.
inline void edt_xy(const std::uint8_t* inside, Shape3 s, float* dist, int n_threads) {
  const std::int64_t Y = s.y, X = s.x, slice = Y * X;
  parallel_for(s.z, n_threads, [&](std::int64_t z0, std::int64_t z1) {
    auto rows = uninitialized<float>(slice);
    ColumnScratch scratch(Y);
    for (std::int64_t z = z0; z < z1; ++z) {
      const std::uint8_t* in = inside + z * slice;
      if (Y == 1) {
        edt_row(in, dist + z * slice, X);
        continue;
      }
      for (std::int64_t y = 0; y < Y; ++y) edt_row(in + y * X, rows.get() + y * X, X);
      edt_columns(rows.get(), X, dist + z * slice, X, Y, X, scratch);
    }
  });
}

// Pass B: the transform along z, dist in place (the final distances); one y-slab (Z rows of X)
// at a time, so that it stays in cache.
inline void edt_z(float* dist, Shape3 s, int n_threads) {
  const std::int64_t Z = s.z, X = s.x, slice = s.y * s.x;
  if (Z == 1) return;
  parallel_for(s.y, n_threads, [&](std::int64_t y0, std::int64_t y1) {
    auto slab = uninitialized<float>(Z * X);
    ColumnScratch scratch(Z);
    for (std::int64_t y = y0; y < y1; ++y) {
      float* base = dist + y * X;
      edt_columns(base, slice, slab.get(), X, Z, X, scratch);
      for (std::int64_t z = 0; z < Z; ++z) std::copy(slab.get() + z * X, slab.get() + (z + 1) * X, base + z * slice);
    }
  });
}

// The maximum filter of one z-slice along y, then along x (per-thread scratch). Along x, kLanes
// rows at a time are transposed so that max_rows runs over them side by side (vectorised): a
// scalar scan along each row took about half of pass C.
class SliceMax {
 public:
  SliceMax(Shape3 s, std::int64_t size)
      : Y_(s.y), X_(s.x), size_(size), ymax_(uninitialized<float>(s.y * s.x)),
        g_(uninitialized<float>(s.y * s.x)), h_(uninitialized<float>(s.y * s.x)),
        band_(uninitialized<float>(kLanes * s.x)), band_max_(uninitialized<float>(kLanes * s.x)) {}
  void operator()(const float* in, float* out) {
    max_rows(in, X_, ymax_.get(), X_, Y_, X_, size_, g_.get(), h_.get());
    for (std::int64_t y0 = 0; y0 < Y_; y0 += kLanes) {
      const std::int64_t lanes = std::min(kLanes, Y_ - y0);
      transpose(ymax_.get() + y0 * X_, X_, band_.get(), lanes, lanes, X_);  // X rows of lanes
      max_rows(band_.get(), lanes, band_max_.get(), lanes, X_, lanes, size_, g_.get(), h_.get());
      transpose(band_max_.get(), lanes, out + y0 * X_, X_, X_, lanes);
    }
  }

 private:
  std::int64_t Y_, X_, size_;
  std::unique_ptr<float[]> ymax_, g_, h_, band_, band_max_;
};

// The maximum along z over the window [q - size/2, q - size/2 + size - 1] truncated to [0, Z) of
// the slices yx(p) (filter(p, out) writes slice p), for the output slices q in [z0, z1): calls
// emit(q, a, b) in increasing q, the window maximum being a, or the elementwise max of a and b
// where b is not null. The same van Herk / Gil-Werman blocks as max_rows (so the same values),
// streamed: slices [z0 - left, z1 + right) are filtered once each, in order, into the block being
// filled (`cur`), whose prefix maximum is kept (`g`); a complete block is turned into its suffix
// maxima in place and kept (`h`) while the next one fills. A window is one block's suffix (from h)
// or that and the next block's prefix (from g). So 2 size + 1 slices live at a time, not a volume
// filtered along z; a thread's range recomputes only the size - 1 slices its neighbours also need.
template <typename Filter, typename Emit>
void max_z_streamed(Shape3 s, std::int64_t size, std::int64_t z0, std::int64_t z1, Filter filter, Emit emit) {
  const std::int64_t Z = s.z, slice = s.y * s.x, left = size / 2, right = size - 1 - left;
  const std::int64_t a = std::max<std::int64_t>(0, z0 - left), e = std::min(Z, z1 + right);
  // slice p's slot in its block's buffer: blocks start at b * size - left, cut at a (the first
  // one) and e (the last), so at most min(size, e - a) slots (size may far exceed Z)
  const std::int64_t slots = std::min(size, e - a);
  auto block = [&](std::int64_t p) { return (p + left) / size; };
  auto slot = [&](std::int64_t p) { return p - std::max(a, block(p) * size - left); };
  auto cur = uninitialized<float>(slots * slice), h = uninitialized<float>(slots * slice);
  auto g = uninitialized<float>(slice);
  std::int64_t q = z0;  // the next output slice
  for (std::int64_t p = a; p < e; ++p) {
    const std::int64_t k = slot(p);
    float* c = cur.get() + k * slice;
    filter(p, c);
    if (k == 0) std::copy(c, c + slice, g.get());
    else for (std::int64_t i = 0; i < slice; ++i) g[i] = std::max(g[i], c[i]);
    const bool last = p == Z - 1;
    const bool complete = last || (p + left) % size == size - 1;
    // the windows that end at p (all those left at the volume's end), in order: those that
    // start in the previous block first...
    const std::int64_t q_end = last ? z1 : std::min(z1, p - right + 1);
    for (; q < q_end && block(std::max<std::int64_t>(0, q - left)) < block(p); ++q)
      emit(q, h.get() + slot(std::max<std::int64_t>(0, q - left)) * slice, g.get());
    if (!complete) continue;
    for (std::int64_t j = k - 1; j >= 0; --j) {  // suffix maxima of the block, in place
      float* cj = cur.get() + j * slice;
      const float* next = cj + slice;
      for (std::int64_t i = 0; i < slice; ++i) cj[i] = std::max(cj[i], next[i]);
    }
    std::swap(cur, h);
    // ...then those within this block (a whole block, or its part before the volume's end)
    for (; q < q_end; ++q) emit(q, h.get() + slot(std::max<std::int64_t>(0, q - left)) * slice, nullptr);
  }
}

// Appends o + i for the i < n where the window maximum (the max of a and b, or a where b is null)
// equals the distance d and the voxel is inside: flags for 64 voxels at a time (vectorised), then
// only the 8-voxel words that hold a flag are looked at (a branch per voxel took a fifth of pass C).
inline void append_maxima(const float* a, const float* b, const float* d, const std::uint8_t* in, std::int64_t n,
                          std::int64_t o, std::vector<std::int64_t>& found) {
  constexpr std::int64_t B = 64;
  std::uint8_t hit[B] = {};
  for (std::int64_t i0 = 0; i0 < n; i0 += B) {
    const std::int64_t m = std::min(B, n - i0);
    const float *ai = a + i0, *di = d + i0;
    const std::uint8_t* ii = in + i0;
    if (b) {
      const float* bi = b + i0;
      for (std::int64_t i = 0; i < m; ++i) hit[i] = (std::max(ai[i], bi[i]) == di[i]) & (ii[i] != 0);
    } else {
      for (std::int64_t i = 0; i < m; ++i) hit[i] = (ai[i] == di[i]) & (ii[i] != 0);
    }
    for (std::int64_t w = 0; w < m; w += 8) {
      std::uint64_t word;
      std::memcpy(&word, hit + w, 8);
      if (!word) continue;
      for (std::int64_t i = w; i < std::min(m, w + 8); ++i)
        if (hit[i]) found.push_back(o + i0 + i);
    }
  }
}

// Pass C: the size^3 maximum filter of dist (y and x per slice, then z streamed), compared with
// dist on the fly; returns the indices of the inside voxels where they are equal, in raster order.
inline std::vector<std::int64_t> maxima_compare(const std::uint8_t* inside, Shape3 s, const float* dist,
                                                std::int64_t size, int n_threads) {
  const std::int64_t slice = s.y * s.x;
  std::mutex mutex;
  std::vector<std::pair<std::int64_t, std::vector<std::int64_t>>> parts;  // (first z, indices)
  parallel_for(s.z, n_threads, [&](std::int64_t z0, std::int64_t z1) {
    SliceMax yx(s, size);
    std::vector<std::int64_t> found;
    auto filter = [&](std::int64_t p, float* out) { yx(dist + p * slice, out); };
    auto emit = [&](std::int64_t q, const float* m, const float* m2) {
      const std::int64_t o = q * slice;
      append_maxima(m, m2, dist + o, inside + o, slice, o, found);
    };
    max_z_streamed(s, size, z0, z1, filter, emit);
    std::lock_guard<std::mutex> lock(mutex);
    parts.emplace_back(z0, std::move(found));
  });
  std::sort(parts.begin(), parts.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::int64_t> out;
  std::size_t total = 0;
  for (const auto& p : parts) total += p.second.size();
  out.reserve(total);
  for (const auto& p : parts) out.insert(out.end(), p.second.begin(), p.second.end());
  return out;
}

}  // namespace detail

// Squared Euclidean distance (voxels) of each voxel to the nearest voxel with inside == 0;
// +inf if there is none (the volume's border is not background, as in scipy).
inline void squared_distance_transform(const std::uint8_t* inside, Shape3 shape, float* out, int n_threads) {
  if (shape.size() == 0) return;
  detail::edt_xy(inside, shape, out, n_threads);
  detail::edt_z(out, shape, n_threads);
}

// Indices (raster order) of the inside voxels whose squared distance equals the maximum of a
// size^3 window around them.
inline std::vector<std::int64_t> distance_maxima_indices(const std::uint8_t* inside, Shape3 shape, std::int64_t size,
                                                         int n_threads) {
  if (shape.size() == 0) return {};
  auto dist = detail::uninitialized<float>(shape.size());
  detail::edt_xy(inside, shape, dist.get(), n_threads);
  detail::edt_z(dist.get(), shape, n_threads);
  return detail::maxima_compare(inside, shape, dist.get(), size, n_threads);
}

// Seeds: 1 where inside and the squared distance equals the maximum of a size^3 window.
inline void distance_maxima(const std::uint8_t* inside, Shape3 shape, std::int64_t size, std::uint8_t* out,
                            int n_threads) {
  std::fill(out, out + shape.size(), std::uint8_t(0));
  for (std::int64_t i : distance_maxima_indices(inside, shape, size, n_threads)) out[i] = 1;
}

// Connected components (6-connectivity) of the voxels listed in `indices` (raster order, no
// repeats) in a volume of `shape`, numbered 1, 2, ... in the raster order of each component's
// first voxel, as scipy.ndimage.label numbers them. Returns one label per listed voxel.
// A union-find over the list alone: a voxel's earlier neighbours (-x, -y, -z) are found by three
// cursors that only move forward, since the neighbour indices grow with the voxel index.
inline std::vector<std::int64_t> label_sparse(const std::vector<std::int64_t>& indices, Shape3 shape) {
  const std::int64_t m = static_cast<std::int64_t>(indices.size());
  const std::int64_t X = shape.x, slice = shape.y * shape.x;
  DisjointSets<std::int64_t> sets(m);
  auto unite = [&](std::int64_t a, std::int64_t b) {  // the smaller root (earlier voxel) wins
    a = sets.find(a);
    b = sets.find(b);
    if (a < b) sets.link(a, b);
    else if (b < a) sets.link(b, a);
  };
  std::int64_t cy = 0, cz = 0;
  for (std::int64_t k = 0; k < m; ++k) {
    const std::int64_t i = indices[k];
    if (i % X != 0 && k > 0 && indices[k - 1] == i - 1) unite(k, k - 1);
    if ((i / X) % shape.y != 0) {
      while (indices[cy] < i - X) ++cy;  // stops at k at the latest
      if (indices[cy] == i - X) unite(k, cy);
    }
    if (i >= slice) {
      while (indices[cz] < i - slice) ++cz;
      if (indices[cz] == i - slice) unite(k, cz);
    }
  }
  std::vector<std::int64_t> label(static_cast<std::size_t>(m));
  std::int64_t count = 0;
  for (std::int64_t k = 0; k < m; ++k) {
    const std::int64_t r = sets.find(k);
    label[k] = r == k ? ++count : label[r];  // r <= k: already numbered
  }
  return label;
}

// The automatic seeds as points: the voxels of distance_maxima (raster order) and the id of each,
// 1, 2, ... as scipy.ndimage.label numbers their components. The distance maps are freed on
// return, before the caller allocates the labels volume (the two need not coexist).
struct SeedPoints {
  std::vector<std::int64_t> indices, ids;
  std::int64_t count = 0;  // number of seeds (components)
};
inline SeedPoints distance_seed_points(const std::uint8_t* inside, Shape3 shape, std::int64_t size, int n_threads) {
  SeedPoints p;
  p.indices = distance_maxima_indices(inside, shape, size, n_threads);
  p.ids = label_sparse(p.indices, shape);
  for (const std::int64_t id : p.ids) p.count = std::max(p.count, id);
  return p;
}

// Writes the seeds' ids, plus id_offset, into `out` (which must hold zeros elsewhere).
inline void write_seeds(const SeedPoints& p, std::uint64_t id_offset, std::uint64_t* out) {
  for (std::size_t k = 0; k < p.indices.size(); ++k)
    out[p.indices[k]] = id_offset + static_cast<std::uint64_t>(p.ids[k]);
}

}  // namespace xpress_fast
