// Seeded watershed on a 3D nearest-neighbour affinity graph (a seeded maximum spanning forest).
//
// Affinities are (C, Z, Y, X); channel c (c = 0, 1, 2 for z, y, x) at voxel v holds the affinity
// of the edge {v, v - e_c} (the waterz / gunpowder convention). Extra channels are ignored.
//
// Result: every voxel joins the seed that it reaches over the path whose weakest edge is
// strongest (the maximin or "watershed cut" assignment). Definition, Kruskal-style: voxel edges
// are taken from the highest affinity to the lowest and each one joins the components of its two
// voxels unless both already hold seeds; a component takes the seed of whichever part had one.
// Edge order: affinities quantised to 256 levels (uint8 affinities as they are, float ones as
// floor(a * 255 + 0.5)), high to low; within a level, raster order of the owning voxel v, then
// channel z, y, x. This strict order makes the result unique (ties included).
//
// How we compute it fast. The assignment is the maximum spanning forest of the graph in which
// all seed voxels are one vertex r ("both hold seeds" is "both are already joined to r"; two
// parts of one seed id left apart change no voxel's label). In that graph, by the cut property,
// the strongest edge leaving any component without a seed belongs to the forest; so does any
// edge Kruskal takes locally under the rule below, and the work can be cut into boxes:
//   1. Blocks (in parallel, each block's arrays compact and local): Kruskal over the edges with
//      an end in the block, those leaving it included. A component without a seed whose
//      strongest remaining edge leaves the block becomes "frozen"; two components that are each
//      seeded or frozen are not joined here. Every edge taken is then the strongest edge of the
//      unfrozen, unseeded component it joins, hence a forest edge. Two shortcuts first, each
//      exact because the forest is unique: the edge that Kruskal takes last in a square of four
//      voxel edges is in no forest (the cycle property) and is dropped, and every voxel without
//      a seed is joined along its strongest edge (the cut property). On noisy affinities they
//      leave a fifth of the edges to sort and to find.
//   2. The components the blocks leave get compact ids (a component per ~70 voxels on noisy
//      affinities), and the edges still open between them (~15% of all) are bucketed by level.
//   3. A global Kruskal over those edges, in the same order, on the compact ids: its union-find
//      is small enough to stay in cache, where one over voxel indices would miss on every find.
// The component ids live in the labels array between the steps (the seeds are read first), so
// the memory besides the labels is 8 bytes per open edge (~3.6 bytes per voxel) and per thread
// one block's buffers (~25 bytes per block voxel on noisy affinities, up to ~40 when few edges
// are dropped).
//
// Voxels outside the mask stay 0 and edges touching them are ignored; voxels of components
// without a seed stay 0.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <stdexcept>
#include <unordered_map>
#include <vector>

#include "parallel.hpp"
#include "union_find.hpp"

namespace xpress_fast {

// The flood's priorities: 256 levels, so that a uint8 affinity is its own level.
constexpr int kAffinityLevels = 256;
constexpr int kTopLevel = kAffinityLevels - 1;

// The flood priority of an affinity: 0..kTopLevel.
inline int affinity_level(std::uint8_t a) { return a; }
// floor(a * 255 + 0.5) clamped to [0, 255], NaN as 0, without branches (this runs for every
// edge; checked equal to the branching form for all 2^32 float bit patterns)
inline int affinity_level(float a) {
  float t = a * static_cast<float>(kTopLevel) + 0.5f;
  t = 0.0f < t ? t : 0.0f;  // NaN and negatives: 0
  t = t < static_cast<float>(kTopLevel) ? t : static_cast<float>(kTopLevel);
  return static_cast<int>(t);  // t >= 0: truncation is floor
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

// Marks a component id (in the labels array, between the steps) as holding a seed, so that the
// scan for open edges needs no lookup to skip the edges between two seeded components.
template <typename Label>
constexpr Label seeded_bit() {
  return Label(1) << (8 * sizeof(Label) - 1);
}

// A block's edge codes are (local voxel << 2) | kind: kind 0, 1, 2 the voxel's own z, y, x edge
// inside the block, kLeavingEdge an edge that leaves the block from that voxel.
constexpr std::uint32_t kLeavingEdge = 3;
// The state of a block component: neither seeded nor frozen, holding a seed, or frozen (its
// strongest remaining edge leaves the block, so it waits for the global pass).
constexpr std::uint8_t kFree = 0, kSeeded = 1, kFrozen = 2;

// Kruskal inside one block [z0, z1) x [y0, y1) x [x0, x1), edges leaving it included. Numbers the
// block's components 1, 2, ..., writes each component's seed (0: none) into comp_labels, then
// overwrites each block voxel's label (its seed, read before) with its component's number, plus
// seeded_bit if it holds a seed (0 for masked voxels). Only this block's labels are read or
// written, so blocks may run at once.
template <typename Aff, typename Label, typename Index>
class BlockKruskal {
 public:
  BlockKruskal(const Aff* affs, Shape3 shape, Label* labels, const std::uint8_t* mask)
      : affs_(affs), shape_(shape), n_(shape.size()), labels_(labels), mask_(mask) {}

  void run(std::int64_t z0, std::int64_t z1, std::int64_t y0, std::int64_t y1, std::int64_t x0, std::int64_t x1,
           std::vector<Label>& comp_labels) {
    const std::int64_t bz = z1 - z0, by = y1 - y0, bx = x1 - x0, m = bz * by * bx;
    const std::int64_t sz = shape_.y * shape_.x, sy = shape_.x;
    const std::int64_t lstep[3] = {by * bx, bx, 1};
    auto inside = [&](std::int64_t g) { return mask_ == nullptr || mask_[g] != 0; };

    // 0. one singleton component per voxel (flags: kSeeded or kFree)
    sets_.reset(static_cast<std::uint32_t>(m));
    flags_.resize(static_cast<std::size_t>(m));
    seed_.resize(static_cast<std::size_t>(m));
    for (std::int64_t i = 0; i < m; ++i) seed_[i] = static_cast<std::uint32_t>(i);
    gidx_.resize(static_cast<std::size_t>(m));
    for (std::int64_t z = z0, i = 0; z < z1; ++z)
      for (std::int64_t y = y0; y < y1; ++y)
        for (std::int64_t x = x0, g = z * sz + y * sy + x0; x < x1; ++x, ++g, ++i) {
          flags_[i] = labels_[g] != 0 ? kSeeded : kFree;
          gidx_[i] = static_cast<Index>(g);
        }
    // 1. without a mask (the common case; both steps are optional shortcuts): drop the edges
    //    that cannot be in the forest, and join each voxel along its strongest edge
    if (mask_ == nullptr) {
      quantize_and_drop(z0, z1, y0, y1, x0, x1);
      link_steepest_edges(bz, by, bx);
    }
    // 2. list the other edges with at least one end in the block, owners (the upper voxel) in
    //    raster order and channels z, y, x -- the global Kruskal order within a level. An edge
    //    code is (local voxel << 2) | c for an edge inside the block (to local voxel - lstep[c]),
    //    and (local voxel << 2) | kLeavingEdge for an edge leaving the block from that voxel. Then high to
    //    low, the raster order kept within a level: a counting sort.
    const std::int64_t n_edges = collect(z0, z1, y0, y1, x0, x1);
    std::int64_t start[kAffinityLevels] = {0};
    const std::uint8_t* buckets = buckets_.get();
    const std::uint32_t* codes = codes_.get();
    for (std::int64_t e = 0; e < n_edges; ++e) ++start[buckets[e]];
    std::int64_t total = 0;
    for (int k = 0; k < kAffinityLevels; ++k) {
      const std::int64_t c = start[k];
      start[k] = total;
      total += c;
    }
    sorted_.resize(static_cast<std::size_t>(total));
    std::uint32_t* sorted = sorted_.data();
    for (std::int64_t e = 0; e < n_edges; ++e) sorted[start[buckets[e]]++] = codes[e];

    // 3. Kruskal with seeded and frozen components
    for (std::int64_t e = 0; e < total; ++e) {
      const std::uint32_t code = sorted[e];
      const std::uint32_t a = sets_.find(code >> 2);
      const std::uint32_t c = code & 3u;
      if (c == kLeavingEdge) {  // an edge leaving the block: the strongest edge of this component?
        if (flags_[a] == kFree) flags_[a] = kFrozen;
        continue;
      }
      const std::uint32_t b = sets_.find(static_cast<std::uint32_t>((code >> 2) - lstep[c]));
      if (a == b || (flags_[a] != kFree && flags_[b] != kFree)) continue;
      link(a, b);
    }

    // 4. export: number the components (roots, in local raster order), then each voxel's number
    comp_labels.clear();
    for (std::int64_t i = 0; i < m; ++i) {
      if (!sets_.is_root(static_cast<std::uint32_t>(i)) || !inside(gidx_[i])) continue;
      comp_labels.push_back(flags_[i] == kSeeded ? labels_[gidx_[seed_[i]]] : Label(0));
      seed_[i] = static_cast<std::uint32_t>(comp_labels.size());  // the root's seed is no longer needed
    }
    for (std::int64_t i = 0; i < m; ++i) {
      if (!inside(gidx_[i])) {
        labels_[gidx_[i]] = 0;
        continue;
      }
      const std::uint32_t r = sets_.find(static_cast<std::uint32_t>(i));
      labels_[gidx_[i]] = static_cast<Label>(seed_[r]) | (flags_[r] == kSeeded ? seeded_bit<Label>() : Label(0));
    }
  }

 private:
  static std::int64_t local(std::int64_t z, std::int64_t y, std::int64_t x, std::int64_t z0, std::int64_t y0,
                            std::int64_t x0, std::int64_t by, std::int64_t bx) {
    return ((z - z0) * by + (y - y0)) * bx + (x - x0);
  }
  // Lists the block's edges (see run) that are not dropped into codes_ / buckets_ (kTopLevel - level),
  // owners in raster order and channels z, y, x; returns their number.
  std::int64_t collect(std::int64_t z0, std::int64_t z1, std::int64_t y0, std::int64_t y1, std::int64_t x0,
                       std::int64_t x1) {
    const std::int64_t bz = z1 - z0, by = y1 - y0, bx = x1 - x0;
    // at most three edges per voxel and one per voxel of the faces past its end, plus the slots
    // that collect_unmasked writes past the last kept edge
    const std::int64_t capacity = 3 * bz * by * bx + by * bx + bz * bx + bz * by + 4;
    if (capacity > capacity_) {
      codes_.reset(new std::uint32_t[static_cast<std::size_t>(capacity)]);
      buckets_.reset(new std::uint8_t[static_cast<std::size_t>(capacity)]);
      capacity_ = capacity;
    }
    if (mask_ == nullptr) return collect_unmasked(z0, z1, y0, y1, x0, x1);
    std::int64_t k = 0;
    gather_masked([&](std::uint32_t code, int bucket) {
      codes_[k] = code;
      buckets_[k++] = static_cast<std::uint8_t>(bucket);
    }, z0, z1, y0, y1, x0, x1);
    return k;
  }
  static std::uint8_t level_of(const Aff& a) { return static_cast<std::uint8_t>(affinity_level(a)); }

  // Per block voxel i and channel c, the level of the edge {i, i - e_c} (levels_, channel-major)
  // and whether that edge is the weakest of a square of four voxel edges inside the block (bit c
  // of dropped_). By the cycle property, the last edge of a cycle in the strict Kruskal order is
  // in no maximum spanning forest, and joining all seed voxels into one vertex keeps a cycle a
  // closed walk; so Kruskal over the remaining edges builds the same forest, hence the same
  // labels. On noisy affinities this drops 55% of the block's edges before the sort and the
  // finds, for one vectorised pass over bytes.
  void quantize_and_drop(std::int64_t z0, std::int64_t z1, std::int64_t y0, std::int64_t y1, std::int64_t x0,
                         std::int64_t x1) {
    const std::int64_t bz = z1 - z0, by = y1 - y0, bx = x1 - x0, m = bz * by * bx;
    const std::int64_t sz = shape_.y * shape_.x, sy = shape_.x;
    levels_.resize(static_cast<std::size_t>(3 * m));
    dropped_.assign(static_cast<std::size_t>(m), 0);
    for (int c = 0; c < 3; ++c) {
      const Aff* a = affs_ + c * n_;
      std::uint8_t* out = levels_.data() + c * m;
      for (std::int64_t z = z0, i = 0; z < z1; ++z)
        for (std::int64_t y = y0; y < y1; ++y, i += bx) {
          const Aff* row = a + z * sz + y * sy + x0;
          for (std::int64_t x = 0; x < bx; ++x) out[i + x] = level_of(row[x]);
        }
    }
    // In the square of axes p < q at voxel v, the edges in Kruskal order within a level (owner in
    // raster order, then channel) are: q-edge of v - e_p, p-edge of v - e_q, p-edge of v, q-edge
    // of v. Kruskal takes the one of lowest level last, of those the latest in this order.
    const std::uint8_t *lz = levels_.data(), *ly = lz + m, *lx = ly + m;
    std::uint8_t* drop = dropped_.data();
    const std::int64_t pz = by * bx;
    row_bits_.resize(static_cast<std::size_t>(2 * bx));
    std::uint8_t* left = row_bits_.data();  // the drops of the edges of v - e_x, by x of v
    std::uint8_t* here = left + bx;         // the drops of the edges of v
    for (std::int64_t z = 0; z < bz; ++z)
      for (std::int64_t y = 0; y < by; ++y) {
        const std::int64_t i = z * pz + y * bx;
        std::fill(left, left + 2 * bx, std::uint8_t(0));
        if (z > 0 && y > 0)  // plane (z, y)
          weakest_of_squares(lz + i, ly + i, lz + i - bx, ly + i - pz, here, drop + i - bx, drop + i - pz, 1, 2, bx);
        if (z > 0 && bx > 1)  // plane (z, x)
          weakest_of_squares(lz + i + 1, lx + i + 1, lz + i, lx + i - pz + 1, here + 1, left + 1, drop + i - pz + 1, 1, 4,
                             bx - 1);
        if (y > 0 && bx > 1)  // plane (y, x)
          weakest_of_squares(ly + i + 1, lx + i + 1, ly + i, lx + i - bx + 1, here + 1, left + 1, drop + i - bx + 1, 2, 4,
                             bx - 1);
        std::uint8_t* __restrict d = drop + i;
        for (std::int64_t x = 0; x + 1 < bx; ++x) d[x] = static_cast<std::uint8_t>(d[x] | here[x] | left[x + 1]);
        d[bx - 1] = static_cast<std::uint8_t>(d[bx - 1] | here[bx - 1]);
      }
  }

  // For n squares side by side along x: levels of the p-edge and q-edge of v (p_v, q_v), of the
  // p-edge of v - e_q (p_q) and of the q-edge of v - e_p (q_p); or-s bit_p / bit_q into the drops
  // of v, of v - e_q and of v - e_p for the one edge of each square that Kruskal takes last.
  // Bytes only, so that the loop runs 16 or 32 squares per instruction.
  static void weakest_of_squares(const std::uint8_t* __restrict p_v, const std::uint8_t* __restrict q_v,
                                 const std::uint8_t* __restrict p_q, const std::uint8_t* __restrict q_p,
                                 std::uint8_t* __restrict d_v, std::uint8_t* __restrict d_q,
                                 std::uint8_t* __restrict d_p, std::uint8_t bit_p, std::uint8_t bit_q, std::int64_t n) {
    for (std::int64_t x = 0; x < n; ++x) {
      const std::uint8_t lo = std::min(std::min(p_v[x], q_v[x]), std::min(p_q[x], q_p[x]));
      const bool last = q_v[x] == lo;                      // q-edge of v
      const bool third = !last && p_v[x] == lo;            // p-edge of v
      const bool second = !last && !third && p_q[x] == lo;  // p-edge of v - e_q
      const bool first = !last && !third && !second;       // q-edge of v - e_p
      d_v[x] = static_cast<std::uint8_t>(d_v[x] | (third ? bit_p : 0) | (last ? bit_q : 0));
      d_q[x] = static_cast<std::uint8_t>(d_q[x] | (second ? bit_p : 0));
      d_p[x] = static_cast<std::uint8_t>(d_p[x] | (first ? bit_q : 0));
    }
  }

  // Every voxel without a seed is joined to it along its strongest edge (the first of its six in
  // Kruskal order): by the cut property that edge is in the forest (the voxel alone is one side
  // of a cut; the seeds are one vertex on the other). These edges link each voxel to a neighbour,
  // so they are set as parent pointers at once, without finds, and leave the sort (marked as
  // dropped). Each tree holds at most one seed voxel: a tree of k voxels has k - 1 pointers, one
  // from each voxel but its root, and seed voxels point nowhere. Two voxels that pick the same
  // edge would point at each other: the lower one stays the root. Voxels on the block's faces
  // are left to the Kruskal (their strongest edge may leave the block).
  void link_steepest_edges(std::int64_t bz, std::int64_t by, std::int64_t bx) {
    const std::int64_t m = bz * by * bx, pz = by * bx;
    if (bz < 3 || by < 3 || bx < 3) return;
    const std::uint8_t *lz = levels_.data(), *ly = lz + m, *lx = ly + m;
    // 0..5: the own z, y, x edge (to v - e), the x, y, z edge of v + e; 6: none
    steepest_.assign(static_cast<std::size_t>(m), 6);
    std::uint8_t* dir = steepest_.data();
    for (std::int64_t z = 1; z + 1 < bz; ++z)
      for (std::int64_t y = 1; y + 1 < by; ++y) {
        const std::int64_t i = z * pz + y * bx;
        strongest_of_six(lz + i, ly + i, lx + i, lx + i + 1, ly + i + bx, lz + i + pz, flags_.data() + i, dir + i, bx);
      }
    // row by row, without branches (the directions follow no pattern): each voxel's own edges
    // that it or the voxel before it along that axis picked leave the sort; and each voxel
    // points along its pick unless the voxel there picked the same edge and i is the lower one
    std::uint8_t* drop = dropped_.data();
    std::uint32_t* parent = sets_.parents();
    for (std::int64_t z = 1; z + 1 < bz; ++z)
      for (std::int64_t y = 1; y + 1 < by; ++y) {
        const std::int64_t i = z * pz + y * bx;
        mark_picked_edges(dir + i, dir + i - 1, dir + i - bx, dir + i - pz, drop + i, bx);
        if (y + 2 == by) mark_picked_edges(dir + i + bx, dir + i + bx - 1, dir + i, dir + i + bx - pz, drop + i + bx, bx);
        if (z + 2 == bz)
          mark_picked_edges(dir + i + pz, dir + i + pz - 1, dir + i + pz - bx, dir + i, drop + i + pz, bx);
        point_along_picks(dir + i, dir + i + 1, dir + i + bx, dir + i + pz, parent + i, static_cast<std::uint32_t>(i),
                          static_cast<std::uint32_t>(bx), static_cast<std::uint32_t>(pz), bx);
      }
  }

  // For n voxels along x: bit c of drop is set where the voxel picked its own c edge or the
  // voxel before it along c picked that edge (from the other end). The row's first voxel and
  // those before it along y and z lie on the face x = 0, which picks nothing.
  static void mark_picked_edges(const std::uint8_t* __restrict dir, const std::uint8_t* __restrict dir_x,
                                const std::uint8_t* __restrict dir_y, const std::uint8_t* __restrict dir_z,
                                std::uint8_t* __restrict drop, std::int64_t n) {
    for (std::int64_t x = 1; x < n; ++x) {
      const std::uint8_t d = dir[x];
      const std::uint8_t own = d == 0 ? 1 : d == 1 ? 2 : d == 2 ? 4 : 0;
      drop[x] = static_cast<std::uint8_t>(drop[x] | own | (dir_x[x] == 3 ? 4 : 0) | (dir_y[x] == 4 ? 2 : 0) |
                                          (dir_z[x] == 5 ? 1 : 0));
    }
  }

  // For n voxels along x, first local index i0: parent = the voxel along the pick (itself for
  // none, or for the lower of two voxels that picked the same edge).
  static void point_along_picks(const std::uint8_t* __restrict dir, const std::uint8_t* __restrict dir_px,
                                const std::uint8_t* __restrict dir_py, const std::uint8_t* __restrict dir_pz,
                                std::uint32_t* __restrict parent, std::uint32_t i0, std::uint32_t sy, std::uint32_t sz,
                                std::int64_t n) {
    for (std::int64_t x = 1; x + 1 < n; ++x) {
      const std::uint32_t d = dir[x], px = dir_px[x], py = dir_py[x], pz = dir_pz[x];  // all read: no branches
      const std::uint32_t i = i0 + static_cast<std::uint32_t>(x);
      // the offset by masks (at most one is all ones), which vectorises where selects did not
      std::uint32_t off = (0u - (d == 0)) & (0u - sz);
      off |= (0u - (d == 1)) & (0u - sy);
      off |= (0u - (d == 2)) & (0u - 1u);
      off |= (0u - ((d == 3) & (px != 2))) & 1u;
      off |= (0u - ((d == 4) & (py != 1))) & sy;
      off |= (0u - ((d == 5) & (pz != 0))) & sz;
      parent[x] = i + off;
    }
  }

  // For n voxels along x (the first and last of the row are faces: not written), the direction
  // of each one's strongest edge, 6 for seeded voxels; ties go to the earliest in Kruskal order:
  // own edges (owner v) z, y, x, then those owned by v + e_x, v + e_y, v + e_z.
  static void strongest_of_six(const std::uint8_t* __restrict a0, const std::uint8_t* __restrict a1,
                               const std::uint8_t* __restrict a2, const std::uint8_t* __restrict a3,
                               const std::uint8_t* __restrict a4, const std::uint8_t* __restrict a5,
                               const std::uint8_t* __restrict flags, std::uint8_t* __restrict dir, std::int64_t n) {
    for (std::int64_t x = 1; x + 1 < n; ++x) {
      const std::uint8_t hi = std::max(std::max(std::max(a0[x], a1[x]), std::max(a2[x], a3[x])), std::max(a4[x], a5[x]));
      std::uint8_t d = a4[x] == hi ? 4 : 5;
      d = a3[x] == hi ? 3 : d;
      d = a2[x] == hi ? 2 : d;
      d = a1[x] == hi ? 1 : d;
      d = a0[x] == hi ? 0 : d;
      dir[x] = flags[x] != 0 ? 6 : d;
    }
  }

  // The common case, row by row: in a row inside the block, the z and y edges of every voxel
  // have the same kind, only the first voxel's x edge may leave. Levels and drops come from
  // quantize_and_drop, except for owners outside the block. Each edge is written to the next
  // slot, which only a kept edge then takes: no branch on the drops, which follow no pattern.
  std::int64_t collect_unmasked(std::int64_t z0, std::int64_t z1, std::int64_t y0, std::int64_t y1, std::int64_t x0,
                                std::int64_t x1) {
    const std::int64_t by = y1 - y0, bx = x1 - x0, m = (z1 - z0) * by * bx;
    const std::int64_t sz = shape_.y * shape_.x, sy = shape_.x;
    const std::int64_t ze = std::min(z1 + 1, shape_.z), ye = std::min(y1 + 1, shape_.y);
    const std::uint8_t *lz = levels_.data(), *ly = lz + m, *lx = ly + m, *drop = dropped_.data();
    std::uint32_t* __restrict codes = codes_.get();
    std::uint8_t* __restrict buckets = buckets_.get();
    std::int64_t k = 0;
    for (std::int64_t z = z0; z < ze; ++z)
      for (std::int64_t y = y0; y < ye; ++y) {
        if (z == z1 && y == y1) continue;
        const std::int64_t g = z * sz + y * sy;
        if (z == z1 || y == y1) {  // owners outside the block: their edge along one axis leaves from below
          const int c = z == z1 ? 0 : 1;
          const std::int64_t i = local(z == z1 ? z - 1 : z, y == y1 ? y - 1 : y, x0, z0, y0, x0, by, bx);
          const Aff* a = affs_ + c * n_ + g;
          for (std::int64_t x = x0; x < x1; ++x, ++k) {
            codes[k] = static_cast<std::uint32_t>((i + x - x0) << 2) | kLeavingEdge;
            buckets[k] = static_cast<std::uint8_t>(kTopLevel - level_of(a[x]));
          }
          continue;
        }
        const std::uint32_t i0 = static_cast<std::uint32_t>(local(z, y, x0, z0, y0, x0, by, bx));
        const int has_z = z > 0, has_y = y > 0;
        const std::uint32_t kz = z == z0 ? kLeavingEdge : 0u, ky = y == y0 ? kLeavingEdge : 1u;
        for (std::int64_t x = x0; x < x1; ++x) {
          const std::uint32_t j = i0 + static_cast<std::uint32_t>(x - x0), i = j << 2;
          const int d = drop[j];
          codes[k] = i | kz;
          buckets[k] = static_cast<std::uint8_t>(kTopLevel - lz[j]);
          k += has_z & ~d & 1;
          codes[k] = i | ky;
          buckets[k] = static_cast<std::uint8_t>(kTopLevel - ly[j]);
          k += has_y & (~d >> 1) & 1;
          codes[k] = i | (x == x0 ? kLeavingEdge : 2u);
          buckets[k] = static_cast<std::uint8_t>(kTopLevel - lx[j]);
          k += (x > 0) & (~d >> 2) & 1;
        }
        if (x1 < shape_.x) {  // the owner after the row's end: its x edge leaves from the row's last voxel
          codes[k] = ((i0 + static_cast<std::uint32_t>(bx - 1)) << 2) | kLeavingEdge;
          buckets[k++] = static_cast<std::uint8_t>(kTopLevel - level_of(affs_[2 * n_ + g + x1]));
        }
      }
    return k;
  }

  // With a mask: voxel by voxel, edges touching a masked voxel left out.
  template <typename Emit>
  void gather_masked(Emit emit, std::int64_t z0, std::int64_t z1, std::int64_t y0, std::int64_t y1,
                     std::int64_t x0, std::int64_t x1) {
    const std::int64_t by = y1 - y0, bx = x1 - x0;
    const std::int64_t sz = shape_.y * shape_.x, sy = shape_.x;
    const std::int64_t gstep[3] = {sz, sy, 1};
    const std::int64_t lstep[3] = {by * bx, bx, 1};
    const std::int64_t ze = std::min(z1 + 1, shape_.z), ye = std::min(y1 + 1, shape_.y),
                       xe = std::min(x1 + 1, shape_.x);
    for (std::int64_t z = z0; z < ze; ++z)
      for (std::int64_t y = y0; y < ye; ++y) {
        const bool out_zy[2] = {z == z1, y == y1};
        if (out_zy[0] && out_zy[1]) continue;
        for (std::int64_t x = x0; x < xe; ++x) {
          const bool out[3] = {out_zy[0], out_zy[1], x == x1};
          const int n_out = out[0] + out[1] + out[2];
          if (n_out > 1) continue;
          const std::int64_t g = z * sz + y * sy + x;
          if (!mask_[g]) continue;
          const std::int64_t coord[3] = {z, y, x}, start[3] = {z0, y0, x0};
          for (int c = 0; c < 3; ++c) {
            if (coord[c] == 0) continue;
            if (n_out == 1 && !out[c]) continue;  // an owner outside links inward along one axis only
            if (!mask_[g - gstep[c]]) continue;
            std::uint32_t code;
            if (n_out == 1) {  // the owner is outside: the edge leaves from the voxel below it
              code = static_cast<std::uint32_t>((local(z, y, x, z0, y0, x0, by, bx) - lstep[c]) << 2) | kLeavingEdge;
            } else if (coord[c] == start[c]) {  // the lower end is outside
              code = static_cast<std::uint32_t>(local(z, y, x, z0, y0, x0, by, bx) << 2) | kLeavingEdge;
            } else {
              code = static_cast<std::uint32_t>(local(z, y, x, z0, y0, x0, by, bx) << 2) | static_cast<std::uint32_t>(c);
            }
            emit(code, kTopLevel - affinity_level(affs_[c * n_ + g]));
          }
        }
      }
  }

  // joins two roots, at most one of them seeded or frozen; the union keeps that one's state
  void link(std::uint32_t a, std::uint32_t b) {
    const std::uint32_t keep = sets_.link_roots(a, b), gone = keep == a ? b : a;
    if (flags_[gone] != kFree) {
      flags_[keep] = flags_[gone];
      seed_[keep] = seed_[gone];
    }
  }

  const Aff* affs_;
  Shape3 shape_;
  std::int64_t n_;
  Label* labels_;
  const std::uint8_t* mask_;
  std::vector<std::uint32_t> sorted_;
  RankedSets<std::uint32_t> sets_;  // the block's components, over local voxel indices
  std::vector<std::uint8_t> flags_;
  std::vector<std::uint32_t> seed_;  // of a seeded root: the local index of its (one) seed voxel
  std::unique_ptr<std::uint32_t[]> codes_;  // collect's list: edge codes
  std::unique_ptr<std::uint8_t[]> buckets_;  // and kTopLevel - level
  std::int64_t capacity_ = 0;
  std::vector<std::uint8_t> levels_, dropped_, row_bits_, steepest_;  // quantize_and_drop's, link_steepest_edges'
  std::vector<Index> gidx_;          // local -> global voxel index
};

// The edges (pairs of component ids) of one level and slab, in the order pushed. Stored in
// fixed chunks rather than one growing vector: 256 levels x slabs of vectors that double would
// leave up to half their memory unused, and first-touched memory is what costs (page faults).
template <typename Index>
class EdgeBucket {
 public:
  void push(Index a, Index b) {
    if (fill_ == kChunk) {
      chunks_.emplace_back(new Index[2 * kChunk]);
      fill_ = 0;
    }
    Index* e = chunks_.back().get() + 2 * fill_++;
    e[0] = a;
    e[1] = b;
  }
  template <typename Fn>
  void for_each(Fn fn) const {
    for (std::size_t k = 0; k < chunks_.size(); ++k) {
      const Index* e = chunks_[k].get();
      const std::size_t m = k + 1 == chunks_.size() ? fill_ : kChunk;
      for (std::size_t i = 0; i < m; ++i) fn(e[2 * i], e[2 * i + 1]);
    }
  }

 private:
  static constexpr std::size_t kChunk = 2048;  // edges: 16 KB for 4-byte ids
  std::vector<std::unique_ptr<Index[]>> chunks_;
  std::size_t fill_ = kChunk;
};

// Kruskal over the components the blocks left (ids 1..n-1; 0 = masked, never in an edge), with
// the same rule: two seeded components are never joined. Small enough to stay in cache.
template <typename Index, typename Label>
class ComponentForest {
 public:
  explicit ComponentForest(std::vector<Label> labels)
      : sets_(static_cast<Index>(labels.size())), labels_(std::move(labels)) {}
  void join(Index a, Index b) {
    a = sets_.find(a);
    b = sets_.find(b);
    if (a == b) return;
    const Label la = labels_[a], lb = labels_[b];
    if (la != 0 && lb != 0) return;  // seeds stay apart
    labels_[sets_.link_roots(a, b)] = la != 0 ? la : lb;
  }
  // every component's final seed (0: none reachable), indexed by component id
  std::vector<Label> seeds() {
    // in place: a non-root's entry is never read again, a root's is written with its own value
    for (std::size_t c = 0; c < labels_.size(); ++c) labels_[c] = labels_[sets_.find(static_cast<Index>(c))];
    return std::move(labels_);
  }

 private:
  RankedSets<Index> sets_;
  std::vector<Label> labels_;
};

template <typename Index, typename Aff, typename Label>
void seeded_kruskal(const Aff* affs, Shape3 shape, Label* labels, const std::uint8_t* mask, int n_threads,
                    Shape3 block) {
  const std::int64_t n = shape.size();
  const std::int64_t sz = shape.y * shape.x, sy = shape.x;
  const std::int64_t step[3] = {sz, sy, 1};

  // 1. blocks whose buffers stay in cache, in parallel
  const std::int64_t bz = std::clamp<std::int64_t>(block.z, 1, shape.z),
                     by = std::clamp<std::int64_t>(block.y, 1, shape.y),
                     bx = std::clamp<std::int64_t>(block.x, 1, shape.x);
  const std::int64_t nby = (shape.y + by - 1) / by, nbx = (shape.x + bx - 1) / bx;
  const std::int64_t n_blocks = (shape.z + bz - 1) / bz * nby * nbx;
  // runs fn(b, z0, z1, y0, y1, x0, x1) for every block b, in parallel; make() gives each thread its state
  auto over_blocks = [&](auto make, auto fn) {
    for_each_task(n_blocks, n_threads, make, [&](auto& state, std::int64_t b) {
      const std::int64_t z0 = b / (nby * nbx) * bz, y0 = (b / nbx) % nby * by, x0 = b % nbx * bx;
      fn(state, b, z0, std::min(z0 + bz, shape.z), y0, std::min(y0 + by, shape.y), x0, std::min(x0 + bx, shape.x));
    });
  };
  // labels: seeds in; block component numbers out (the seeds are kept in block_labels)
  std::vector<std::vector<Label>> block_labels(static_cast<std::size_t>(n_blocks));
  over_blocks([&]() { return BlockKruskal<Aff, Label, Index>(affs, shape, labels, mask); },
              [&](auto& pass, std::int64_t b, std::int64_t z0, std::int64_t z1, std::int64_t y0, std::int64_t y1,
                  std::int64_t x0, std::int64_t x1) { pass.run(z0, z1, y0, y1, x0, x1, block_labels[b]); });

  // 2. global component ids in labels: block b's component k becomes base[b] + k - 1 (the
  //    seeded bit is above any id, so adding the offset keeps it)
  std::vector<Index> base(static_cast<std::size_t>(n_blocks) + 1);
  base[0] = 1;
  for (std::int64_t b = 0; b < n_blocks; ++b) base[b + 1] = base[b] + static_cast<Index>(block_labels[b].size());
  std::vector<Label> comp_labels(static_cast<std::size_t>(base[n_blocks]), Label(0));
  for (std::int64_t b = 0; b < n_blocks; ++b) {
    std::copy(block_labels[b].begin(), block_labels[b].end(), comp_labels.begin() + static_cast<std::ptrdiff_t>(base[b]));
    std::vector<Label>().swap(block_labels[b]);
  }
  over_blocks([] { return 0; }, [&](int, std::int64_t b, std::int64_t z0, std::int64_t z1, std::int64_t y0,
                                    std::int64_t y1, std::int64_t x0, std::int64_t x1) {
    const Label offset = static_cast<Label>(base[b] - 1);
    for (std::int64_t z = z0; z < z1; ++z)
      for (std::int64_t y = y0; y < y1; ++y)
        for (std::int64_t g = z * sz + y * sy + x0, ge = g + (x1 - x0); g < ge; ++g)
          if (labels[g] != 0) labels[g] += offset;
  });

  // 3. the edges still open (between two components, not both seeded), bucketed by level, in
  //    raster order within a level: slabs of z, one bucket set each, read back in slab order.
  //    An edge is dropped when an earlier one of its slab joins the same two components at a
  //    level as high: Kruskal would find them joined, or both seeded, by then. A small cache of
  //    the pairs seen catches most (boundaries repeat the same pair voxel after voxel).
  const Label seeded = seeded_bit<Label>();
  const std::int64_t n_slabs = std::min<std::int64_t>(shape.z, 4 * std::max(n_threads, 1));
  std::vector<std::array<EdgeBucket<Index>, kAffinityLevels>> buckets(static_cast<std::size_t>(n_slabs));
  {
    struct Seen {
      Index lo = 0, hi = 0;
      int level = -1;
    };
    constexpr std::size_t kSeen = std::size_t(1) << 14;
    struct SlabBuffers {  // a thread's, reused across its slabs
      std::vector<Seen> seen;
      std::vector<std::uint32_t> candidates;
    };
    auto make = [&] {
      return SlabBuffers{std::vector<Seen>(kSeen), std::vector<std::uint32_t>(static_cast<std::size_t>(3 * shape.x))};
    };
    for_each_task(n_slabs, n_threads, make, [&](SlabBuffers& buffers, std::int64_t s) {
      std::vector<Seen>& seen = buffers.seen;
      std::vector<std::uint32_t>& candidates = buffers.candidates;
      auto& out = buckets[s];
      std::fill(seen.begin(), seen.end(), Seen{});
      for (std::int64_t z = shape.z * s / n_slabs; z < shape.z * (s + 1) / n_slabs; ++z)
        for (std::int64_t y = 0; y < shape.y; ++y) {
          const std::int64_t r = (z * shape.y + y) * shape.x;
          const Label* row = labels + r;
          // a row's edges between different labels, (x << 2 | c) in raster order, listed
          // without a branch: most edges join equal labels, and a branch on each mispredicts
          std::size_t k = 0;
          const bool has_z = z > 0, has_y = y > 0;
          for (std::int64_t x = 0; x < shape.x; ++x) {
            const Label la = row[x];
            const std::uint32_t code = static_cast<std::uint32_t>(x) << 2;
            candidates[k] = code;
            k += has_z && la != row[x - sz];
            candidates[k] = code | 1u;
            k += has_y && la != row[x - sy];
            candidates[k] = code | 2u;
            k += x > 0 && la != row[x - 1];
          }
          for (std::size_t i = 0; i < k; ++i) {
            const std::int64_t x = candidates[i] >> 2;
            const int c = static_cast<int>(candidates[i] & 3u);
            const Label la = row[x], lb = row[x - step[c]];
            if (la == 0 || lb == 0 || (la & lb & seeded)) continue;
            const Index a = static_cast<Index>(la & ~seeded), b = static_cast<Index>(lb & ~seeded);
            const Index lo = a < b ? a : b, hi = a < b ? b : a;
            const int level = affinity_level(affs[c * n + r + x]);
            Seen& e = seen[(static_cast<std::size_t>(lo) * 0x9E3779B1u + static_cast<std::size_t>(hi)) & (kSeen - 1)];
            if (e.lo == lo && e.hi == hi) {
              if (e.level >= level) continue;
              e.level = level;
            } else {
              e = Seen{lo, hi, level};
            }
            out[level].push(a, b);
          }
        }
    });
  }

  // 4. Kruskal over the components, high level to low, each level's edges in raster order
  ComponentForest<Index, Label> forest(std::move(comp_labels));
  for (int level = kTopLevel; level >= 0; --level)
    for (auto& slab : buckets) {
      slab[level].for_each([&](Index a, Index b) { forest.join(a, b); });
      slab[level] = EdgeBucket<Index>();
    }
  std::vector<std::array<EdgeBucket<Index>, kAffinityLevels>>().swap(buckets);

  // 5. every voxel takes its component's seed (0: masked, or no seed reachable)
  const std::vector<Label> seed_of = forest.seeds();
  parallel_for(n, n_threads, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) labels[i] = seed_of[static_cast<std::size_t>(labels[i] & ~seeded)];
  });
}

}  // namespace detail

// Blocks of 512k voxels: large enough that few edges stay open across their faces (measured
// fastest at 256^3 among 16x32x64 ... 64x128x128), small enough that a block's buffers stay in L3.
constexpr Shape3 default_watershed_block{64, 64, 128};

// labels: in = seeds (0 = unlabelled), out = fragments. mask may be null (everything inside).
// affs: pointer to channel 0 of a C-contiguous (C, Z, Y, X) array; channel stride = Z*Y*X.
// The result does not depend on n_threads or block (the blocks only set the memory access order).
template <typename Aff, typename Label>
void seeded_watershed(const Aff* affs, Shape3 shape, Label* labels, const std::uint8_t* mask, int n_threads = 1,
                      Shape3 block = default_watershed_block) {
  const std::int64_t n = shape.size();
  if (n == 0) return;
  if (mask) {
    for (std::int64_t i = 0; i < n; ++i)
      if (!mask[i]) labels[i] = 0;
  }
  if (n < (std::int64_t(1) << 32))
    detail::seeded_kruskal<std::uint32_t>(affs, shape, labels, mask, n_threads, block);
  else
    detail::seeded_kruskal<std::uint64_t>(affs, shape, labels, mask, n_threads, block);
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

// Sets labels to 0 where the inside map is 0 (mean of the first three channels <= threshold,
// computed as inside_map computes it), as the XPRESS baseline does after its flood (lsd's
// watershed_from_affinities: fragments *= boundary_mask). Without it every boundary voxel joins
// some fragment, and two fragments of one thin axon touch mostly through its myelin sheath,
// where the affinities are low: their median affinity stays low and they never merge.
// Returns the number of voxels cleared.
// `out` may be `labels` (in place) or another volume, which then receives the cleared copy.
template <typename Aff, typename Label>
std::int64_t clear_boundary(const Aff* affs, Shape3 shape, float threshold, const Label* labels, Label* out,
                            int n_threads = 1) {
  const std::int64_t n = shape.size();
  const int parts = std::max(n_threads, 1);
  std::vector<std::int64_t> cleared(static_cast<std::size_t>(parts), 0);
  detail::run_threads(parts, [&](int t) {
    const std::int64_t begin = n * t / parts, end = n * (t + 1) / parts;
    std::int64_t c = 0;
    for (std::int64_t i = begin; i < end; ++i) {
      const float m = (affinity_value(affs[i]) + affinity_value(affs[n + i]) + affinity_value(affs[2 * n + i])) / 3.0f;
      const bool outside = !(m > threshold);
      c += outside && labels[i] != 0;
      out[i] = outside ? Label(0) : labels[i];
    }
    cleared[static_cast<std::size_t>(t)] = c;
  });
  std::int64_t total = 0;
  for (auto c : cleared) total += c;
  return total;
}

// Sets to 0 every fragment whose mean affinity (mean over its voxels of the mean of the first
// three channels) is below `level`. Returns the number of fragments removed.
template <typename Aff, typename Label>
std::int64_t filter_fragments(const Aff* affs, Shape3 shape, Label* labels, float level) {
  const std::int64_t n = shape.size();
  // std::unordered_map: one key per fragment (not a pair), looked up once per run of equal
  // labels, in an optional pass that is not on the watershed's hot path
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

}  // namespace xpress_fast
