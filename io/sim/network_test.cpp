// Tests of the simulated network: packets arrive within their delay, in send order when delays
// are equal and out of order when they spread; loss and duplication happen at their rates; a
// path holds a bounded number of packets; cuts, isolation, automatic partitions and clogs act on
// the paths they name and only there; a crashed node loses what was in flight to and from it;
// clients are reached by id; one seed gives one run; every reference goes back to the pool.
#include "io/sim/network.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "src/base/death_test.hpp"
#include "src/base/message_pool.hpp"
#include "src/base/prng.hpp"
#include "tally/header.hpp"

namespace {

using tally::header_size;
using tally::u128;
using tally::u32;
using tally::u64;
using tally::u8;
using tally::base::Message;
using tally::base::MessagePool;
using tally::base::Prng;
using tally::base::death_test::run_in_child;
using tally::io::sim::Drop;
using tally::io::sim::Network;
using tally::io::sim::NetworkFaults;
using tally::io::sim::NetworkOptions;
using tally::io::sim::NetworkStats;
using tally::io::sim::PartitionMode;
using tally::io::sim::Path;

constexpr u32 message_size = 4096;
constexpr u64 ppm_always = 1'000'000;

struct Delivery {
  u64 tick = 0;
  u32 node = 0;
  u64 tag = 0;
  u32 message_index = 0;
  bool operator==(const Delivery&) const = default;
};

// The pool is a base so that it is initialised before, and destroyed after, the network.
struct PoolHolder {
  explicit PoolHolder(u32 capacity) { pool.init(capacity, message_size); }
  MessagePool pool;
};

// A cluster of recording nodes: replicas 0..R-1, then the given clients. Every delivery is
// recorded with the tick it happened on; `on_deliver` lets a test answer from inside a handler.
struct Cluster : PoolHolder {
  struct Receiver {
    Cluster* cluster = nullptr;
    u32 node = 0;
  };

  explicit Cluster(const NetworkOptions& options, std::vector<u128> clients = {},
                   u32 pool_capacity = 1024)
      : PoolHolder(pool_capacity), network(&pool, options), client_ids(std::move(clients)) {
    receivers.resize(options.replica_count + client_ids.size());
    for (u8 replica = 0; replica < options.replica_count; replica += 1) {
      receivers[replica] = {.cluster = this, .node = replica};
      endpoints.push_back(&network.replica_attach(replica, record, &receivers[replica]));
    }
    for (const u128 client : client_ids) {
      const auto node = static_cast<u32>(endpoints.size());
      receivers[node] = {.cluster = this, .node = node};
      endpoints.push_back(&network.client_attach(client, record, &receivers[node]));
      REQUIRE(network.client_node(client) == node);
    }
  }

  static void record(void* context, Message* message) {
    auto* receiver = static_cast<Receiver*>(context);
    Cluster& cluster = *receiver->cluster;
    REQUIRE(message->references >= 1);
    cluster.deliveries.push_back({.tick = cluster.network.ticks(),
                                  .node = receiver->node,
                                  .tag = tag_of(message),
                                  .message_index = message->index});
    if (cluster.on_deliver) cluster.on_deliver(receiver->node, message);
  }

  static u64 tag_of(const Message* message) {
    return static_cast<u64>(message->header().checksum);
  }

  Message* message_make(u64 tag) {
    Message* message = pool.get();
    REQUIRE(message != nullptr);
    message->header().size = header_size;
    message->header().checksum = tag;
    return message;
  }

  // Sends a fresh message and drops the sender's own reference, as a sender that keeps
  // nothing would.
  void send(u32 source, u32 target, u64 tag) {
    Message* message = message_make(tag);
    send_message(source, target, message);
    pool.unref(message);
  }

  void send_message(u32 source, u32 target, Message* message) {
    if (target < network.replica_count()) {
      endpoints[source]->send_to_replica(static_cast<u8>(target), message);
    } else {
      endpoints[source]->send_to_client(client_ids[target - network.replica_count()], message);
    }
  }

  void run(u32 ticks) {
    for (u32 tick = 0; tick < ticks; tick += 1) network.tick();
  }

  void run_until_idle() {
    for (u32 tick = 0; tick < 100'000 && !network.idle(); tick += 1) network.tick();
    REQUIRE(network.idle());
  }

  std::vector<u64> tags_at(u32 node) const {
    std::vector<u64> tags;
    for (const Delivery& delivery : deliveries) {
      if (delivery.node == node) tags.push_back(delivery.tag);
    }
    return tags;
  }

  // Every packet accounted for, and every reference back in the pool once the network is empty.
  void check_accounting() const {
    const NetworkStats& stats = network.stats();
    CHECK(stats.sent + stats.duplicated ==
          stats.delivered + stats.dropped_total() + network.in_flight_count());
    CHECK(stats.delivered == deliveries.size());
    if (network.idle()) CHECK(pool.free_count() == pool.capacity());
  }

  Network network;
  std::vector<u128> client_ids;
  std::vector<Receiver> receivers;
  std::vector<Network::Endpoint*> endpoints;
  std::vector<Delivery> deliveries;
  std::function<void(u32 node, Message* message)> on_deliver;
};

std::vector<u64> iota_tags(u64 count) {
  std::vector<u64> tags;
  for (u64 tag = 0; tag < count; tag += 1) tags.push_back(tag);
  return tags;
}

}  // namespace

TEST_SUITE("io_sim_network") {
  TEST_CASE("sim network: every packet arrives within its delay bounds and both bounds occur") {
    Cluster cluster(NetworkOptions{.replica_count = 2,
                                   .seed = 11,
                                   .path_packet_count_max = 256,
                                   .delay_min_ticks = 3,
                                   .delay_max_ticks = 7});
    // 20 packets on each of 10 ticks; the tag remembers the send tick.
    for (u32 round = 0; round < 10; round += 1) {
      for (u32 index = 0; index < 20; index += 1) cluster.send(0, 1, cluster.network.ticks());
      cluster.network.tick();
    }
    cluster.run_until_idle();
    REQUIRE(cluster.deliveries.size() == 200);
    u64 delay_min = ~u64{0};
    u64 delay_max = 0;
    for (const Delivery& delivery : cluster.deliveries) {
      CHECK(delivery.node == 1);
      const u64 delay = delivery.tick - delivery.tag;
      delay_min = std::min(delay_min, delay);
      delay_max = std::max(delay_max, delay);
    }
    CHECK(delay_min == 3);
    CHECK(delay_max == 7);
    cluster.check_accounting();
  }

  TEST_CASE("sim network: with one fixed delay a path delivers in send order") {
    Cluster cluster(NetworkOptions{
        .replica_count = 3, .seed = 12, .delay_min_ticks = 4, .delay_max_ticks = 4});
    // Two senders interleaved on the same target: each path stays FIFO, and the arrival order
    // at the target is the global send order.
    u64 tag = 0;
    for (u32 round = 0; round < 25; round += 1) {
      cluster.send(0, 2, tag++);
      cluster.send(1, 2, tag++);
      if (round % 3 == 0) cluster.network.tick();
    }
    cluster.run_until_idle();
    CHECK(cluster.tags_at(2) == iota_tags(50));
    cluster.check_accounting();
  }

  TEST_CASE("sim network: spread delays reorder packets while one tick delivers in send order") {
    Cluster cluster(NetworkOptions{.replica_count = 2,
                                   .seed = 13,
                                   .path_packet_count_max = 256,
                                   .delay_min_ticks = 1,
                                   .delay_max_ticks = 10});
    for (u64 tag = 0; tag < 100; tag += 1) cluster.send(0, 1, tag);
    cluster.run_until_idle();
    const std::vector<u64> tags = cluster.tags_at(1);
    REQUIRE(tags.size() == 100);
    CHECK(tags != iota_tags(100));
    std::vector<u64> sorted = tags;
    std::sort(sorted.begin(), sorted.end());
    CHECK(sorted == iota_tags(100));
    // Packets due on the same tick keep their send order (the tie-break is deterministic).
    for (std::size_t index = 1; index < cluster.deliveries.size(); index += 1) {
      const Delivery& before = cluster.deliveries[index - 1];
      const Delivery& after = cluster.deliveries[index];
      CHECK(before.tick <= after.tick);
      if (before.tick == after.tick) CHECK(before.tag < after.tag);
    }
  }

  TEST_CASE("sim network: packets are lost at the configured rate") {
    // 10% of 10'000: the binomial's standard deviation is 30, so 800..1200 holds for any
    // reasonable seed; the seed is fixed, so the count is too.
    Cluster cluster(NetworkOptions{.replica_count = 2,
                                   .seed = 14,
                                   .faults = {.loss_ppm = 100'000}});
    for (u32 round = 0; round < 500; round += 1) {
      for (u32 index = 0; index < 20; index += 1) cluster.send(0, 1, index);
      cluster.network.tick();
    }
    cluster.run_until_idle();
    const NetworkStats& stats = cluster.network.stats();
    CHECK(stats.sent == 10'000);
    CHECK(stats.drop_count(Drop::loss) >= 800);
    CHECK(stats.drop_count(Drop::loss) <= 1'200);
    CHECK(stats.delivered + stats.drop_count(Drop::loss) == 10'000);
    cluster.check_accounting();

    const u64 lost = stats.drop_count(Drop::loss);
    cluster.network.faults_set({.loss_ppm = ppm_always});
    for (u32 index = 0; index < 10; index += 1) cluster.send(0, 1, index);
    CHECK(cluster.network.idle());
    CHECK(stats.drop_count(Drop::loss) == lost + 10);
  }

  TEST_CASE("sim network: a duplicate is the same message delivered again with its own delay") {
    Cluster cluster(NetworkOptions{.replica_count = 2,
                                   .seed = 15,
                                   .path_packet_count_max = 256,
                                   .delay_min_ticks = 1,
                                   .delay_max_ticks = 5,
                                   .faults = {.duplicate_ppm = ppm_always}});
    std::vector<u32> references_seen;
    cluster.on_deliver = [&](u32, Message* message) {
      references_seen.push_back(message->references);
    };
    for (u64 tag = 0; tag < 50; tag += 1) cluster.send(0, 1, tag);
    CHECK(cluster.network.in_flight_count() == 100);
    cluster.run_until_idle();
    CHECK(cluster.network.stats().duplicated == 50);
    REQUIRE(cluster.deliveries.size() == 100);
    // Each tag twice, both times in the same buffer; at least one copy arrived on a tick
    // other than its twin's (independent delays).
    bool apart = false;
    for (u64 tag = 0; tag < 50; tag += 1) {
      std::vector<Delivery> copies;
      for (const Delivery& delivery : cluster.deliveries) {
        if (delivery.tag == tag) copies.push_back(delivery);
      }
      REQUIRE(copies.size() == 2);
      CHECK(copies[0].message_index == copies[1].message_index);
      apart = apart || copies[0].tick != copies[1].tick;
    }
    CHECK(apart);
    // While the twin is still in flight, the message holds both packets' references.
    CHECK(std::count(references_seen.begin(), references_seen.end(), 2u) >= 1);
    CHECK(*std::max_element(references_seen.begin(), references_seen.end()) == 2);
    cluster.check_accounting();
  }

  TEST_CASE("sim network: duplication at a partial rate adds that share of packets") {
    Cluster cluster(NetworkOptions{.replica_count = 2,
                                   .seed = 16,
                                   .faults = {.duplicate_ppm = 200'000}});
    for (u32 round = 0; round < 200; round += 1) {
      for (u32 index = 0; index < 10; index += 1) cluster.send(0, 1, index);
      cluster.network.tick();
    }
    cluster.run_until_idle();
    const NetworkStats& stats = cluster.network.stats();
    CHECK(stats.duplicated >= 300);
    CHECK(stats.duplicated <= 500);
    CHECK(stats.delivered == 2'000 + stats.duplicated);
    cluster.check_accounting();
  }

  TEST_CASE("sim network: a path holds at most its bound and the network at most its capacity") {
    Cluster cluster(NetworkOptions{.replica_count = 3,
                                   .seed = 17,
                                   .packet_count_max = 6,
                                   .path_packet_count_max = 4,
                                   .delay_min_ticks = 5,
                                   .delay_max_ticks = 5});
    for (u64 tag = 0; tag < 10; tag += 1) cluster.send(0, 1, tag);
    CHECK(cluster.network.path_packet_count({.source = 0, .target = 1}) == 4);
    CHECK(cluster.network.stats().drop_count(Drop::path_full) == 6);
    // Another path has its own bound, but the network's capacity is shared.
    for (u64 tag = 10; tag < 13; tag += 1) cluster.send(0, 2, tag);
    CHECK(cluster.network.path_packet_count({.source = 0, .target = 2}) == 2);
    CHECK(cluster.network.stats().drop_count(Drop::network_full) == 1);
    CHECK(cluster.network.in_flight_count() == 6);
    cluster.run_until_idle();
    CHECK(cluster.tags_at(1) == std::vector<u64>{0, 1, 2, 3});
    CHECK(cluster.tags_at(2) == std::vector<u64>{10, 11});
    // Delivered packets free their room.
    CHECK(cluster.network.path_packet_count({.source = 0, .target = 1}) == 0);
    cluster.send(0, 1, 20);
    CHECK(cluster.network.in_flight_count() == 1);
    cluster.run_until_idle();
    cluster.check_accounting();
  }

  TEST_CASE("sim network: a cut path drops both new and in-flight packets until healed") {
    Cluster cluster(NetworkOptions{
        .replica_count = 2, .seed = 18, .delay_min_ticks = 3, .delay_max_ticks = 3});
    const Path forward = {.source = 0, .target = 1};
    cluster.send(0, 1, 1);  // In flight when the cut comes.
    cluster.network.path_cut(forward);
    CHECK(cluster.network.path_is_cut(forward));
    CHECK_FALSE(cluster.network.path_is_cut({.source = 1, .target = 0}));
    cluster.send(0, 1, 2);  // Into the cut.
    cluster.send(1, 0, 3);  // The other direction is open.
    cluster.run_until_idle();
    CHECK(cluster.tags_at(1).empty());
    CHECK(cluster.tags_at(0) == std::vector<u64>{3});
    CHECK(cluster.network.stats().drop_count(Drop::partition) == 2);

    cluster.network.path_heal(forward);
    cluster.send(0, 1, 4);
    cluster.run_until_idle();
    CHECK(cluster.tags_at(1) == std::vector<u64>{4});
    cluster.check_accounting();
  }

  TEST_CASE("sim network: split replicas talk only within their side while clients reach all") {
    Cluster cluster(NetworkOptions{.replica_count = 3, .client_count_max = 1, .seed = 19},
                    {u128{77}});
    const u32 client = 3;
    cluster.network.partition_replicas(std::vector<u8>{0});
    for (u32 source = 0; source < 3; source += 1) {
      for (u32 target = 0; target < 3; target += 1) {
        if (source != target) cluster.send(source, target, source * 10 + target);
      }
      cluster.send(client, source, 100 + source);
      cluster.send(source, client, 200 + source);
    }
    cluster.run_until_idle();
    CHECK(cluster.tags_at(0) == std::vector<u64>{100});
    CHECK(cluster.tags_at(1) == std::vector<u64>{101, 21});
    CHECK(cluster.tags_at(2) == std::vector<u64>{12, 102});
    CHECK(cluster.tags_at(client) == std::vector<u64>{200, 201, 202});
    CHECK(cluster.network.stats().drop_count(Drop::partition) == 4);

    // Isolating the client cuts it from every replica; heal_all restores every path.
    cluster.network.heal_all();
    cluster.network.node_isolate(client);
    cluster.deliveries.clear();
    cluster.send(client, 1, 1);
    cluster.send(1, client, 2);
    cluster.send(0, 1, 3);
    cluster.run_until_idle();
    CHECK(cluster.tags_at(client).empty());
    CHECK(cluster.tags_at(1) == std::vector<u64>{3});
    cluster.network.heal_all();
    cluster.send(client, 1, 4);
    cluster.run_until_idle();
    CHECK(cluster.tags_at(1) == std::vector<u64>{3, 4});
  }

  TEST_CASE("sim network: automatic partitions split the replicas in two then hold and heal") {
    for (const PartitionMode mode : {PartitionMode::isolate_single, PartitionMode::uniform_size,
                                     PartitionMode::uniform_partition}) {
      for (const bool symmetric : {true, false}) {
        CAPTURE(static_cast<int>(mode));
        CAPTURE(symmetric);
        Cluster cluster(NetworkOptions{.replica_count = 5,
                                       .client_count_max = 1,
                                       .seed = 20,
                                       .faults = {.partition_mode = mode,
                                                  .partition_symmetric = symmetric,
                                                  .partition_ppm = 200'000,
                                                  .heal_ppm = 200'000,
                                                  .partition_ticks_min = 4,
                                                  .whole_ticks_min = 3}},
                        {u128{5}});
        Network& network = cluster.network;
        bool was_partitioned = false;
        u64 changed_tick = 0;
        for (u32 tick = 0; tick < 2'000; tick += 1) {
          network.tick();
          const bool partitioned = network.auto_partitioned();
          if (partitioned != was_partitioned) {
            // Each state lasts at least its minimum (the first partition may come at once).
            if (changed_tick > 0) {
              CHECK(network.ticks() - changed_tick > (partitioned ? 3u : 4u));
            }
            changed_tick = network.ticks();
            was_partitioned = partitioned;
          }
          // The cut paths form a split: side[r] is whether r is with replica 0. A path is cut
          // only across sides; symmetric cuts both directions; asymmetric one side's outbound.
          std::vector<bool> with_zero(5, true);
          for (u32 replica = 1; replica < 5; replica += 1) {
            with_zero[replica] = !network.path_is_cut({.source = 0, .target = replica}) &&
                                 !network.path_is_cut({.source = replica, .target = 0});
          }
          u32 cut_count = 0;
          for (u32 source = 0; source < 5; source += 1) {
            for (u32 target = 0; target < 5; target += 1) {
              if (source == target) continue;
              const bool cut = network.path_is_cut({.source = source, .target = target});
              const bool reverse = network.path_is_cut({.source = target, .target = source});
              cut_count += cut ? 1u : 0u;
              if (cut) CHECK(with_zero[source] != with_zero[target]);
              if (partitioned && with_zero[source] != with_zero[target]) {
                CHECK((symmetric ? cut && reverse : cut != reverse));
              }
            }
            // Clients are never partitioned.
            CHECK_FALSE(network.path_is_cut({.source = 5, .target = source}));
            CHECK_FALSE(network.path_is_cut({.source = source, .target = 5}));
          }
          CHECK((cut_count > 0) == partitioned);
          const auto side_count = static_cast<u32>(std::count(with_zero.begin(), with_zero.end(),
                                                              true));
          if (partitioned) CHECK(side_count < 5);
          if (partitioned && mode == PartitionMode::isolate_single) {
            CHECK((side_count == 1 || side_count == 4));
          }
        }
        CHECK(network.stats().partitions >= 20);
      }
    }
  }

  TEST_CASE("sim network: heal_all ends an automatic partition which may come back later") {
    Cluster cluster(NetworkOptions{.replica_count = 3,
                                   .seed = 21,
                                   .faults = {.partition_mode = PartitionMode::isolate_single,
                                              .partition_ppm = ppm_always,
                                              .whole_ticks_min = 2}});
    cluster.network.tick();
    REQUIRE(cluster.network.auto_partitioned());
    cluster.network.heal_all();
    CHECK_FALSE(cluster.network.auto_partitioned());
    for (u32 source = 0; source < 3; source += 1) {
      for (u32 target = 0; target < 3; target += 1) {
        CHECK_FALSE(cluster.network.path_is_cut({.source = source, .target = target}));
      }
    }
    cluster.run(2);
    CHECK_FALSE(cluster.network.auto_partitioned());
    cluster.network.tick();
    CHECK(cluster.network.auto_partitioned());
    CHECK(cluster.network.stats().partitions == 2);
  }

  TEST_CASE("sim network: a clog holds a path's packets in order and drops none") {
    Cluster cluster(NetworkOptions{
        .replica_count = 2, .seed = 22, .delay_min_ticks = 1, .delay_max_ticks = 3});
    const Path path = {.source = 0, .target = 1};
    cluster.network.path_clog(path, 10);
    CHECK(cluster.network.path_is_clogged(path));
    for (u64 tag = 0; tag < 20; tag += 1) cluster.send(0, 1, tag);
    cluster.send(1, 0, 100);
    cluster.run(10);
    CHECK(cluster.tags_at(1).empty());
    CHECK(cluster.tags_at(0) == std::vector<u64>{100});
    CHECK_FALSE(cluster.network.path_is_clogged(path));
    cluster.network.tick();
    // Released together on the first free tick, in send order.
    CHECK(cluster.tags_at(1) == iota_tags(20));
    CHECK(cluster.deliveries.back().tick == 11);
    CHECK(cluster.network.stats().held == 20);
    CHECK(cluster.network.stats().dropped_total() == 0);
    cluster.check_accounting();
  }

  TEST_CASE("sim network: automatic clogs delay packets without losing them") {
    Cluster cluster(NetworkOptions{.replica_count = 3,
                                   .seed = 23,
                                   .faults = {.clog_ppm = 50'000, .clog_ticks_max = 20}});
    for (u32 round = 0; round < 200; round += 1) {
      cluster.send(round % 3, (round + 1) % 3, round);
      cluster.network.tick();
    }
    cluster.run_until_idle();
    const NetworkStats& stats = cluster.network.stats();
    CHECK(stats.clogs > 0);
    CHECK(stats.held > 0);
    CHECK(stats.delivered == 200);
    // Some packet took longer than its one-tick delay.
    bool late = false;
    for (const Delivery& delivery : cluster.deliveries) {
      late = late || delivery.tick > delivery.tag + 1;
    }
    CHECK(late);
    cluster.check_accounting();
  }

  TEST_CASE("sim network: a crashed node loses what was in flight to and from it") {
    Cluster cluster(NetworkOptions{
        .replica_count = 3, .seed = 24, .delay_min_ticks = 5, .delay_max_ticks = 5});
    Network& network = cluster.network;
    cluster.send(0, 1, 1);  // To the node that crashes.
    cluster.send(1, 2, 2);  // From it.
    cluster.send(0, 2, 3);  // Elsewhere: unaffected.
    network.tick();
    network.node_down(1);
    CHECK_FALSE(network.node_is_up(1));
    cluster.send(1, 0, 4);  // A down node does not send,
    cluster.send(0, 1, 5);  // nor receive.
    CHECK(network.stats().drop_count(Drop::node_down) == 2);
    // Back up before the old packets are due: they belonged to the broken connections.
    network.tick();
    network.node_up(1);
    cluster.send(0, 1, 6);
    cluster.run_until_idle();
    CHECK(cluster.tags_at(1) == std::vector<u64>{6});
    CHECK(cluster.tags_at(2) == std::vector<u64>{3});
    CHECK(cluster.tags_at(0).empty());
    CHECK(network.stats().drop_count(Drop::node_down) == 4);
    cluster.check_accounting();
  }

  TEST_CASE("sim network: replies reach clients by id and unroutable sends are dropped") {
    const u128 alice = tally::make_u128(1, 0xa);
    const u128 bob = tally::make_u128(2, 0xb);
    Cluster cluster(NetworkOptions{.replica_count = 2, .client_count_max = 3, .seed = 25},
                    {alice, bob});
    CHECK(cluster.network.node_count() == 4);
    CHECK(cluster.network.client_node(alice) == 2);
    CHECK(cluster.network.client_node(bob) == 3);
    CHECK(cluster.network.client_node(tally::make_u128(3, 0xc)) == Network::node_none);

    // Clients send requests; the replica answers each on the sender's id.
    cluster.on_deliver = [&](u32 node, Message* message) {
      if (node == 0) {
        const u64 tag = Cluster::tag_of(message);
        Message* reply = cluster.message_make(tag + 1000);
        cluster.endpoints[0]->send_to_client(tag == 2 ? alice : bob, reply);
        cluster.pool.unref(reply);
      }
    };
    cluster.send(2, 0, 2);
    cluster.send(3, 0, 3);
    cluster.run_until_idle();
    CHECK(cluster.tags_at(2) == std::vector<u64>{1002});
    CHECK(cluster.tags_at(3) == std::vector<u64>{1003});
    // The reply is never delivered inside the handler that sent it.
    for (const Delivery& delivery : cluster.deliveries) {
      if (delivery.tag >= 1000) CHECK(delivery.tick > 1);
    }

    cluster.on_deliver = nullptr;
    Message* message = cluster.message_make(9);
    cluster.endpoints[1]->send_to_client(tally::make_u128(3, 0xc), message);  // Unknown id.
    cluster.endpoints[1]->send_to_client(0, message);                         // Never valid.
    cluster.endpoints[1]->send_to_replica(1, message);                        // Itself.
    cluster.pool.unref(message);
    CHECK(cluster.network.stats().drop_count(Drop::no_route) == 3);
    CHECK(cluster.network.idle());
    cluster.check_accounting();
  }

  TEST_CASE("sim network: a replica with no handler yet is unreachable") {
    PoolHolder holder(16);
    Network network(&holder.pool, NetworkOptions{.replica_count = 2, .seed = 26});
    u32 received = 0;
    const Network::OnMessage count = [](void* context, Message*) {
      *static_cast<u32*>(context) += 1;
    };
    Network::Endpoint& zero = network.replica_attach(0, count, &received);
    Message* message = holder.pool.get();
    message->header().size = header_size;
    zero.send_to_replica(1, message);
    CHECK(network.stats().drop_count(Drop::no_route) == 1);
    network.replica_attach(1, count, &received);
    zero.send_to_replica(1, message);
    holder.pool.unref(message);
    network.tick();
    CHECK(received == 1);
    CHECK(&zero.pool() == &holder.pool);
    CHECK(holder.pool.free_count() == holder.pool.capacity());
  }

  TEST_CASE("sim network: a receiver keeps a message by taking its own reference") {
    Cluster cluster(NetworkOptions{.replica_count = 2, .seed = 27}, {}, 8);
    Message* kept = nullptr;
    cluster.on_deliver = [&](u32, Message* message) { kept = cluster.pool.ref(message); };
    cluster.send(0, 1, 42);
    cluster.run_until_idle();
    REQUIRE(kept != nullptr);
    CHECK(kept->references == 1);
    CHECK(Cluster::tag_of(kept) == 42);
    CHECK(cluster.pool.free_count() == cluster.pool.capacity() - 1);
    cluster.pool.unref(kept);
    CHECK(cluster.pool.free_count() == cluster.pool.capacity());
  }

  TEST_CASE("sim network: drain drops every packet and returns every reference") {
    Cluster cluster(NetworkOptions{.replica_count = 3,
                                   .client_count_max = 2,
                                   .seed = 28,
                                   .delay_min_ticks = 1,
                                   .delay_max_ticks = 50,
                                   .faults = {.duplicate_ppm = 300'000}},
                    {u128{1}, u128{2}}, 256);
    Prng prng(28);
    for (u32 index = 0; index < 200; index += 1) {
      const u32 source = prng.index(5u);
      const u32 target = source < 3 ? prng.index(5u) : prng.index(3u);
      if (source != target) cluster.send(source, target, index);
    }
    cluster.run(10);
    REQUIRE(cluster.network.in_flight_count() > 0);
    CHECK(cluster.pool.free_count() < cluster.pool.capacity());
    const u32 in_flight = cluster.network.in_flight_count();
    cluster.network.drain();
    CHECK(cluster.network.idle());
    CHECK(cluster.network.stats().drop_count(Drop::drain) == in_flight);
    for (u32 source = 0; source < 5; source += 1) {
      for (u32 target = 0; target < 5; target += 1) {
        CHECK(cluster.network.path_packet_count({.source = source, .target = target}) == 0);
      }
    }
    cluster.check_accounting();
    CHECK(cluster.pool.free_count() == cluster.pool.capacity());
  }

  TEST_CASE("sim network: one seed and one sequence of calls give one delivery trace") {
    // A busy cluster with every fault on: nodes forward what they receive to a node drawn by
    // the test's own generator (seeded alike), nodes crash and restart, clients come and go.
    struct Run {
      std::vector<Delivery> deliveries;
      u64 trace_hash = 0;
      NetworkStats stats;
      u32 pool_free = 0;
      u32 pool_capacity = 0;
    };
    const auto run = [](u64 seed) {
      Cluster cluster(NetworkOptions{.replica_count = 3,
                                     .client_count_max = 2,
                                     .seed = seed,
                                     .path_packet_count_max = 4,
                                     .delay_min_ticks = 1,
                                     .delay_max_ticks = 8,
                                     .faults = {.loss_ppm = 50'000,
                                                .duplicate_ppm = 50'000,
                                                .clog_ppm = 2'000,
                                                .clog_ticks_max = 10,
                                                .partition_mode = PartitionMode::uniform_size,
                                                .partition_ppm = 20'000,
                                                .heal_ppm = 50'000}},
                      {u128{100}, u128{200}}, 512);
      Prng prng(seed ^ 0x5eed);
      cluster.on_deliver = [&](u32 node, Message* message) {
        const u64 hops = Cluster::tag_of(message) % 8;
        if (hops == 0) return;
        // Clients talk to replicas; replicas to anyone but themselves.
        u32 target = node < 3 ? prng.index(5u) : prng.index(3u);
        if (target == node) target = (target + 1) % 3;
        cluster.send(node, target, Cluster::tag_of(message) - 1);
      };
      for (u32 tick = 0; tick < 600; tick += 1) {
        for (u32 index = 0; index < 2; index += 1) {
          const u32 source = prng.index(5u);
          cluster.send(source, source < 3 ? (source + 1) % 3 : prng.index(3u),
                       (u64{tick} << 8) | 7);
        }
        // A node crashes now and then and restarts a few ticks later.
        const u32 node = prng.index(5u);
        if (cluster.network.node_is_up(node)) {
          if (prng.chance_ppm(5'000)) cluster.network.node_down(node);
        } else if (prng.chance_ppm(200'000)) {
          cluster.network.node_up(node);
        }
        cluster.network.tick();
      }
      cluster.network.drain();
      cluster.check_accounting();
      return Run{.deliveries = cluster.deliveries,
                 .trace_hash = cluster.network.trace_hash(),
                 .stats = cluster.network.stats(),
                 .pool_free = cluster.pool.free_count(),
                 .pool_capacity = cluster.pool.capacity()};
    };
    const Run first = run(29);
    const Run second = run(29);
    const Run other = run(30);
    CHECK(first.deliveries.size() > 500);
    CHECK(first.deliveries == second.deliveries);
    CHECK(first.trace_hash == second.trace_hash);
    CHECK(first.stats.dropped == second.stats.dropped);
    CHECK(first.stats.duplicated == second.stats.duplicated);
    CHECK(first.deliveries != other.deliveries);
    CHECK(first.trace_hash != other.trace_hash);
    // Every fault happened in the run, and every reference came back.
    for (const Drop drop : {Drop::loss, Drop::partition, Drop::node_down, Drop::path_full}) {
      CAPTURE(std::string(tally::io::sim::drop_name(drop)));
      CHECK(first.stats.drop_count(drop) > 0);
    }
    CHECK(first.stats.duplicated > 0);
    CHECK(first.stats.held > 0);
    CHECK(first.pool_free == first.pool_capacity);
  }

  TEST_CASE("sim network: misuse traps: a bad message or a tick from inside a handler") {
    const auto bad_size = run_in_child([] {
      PoolHolder holder(4);
      Network network(&holder.pool, NetworkOptions{.replica_count = 2});
      network.replica_attach(1, [](void*, Message*) {}, nullptr);
      Message* message = holder.pool.get();  // Header zeroed: size 0.
      network.replica_attach(0, [](void*, Message*) {}, nullptr).send_to_replica(1, message);
    });
    CHECK(bad_size.trapped());
    CHECK(bad_size.stderr_contains("size 0"));

    const auto reentrant = run_in_child([] {
      PoolHolder holder(4);
      Network network(&holder.pool, NetworkOptions{.replica_count = 2});
      network.replica_attach(1, [](void* context, Message*) {
        static_cast<Network*>(context)->tick();
      }, &network);
      Message* message = holder.pool.get();
      message->header().size = header_size;
      network.replica_attach(0, [](void*, Message*) {}, nullptr).send_to_replica(1, message);
      network.tick();
    });
    CHECK(reentrant.trapped());
    CHECK(reentrant.stderr_contains("inside a handler"));
  }
}
