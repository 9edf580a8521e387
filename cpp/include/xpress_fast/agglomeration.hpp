// Iterative region merging on a region adjacency graph, with waterz's semantics, in one run for
// all thresholds.
//
// waterz (IterativeRegionMerging.hpp) keeps one priority-queue entry per edge keyed by the
// edge's score when it was last computed. It repeatedly takes the entry with the lowest key and
// stops as soon as that key is >= the threshold. A taken entry of a deleted edge is dropped; one
// of a *stale* edge (its statistics changed since it was scored) is re-scored and put back; any
// other edge is merged. When regions a and b merge, an edge of b to a neighbour n that a also
// touches is folded into a's edge to n: the edge with the lower key survives, keeps that key,
// takes the other's statistics and becomes stale (so a score that went down surfaces late, and
// one that went up is corrected before it merges anything).
//
// We run the same procedure, with two changes that do not alter the result when no two keys are
// equal: ties are broken by edge index (waterz: by std::priority_queue internals), and the
// bookkeeping is near-linear — each region keeps a hash map neighbour -> edge, and a merge walks
// the map of the region with fewer neighbours (union by size), so no incident list is scanned.
//
// One run serves every threshold: for a threshold t, waterz stops at the first taken entry whose
// key is >= t. We record, with each merge, `level` = the largest key taken so far (merges and
// re-scorings and dropped entries alike); the segmentation at t is the result of exactly the
// merges with level < t, a prefix of the history since `level` never decreases.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <queue>
#include <stdexcept>
#include <unordered_map>
#include <utility>
#include <vector>

#include "merge_functions.hpp"
#include "union_find.hpp"

namespace xpress_fast {

struct MergeHistory {
  std::vector<std::int64_t> u, v;  // representatives (node indices) of the two regions merged
  std::vector<double> score;       // the key the merging edge was taken with
  std::vector<double> level;       // the largest key taken up to and including this merge
};

// edges_u/edges_v: node indices in [0, n_nodes), u != v, each pair at most once.
// Runs until the lowest key is >= stop (all merges of every threshold <= stop).
inline MergeHistory agglomerate_graph(std::int64_t n_nodes, const std::vector<std::int64_t>& edges_u,
                                      const std::vector<std::int64_t>& edges_v, std::vector<EdgeStatistics> stats,
                                      const MergeFunction& f, double stop) {
  const std::size_t m = edges_u.size();
  if (edges_v.size() != m || stats.size() != m) throw std::invalid_argument("edge arrays differ in length");
  std::vector<std::int64_t> eu(edges_u), ev(edges_v);
  // One map per region (std::unordered_map, not the PairMap of pair_map.hpp): a merge erases
  // entries and walks and empties the smaller region's map, which an open-addressing table
  // without deletion cannot do, and a region's map is freed when it is merged away.
  std::vector<std::unordered_map<std::int64_t, std::int64_t>> adj(static_cast<std::size_t>(n_nodes));
  for (std::size_t e = 0; e < m; ++e) {
    const std::int64_t a = eu[e], b = ev[e];
    if (a < 0 || b < 0 || a >= n_nodes || b >= n_nodes) throw std::invalid_argument("edge node index out of range");
    if (a == b) throw std::invalid_argument("edge joins a node to itself");
    if (!adj[a].emplace(b, static_cast<std::int64_t>(e)).second)
      throw std::invalid_argument("duplicate edge in the region graph");
    adj[b].emplace(a, static_cast<std::int64_t>(e));
  }
  if (f.init_with_max && f.needs_histogram()) {
    for (auto& s : stats) {
      if (s.hist.empty()) continue;
      const int top = entry_bin(s.hist.back());  // sorted by bin: the largest is last
      s.hist.assign(1, histogram_entry(1, top));
    }
  }

  struct Entry {
    double key;
    std::int64_t edge;
    bool operator>(const Entry& o) const { return key > o.key || (key == o.key && edge > o.edge); }
  };
  std::vector<double> key(m);
  std::vector<char> stale(m, 0), deleted(m, 0);
  std::vector<Entry> initial(m);
  for (std::size_t e = 0; e < m; ++e) {
    key[e] = edge_score(f, stats[e]);
    initial[e] = {key[e], static_cast<std::int64_t>(e)};
  }
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> queue(std::greater<Entry>(), std::move(initial));

  MergeHistory history;
  double level = -std::numeric_limits<double>::infinity();
  while (!queue.empty()) {
    const Entry top = queue.top();
    if (top.key >= stop) break;
    queue.pop();
    if (top.key > level) level = top.key;
    const std::int64_t e = top.edge;
    if (deleted[e]) continue;
    if (stale[e]) {
      key[e] = edge_score(f, stats[e]);
      stale[e] = 0;
      queue.push({key[e], e});
      continue;
    }
    // merge the regions of e: walk the smaller neighbourhood
    std::int64_t l = eu[e], s = ev[e];
    history.u.push_back(l);
    history.v.push_back(s);
    history.score.push_back(top.key);
    history.level.push_back(level);
    if (adj[l].size() < adj[s].size()) std::swap(l, s);
    deleted[e] = 1;
    adj[l].erase(s);
    adj[s].erase(l);
    for (const auto& kv : adj[s]) {
      const std::int64_t n = kv.first, g = kv.second;
      adj[n].erase(s);
      auto it = adj[l].find(n);
      if (it == adj[l].end()) {
        adj[l].emplace(n, g);
        adj[n].emplace(l, g);
        eu[g] = l;
        ev[g] = n;
        continue;
      }
      // both touch n: keep the edge with the lower key, fold the other into it
      std::int64_t keep = it->second, drop = g;
      if (key[drop] < key[keep] || (key[drop] == key[keep] && drop < keep)) std::swap(keep, drop);
      if (merge_statistics(f, stats[keep], stats[drop])) stale[keep] = 1;
      SparseHistogram().swap(stats[drop].hist);
      deleted[drop] = 1;
      it->second = keep;
      adj[n][l] = keep;
      eu[keep] = l;
      ev[keep] = n;
    }
    std::unordered_map<std::int64_t, std::int64_t>().swap(adj[s]);
    SparseHistogram().swap(stats[e].hist);
  }
  return history;
}

// For the first k merges of a history over n nodes: each node's representative, the smallest
// node index of its region.
inline std::vector<std::int64_t> merge_components(std::int64_t n_nodes, const std::int64_t* u, const std::int64_t* v,
                                                  std::int64_t k) {
  UnionFind<std::int64_t> sets(n_nodes);
  for (std::int64_t i = 0; i < k; ++i) {
    if (u[i] < 0 || v[i] < 0 || u[i] >= n_nodes || v[i] >= n_nodes)
      throw std::invalid_argument("merge node index out of range");
    sets.unite(u[i], v[i]);
  }
  std::vector<std::int64_t> smallest(static_cast<std::size_t>(n_nodes), std::numeric_limits<std::int64_t>::max());
  std::vector<std::int64_t> out(static_cast<std::size_t>(n_nodes));
  for (std::int64_t i = 0; i < n_nodes; ++i) {
    const std::int64_t r = sets.find(i);
    if (i < smallest[r]) smallest[r] = i;
  }
  for (std::int64_t i = 0; i < n_nodes; ++i) out[i] = smallest[sets.find(i)];
  return out;
}

// out[i] = values[j] where keys[j] == in[i] (keys sorted ascending, unique), else in[i].
template <typename Label>
void map_labels(const Label* in, std::int64_t n, const std::uint64_t* keys, const std::uint64_t* values,
                std::int64_t m, std::uint64_t* out) {
  bool have_last = false;
  Label last = 0;
  std::uint64_t last_out = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const Label x = in[i];
    if (!(have_last && x == last)) {
      const std::uint64_t key = static_cast<std::uint64_t>(x);
      const std::uint64_t* p = std::lower_bound(keys, keys + m, key);
      last_out = (p != keys + m && *p == key) ? values[p - keys] : key;
      last = x;
      have_last = true;
    }
    out[i] = last_out;
  }
}

}  // namespace xpress_fast
