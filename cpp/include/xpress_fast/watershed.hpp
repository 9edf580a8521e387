// Seeded watershed on a 3D nearest-neighbour affinity graph (priority flood).
//
// Affinities are (C, Z, Y, X); channel c (c = 0, 1, 2 for z, y, x) at voxel v holds the affinity
// of the edge {v, v - e_c} (the waterz / gunpowder convention). Extra channels are ignored.
//
// Algorithm: a priority flood on *edges*, high affinity first. Every seed voxel (label != 0)
// offers its edges to unlabelled neighbours; the queue always hands out the offered edge with the
// highest affinity, and the target voxel takes the label of the voxel that offered it if it has
// no label yet (label on pop, so a voxel always joins the neighbour behind its strongest
// reachable edge, not the first one that happened to see it). The newly labelled voxel then
// offers its own edges. This is the maximin ("watershed cut") assignment: every voxel is joined
// to the seed that it reaches over the path whose weakest edge is strongest.
//
// The queue is a 256-level bucket queue (O(1) per operation, O(N) overall): priorities are
// affinities quantised to 1/255 (uint8 affinities are used as they are; float affinities are
// rounded, floor(a * 255 + 0.5)). Within a level, edges leave in the order they were offered
// (FIFO), which makes the result deterministic and easy to reproduce in a reference.
//
// Voxels outside the mask stay 0 and are never flooded through; voxels that no seed reaches stay 0.
// Each queue entry is one uint64: the target voxel index shifted left by 3, plus the direction
// (0..5) in which the offering voxel lies, so the queue costs 8 bytes per pending edge.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <unordered_map>
#include <vector>

namespace xpress_fast {

// The flood priority of an affinity: 0..255.
inline int affinity_level(std::uint8_t a) { return a; }
inline int affinity_level(float a) {
  if (!(a > 0.0f)) return 0;
  if (a >= 1.0f) return 255;
  int level = static_cast<int>(std::floor(a * 255.0f + 0.5f));
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

// labels: in = seeds (0 = unlabelled), out = fragments. mask may be null (everything inside).
// affs: pointer to channel 0 of a C-contiguous (C, Z, Y, X) array; channel stride = Z*Y*X.
template <typename Aff, typename Label>
void seeded_watershed(const Aff* affs, Shape3 shape, Label* labels, const std::uint8_t* mask) {
  const std::int64_t n = shape.size();
  if (n == 0) return;
  if (n > (std::int64_t(1) << 60)) throw std::invalid_argument("volume too large for the watershed queue");
  const std::int64_t sz = shape.y * shape.x, sy = shape.x;
  // direction d: 0 -z, 1 +z, 2 -y, 3 +y, 4 -x, 5 +x (where the neighbour lies)
  const std::int64_t step[6] = {-sz, sz, -sy, sy, -1, 1};

  if (mask) {
    for (std::int64_t i = 0; i < n; ++i)
      if (!mask[i]) labels[i] = 0;
  }

  std::vector<std::vector<std::uint64_t>> buckets(256);
  std::vector<std::size_t> head(256, 0);
  int top = -1;  // highest possibly non-empty level

  auto inside = [&](std::int64_t i) { return mask == nullptr || mask[i] != 0; };

  // offers all edges of labelled voxel v (at z, y, x) to unlabelled neighbours
  auto offer = [&](std::int64_t v, std::int64_t z, std::int64_t y, std::int64_t x) {
    const bool has[6] = {z > 0, z + 1 < shape.z, y > 0, y + 1 < shape.y, x > 0, x + 1 < shape.x};
    for (int d = 0; d < 6; ++d) {
      if (!has[d]) continue;
      const std::int64_t w = v + step[d];
      if (labels[w] != 0 || !inside(w)) continue;
      // edge {v, w}: stored at the voxel with the larger coordinate, channel d / 2
      const std::int64_t owner = (d & 1) ? w : v;
      const int level = affinity_level(affs[static_cast<std::int64_t>(d >> 1) * n + owner]);
      // from w, v lies in the opposite direction d ^ 1
      buckets[level].push_back((static_cast<std::uint64_t>(w) << 3) | static_cast<std::uint64_t>(d ^ 1));
      if (level > top) top = level;
    }
  };

  for (std::int64_t z = 0, v = 0; z < shape.z; ++z)
    for (std::int64_t y = 0; y < shape.y; ++y)
      for (std::int64_t x = 0; x < shape.x; ++x, ++v)
        if (labels[v] != 0) offer(v, z, y, x);

  while (top >= 0) {
    auto& bucket = buckets[top];
    if (head[top] == bucket.size()) {
      bucket.clear();
      bucket.shrink_to_fit();
      head[top] = 0;
      --top;
      continue;
    }
    const int level = top;
    const std::uint64_t entry = bucket[head[level]++];
    const std::int64_t w = static_cast<std::int64_t>(entry >> 3);
    if (labels[w] != 0) continue;
    labels[w] = labels[w + step[entry & 7]];
    const std::int64_t z = w / sz, y = (w / sy) % shape.y, x = w % sy;
    offer(w, z, y, x);  // may raise `top`
  }
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
