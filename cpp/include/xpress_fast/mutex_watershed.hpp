// The mutex watershed (Wolf et al., "The Mutex Watershed: Efficient, Parameter-Free Image
// Partitioning", ECCV 2018; TPAMI 2020) over affinities with any offsets.
//
// Every channel c links voxel v to v + offsets[c]; its edge gets the signed weight
// w = affinity - bias[c] (float32). w > 0 is an attractive edge of priority w, w < 0 a repulsive
// ("mutex") edge of priority -w, w == 0 no edge. All edges are taken once, from the highest
// priority down (ties: lower channel first, then lower raster index of v): an attractive edge
// joins its two clusters unless a mutex constraint lies between them; a repulsive edge puts a
// constraint between its two clusters. Constraints follow merges. The result is one partition,
// no threshold: the long-range channels (typically repulsive) cut objects that touch through
// a few strong nearest-neighbour affinities, which a merge tree over nearest neighbours alone
// cannot see.
//
// How it is computed:
// * Edges as 64-bit keys: (~bits(priority)) << 32 | e, where e = c * n + v is also the edge's
//   index into the (C, Z, Y, X) affinity array (so the sign is read back from it, not stored).
//   A positive float's bits order like the float, so ascending keys are descending priority
//   with the tie rule above. 8 bytes per edge; e must fit 32 bits (C * voxels < 2^32).
// * Sorted in place: one American-flag pass on the top 16 bits of the key (~128 buckets per
//   octave of priority), then std::sort inside the buckets, spread over the threads.
// * Clusters: a union-find over voxels (path halving). Constraints: a hash set of root pairs
//   (a < b packed in 64 bits) plus, per root, a list of the roots it has constraints with.
//   A merge walks the shorter list and re-states each constraint for the new root, so the set
//   always holds the pairs of current roots and a check is one lookup. Stale list entries (a
//   partner that merged since) are resolved by find() when walked and deduplicated by the set.
//   Lists live in one pool of (value, next) cells; a root's list dies with it.
// * Labels: 1, 2, ... in raster order of each cluster's first voxel; masked voxels 0.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "parallel.hpp"
#include "union_find.hpp"
#include "watershed.hpp"

namespace xpress_fast {

namespace detail {

// An open-addressing set of non-zero 64-bit keys (linear probing, load <= 1/2). Not the
// PairMap of pair_map.hpp: a constraint is one packed word (two 32-bit roots) and needs no value,
// so a slot is 8 bytes where a PairMap's would be 17 plus a value, and 0 (never a key: the
// larger root is the low word) marks an empty slot. This set is the largest structure of a run
// after the edges.
class KeySet {
 public:
  explicit KeySet(std::size_t expected) {
    std::size_t capacity = 64;
    while (capacity < 2 * expected) capacity *= 2;
    slots_.assign(capacity, 0);
  }
  bool contains(std::uint64_t key) const {
    std::size_t i = slot(key);
    while (slots_[i] != 0) {
      if (slots_[i] == key) return true;
      i = (i + 1) & (slots_.size() - 1);
    }
    return false;
  }
  // True if the key was not there before.
  bool insert(std::uint64_t key) {
    if (2 * (size_ + 1) > slots_.size()) grow();
    std::size_t i = slot(key);
    while (slots_[i] != 0) {
      if (slots_[i] == key) return false;
      i = (i + 1) & (slots_.size() - 1);
    }
    slots_[i] = key;
    ++size_;
    return true;
  }

 private:
  std::size_t slot(std::uint64_t key) const {
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    return static_cast<std::size_t>(key) & (slots_.size() - 1);
  }
  void grow() {
    std::vector<std::uint64_t> old(2 * slots_.size(), 0);
    old.swap(slots_);
    size_ = 0;
    for (std::uint64_t k : old)
      if (k != 0) insert(k);
  }
  std::vector<std::uint64_t> slots_;
  std::size_t size_ = 0;
};

inline std::uint32_t float_bits(float f) {
  std::uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}

// Sorts keys ascending, in place: an American-flag pass on the top 16 bits, then std::sort of
// each bucket, buckets shared among the threads by their total size.
inline void sort_keys(std::vector<std::uint64_t>& keys, int n_threads) {
  constexpr std::size_t kBuckets = 1 << 16;
  std::vector<std::size_t> begin(kBuckets + 1, 0);
  for (std::uint64_t k : keys) ++begin[(k >> 48) + 1];
  for (std::size_t b = 0; b < kBuckets; ++b) begin[b + 1] += begin[b];
  std::vector<std::size_t> next(begin.begin(), begin.end() - 1);
  for (std::size_t b = 0; b < kBuckets; ++b) {
    while (next[b] < begin[b + 1]) {
      std::uint64_t k = keys[next[b]];
      std::size_t d = static_cast<std::size_t>(k >> 48);
      while (d != b) {  // cycle: carry k to its bucket, pick up what was there
        std::swap(k, keys[next[d]++]);
        d = static_cast<std::size_t>(k >> 48);
      }
      keys[next[b]++] = k;
    }
  }
  const std::size_t total = keys.size();
  run_threads(n_threads, [&](int t) {
    // thread t sorts the buckets whose start lies in its share of the keys
    const std::size_t lo = total * static_cast<std::size_t>(t) / static_cast<std::size_t>(n_threads);
    const std::size_t hi = total * static_cast<std::size_t>(t + 1) / static_cast<std::size_t>(n_threads);
    for (std::size_t b = 0; b < kBuckets; ++b) {
      if (begin[b] < lo || begin[b] >= hi || begin[b + 1] - begin[b] < 2) continue;
      std::sort(keys.begin() + static_cast<std::ptrdiff_t>(begin[b]),
                keys.begin() + static_cast<std::ptrdiff_t>(begin[b + 1]));
    }
  });
}

}  // namespace detail

// The edges of one run: an edge's index (channel * voxels + voxel) is the low 32 bits of its
// sort key (exported to Python as _segment.MUTEX_MAX_EDGES).
constexpr std::int64_t kMutexMaxEdges = std::int64_t(1) << 32;

struct MutexChannel {
  std::array<std::int64_t, 3> offset;  // (z, y, x)
  std::array<std::int64_t, 3> stride;  // only voxels whose coordinates are multiples
  float bias;
};

// labels: (Z, Y, X) output, fully written. mask: optional, 0 = excluded.
template <typename Aff, typename Label>
void mutex_watershed(const Aff* affs, Shape3 shape, const std::vector<MutexChannel>& channels,
                     const std::uint8_t* mask, Label* labels, int n_threads = 1) {
  const std::int64_t n = shape.size();
  const std::int64_t n_channels = static_cast<std::int64_t>(channels.size());
  if (n == 0) return;
  if (n_channels * n >= kMutexMaxEdges)
    throw std::invalid_argument("mutex_watershed needs channels * voxels < 2^32");
  n_threads = std::max(n_threads, 1);
  const std::int64_t dims[3] = {shape.z, shape.y, shape.x};

  // 1. every edge as a key, collected per (channel, z-range) by the threads
  std::vector<std::vector<std::uint64_t>> parts(static_cast<std::size_t>(n_channels * n_threads));
  detail::run_threads(n_threads, [&](int t) {
    const std::int64_t z0 = shape.z * t / n_threads, z1 = shape.z * (t + 1) / n_threads;
    for (std::int64_t c = 0; c < n_channels; ++c) {
      const MutexChannel& ch = channels[static_cast<std::size_t>(c)];
      std::int64_t lo[3], hi[3];
      for (int a = 0; a < 3; ++a) {
        lo[a] = std::max<std::int64_t>(0, -ch.offset[a]);
        hi[a] = std::min<std::int64_t>(dims[a], dims[a] - ch.offset[a]);
      }
      auto& out = parts[static_cast<std::size_t>(c * n_threads + t)];
      const std::int64_t step = (ch.offset[0] * shape.y + ch.offset[1]) * shape.x + ch.offset[2];
      const Aff* a = affs + c * n;
      for (std::int64_t z = std::max(lo[0], z0); z < std::min(hi[0], z1); ++z) {
        if (z % ch.stride[0]) continue;
        for (std::int64_t y = lo[1]; y < hi[1]; ++y) {
          if (y % ch.stride[1]) continue;
          const std::int64_t row = (z * shape.y + y) * shape.x;
          for (std::int64_t x = lo[2]; x < hi[2]; x += 1) {
            if (x % ch.stride[2]) continue;
            const std::int64_t v = row + x;
            if (mask && (!mask[v] || !mask[v + step])) continue;
            const float w = affinity_value(a[v]) - ch.bias;
            if (w == 0.0f) continue;
            const float priority = w > 0.0f ? w : -w;
            const std::uint64_t e = static_cast<std::uint64_t>(c * n + v);
            out.push_back((static_cast<std::uint64_t>(~detail::float_bits(priority)) << 32) | e);
          }
        }
      }
    }
  });
  std::size_t total = 0;
  for (auto& p : parts) total += p.size();
  std::vector<std::uint64_t> keys;
  keys.reserve(total);
  for (auto& p : parts) {
    keys.insert(keys.end(), p.begin(), p.end());
    std::vector<std::uint64_t>().swap(p);
  }
  detail::sort_keys(keys, n_threads);

  // 2. the greedy pass
  std::vector<std::int64_t> steps(static_cast<std::size_t>(n_channels));
  for (std::int64_t c = 0; c < n_channels; ++c) {
    const auto& o = channels[static_cast<std::size_t>(c)].offset;
    steps[static_cast<std::size_t>(c)] = (o[0] * shape.y + o[1]) * shape.x + o[2];
  }
  constexpr std::uint32_t kNone = 0xFFFFFFFFu;
  DisjointSets<std::uint32_t> clusters(static_cast<std::uint32_t>(n));  // joined by the rule below
  std::vector<std::uint32_t> head(static_cast<std::size_t>(n), kNone);   // first cell of a root's list
  std::vector<std::uint32_t> length(static_cast<std::size_t>(n), 0);    // entries in that list
  std::vector<std::uint32_t> cell_value, cell_next;                       // the lists' pool
  detail::KeySet mutexes(1024);
  auto find = [&](std::uint32_t x) { return clusters.find(x); };
  auto pair_key = [](std::uint32_t a, std::uint32_t b) {
    return a < b ? (std::uint64_t(a) << 32) | b : (std::uint64_t(b) << 32) | a;
  };
  auto push = [&](std::uint32_t root, std::uint32_t other) {
    if (cell_value.size() >= kNone) throw std::length_error("mutex_watershed: too many constraints");
    cell_value.push_back(other);
    cell_next.push_back(head[root]);
    head[root] = static_cast<std::uint32_t>(cell_value.size() - 1);
    ++length[root];
  };
  auto constrain = [&](std::uint32_t a, std::uint32_t b) {  // a, b: distinct roots
    if (mutexes.insert(pair_key(a, b))) {
      push(a, b);
      push(b, a);
    }
  };
  for (const std::uint64_t key : keys) {
    const std::uint64_t e = key & 0xFFFFFFFFu;
    const std::int64_t c = static_cast<std::int64_t>(e) / n;
    const std::int64_t v = static_cast<std::int64_t>(e) - c * n;
    const std::uint32_t ru = find(static_cast<std::uint32_t>(v));
    const std::uint32_t rv = find(static_cast<std::uint32_t>(v + steps[static_cast<std::size_t>(c)]));
    if (ru == rv) continue;
    const bool attractive = affinity_value(affs[e]) - channels[static_cast<std::size_t>(c)].bias > 0.0f;
    if (!attractive) {
      constrain(ru, rv);
      continue;
    }
    if (mutexes.contains(pair_key(ru, rv))) continue;
    // merge: the root with the shorter constraint list goes under the other
    const std::uint32_t keep = length[ru] >= length[rv] ? ru : rv;
    const std::uint32_t gone = keep == ru ? rv : ru;
    clusters.link(keep, gone);
    for (std::uint32_t cell = head[gone]; cell != kNone; cell = cell_next[cell]) {
      const std::uint32_t other = find(cell_value[cell]);
      if (other != keep) constrain(keep, other);
    }
    head[gone] = kNone;
    length[gone] = 0;
  }
  std::vector<std::uint64_t>().swap(keys);
  std::vector<std::uint32_t>().swap(cell_value);
  std::vector<std::uint32_t>().swap(cell_next);
  std::vector<std::uint32_t>().swap(length);

  // 3. labels in raster order of each cluster's first voxel (head is reused as root -> label)
  std::fill(head.begin(), head.end(), 0u);
  std::uint32_t next_label = 0;
  for (std::int64_t v = 0; v < n; ++v) {
    if (mask && !mask[v]) {
      labels[v] = 0;
      continue;
    }
    const std::uint32_t r = find(static_cast<std::uint32_t>(v));
    if (head[r] == 0) head[r] = ++next_label;
    labels[v] = static_cast<Label>(head[r]);
  }
}

}  // namespace xpress_fast
