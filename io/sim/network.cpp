// The simulated network: see network.hpp for the model. Every random choice comes from prng_,
// drawn in an order fixed by the calls made (and skipped when its rate is zero, so turning one
// fault off does not reshuffle the others' draws within a call), so a seed replays exactly.
#include "io/sim/network.hpp"

#include <algorithm>

#include "src/base/assert.hpp"
#include "tally/header.hpp"

namespace tally::io::sim {

namespace {

// Bounds the path matrix: (replicas_max + 1024)^2 paths of 16 bytes is 16 MiB of address space,
// committed only where touched.
constexpr u32 client_count_limit = 1024;

}  // namespace

const char* drop_name(Drop drop) {
  switch (drop) {
    case Drop::loss: return "loss";
    case Drop::partition: return "partition";
    case Drop::node_down: return "node_down";
    case Drop::path_full: return "path_full";
    case Drop::network_full: return "network_full";
    case Drop::no_route: return "no_route";
    case Drop::drain: return "drain";
  }
  TALLY_UNREACHABLE();
}

u64 NetworkStats::dropped_total() const {
  u64 total = 0;
  for (const u64 count : dropped) total += count;
  return total;
}

void Network::Endpoint::send_to_replica(u8 replica, base::Message* message) {
  TALLY_ASSERT(network_ != nullptr, "endpoint not attached");
  network_->send(node_, network_->replica_node(replica), message);
}

void Network::Endpoint::send_to_client(u128 client, base::Message* message) {
  TALLY_ASSERT(network_ != nullptr, "endpoint not attached");
  TALLY_ASSERT(node_ < network_->replica_count_, "node %u: only replicas send to clients", node_);
  network_->send(node_, network_->client_node(client), message);
}

base::MessagePool& Network::Endpoint::pool() {
  TALLY_ASSERT(network_ != nullptr, "endpoint not attached");
  return *network_->pool_;
}

Network::Network(base::MessagePool* pool, const NetworkOptions& options)
    : pool_(pool),
      replica_count_(options.replica_count),
      node_count_max_(u32{options.replica_count} + options.client_count_max),
      node_count_(options.replica_count),
      packet_count_max_(options.packet_count_max),
      path_packet_count_max_(options.path_packet_count_max),
      delay_min_ticks_(options.delay_min_ticks),
      delay_max_ticks_(options.delay_max_ticks),
      prng_(options.seed) {
  TALLY_ASSERT(pool_ != nullptr && pool_->capacity() > 0, "the pool is initialised first");
  TALLY_ASSERT(replica_count_ >= 1 && replica_count_ <= replicas_max, "replica_count %u",
               replica_count_);
  TALLY_ASSERT(options.client_count_max <= client_count_limit, "client_count_max %u",
               options.client_count_max);
  TALLY_ASSERT(packet_count_max_ > 0);
  TALLY_ASSERT(path_packet_count_max_ > 0 && path_packet_count_max_ <= packet_count_max_);
  // A delay of zero would deliver a packet inside the tick, or the send, that made it: a
  // handler could then run inside its sender.
  TALLY_ASSERT(delay_min_ticks_ >= 1 && delay_min_ticks_ <= delay_max_ticks_,
               "delay [%u, %u] ticks", delay_min_ticks_, delay_max_ticks_);
  faults_set(options.faults);

  nodes_.init(node_count_max_);
  paths_.init(std::size_t{node_count_max_} * node_count_max_);
  queue_.init(packet_count_max_);
  for (u32 node = 0; node < node_count_max_; node += 1) {
    nodes_[node] = Node{.endpoint = {},
                        .on_message = nullptr,
                        .context = nullptr,
                        .client = 0,
                        .generation = 0,
                        .up = true};
    nodes_[node].endpoint.network_ = this;
    nodes_[node].endpoint.node_ = node;
  }
}

Network::~Network() {
  if (queue_count_ > 0) drain();
}

Network::Endpoint& Network::replica_attach(u8 replica, OnMessage on_message, void* context) {
  TALLY_ASSERT(on_message != nullptr);
  Node& node = nodes_[replica_node(replica)];
  node.on_message = on_message;
  node.context = context;
  return node.endpoint;
}

Network::Endpoint& Network::client_attach(u128 client, OnMessage on_message, void* context) {
  TALLY_ASSERT(on_message != nullptr);
  TALLY_ASSERT(client != 0, "client id 0 is never valid");
  u32 index = client_node(client);
  if (index == node_none) {
    TALLY_ASSERT(node_count_ < node_count_max_, "more than %u clients attached",
                 node_count_max_ - replica_count_);
    index = node_count_;
    node_count_ += 1;
  }
  Node& node = nodes_[index];
  node.on_message = on_message;
  node.context = context;
  node.client = client;
  return node.endpoint;
}

u32 Network::replica_node(u8 replica) const {
  TALLY_ASSERT(replica < replica_count_, "replica %u of %u", replica, replica_count_);
  return replica;
}

u32 Network::client_node(u128 client) const {
  if (client == 0) return node_none;
  for (u32 node = replica_count_; node < node_count_; node += 1) {
    if (nodes_[node].client == client) return node;
  }
  return node_none;
}

void Network::message_assert(const base::Message* message) const {
  TALLY_ASSERT(pool_->owned(message), "message not from the network's pool");
  TALLY_ASSERT(message->references > 0, "message %u has no reference", message->index);
  const u32 size = message->header().size;
  TALLY_ASSERT(size >= header_size && size <= pool_->message_size(), "message %u size %u",
               message->index, size);
}

void Network::send(u32 source, u32 target, base::Message* message) {
  TALLY_ASSERT(source < node_count_);
  message_assert(message);
  stats_.sent += 1;

  if (!nodes_[source].up) return dropped(Drop::node_down, source, target);
  if (target == node_none || target == source || nodes_[target].on_message == nullptr) {
    return dropped(Drop::no_route, source, target);
  }
  TALLY_ASSERT(target < node_count_);
  if (!nodes_[target].up) return dropped(Drop::node_down, source, target);
  if (path_state({.source = source, .target = target}).cut != 0) {
    return dropped(Drop::partition, source, target);
  }
  if (faults_.loss_ppm > 0 && prng_.chance_ppm(faults_.loss_ppm)) {
    return dropped(Drop::loss, source, target);
  }

  Drop reason = Drop::loss;
  if (!packet_add(source, target, message, &reason)) return dropped(reason, source, target);

  if (faults_.duplicate_ppm > 0 && prng_.chance_ppm(faults_.duplicate_ppm)) {
    // The copy is only made if there is room: it is a fault, never a cause of drops.
    if (packet_add(source, target, message, &reason)) stats_.duplicated += 1;
  }
}

bool Network::packet_add(u32 source, u32 target, base::Message* message, Drop* reason) {
  PathState& state = path_state({.source = source, .target = target});
  TALLY_ASSERT(state.packet_count <= path_packet_count_max_);
  if (state.packet_count == path_packet_count_max_) {
    *reason = Drop::path_full;
    return false;
  }
  TALLY_ASSERT(queue_count_ <= packet_count_max_);
  if (queue_count_ == packet_count_max_) {
    *reason = Drop::network_full;
    return false;
  }
  const u32 delay = delay_min_ticks_ == delay_max_ticks_
                        ? delay_min_ticks_
                        : prng_.range_inclusive(delay_min_ticks_, delay_max_ticks_);
  TALLY_ASSERT(delay >= 1);
  queue_push(Packet{.message = pool_->ref(message),
                    .due_tick = ticks_ + delay,
                    .sequence = sequence_next_,
                    .source = source,
                    .target = target,
                    .source_generation = nodes_[source].generation,
                    .target_generation = nodes_[target].generation});
  sequence_next_ += 1;
  state.packet_count += 1;
  return true;
}

void Network::tick() {
  TALLY_ASSERT(!delivering_, "tick() from inside a handler");
  ticks_ += 1;
  partition_step();
  clog_step();

  // Handlers send, but every new packet is due on a later tick, so this loop ends.
  delivering_ = true;
  while (queue_count_ > 0 && queue_[0].due_tick <= ticks_) {
    const Packet packet = queue_pop();
    // Every earlier tick delivered all that was due on it.
    TALLY_ASSERT(packet.due_tick == ticks_);
    packet_due(packet);
  }
  delivering_ = false;
  TALLY_ASSERT(stats_.sent + stats_.duplicated == packet_total());
}

void Network::packet_due(const Packet& packet) {
  PathState& state = path_state({.source = packet.source, .target = packet.target});
  TALLY_ASSERT(state.packet_count > 0);
  const Node& source = nodes_[packet.source];
  const Node& target = nodes_[packet.target];

  Drop reason = Drop::loss;
  bool drop = false;
  if (!source.up || !target.up || source.generation != packet.source_generation ||
      target.generation != packet.target_generation) {
    reason = Drop::node_down;
    drop = true;
  } else if (state.cut != 0) {
    reason = Drop::partition;
    drop = true;
  } else if (ticks_ < state.clogged_until_tick) {
    // Held whole, in order: the packet keeps its sequence, so the path stays FIFO among
    // packets released together.
    Packet held = packet;
    held.due_tick = state.clogged_until_tick;
    queue_push(held);
    stats_.held += 1;
    return;
  }

  state.packet_count -= 1;
  if (drop) {
    pool_->unref(packet.message);
    return dropped(reason, packet.source, packet.target);
  }

  message_assert(packet.message);
  TALLY_ASSERT(target.on_message != nullptr);
  stats_.delivered += 1;
  trace((u64{packet.source} << 32) | packet.target);
  trace(packet.sequence);
  trace(packet.message->index);
  // Copied first: the handler may re-attach, crash or restart nodes.
  const OnMessage on_message = target.on_message;
  void* const context = target.context;
  on_message(context, packet.message);
  pool_->unref(packet.message);
}

void Network::dropped(Drop reason, u32 source, u32 target) {
  stats_.dropped[static_cast<u32>(reason)] += 1;
  trace(0xd0 + static_cast<u64>(reason));
  trace((u64{source} << 32) | target);
}

void Network::drain() {
  TALLY_ASSERT(!delivering_, "drain() from inside a handler");
  while (queue_count_ > 0) {
    const Packet packet = queue_pop();
    PathState& state = path_state({.source = packet.source, .target = packet.target});
    TALLY_ASSERT(state.packet_count > 0);
    state.packet_count -= 1;
    pool_->unref(packet.message);
    dropped(Drop::drain, packet.source, packet.target);
  }
  TALLY_ASSERT(stats_.sent + stats_.duplicated == packet_total());
}

u64 Network::packet_total() const {
  return stats_.delivered + stats_.dropped_total() + queue_count_;
}

// The heap: queue_[0] is the packet due first; a parent is never due after its children.
//
//           0
//       1       2        children of i: 2i+1, 2i+2; parent of i: (i-1)/2
//     3   4   5   6
namespace {

template <typename Packet>
bool packet_before(const Packet& a, const Packet& b) {
  return a.due_tick < b.due_tick || (a.due_tick == b.due_tick && a.sequence < b.sequence);
}

}  // namespace

void Network::queue_push(const Packet& packet) {
  TALLY_ASSERT(queue_count_ < packet_count_max_);
  u32 index = queue_count_;
  queue_count_ += 1;
  while (index > 0) {
    const u32 parent = (index - 1) / 2;
    if (!packet_before(packet, queue_[parent])) break;
    queue_[index] = queue_[parent];
    index = parent;
  }
  queue_[index] = packet;
}

Network::Packet Network::queue_pop() {
  TALLY_ASSERT(queue_count_ > 0);
  const Packet first = queue_[0];
  queue_count_ -= 1;
  if (queue_count_ == 0) return first;

  const Packet last = queue_[queue_count_];
  u32 index = 0;
  for (;;) {
    const u32 left = 2 * index + 1;
    if (left >= queue_count_) break;
    const u32 right = left + 1;
    const u32 child =
        right < queue_count_ && packet_before(queue_[right], queue_[left]) ? right : left;
    if (!packet_before(queue_[child], last)) break;
    queue_[index] = queue_[child];
    index = child;
  }
  queue_[index] = last;
  TALLY_ASSERT(!packet_before(queue_[0], first));
  return first;
}

void Network::node_down(u32 node) {
  TALLY_ASSERT(node < node_count_, "node %u of %u", node, node_count_);
  if (!nodes_[node].up) return;
  nodes_[node].up = false;
  nodes_[node].generation += 1;
}

void Network::node_up(u32 node) {
  TALLY_ASSERT(node < node_count_, "node %u of %u", node, node_count_);
  nodes_[node].up = true;
}

bool Network::node_is_up(u32 node) const {
  TALLY_ASSERT(node < node_count_, "node %u of %u", node, node_count_);
  return nodes_[node].up;
}

Network::PathState& Network::path_state(Path path) {
  TALLY_ASSERT(path.source < node_count_max_ && path.target < node_count_max_,
               "path %u -> %u", path.source, path.target);
  return paths_[std::size_t{path.source} * node_count_max_ + path.target];
}

const Network::PathState& Network::path_state(Path path) const {
  TALLY_ASSERT(path.source < node_count_max_ && path.target < node_count_max_,
               "path %u -> %u", path.source, path.target);
  return paths_[std::size_t{path.source} * node_count_max_ + path.target];
}

u32 Network::path_packet_count(Path path) const { return path_state(path).packet_count; }

void Network::path_cut(Path path) {
  TALLY_ASSERT(path.source != path.target);
  path_state(path).cut |= cut_manual;
}

void Network::path_heal(Path path) {
  TALLY_ASSERT(path.source != path.target);
  path_state(path).cut &= static_cast<u8>(~cut_manual);
}

bool Network::path_is_cut(Path path) const { return path_state(path).cut != 0; }

void Network::node_isolate(u32 isolated) {
  TALLY_ASSERT(isolated < node_count_, "node %u of %u", isolated, node_count_);
  // Every slot, so that a client attaching later is cut off from the node too.
  for (u32 other = 0; other < node_count_max_; other += 1) {
    if (other == isolated) continue;
    path_state({.source = isolated, .target = other}).cut |= cut_manual;
    path_state({.source = other, .target = isolated}).cut |= cut_manual;
  }
}

void Network::partition_replicas(std::span<const u8> side) {
  std::array<bool, replicas_max> in_side{};
  for (const u8 replica : side) in_side[replica_node(replica)] = true;
  for (u32 source = 0; source < replica_count_; source += 1) {
    for (u32 target = 0; target < replica_count_; target += 1) {
      if (in_side[source] != in_side[target]) {
        path_state({.source = source, .target = target}).cut |= cut_manual;
      }
    }
  }
}

void Network::heal_all() {
  for (std::size_t index = 0; index < paths_.capacity(); index += 1) paths_[index].cut = 0;
  if (auto_partitioned_) {
    auto_partitioned_ = false;
    auto_hold_ticks_ = faults_.whole_ticks_min;
  }
}

void Network::path_clog(Path path, u32 ticks) {
  TALLY_ASSERT(path.source != path.target && ticks > 0);
  PathState& state = path_state(path);
  // The next `ticks` ticks hold the path's packets: ticks_ + 1 .. ticks_ + ticks.
  state.clogged_until_tick = std::max(state.clogged_until_tick, ticks_ + 1 + ticks);
  stats_.clogs += 1;
}

void Network::path_unclog(Path path) { path_state(path).clogged_until_tick = 0; }

bool Network::path_is_clogged(Path path) const {
  return ticks_ + 1 < path_state(path).clogged_until_tick;
}

void Network::faults_set(const NetworkFaults& faults) {
  for (const u32 ppm : {faults.loss_ppm, faults.duplicate_ppm, faults.clog_ppm,
                        faults.partition_ppm, faults.heal_ppm}) {
    TALLY_ASSERT(ppm <= base::parts_per_million, "rate %u ppm above 1", ppm);
  }
  TALLY_ASSERT(faults.clog_ppm == 0 || faults.clog_ticks_max >= 1);
  TALLY_ASSERT(static_cast<u8>(faults.partition_mode) <=
               static_cast<u8>(PartitionMode::uniform_partition));
  faults_ = faults;
}

void Network::partition_step() {
  if (auto_hold_ticks_ > 0) {
    auto_hold_ticks_ -= 1;
    return;
  }
  if (auto_partitioned_) {
    if (faults_.heal_ppm > 0 && prng_.chance_ppm(faults_.heal_ppm)) {
      auto_cuts_clear();
      auto_partitioned_ = false;
      auto_hold_ticks_ = faults_.whole_ticks_min;
    }
  } else if (faults_.partition_mode != PartitionMode::none && replica_count_ > 1 &&
             faults_.partition_ppm > 0 && prng_.chance_ppm(faults_.partition_ppm)) {
    partition_start();
  }
}

void Network::partition_start() {
  TALLY_ASSERT(!auto_partitioned_ && replica_count_ > 1);
  std::array<bool, replicas_max> in_side{};
  switch (faults_.partition_mode) {
    case PartitionMode::none: TALLY_UNREACHABLE();
    case PartitionMode::isolate_single:
      in_side[prng_.index(u32{replica_count_})] = true;
      break;
    case PartitionMode::uniform_size: {
      const u32 size = prng_.range_inclusive(u32{1}, u32{replica_count_} - 1);
      std::array<u8, replicas_max> order{};
      for (u8 replica = 0; replica < replica_count_; replica += 1) order[replica] = replica;
      prng_.shuffle(std::span<u8>(order.data(), replica_count_));
      for (u32 index = 0; index < size; index += 1) in_side[order[index]] = true;
      break;
    }
    case PartitionMode::uniform_partition: {
      // A bit per replica, excluding all-zero and all-one: both sides are never empty.
      const u32 mask = prng_.range_inclusive(u32{1}, (u32{1} << replica_count_) - 2);
      for (u32 replica = 0; replica < replica_count_; replica += 1) {
        in_side[replica] = ((mask >> replica) & 1) != 0;
      }
      break;
    }
  }
  const bool open_side = faults_.partition_symmetric ? false : prng_.boolean();
  u32 side_count = 0;
  for (u32 source = 0; source < replica_count_; source += 1) {
    side_count += in_side[source] ? 1U : 0U;
    for (u32 target = 0; target < replica_count_; target += 1) {
      if (in_side[source] == in_side[target]) continue;
      if (!faults_.partition_symmetric && in_side[source] == open_side) continue;
      path_state({.source = source, .target = target}).cut |= cut_auto;
    }
  }
  TALLY_ASSERT(side_count > 0 && side_count < replica_count_);
  auto_partitioned_ = true;
  auto_hold_ticks_ = faults_.partition_ticks_min;
  stats_.partitions += 1;
}

void Network::auto_cuts_clear() {
  for (u32 source = 0; source < replica_count_; source += 1) {
    for (u32 target = 0; target < replica_count_; target += 1) {
      path_state({.source = source, .target = target}).cut &= static_cast<u8>(~cut_auto);
    }
  }
}

void Network::clog_step() {
  if (faults_.clog_ppm == 0) return;
  for (u32 source = 0; source < node_count_; source += 1) {
    for (u32 target = 0; target < node_count_; target += 1) {
      if (source == target) continue;
      PathState& state = path_state({.source = source, .target = target});
      if (ticks_ < state.clogged_until_tick) continue;
      if (!prng_.chance_ppm(faults_.clog_ppm)) continue;
      // Holds this tick's deliveries and those of the next duration - 1 ticks.
      const u32 duration = prng_.range_inclusive(u32{1}, faults_.clog_ticks_max);
      state.clogged_until_tick = ticks_ + duration;
      stats_.clogs += 1;
    }
  }
}

void Network::trace(u64 value) {
  // splitmix64's finalizer over the running hash and the value: order-sensitive, so two runs
  // agree only if every event happened in the same order with the same values.
  u64 state = trace_hash_ ^ (value * 0x9e3779b97f4a7c15);
  trace_hash_ = base::splitmix64_next(state) ^ ticks_;
}

}  // namespace tally::io::sim
