// io::sim::Network: the simulator's network, a whole cluster's links in memory, with seeded
// delay, loss, duplication, clogs, partitions and crashed nodes. Each node (replica or client)
// gets an Endpoint with the MessageBus's sending interface (send_to_replica, send_to_client,
// pool()), so the replica and client templates run on it unchanged.
//
// Nodes: replicas are nodes 0..replica_count-1; clients are attached by their u128 id and take
// the next nodes in attach order. A path is one direction between two nodes (source -> target);
// every fault below is per path or per node, never per message content.
//
// Messages: one base::MessagePool serves every node. A send takes one reference for the packet,
// the sender keeps its own; the delivery hands the same Message* to the receiver's handler and
// drops the packet's reference after the handler returns, so a receiver that keeps a message
// takes its own reference, and treats it as read-only (a duplicate is the same message again).
//
// Time: nothing moves inside a send. Each packet is given a one-way delay, uniform in
// [delay_min_ticks, delay_max_ticks] (at least 1); tick() advances the network's clock by one
// and delivers every packet whose delay has elapsed, ordered by due tick, then by send order.
// Packets sent by a handler are due on a later tick, never delivered recursively. With equal
// delays a path is FIFO; with a spread, packets overtake each other (reordering). The clock is
// the network's own: the simulator ticks it with Time and Storage, once per step.
//
// What can happen to a packet, each drop counted by its Drop reason in stats():
//
//   at send, in this order                          drop
//   the sender is down                              node_down
//   to itself, to an unknown client id, to a        no_route   (a real bus has no connection
//     replica with no handler attached                          for these either)
//   the receiver is down                            node_down
//   the path is cut                                 partition
//   lost on the wire, at loss_ppm                   loss
//   path_packet_count_max already on the path       path_full
//   packet_count_max already in flight              network_full
//   else queued; at duplicate_ppm a second packet with its own delay is queued too, if there
//   is room (duplication never causes a drop)
//
//   when due, in this order
//   either end is down, or crashed and came back    node_down  (the connection broke)
//     up since the send
//   the path is cut                                 partition
//   the path is clogged                             held until the clog ends, then checked again
//   else delivered
//
// The per-path bound is a TCP connection's send queue: beyond it the new packet is dropped.
//
// Partitions come in two layers, either of which cuts a path: the manual one (path_cut(),
// node_isolate(), partition_replicas()) and the automatic one, which splits the replicas in two
// (clients keep every link, as TigerBeetle's simulator does) at a per-tick chance and heals at
// another, each state holding for a minimum number of ticks. heal_all() clears both.
//
// Invariants: everything is allocated at construction (packets, nodes, paths) and nothing after;
// at most packet_count_max packets are in flight, at most path_packet_count_max per path;
// sent + duplicated == delivered + dropped + in flight, always; every packet holds exactly one
// reference to its message until it is delivered or dropped (drain() and the destructor drop
// every packet, so the pool must outlive the network); the same seed and the same calls give
// the same deliveries in the same order (trace_hash()).
#pragma once

#include <array>
#include <concepts>
#include <span>

#include "src/base/large_array.hpp"
#include "src/base/message_pool.hpp"
#include "src/base/prng.hpp"
#include "tally/constants.hpp"
#include "tally/types.hpp"

namespace tally::io::sim {

enum class Drop : u8 {
  loss = 0,
  partition = 1,
  node_down = 2,
  path_full = 3,
  network_full = 4,
  no_route = 5,  // To itself, to an unknown client id, or to a replica with no handler yet.
  drain = 6,     // Still in flight at drain().
};
inline constexpr u32 drop_kind_count = 7;

const char* drop_name(Drop drop);

// How automatic partitions split the replicas (always in exactly two sides).
enum class PartitionMode : u8 {
  none = 0,
  isolate_single = 1,     // One replica, drawn uniformly, alone.
  uniform_size = 2,       // A side of 1..replica_count-1 replicas, the size drawn uniformly.
  uniform_partition = 3,  // Each replica on a side by a fair coin (biased to equal halves).
};

// The faults, changeable during a run (faults_set()), so that a simulation can end with a
// quiet network and check that the cluster recovers.
struct NetworkFaults {
  u32 loss_ppm = 0;
  u32 duplicate_ppm = 0;
  // Per path and tick, a chance that the path stalls for 1..clog_ticks_max ticks: its packets
  // are held, not dropped (a congested link or a stalled TCP window).
  u32 clog_ppm = 0;
  u32 clog_ticks_max = 0;
  PartitionMode partition_mode = PartitionMode::none;
  // Asymmetric: the paths from one side (drawn by a coin) to the other stay open.
  bool partition_symmetric = true;
  u32 partition_ppm = 0;          // Per tick, while the replicas are whole.
  u32 heal_ppm = 0;               // Per tick, while they are split.
  u32 partition_ticks_min = 0;    // A partition lasts at least this long,
  u32 whole_ticks_min = 0;        // and the next comes at least this long after a heal.
};

struct NetworkOptions {
  u8 replica_count = 0;      // 1..replicas_max.
  u32 client_count_max = 0;  // Clients that may attach.
  u64 seed = 0;
  u32 packet_count_max = 4096;      // In flight in the whole network.
  u32 path_packet_count_max = 64;   // In flight on one path.
  u32 delay_min_ticks = 1;
  u32 delay_max_ticks = 1;
  NetworkFaults faults = {};
};

struct NetworkStats {
  u64 sent = 0;        // Send calls, whatever became of them.
  u64 delivered = 0;   // Handler calls.
  u64 duplicated = 0;  // Extra packets made by duplication.
  u64 held = 0;        // Times a due packet was held back by a clog.
  u64 clogs = 0;       // Clogs started, automatic or manual.
  u64 partitions = 0;  // Automatic partitions started.
  std::array<u64, drop_kind_count> dropped{};

  u64 drop_count(Drop drop) const { return dropped[static_cast<u32>(drop)]; }
  u64 dropped_total() const;
};

struct Path {
  u32 source = 0;
  u32 target = 0;
};

class Network {
 public:
  // Called for each delivered message: see the file comment for the reference rules.
  using OnMessage = void (*)(void* context, base::Message* message);

  // One node's view of the network: the Bus interface of io/message_bus.hpp.
  class Endpoint {
   public:
    void send_to_replica(u8 replica, base::Message* message);
    // From a replica only (a client's bus has no way to reach another client).
    void send_to_client(u128 client, base::Message* message);
    base::MessagePool& pool();
    u32 node() const { return node_; }

   private:
    friend class Network;
    Network* network_ = nullptr;
    u32 node_ = 0;
  };

  static constexpr u32 node_none = ~u32{0};

  // The pool must outlive the network.
  Network(base::MessagePool* pool, const NetworkOptions& options);
  Network(const Network&) = delete;
  Network& operator=(const Network&) = delete;
  ~Network();

  // Sets (or, for a restarted replica, replaces) the replica's handler. The endpoint's address
  // is stable for the network's life.
  Endpoint& replica_attach(u8 replica, OnMessage on_message, void* context);
  // Registers a client id (nonzero) as the next node, or replaces the handler of a known one.
  Endpoint& client_attach(u128 client, OnMessage on_message, void* context);

  u8 replica_count() const { return replica_count_; }
  // Replicas and attached clients; node indexes are below this.
  u32 node_count() const { return node_count_; }
  u32 replica_node(u8 replica) const;
  // The client's node, or node_none if that id never attached.
  u32 client_node(u128 client) const;

  // Advances the clock by one tick: automatic partitions and clogs, then every due packet.
  void tick();
  u64 ticks() const { return ticks_; }

  // A crash: the node stops sending and receiving, and every packet in flight to or from it
  // is dropped when due, even if the node is back up by then.
  void node_down(u32 node);
  void node_up(u32 node);
  bool node_is_up(u32 node) const;

  // The manual partition layer. A cut path drops what is sent on it and what falls due on it.
  void path_cut(Path path);
  void path_heal(Path path);
  // Cuts every path to and from the node, clients included (also those attaching later).
  void node_isolate(u32 node);
  // Cuts both directions between the replicas in `side` and the other replicas.
  void partition_replicas(std::span<const u8> side);
  // Heals both layers; the automatic one may partition again after whole_ticks_min.
  void heal_all();
  bool path_is_cut(Path path) const;
  bool auto_partitioned() const { return auto_partitioned_; }

  // Holds the path's packets for `ticks` more ticks (extending, never shortening, a clog).
  void path_clog(Path path, u32 ticks);
  void path_unclog(Path path);
  bool path_is_clogged(Path path) const;

  void faults_set(const NetworkFaults& faults);
  const NetworkFaults& faults() const { return faults_; }

  // Drops every packet in flight, releasing their references: for teardown, or to model every
  // connection breaking at once.
  void drain();

  u32 in_flight_count() const { return queue_count_; }
  u32 path_packet_count(Path path) const;
  bool idle() const { return queue_count_ == 0; }
  const NetworkStats& stats() const { return stats_; }
  base::MessagePool& pool() { return *pool_; }

  // A running hash of every delivery and drop: two runs with one seed must end with the same.
  u64 trace_hash() const { return trace_hash_; }

 private:
  struct Node {
    Endpoint endpoint;
    OnMessage on_message;
    void* context;
    u128 client;       // Zero for replicas.
    u32 generation;    // Bumped by node_down(), so packets of an earlier life are dropped.
    bool up;
  };

  // Cut bits, one per partition layer.
  static constexpr u8 cut_manual = 1 << 0;
  static constexpr u8 cut_auto = 1 << 1;

  struct PathState {
    u64 clogged_until_tick;  // Held while ticks_ < this.
    u32 packet_count;
    u8 cut;
  };

  struct Packet {
    base::Message* message;
    u64 due_tick;
    u64 sequence;  // Send order: the tie-break among packets due on one tick.
    u32 source;
    u32 target;
    u32 source_generation;
    u32 target_generation;
  };

  void send(u32 source, u32 target, base::Message* message);
  // Queues one packet, or returns the reason it cannot be queued.
  bool packet_add(u32 source, u32 target, base::Message* message, Drop* reason);
  void packet_due(const Packet& packet);
  void dropped(Drop reason, u32 source, u32 target);

  void queue_push(const Packet& packet);
  Packet queue_pop();

  void partition_step();
  void partition_start();
  void auto_cuts_clear();
  void clog_step();

  PathState& path_state(Path path);
  const PathState& path_state(Path path) const;
  u64 packet_total() const;
  void message_assert(const base::Message* message) const;
  void trace(u64 value);

  base::MessagePool* pool_;
  u8 replica_count_;
  u32 node_count_max_;
  u32 node_count_;
  u32 packet_count_max_;
  u32 path_packet_count_max_;
  u32 delay_min_ticks_;
  u32 delay_max_ticks_;
  NetworkFaults faults_;
  base::Prng prng_;

  base::LargeArray<Node> nodes_;
  base::LargeArray<PathState> paths_;  // node_count_max_ * node_count_max_, by source then target.
  // A binary min-heap of packets in flight, by (due_tick, sequence).
  base::LargeArray<Packet> queue_;
  u32 queue_count_ = 0;
  u64 sequence_next_ = 0;
  u64 ticks_ = 0;
  bool delivering_ = false;

  bool auto_partitioned_ = false;
  u64 auto_hold_ticks_ = 0;  // Ticks before the automatic layer may change state again.

  NetworkStats stats_;
  u64 trace_hash_ = 0;
};

// The replica and client templates need this shape of their Bus.
static_assert(requires(Network::Endpoint& endpoint, base::Message* message) {
  endpoint.send_to_replica(u8{0}, message);
  endpoint.send_to_client(u128{1}, message);
  { endpoint.pool() } -> std::same_as<base::MessagePool&>;
});

}  // namespace tally::io::sim
