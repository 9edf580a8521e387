// Disjoint sets over dense ids 0..n-1: the one union-find of the kernels.
//
// DisjointSets is the forest itself: a parent per id and find() with path halving. How two
// roots are joined is the caller's policy, and the callers need different ones, so link() takes
// the two roots in the order "keep, then hang below it":
//   * UnionFind (below): union by size, for the merge histories and graph components;
//   * RankedSets (below): union by rank in one byte per id, for the watershed's Kruskal passes,
//     whose forests are over every voxel of a block and must stay small;
//   * the caller's own rule: the smaller root (the seeds' labelling numbers components by their
//     first voxel) or the root with the longer constraint list (the mutex watershed).
// Union by size or rank keeps every tree O(log n) deep even before path halving, so merging
// stays near-linear as regions grow (waterz's unbounded chains are what made it superlinear).
#pragma once

#include <cstddef>
#include <cstdint>
#include <numeric>
#include <utility>
#include <vector>

namespace xpress_fast {

template <typename Index = std::int64_t>
class DisjointSets {
 public:
  DisjointSets() = default;
  explicit DisjointSets(Index n) { reset(n); }

  // n singletons (a buffer reused across blocks keeps its capacity).
  void reset(Index n) {
    parent_.resize(static_cast<std::size_t>(n));
    std::iota(parent_.begin(), parent_.end(), Index(0));
  }

  Index find(Index x) {
    while (parent_[x] != x) {
      parent_[x] = parent_[parent_[x]];  // path halving
      x = parent_[x];
    }
    return x;
  }

  bool is_root(Index x) const { return parent_[x] == x; }

  // Hangs root `gone` below root `keep`.
  void link(Index keep, Index gone) { parent_[gone] = keep; }

  // The parent array, for a caller that sets many parent pointers at once (the watershed links
  // every voxel to a neighbour in one vectorised pass).
  Index* parents() { return parent_.data(); }

  Index size() const { return static_cast<Index>(parent_.size()); }

 private:
  std::vector<Index> parent_;
};

// Union by size.
template <typename Index = std::int64_t>
class UnionFind {
 public:
  explicit UnionFind(Index n) : sets_(n), size_(static_cast<std::size_t>(n), 1) {}

  Index find(Index x) { return sets_.find(x); }

  // Joins the sets of a and b; returns the new root (the root of the larger set).
  Index unite(Index a, Index b) {
    a = find(a);
    b = find(b);
    if (a == b) return a;
    if (size_[a] < size_[b]) std::swap(a, b);
    sets_.link(a, b);
    size_[a] += size_[b];
    return a;
  }

  Index set_size(Index x) { return size_[find(x)]; }
  Index size() const { return sets_.size(); }

 private:
  DisjointSets<Index> sets_;
  std::vector<Index> size_;
};

// Union by rank, one byte per id (a rank never exceeds log2 n < 64).
template <typename Index>
class RankedSets {
 public:
  RankedSets() = default;
  explicit RankedSets(Index n) { reset(n); }

  void reset(Index n) {
    sets_.reset(n);
    rank_.assign(static_cast<std::size_t>(n), 0);
  }

  Index find(Index x) { return sets_.find(x); }
  bool is_root(Index x) const { return sets_.is_root(x); }
  Index* parents() { return sets_.parents(); }

  // Joins two distinct roots; returns the one kept (the other now hangs below it).
  Index link_roots(Index a, Index b) {
    if (rank_[a] < rank_[b]) std::swap(a, b);
    sets_.link(a, b);
    if (rank_[a] == rank_[b]) ++rank_[a];
    return a;
  }

 private:
  DisjointSets<Index> sets_;
  std::vector<std::uint8_t> rank_;
};

}  // namespace xpress_fast
