// The segment of a fixed set of fragments after each of several prefixes of a merge history,
// in one pass over the history.
//
// A threshold sweep needs, for every threshold, only the segments of the few fragments under
// skeleton nodes. The segmentation at threshold t is the first k_t merges of the history (levels
// never decrease, so thresholds cut prefixes), hence one union-find walked through the merges in
// order, read out at each k_t, gives every threshold's labels for the cost of one -- instead of
// a union-find and a lookup table over all fragments per threshold.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <vector>

#include "xpress_fast/union_find.hpp"

namespace xpress_fast {

// item_fragment of an item whose fragment is not in the history (exported as _segment.NO_FRAGMENT).
constexpr std::int64_t kNoFragment = -1;

// Merges u[i], v[i] (fragment indices in 0..n_fragments-1), applied in order. For each prefix
// length prefix[t] (non-decreasing, at most n_merges) and each item j: if item_fragment[j] >= 0,
// out[t * n_items + j] = fragment_ids[smallest fragment index in its set after prefix[t]
// merges] (a segment carries its smallest fragment's id, as merge_components numbers them);
// if item_fragment[j] == kNoFragment (a fragment outside the history), out = item_id[j] at every prefix.
inline void merge_history_labels(std::int64_t n_fragments, const std::uint64_t* fragment_ids, const std::int64_t* u,
                                 const std::int64_t* v, std::int64_t n_merges, const std::int64_t* prefix,
                                 std::int64_t n_prefixes, const std::int64_t* item_fragment,
                                 const std::uint64_t* item_id, std::int64_t n_items, std::uint64_t* out) {
  for (std::int64_t t = 0; t < n_prefixes; ++t)
    if (prefix[t] < 0 || prefix[t] > n_merges || (t > 0 && prefix[t] < prefix[t - 1]))
      throw std::invalid_argument("prefix lengths must be non-decreasing, in 0..n_merges");
  for (std::int64_t j = 0; j < n_items; ++j)
    if (item_fragment[j] < kNoFragment || item_fragment[j] >= n_fragments)
      throw std::invalid_argument("item_fragment outside -1..n_fragments-1");
  for (std::int64_t i = 0; i < n_merges; ++i)
    if (u[i] < 0 || v[i] < 0 || u[i] >= n_fragments || v[i] >= n_fragments)
      throw std::invalid_argument("merge fragment index out of range");

  UnionFind<std::int64_t> sets(n_fragments);
  std::vector<std::int64_t> smallest(static_cast<size_t>(n_fragments));  // valid at roots
  for (std::int64_t f = 0; f < n_fragments; ++f) smallest[f] = f;
  std::int64_t done = 0;
  for (std::int64_t t = 0; t < n_prefixes; ++t) {
    for (; done < prefix[t]; ++done) {
      const std::int64_t a = sets.find(u[done]), b = sets.find(v[done]);
      const std::int64_t low = smallest[a] < smallest[b] ? smallest[a] : smallest[b];
      smallest[sets.unite(a, b)] = low;
    }
    std::uint64_t* row = out + t * n_items;
    for (std::int64_t j = 0; j < n_items; ++j) {
      const std::int64_t f = item_fragment[j];
      row[j] = f == kNoFragment ? item_id[j] : fragment_ids[smallest[sets.find(f)]];
    }
  }
}

}  // namespace xpress_fast
