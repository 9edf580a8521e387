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
//      unfrozen, unseeded component it joins, hence a forest edge.
//   2. The same rule on boxes of twice the side, over the edges still open, until a box would
//      hold the whole volume; each level leaves fewer open edges.
//   3. A global Kruskal over what is left, in the same order, counting-sorted in bands.
// Memory besides the labels: a 4-byte parent, a 1-byte rank and 2 bytes of flags per voxel, and
// per thread one block's buffers (~36 bytes per block voxel).
//
// Voxels outside the mask stay 0 and edges touching them are ignored; voxels of components
// without a seed stay 0.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <vector>

#include "parallel.hpp"

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

// sorted = codes ordered by level, high to low; stable (a counting sort), so codes gathered in
// Kruskal's order within a level stay in it.
template <typename Code>
void sort_by_level(const std::vector<Code>& codes, const std::vector<std::uint8_t>& levels, std::vector<Code>& sorted) {
  std::int64_t start[256] = {0};
  for (const std::uint8_t l : levels) ++start[255 - l];
  std::int64_t pos = 0;
  for (int k = 0; k < 256; ++k) {
    const std::int64_t count = start[k];
    start[k] = pos;
    pos += count;
  }
  sorted.resize(codes.size());
  for (std::size_t i = 0; i < codes.size(); ++i) sorted[start[255 - levels[i]]++] = codes[i];
}

// Kruskal inside one block [z0, z1) x [y0, y1) x [x0, x1), edges leaving it included; writes the
// global parent of every in-mask block voxel (its block component's root, a block voxel) and the
// seed of every seeded root into labels. Only this block's voxels are written.
template <typename Aff, typename Label, typename Index>
class BlockKruskal {
 public:
  BlockKruskal(const Aff* affs, Shape3 shape, Label* labels, const std::uint8_t* mask, Index* parent)
      : affs_(affs), shape_(shape), n_(shape.size()), labels_(labels), mask_(mask), parent_(parent) {}

  void run(std::int64_t z0, std::int64_t z1, std::int64_t y0, std::int64_t y1, std::int64_t x0, std::int64_t x1) {
    const std::int64_t bz = z1 - z0, by = y1 - y0, bx = x1 - x0, m = bz * by * bx;
    const std::int64_t sz = shape_.y * shape_.x, sy = shape_.x;
    const std::int64_t gstep[3] = {sz, sy, 1};
    const std::int64_t lstep[3] = {by * bx, bx, 1};
    auto inside = [&](std::int64_t g) { return mask_ == nullptr || mask_[g] != 0; };

    // 1. gather the edges with at least one end in the block, owners (the upper voxel) in raster
    //    order and channels z, y, x -- the global Kruskal order within a level. An edge code is
    //    (local voxel << 2) | c for an edge inside the block (to local voxel - lstep[c]), and
    //    (local voxel << 2) | 3 for an edge leaving the block from that voxel.
    codes_.clear();
    levels_.clear();
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
          if (!inside(g)) continue;
          const std::int64_t coord[3] = {z, y, x}, start[3] = {z0, y0, x0};
          for (int c = 0; c < 3; ++c) {
            if (coord[c] == 0) continue;
            if (n_out == 1 && !out[c]) continue;  // an owner outside links inward along one axis only
            if (!inside(g - gstep[c])) continue;
            std::uint32_t code;
            if (n_out == 1) {  // the owner is outside: the edge leaves from the voxel below it
              code = static_cast<std::uint32_t>((local(z, y, x, z0, y0, x0, by, bx) - lstep[c]) << 2) | 3u;
            } else if (coord[c] == start[c]) {  // the lower end is outside
              code = static_cast<std::uint32_t>(local(z, y, x, z0, y0, x0, by, bx) << 2) | 3u;
            } else {
              code = static_cast<std::uint32_t>(local(z, y, x, z0, y0, x0, by, bx) << 2) | static_cast<std::uint32_t>(c);
            }
            codes_.push_back(code);
            levels_.push_back(static_cast<std::uint8_t>(affinity_level(affs_[c * n_ + g])));
          }
        }
      }
    // 2. high to low, the raster order kept within a level
    sort_by_level(codes_, levels_, sorted_);

    // 3. Kruskal with seeded and frozen components (flags: 1 = holds a seed, 2 = frozen)
    parent_l_.resize(static_cast<std::size_t>(m));
    rank_l_.assign(static_cast<std::size_t>(m), 0);
    flags_.resize(static_cast<std::size_t>(m));
    seed_.resize(static_cast<std::size_t>(m));
    for (std::int64_t i = 0; i < m; ++i) parent_l_[i] = seed_[i] = static_cast<std::uint32_t>(i);
    gidx_.resize(static_cast<std::size_t>(m));
    for (std::int64_t z = z0, i = 0; z < z1; ++z)
      for (std::int64_t y = y0; y < y1; ++y)
        for (std::int64_t x = x0, g = z * sz + y * sy + x0; x < x1; ++x, ++g, ++i) {
          flags_[i] = labels_[g] != 0 ? 1 : 0;
          gidx_[i] = static_cast<Index>(g);
        }
    for (const std::uint32_t code : sorted_) {
      const std::uint32_t a = find(code >> 2);
      const std::uint32_t c = code & 3u;
      if (c == 3) {  // an edge leaving the block: the strongest edge of this component?
        if (flags_[a] == 0) flags_[a] = 2;
        continue;
      }
      const std::uint32_t b = find(static_cast<std::uint32_t>((code >> 2) - lstep[c]));
      if (a == b || (flags_[a] != 0 && flags_[b] != 0)) continue;
      link(a, b);
    }

    // 4. export: global parent of each voxel, the seed of each seeded root
    for (std::int64_t i = 0; i < m; ++i) parent_[gidx_[i]] = gidx_[find(static_cast<std::uint32_t>(i))];
    for (std::int64_t i = 0; i < m; ++i) {
      if (parent_l_[i] != i || flags_[i] != 1) continue;
      Label& root_label = labels_[gidx_[i]];
      if (root_label == 0) root_label = labels_[gidx_[seed_[i]]];
    }
  }

 private:
  static std::int64_t local(std::int64_t z, std::int64_t y, std::int64_t x, std::int64_t z0, std::int64_t y0,
                            std::int64_t x0, std::int64_t by, std::int64_t bx) {
    return ((z - z0) * by + (y - y0)) * bx + (x - x0);
  }
  std::uint32_t find(std::uint32_t x) {
    while (parent_l_[x] != x) {
      parent_l_[x] = parent_l_[parent_l_[x]];
      x = parent_l_[x];
    }
    return x;
  }
  // joins two roots, at most one of them seeded or frozen; the union keeps that one's state
  void link(std::uint32_t a, std::uint32_t b) {
    if (rank_l_[a] < rank_l_[b]) std::swap(a, b);
    parent_l_[b] = a;
    if (rank_l_[a] == rank_l_[b]) ++rank_l_[a];
    if (flags_[b] != 0) {
      flags_[a] = flags_[b];
      seed_[a] = seed_[b];
    }
  }

  const Aff* affs_;
  Shape3 shape_;
  std::int64_t n_;
  Label* labels_;
  const std::uint8_t* mask_;
  Index* parent_;
  std::vector<std::uint32_t> codes_, sorted_, parent_l_;
  std::vector<std::uint8_t> levels_, rank_l_, flags_;
  std::vector<std::uint32_t> seed_;  // of a seeded root: the local index of its (one) seed voxel
  std::vector<Index> gidx_;          // local -> global voxel index
};

// One pass of Kruskal over a box of a coarser level: the vertices are the components left by
// the finer level (all inside the box), the edges are the open ones (open_bits) with an end in the
// box, those leaving it included. Same rules as BlockKruskal, on the global arrays; closes the
// edges it takes or that became internal. Boxes of one level are disjoint, so threads may run
// them at once: every write is to a voxel inside the box, and an open bit of a voxel on a face,
// which a neighbour's pass may read, is only ever cleared (a lost clear leaves an edge open that
// a later pass skips as internal), through relaxed atomic loads and stores.
template <typename Aff, typename Label, typename Index>
class RegionKruskal {
 public:
  RegionKruskal(const Aff* affs, Shape3 shape, Label* labels, Index* parent, std::uint8_t* rank,
                std::uint8_t* open_bits, std::uint8_t* frozen)
      : affs_(affs), shape_(shape), n_(shape.size()), labels_(labels), parent_(parent), rank_(rank),
        open_(open_bits), frozen_(frozen) {}

  void run(std::int64_t z0, std::int64_t z1, std::int64_t y0, std::int64_t y1, std::int64_t x0, std::int64_t x1) {
    const std::int64_t sz = shape_.y * shape_.x, sy = shape_.x;
    const std::int64_t step[3] = {sz, sy, 1};
    // gather (owner raster order, then channel: the Kruskal order within a level); code =
    // (edge id << 2) | kind, edge id = 4 * owner + channel, kind 0: both ends inside, 1: only the
    // owner inside, 2: only the lower end inside
    codes_.clear();
    levels_.clear();
    const std::int64_t ze = std::min(z1 + 1, shape_.z), ye = std::min(y1 + 1, shape_.y),
                       xe = std::min(x1 + 1, shape_.x);
    for (std::int64_t z = z0; z < ze; ++z)
      for (std::int64_t y = y0; y < ye; ++y) {
        if (z == z1 && y == y1) continue;
        for (std::int64_t x = x0, v = z * sz + y * sy + x0; x < xe; ++x, ++v) {
          const std::uint8_t bits = load(v);
          if (bits == 0) continue;
          const bool out[3] = {z == z1, y == y1, x == x1};
          const int n_out = out[0] + out[1] + out[2];
          if (n_out > 1) continue;
          const std::int64_t coord[3] = {z, y, x}, start[3] = {z0, y0, x0};
          for (int c = 0; c < 3; ++c) {
            if (!((bits >> c) & 1)) continue;
            std::uint64_t kind;
            if (n_out == 1) {
              if (!out[c]) continue;
              kind = 2;
            } else {
              kind = coord[c] == start[c] ? 1 : 0;
            }
            codes_.push_back(((static_cast<std::uint64_t>(v) * 4 + static_cast<std::uint64_t>(c)) << 2) | kind);
            levels_.push_back(static_cast<std::uint8_t>(affinity_level(affs_[c * n_ + v])));
          }
        }
      }
    sort_by_level(codes_, levels_, sorted_);

    touched_.clear();
    for (const std::uint64_t code : sorted_) {
      const std::uint64_t kind = code & 3, e = code >> 2;
      const std::int64_t v = static_cast<std::int64_t>(e >> 2);
      const int c = static_cast<int>(e & 3);
      const std::int64_t w = v - step[c];
      if (kind != 0) {  // an edge leaving the box: the strongest edge of this component?
        const Index r = find(static_cast<Index>(kind == 1 ? v : w));
        if (labels_[r] == 0 && !frozen_[r]) {
          frozen_[r] = 1;
          touched_.push_back(r);
        }
        continue;
      }
      Index a = find(static_cast<Index>(v)), b = find(static_cast<Index>(w));
      const Label la = labels_[a], lb = labels_[b];
      if (a == b || (la != 0 && lb != 0)) {  // internal, or between two seeds: closed for good
        clear(v, c);
        continue;
      }
      if ((la != 0 || frozen_[a]) && (lb != 0 || frozen_[b])) continue;  // stays open
      clear(v, c);
      if (rank_[a] < rank_[b]) std::swap(a, b);
      parent_[b] = a;
      if (rank_[a] == rank_[b]) ++rank_[a];
      labels_[a] = la != 0 ? la : lb;
      if (frozen_[b] && !frozen_[a]) {
        frozen_[a] = 1;
        touched_.push_back(a);
      }
    }
    for (const Index r : touched_) frozen_[r] = 0;
  }

 private:
  std::uint8_t load(std::int64_t v) const { return __atomic_load_n(&open_[v], __ATOMIC_RELAXED); }
  void clear(std::int64_t v, int c) {
    __atomic_store_n(&open_[v], static_cast<std::uint8_t>(load(v) & ~(1u << c)), __ATOMIC_RELAXED);
  }
  Index find(Index x) {
    while (parent_[x] != x) {
      parent_[x] = parent_[parent_[x]];
      x = parent_[x];
    }
    return x;
  }

  const Aff* affs_;
  Shape3 shape_;
  std::int64_t n_;
  Label* labels_;
  Index* parent_;
  std::uint8_t *rank_, *open_, *frozen_;
  std::vector<std::uint64_t> codes_, sorted_;
  std::vector<std::uint8_t> levels_;
  std::vector<Index> touched_;
};

template <typename Index, typename Aff, typename Label>
void seeded_kruskal(const Aff* affs, Shape3 shape, Label* labels, const std::uint8_t* mask, int n_threads,
                    Shape3 block) {
  const std::int64_t n = shape.size();
  const std::int64_t sz = shape.y * shape.x, sy = shape.x;
  const std::int64_t step[3] = {sz, sy, 1};
  auto inside = [&](std::int64_t i) { return mask == nullptr || mask[i] != 0; };
  std::vector<Index> parent(static_cast<std::size_t>(n));

  // Runs pass.run(box) over the boxes of side (bz, by, bx) tiling the volume, in parallel.
  auto over_boxes = [&](std::int64_t bz, std::int64_t by, std::int64_t bx, auto make_pass) {
    const std::int64_t nby = (shape.y + by - 1) / by, nbx = (shape.x + bx - 1) / bx;
    const std::int64_t n_boxes = (shape.z + bz - 1) / bz * nby * nbx;
    std::atomic<std::int64_t> next{0};
    run_threads(static_cast<int>(std::min<std::int64_t>(n_threads, n_boxes)), [&](int) {
      auto pass = make_pass();
      for (std::int64_t b = next++; b < n_boxes; b = next++) {
        const std::int64_t z0 = b / (nby * nbx) * bz, y0 = (b / nbx) % nby * by, x0 = b % nbx * bx;
        pass.run(z0, std::min(z0 + bz, shape.z), y0, std::min(y0 + by, shape.y), x0, std::min(x0 + bx, shape.x));
      }
    });
  };

  // 1. blocks whose buffers stay in cache
  std::int64_t bz = std::clamp<std::int64_t>(block.z, 1, shape.z), by = std::clamp<std::int64_t>(block.y, 1, shape.y),
               bx = std::clamp<std::int64_t>(block.x, 1, shape.x);
  over_boxes(bz, by, bx, [&]() { return BlockKruskal<Aff, Label, Index>(affs, shape, labels, mask, parent.data()); });

  // 2. the edges still open: between two block components, not both seeded
  std::vector<std::uint8_t> open_bits(static_cast<std::size_t>(n), 0);
  parallel_for(shape.z, n_threads, [&](std::int64_t zb, std::int64_t ze) {
    for (std::int64_t z = zb; z < ze; ++z)
      for (std::int64_t y = 0, v = z * sz; y < shape.y; ++y)
        for (std::int64_t x = 0; x < shape.x; ++x, ++v) {
          if (!inside(v)) continue;
          const bool has[3] = {z > 0, y > 0, x > 0};
          const Index a = parent[v];
          std::uint8_t bits = 0;
          for (int c = 0; c < 3; ++c) {
            if (!has[c]) continue;
            const std::int64_t w = v - step[c];
            const Index b = parent[w];
            if (a == b || !inside(w) || (labels[a] != 0 && labels[b] != 0)) continue;
            bits |= static_cast<std::uint8_t>(1 << c);
          }
          open_bits[v] = bits;
        }
  });

  // 3. coarser and coarser boxes (each side doubled), the same rules on what is still open,
  //    until a box would hold the whole volume
  std::vector<std::uint8_t> rank(static_cast<std::size_t>(n), 0), frozen(static_cast<std::size_t>(n), 0);
  while (bz < shape.z || by < shape.y || bx < shape.x) {
    bz = std::min(bz * 2, shape.z);
    by = std::min(by * 2, shape.y);
    bx = std::min(bx * 2, shape.x);
    if (bz == shape.z && by == shape.y && bx == shape.x) break;
    over_boxes(bz, by, bx, [&]() {
      return RegionKruskal<Aff, Label, Index>(affs, shape, labels, parent.data(), rank.data(), open_bits.data(),
                                              frozen.data());
    });
  }
  std::vector<std::uint8_t>().swap(frozen);
  std::vector<std::int64_t> count(256, 0);
  for (std::int64_t v = 0; v < n; ++v) {
    const std::uint8_t bits = open_bits[v];
    if (bits == 0) continue;
    for (int c = 0; c < 3; ++c)
      if ((bits >> c) & 1) ++count[affinity_level(affs[c * n + v])];
  }

  // 4. global Kruskal over the open edges, in the same order
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
    if (la != 0 && lb != 0) return;  // seeds stay apart
    if (rank[a] < rank[b]) std::swap(a, b);
    parent[b] = a;
    if (rank[a] == rank[b]) ++rank[a];
    labels[a] = la != 0 ? la : lb;
  };
  // visits the open edges with level in [lo, hi], in raster order
  auto for_open = [&](int lo, int hi, auto fn) {
    for (std::int64_t v = 0; v < n; ++v) {
      const std::uint8_t bits = open_bits[v];
      if (bits == 0) continue;
      for (int c = 0; c < 3; ++c) {
        if (!((bits >> c) & 1)) continue;
        const int level = affinity_level(affs[c * n + v]);
        if (level >= lo && level <= hi) fn(v, c, level);
      }
    }
  };
  // bands of consecutive levels, high to low, each holding at most max(n / 8, one level) edges
  const std::int64_t band_limit = std::max<std::int64_t>(n / 8, 1);
  std::vector<std::uint64_t> edges;
  std::vector<std::int64_t> fill(257);
  int hi = 255;
  while (hi >= 0) {
    int lo = hi;
    std::int64_t total = count[hi];
    while (lo > 0 && total + count[lo - 1] <= band_limit) total += count[--lo];
    if (total > 0 && lo == hi) {
      for_open(lo, hi, [&](std::int64_t v, int c, int) { join(v, c); });  // raster order is the order
    } else if (total > 0) {
      // counting sort of the band's edges by level (descending), raster order within a level
      edges.resize(static_cast<std::size_t>(total));
      std::int64_t pos = 0;
      for (int l = hi; l >= lo; --l) {
        fill[l] = pos;
        pos += count[l];
      }
      for_open(lo, hi, [&](std::int64_t v, int c, int level) {
        edges[fill[level]++] = (static_cast<std::uint64_t>(v) << 2) | static_cast<std::uint64_t>(c);
      });
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
  // 5. every voxel takes its component's seed (0: no seed reachable)
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

}  // namespace xpress_fast
