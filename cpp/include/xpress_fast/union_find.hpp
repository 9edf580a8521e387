// Disjoint sets over dense ids 0..n-1: union by size, path halving.
//
// Union by size keeps every tree O(log n) deep even before path compression, so merging
// stays near-linear as regions grow (waterz's unbounded chains are what made it superlinear).
#pragma once

#include <cstdint>
#include <numeric>
#include <utility>
#include <vector>

namespace xpress_fast {

template <typename Index = std::int64_t>
class UnionFind {
 public:
  explicit UnionFind(Index n) : parent_(static_cast<size_t>(n)), size_(static_cast<size_t>(n), 1) {
    std::iota(parent_.begin(), parent_.end(), Index(0));
  }

  Index find(Index x) {
    while (parent_[x] != x) {
      parent_[x] = parent_[parent_[x]];  // path halving
      x = parent_[x];
    }
    return x;
  }

  // Joins the sets of a and b; returns the new root (the root of the larger set).
  Index unite(Index a, Index b) {
    a = find(a);
    b = find(b);
    if (a == b) return a;
    if (size_[a] < size_[b]) std::swap(a, b);
    parent_[b] = a;
    size_[a] += size_[b];
    return a;
  }

  Index set_size(Index x) { return size_[find(x)]; }
  Index size() const { return static_cast<Index>(parent_.size()); }

 private:
  std::vector<Index> parent_;
  std::vector<Index> size_;
};

}  // namespace xpress_fast
