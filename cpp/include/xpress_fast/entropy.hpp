// Shannon entropies (bits) and sums of squared counts of a contingency table and its two
// marginals: the six numbers every Rand / VOI variant is built from.
#pragma once

#include <cmath>

namespace xpress_fast {

namespace detail {

// -sum p log2 p over counts c / total, computed as log2(total) - sum c log2 c / total; also
// accumulates sum c^2.
template <typename Counts>
double entropy_bits(const Counts& counts, double total, double& sum_sq) {
  double s = 0.0;
  for (double c : counts)
    if (c > 0) {
      s += c * std::log2(c);
      sum_sq += c * c;
    }
  if (total <= 0) return 0.0;
  const double h = std::log2(total) - s / total;
  return h < 0 ? 0.0 : h;
}

}  // namespace detail

struct ContingencySums {
  double sum_n2 = 0, sum_a2 = 0, sum_b2 = 0;    // squared table entries / truth / test marginals
  double h_joint = 0, h_truth = 0, h_test = 0;  // entropies, bits
};

// From the table entries n_ij, the truth marginals a_i and the test marginals b_j over `total`.
template <typename Joint, typename Truth, typename Test>
ContingencySums contingency_sums(const Joint& nij, const Truth& ai, const Test& bj, double total) {
  ContingencySums out;
  out.h_joint = detail::entropy_bits(nij, total, out.sum_n2);
  out.h_truth = detail::entropy_bits(ai, total, out.sum_a2);
  out.h_test = detail::entropy_bits(bj, total, out.sum_b2);
  return out;
}

}  // namespace xpress_fast
