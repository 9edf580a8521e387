// Maps from a pair of uint64 keys to a value: an open-addressing hash table (linear probing,
// power-of-two capacity, load <= 3/4). The one pair hash map of the kernels: contingency tables
// and (segment, skeleton) incidences count with it (PairCounter), the region graph numbers its
// edges with it (pair of fragments -> edge index), in O(n) where a sort would cost O(n log n)
// and std::unordered_map a node per entry.
//
// Not here, on purpose: the agglomeration's per-region neighbour maps (std::unordered_map: they
// are erased from and moved between regions as regions merge, which open addressing without
// tombstones cannot do), the mutex watershed's constraint set (a set of one packed 64-bit word
// per pair, 8 bytes a slot, its largest structure after the edges) and the watershed's cache of
// recent pairs (lossy by design).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace xpress_fast {

template <typename Value>
class PairMap {
 public:
  // `expected` distinct keys fit without rehashing.
  explicit PairMap(size_t expected = 0) {
    size_t capacity = 16;
    while (3 * capacity < 4 * expected) capacity *= 2;
    rehash(capacity);
  }

  // The value stored under (a, b), created as Value() if absent; `inserted` says which. The
  // reference stays valid until the next insertion.
  Value& value(std::uint64_t a, std::uint64_t b, bool& inserted) {
    if (4 * (size_ + 1) > 3 * capacity()) rehash(2 * capacity());
    const size_t i = probe(a, b);
    inserted = !used_[i];
    if (inserted) {
      used_[i] = 1;
      keys_[2 * i] = a;
      keys_[2 * i + 1] = b;
      values_[i] = Value();
      ++size_;
    }
    return values_[i];
  }

  size_t size() const { return size_; }

  // Forgets every key and keeps the capacity (a table reused for the next label vector).
  void clear() {
    std::fill(used_.begin(), used_.end(), std::uint8_t(0));
    size_ = 0;
  }

  // f(a, b, value) for every entry, in slot order.
  template <typename F>
  void for_each(F&& f) const {
    for (size_t i = 0; i < capacity(); ++i)
      if (used_[i]) f(keys_[2 * i], keys_[2 * i + 1], values_[i]);
  }

 private:
  size_t capacity() const { return used_.size(); }
  // The slot of (a, b), or the empty slot where it goes.
  size_t probe(std::uint64_t a, std::uint64_t b) const {
    size_t i = slot(a, b);
    while (used_[i] && (keys_[2 * i] != a || keys_[2 * i + 1] != b)) i = (i + 1) & (capacity() - 1);
    return i;
  }
  size_t slot(std::uint64_t a, std::uint64_t b) const {
    std::uint64_t h = a * 0x9E3779B97F4A7C15ull ^ (b + 0x632BE59BD9B4E019ull + (a << 6) + (a >> 2));
    h ^= h >> 31;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 29;
    return static_cast<size_t>(h) & (capacity() - 1);
  }
  void rehash(size_t new_capacity) {
    std::vector<std::uint64_t> keys(std::move(keys_));
    std::vector<Value> values(std::move(values_));
    std::vector<std::uint8_t> used(std::move(used_));
    keys_.assign(2 * new_capacity, 0);
    values_.assign(new_capacity, Value());
    used_.assign(new_capacity, 0);
    for (size_t i = 0; i < used.size(); ++i) {  // size_ stays: every key moves, once
      if (!used[i]) continue;
      const size_t j = probe(keys[2 * i], keys[2 * i + 1]);
      used_[j] = 1;
      keys_[2 * j] = keys[2 * i];
      keys_[2 * j + 1] = keys[2 * i + 1];
      values_[j] = values[i];
    }
  }

  std::vector<std::uint64_t> keys_;
  std::vector<Value> values_;
  std::vector<std::uint8_t> used_;
  size_t size_ = 0;
};

// Counting pairs: a PairMap of counts.
class PairCounter : public PairMap<std::uint64_t> {
 public:
  using PairMap<std::uint64_t>::PairMap;

  void add(std::uint64_t a, std::uint64_t b, std::uint64_t count) {
    bool inserted;
    value(a, b, inserted) += count;
  }
};

}  // namespace xpress_fast
