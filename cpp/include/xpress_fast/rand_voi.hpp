// Rand index and variation of information between two dense label volumes.
//
// One pass builds the contingency table n_ij (truth i, test j) in an open-addressing hash
// table keyed by the label pair; runs of equal pairs along the fastest axis are counted before
// hashing, which makes real segmentations (long runs) cost little more than reading them.
// Each thread fills its own table over a slab; the tables are merged at the end.
// Voxels whose truth label is in `ignore` are not counted (scikit-image's convention).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "xpress_fast/entropy.hpp"
#include "xpress_fast/pair_map.hpp"
#include "xpress_fast/parallel.hpp"

namespace xpress_fast {

struct RandVoiSums {
  std::uint64_t n = 0;  // counted voxels
  ContingencySums sums;
};

template <typename T>
RandVoiSums rand_voi_sums(const T* test, const T* truth, std::int64_t n_voxels, const std::vector<T>& ignore,
                          int n_threads) {
  auto ignored = [&](T label) {
    for (T x : ignore)
      if (x == label) return true;
    return false;
  };
  n_threads = std::max(1, std::min<int>(n_threads, static_cast<int>(n_voxels / detail::kItemsPerThread) + 1));
  std::vector<PairCounter> tables(static_cast<size_t>(n_threads));
  auto count_slab = [&](int t) {
    const std::int64_t begin = n_voxels * t / n_threads, end = n_voxels * (t + 1) / n_threads;
    PairCounter& table = tables[t];
    std::int64_t i = begin;
    while (i < end) {
      const T a = truth[i], b = test[i];
      std::int64_t j = i + 1;
      while (j < end && truth[j] == a && test[j] == b) ++j;
      if (!ignored(a)) table.add(a, b, static_cast<std::uint64_t>(j - i));
      i = j;
    }
  };
  detail::run_threads(n_threads, count_slab);
  for (int t = 1; t < n_threads; ++t)
    tables[t].for_each([&](std::uint64_t a, std::uint64_t b, std::uint64_t c) { tables[0].add(a, b, c); });

  // Marginals: count per truth label and per test label (a pair counter with a fixed second key).
  PairCounter truth_counts, test_counts;
  std::vector<double> nij;
  tables[0].for_each([&](std::uint64_t a, std::uint64_t b, std::uint64_t c) {
    nij.push_back(static_cast<double>(c));
    truth_counts.add(a, 0, c);
    test_counts.add(b, 0, c);
  });
  std::vector<double> ai, bj;
  truth_counts.for_each([&](std::uint64_t, std::uint64_t, std::uint64_t c) { ai.push_back(static_cast<double>(c)); });
  test_counts.for_each([&](std::uint64_t, std::uint64_t, std::uint64_t c) { bj.push_back(static_cast<double>(c)); });

  RandVoiSums out;
  for (double c : nij) out.n += static_cast<std::uint64_t>(c);
  const double total = static_cast<double>(out.n);
  out.sums = contingency_sums(nij, ai, bj, total);
  return out;
}

}  // namespace xpress_fast
