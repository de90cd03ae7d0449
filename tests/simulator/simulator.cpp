// The simulator: a whole Tally cluster (1-6 replicas) and its clients in one thread, on
// simulated storage, network and time, driven by one seed.
//
//   simulator [--replicas=N] [--clients=N] [--requests=N] [--ticks=N] [--crashes] [--faults]
//             [--storage-faults] [--slow-disk] [--forged] [--clock-skew] [--lost=K]
//             [--isolate-primary] [--wipe] [--grid-faults] [--superblock-faults] SEED...
//
// Each run builds the cluster, lets every client register and send its requests (a random mix
// of account and transfer creations, exact repeats, and lookups; tests/simulator/
// ledger_model.hpp says why these) through the real client session logic, while the network
// loses, delays, reorders and duplicates packets and partitions replicas, (with --crashes)
// replicas crash and restart, some with torn or lost writes (primaries too: view changes
// replace them), and (with --storage-faults) the WALs of up to replication quorum - 1 replicas
// suffer latent sector errors and bit flips, and (with --slow-disk) one replica's writes take
// tens of ticks, so that the cluster commits without it and its write queue fills; with
// --grid-faults those replicas' grids are damaged too, which a replica repairs from its peers
// when it reads its checkpoint at open, and with --superblock-faults one of their superblock
// copies (read errors, bit flips), which the quorum of four copies survives.
// With --forged a node that is no replica (attached to the network as one more client) sends,
// a few times per 100 ticks, well-formed replica messages (prepare, prepare_ok, commit,
// get_prepare) with valid checksums to random replicas: views below, at and above the current
// one, any sender, ops around the log's head, valid and invalid operations, valid multi-batch
// bodies and junk, and copies of real prepares (seen on their way to a replica) with one field
// changed; the replicas must reject or survive each. What no replica can reject without peer
// authentication (Tally has none yet) is kept out of the draws: see forgery_indistinguishable(),
// forge_prepare_ok() and forge_commit(); and judged again at delivery (forger_late()).
// With --clock-skew every replica has its own wall clock (its own io::sim::Time; all of them
// tick together, so monotonic time stays common), up to 3 s off either way and up to
// Time::drift_ppm_max (1%) fast or slow, and now and then one replica's clock steps to another
// offset, backwards too (an NTP step).
// With --lost=K (K at most f = replicas - max(replication, view-change quorum), what the cluster
// can lose and still make progress), at a random point in the first half of the workload K
// replicas crash for good, the view's primary first; the end game leaves them down and the
// final checks are on the survivors. A committed op may be held by a replication quorum only,
// K of them lost: with --lost, storage faults go on at most replication quorum - 1 - K replicas,
// so that a survivor keeps an intact copy, and where that is none --storage-faults is refused.
// With --isolate-primary, now and then the view's primary is cut off from the other replicas
// for 10-500 ticks: both directions, only its outgoing paths, or only its incoming ones (clients
// keep every link). With --wipe (3 or more replicas, not with --lost), once in a run a replica
// that crashes (with --storage-faults, one of those whose storage is faulty) loses its data file
// for good: it comes back, as `tally recover` brings it back (src/cli/recover.cpp), only once the
// cluster has committed up to the head its lost WAL had, from a new data file in the highest
// view a running replica is in plus 2, and must catch up from its peers (state sync where they
// are a WAL past op 0). Each new mode draws from a PRNG of its own: the workload's draws, and with
// them old seeds, stay those of a run without it.
// After every tick the checkers run:
//   - agreement: every op committed anywhere has one checksum (the hash chain) everywhere;
//   - state: replicas at the same commit number have the same ledger digest, and durable
//     checkpoints of the same op the same id (over the whole run), the id that the prepares
//     of the interval after the next name;
//   - replies: every reply a client accepts equals, byte for byte, what the reference model
//     answers when the committed ops are applied to it in op order, and reply timestamps
//     increase with the op;
//   - durability: what a client saw acknowledged is in the model, and at the end the model's
//     accounts and transfers are exactly every replica's;
//   - forgeries (--forged): no replica commits a forged prepare (and none asserts);
//   - one primary per view: every prepare a replica sends (seen at its bus, so never the
//     forger's) names its view's primary (view % replica_count), no two prepares sent for one
//     (view, op) differ, and each is one a replica made (not a forgery passed on);
//   - timestamps: a committed prepare's timestamp is at least the wall clock of the primary
//     that prepared it, read as it prepared it, and at most timestamp_ahead_max_ns above the
//     highest wall clock any replica had shown by then (timestamp_ahead_max_ns says why);
//   - retried requests: every reply a client receives for one request, from any replica, at
//     any time, is the first one byte for byte (checked before the client session, which
//     drops duplicates).
// At the end (the end game) faults stop, crashed replicas restart (all but the lost ones), and
// the run must finish every request and bring every replica to the same commit (liveness)
// within a bound of ticks (end_game_ticks_base says which and why): every replica but the lost
// ones, those that fell a WAL or more behind too (they catch up by state sync).
//
// A failure prints the seed and the first broken rule and exits 1; the same seed reproduces it.
#include <array>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "io/sim/network.hpp"
#include "io/sim/storage.hpp"
#include "io/sim/time.hpp"
#include "journal/layout.hpp"
#include "journal/superblock.hpp"
#include "src/base/large_array.hpp"
#include "src/base/message_pool.hpp"
#include "src/base/prng.hpp"
#include "src/client/request_body.hpp"
#include "src/client/session.hpp"
#include "src/state_machine/config.hpp"
#include "src/vsr/replica.hpp"
#include "tally/multi_batch.hpp"
#include "tests/simulator/ledger_model.hpp"

namespace {

using namespace tally;
using base::Message;
using base::MessagePool;
using base::Prng;
using base::Ratio;
using io::sim::Network;

class Simulation;

// A replica's message bus: its network endpoint, with the simulator looking at every message the
// replica sends (the one-primary-per-view checker and the prepares' creation for the timestamp
// checker: a replica sends each prepare it makes at once). The forger sends through an endpoint
// of its own, so what passes here is only ever a replica's.
class ReplicaBus {
 public:
  ReplicaBus() = default;
  ReplicaBus(Simulation* simulation, u8 replica, Network::Endpoint* endpoint)
      : simulation_(simulation), replica_(replica), endpoint_(endpoint) {}

  void send_to_replica(u8 replica, Message* message);
  void send_to_client(u128 client, Message* message) {
    endpoint_->send_to_client(client, message);
  }
  MessagePool& pool() { return endpoint_->pool(); }

 private:
  Simulation* simulation_ = nullptr;
  u8 replica_ = 0;
  Network::Endpoint* endpoint_ = nullptr;
};

// A replica's wall clock: the machine's io::sim::Time, which goes on through crashes and
// restarts, and a note of whether the replica read it this tick. A replica reads its clock to
// timestamp what it prepares (and once as it opens), so a tick's new prepares are in the logs
// of the replicas that read their clock in it (the timestamp checker looks there).
class ReplicaClock {
 public:
  i64 realtime_ns() const {
    read_ = true;
    return time_.realtime_ns();
  }
  io::sim::Time& time() { return time_; }
  const io::sim::Time& time() const { return time_; }
  bool read() const { return read_; }
  void read_clear() { read_ = false; }

 private:
  io::sim::Time time_{io::sim::TimeOptions{}};
  mutable bool read_ = false;
};

using Replica = vsr::Replica<io::sim::Storage, ReplicaBus, ReplicaClock>;
using Session = client::Session<Network::Endpoint>;

constexpr u128 cluster_id = 3;
// --slow-disk: far slower than the network's round trip, so the slow backup's WAL writes fall
// behind the prepares it receives.
constexpr u32 slow_disk_latency_min_ticks = 40;
constexpr u32 slow_disk_latency_max_ticks = 120;
constexpr u32 slow_disk_slot_count = 256;
// --forged: the forger's node id (a client's, to the network), and its pace: one message at
// this chance per tick.
constexpr u128 forger_id = (u128{0xF0F6ED} << 64) | 1;
constexpr Ratio forger_send_chance{.numerator = 1, .denominator = 25};
// Real prepares the forger keeps copies of, to forge from (the most recent ones).
constexpr u32 forger_observed_max = 32;
// --clock-skew: each replica's wall clock starts within this of true time, either way, and at
// this chance per tick one replica's clock steps to a new offset within it.
constexpr i64 clock_offset_max_ns = 3'000'000'000;
constexpr Ratio clock_step_chance{.numerator = 1, .denominator = 1000};
// How far above the highest wall clock the cluster has shown a committed prepare's timestamp
// may be. The primary takes P = max(max(P_prev, C) + 1, now) + N (src/vsr/replica_primary.hpp):
// its own clock unless the log is ahead of it, and then one more than the log, plus N, the
// timestamps the op reserves for its events (up to 8190 for a pulse, at most 1 per 10 ticks; up
// to 8 per request here). Every P_prev was a clock reading once, so P runs ahead of every clock
// only by the N + 1 of the ops prepared while no clock has passed the highest reading yet: after
// a clock stepped back from being the highest, at most 2 * clock_offset_max_ns plus drift (about
// 6 s), a few hundred ops and pulses, well under 1 ms in all (measured over 640 runs with
// --clock-skew: at most 8,328 ns, a pulse's reservation). The bound is 10 ms, one tick, ten
// times the worst case; a primary that ran its timestamps from anything but a clock (a forged
// or corrupt floor, a second offset) is seconds off.
constexpr u64 timestamp_ahead_max_ns = 10'000'000;
// --lost: the clients' completed requests, as a fraction of all their requests, at which the
// replicas are lost is drawn from [1/20, 1/2].
constexpr u64 lost_progress_min_per_mille = 50;
constexpr u64 lost_progress_max_per_mille = 500;
// --wipe: a replica's file is lost only while this many requests are left, so that the
// clients' requests commit past its lost WAL's head before the run ends (else it stays lost).
constexpr u64 wipe_requests_left_min = 40;
// --isolate-primary: at this chance per tick (while nothing is cut off), the view's primary is
// cut off for isolate_ticks_min..isolate_ticks_max ticks: some shorter than the backups' 1 s
// heartbeat timeout (normal_heartbeat_ticks), some long enough for a view change or several.
constexpr Ratio isolate_chance{.numerator = 1, .denominator = 400};
constexpr u64 isolate_ticks_min = 10;
constexpr u64 isolate_ticks_max = 500;
// The liveness bound: from the end game's start (faults healed, crashed replicas restarting),
// the clients must have finished and the replicas converged within
//   end_game_ticks_base (end_game_slow_disk_ticks_base with --slow-disk)
//     + end_game_ticks_per_request * the requests the clients had left then.
// Measured over about 2,350 runs on ordinary disks (300 seeds of --faults --crashes on 1-6
// replicas, 150 each with --storage-faults, --clock-skew, --lost, --isolate-primary and all of
// them with --forged, and 1,300 random runs as tools/simulator_long.sh draws them), where the
// clients had finished when the end game began: median 10 ticks, 99th percentile 300, most 550
// (restarts, a view change or two, repair); 1,300 more on the working tree of the state sync
// work (uncommitted then): most 450, and one other run there took 2,191 ticks (two replicas
// catching up slowly). 3,000 is more than five times the usual most. It is below the longest
// wait of a backed-off view change (32 * view_change_status_ticks): none of these runs waited
// so long once every replica was up and connected, and the two end games that took longer
// (3,293 and 4,741 ticks) were a replica stuck in an old view (tests/simulator/CMakeLists.txt,
// get_view_never_asked_again). Replicas a WAL or more behind are in the bound too, since state
// sync brings them back (before it they were left out of convergence). With
// --slow-disk (about 400 such runs) the slow replica must write what it missed at 40-120 ticks
// a write: median 20, 99th percentile 4,900, most 5,400 ticks; 20,000 is almost four times
// that. The end game also begins at ticks_max / 2 with requests left (60 runs, all with
// --slow-disk, most of them 2 replicas, where every commit waits for the slow disk): at most 90
// ticks a request where many were left; 400 a request is more than four times it.
constexpr u64 end_game_ticks_base = 3'000;
constexpr u64 end_game_slow_disk_ticks_base = 20'000;
constexpr u64 end_game_ticks_per_request = 400;

struct Options {
  u64 seed = 0;
  u8 replica_count = 3;
  u32 client_count = 4;
  u32 requests_per_client = 60;
  bool crashes = false;
  bool faults = false;
  bool storage_faults = false;
  bool slow_disk = false;
  bool forged = false;
  bool clock_skew = false;
  u8 lost = 0;
  bool isolate_primary = false;
  bool wipe = false;
  bool grid_faults = false;
  bool superblock_faults = false;
  u64 ticks_max = 200'000;
};

// What the cluster can lose for good and still make progress: a view change needs a view-change
// quorum of survivors, and a commit a replication quorum.
u8 lost_max(u8 replica_count) {
  const vsr::Quorums quorums = vsr::quorums(replica_count);
  const u32 needed =
      quorums.replication > quorums.view_change ? quorums.replication : quorums.view_change;
  return static_cast<u8>(replica_count - needed);
}

// The replicas whose WALs take storage faults (--storage-faults): replicas 1 up to, not
// including, this one. Every committed op is on a replication quorum of replicas; with at most
// replication - 1 - lost of them faulty and `lost` of them gone, an intact copy survives.
u8 storage_faults_end(const Options& options) {
  const u32 replication = vsr::quorums(options.replica_count).replication;
  return replication > 1u + options.lost ? static_cast<u8>(replication - options.lost) : 1;
}

[[noreturn]] void fail(const Options& options, const std::string& what) {
  std::fprintf(stderr, "simulator: seed %" PRIu64 " FAILED: %s\n", options.seed, what.c_str());
  std::exit(1);
}

journal::LayoutConfig layout_config(const Options& options) {
  journal::LayoutConfig config = journal::LayoutConfig::testing();
  config.message_size_max = message_size_max;  // The replica needs whole-size messages.
  // A WAL far longer than the slow backup's write queue: the queue, not the WAL window, is what
  // must hold back a backup whose disk falls behind.
  if (options.slow_disk) config.slot_count = slow_disk_slot_count;
  config.grid_block_count = 512;
  return config;
}

struct ReplicaNode {
  Simulation* simulation = nullptr;
  u8 index = 0;
  std::unique_ptr<io::sim::Storage> storage;
  std::unique_ptr<Replica> replica;
  Network::Endpoint* endpoint = nullptr;
  ReplicaBus bus;
  ReplicaClock clock;
  bool up = false;
  bool lost = false;  // Crashed for good (--lost), or wiped with no way back (--wipe).
  // --wipe: its data file is lost; the head its WAL had, which the cluster must have committed
  // before the replica comes back from a new file.
  std::optional<u64> wiped_head;
  u64 restart_tick = 0;
  u64 checked_op = 0;  // Ops up to here were compared with the chain.
  // The ledger's digest at a commit_min, computed once: a replica's state is a function of the
  // ops it executed (replica_start() forgets it; a syncing replica is not digested).
  std::optional<std::pair<u64, u128>> digest_at;
};

struct ClientNode {
  Simulation* simulation = nullptr;
  u32 index = 0;
  u128 id = 0;
  std::unique_ptr<Session> session;
  Network::Endpoint* endpoint = nullptr;
  u32 requests_done = 0;
  bool in_flight = false;
  bool registered = false;
  u64 requests_acknowledged = 0;
  std::vector<Account> accounts_created;    // As submitted, to repeat exactly.
  std::vector<Transfer> transfers_created;  // Acknowledged as created.
  std::vector<Transfer> transfers_sent;     // In the request in flight.
  Operation operation = Operation::reserved;
};

// A message as the forger builds it: a header and its body, sealed only when sent.
struct Forgery {
  Header header{};
  std::vector<std::byte> body;
};

// --isolate-primary: which of the primary's paths to the other replicas are cut.
enum class IsolateMode : u8 { both = 0, outgoing = 1, incoming = 2 };
inline constexpr u32 isolate_mode_count = 3;

struct Isolation {
  u8 replica = 0;
  IsolateMode mode = IsolateMode::both;
  u64 heal_tick = 0;
  bool active = false;
};

// A prepare as a primary made it: when, by whom, and the clocks then (the timestamp checker).
struct PrepareMade {
  u8 primary;
  u64 tick;
  u64 timestamp;  // 0 until seen (in a send, or in a WAL).
  i64 primary_realtime_ns;  // The primary's wall clock as it prepared it.
  i64 highest_realtime_ns;  // The highest wall clock any replica had shown by then.
};

// The first reply a client received for one of its requests.
struct ReplySeen {
  u128 header_checksum;
  u128 body_checksum;  // Computed here from the bytes, not taken from the header.
  u64 op;
  u64 timestamp;
};

// A reply waiting for the ops before it, so that the model applies ops in order.
struct Observed {
  Operation operation;
  std::vector<std::byte> request_body;
  u64 timestamp;
  std::vector<std::byte> reply_body;
};

class Simulation {
 public:
  explicit Simulation(const Options& options)
      : options_(options),
        prng_(options.seed),
        forger_prng_(options.seed ^ 0xF0F6EDULL),
        clock_prng_(options.seed ^ 0xC10C5EDULL),
        lost_prng_(options.seed ^ 0x105EDULL),
        isolate_prng_(options.seed ^ 0x150EDULL),
        wipe_prng_(options.seed ^ 0x3199EDULL),
        layout_(layout_config(options)) {
    pool_.init(2048, message_size_max);
    io::sim::NetworkOptions network_options{
        .replica_count = options.replica_count,
        .client_count_max = options.client_count + (options.forged ? 1u : 0u),
        .seed = options.seed ^ 0x5eed,
        .packet_count_max = 4096,
        .path_packet_count_max = 64,
        .delay_min_ticks = 1,
        .delay_max_ticks = options.faults ? 20u : 2u,
    };
    if (options.faults) network_options.faults = faults_random();
    network_ = std::make_unique<Network>(&pool_, network_options);

    replicas_.resize(options.replica_count);
    for (u8 index = 0; index < options.replica_count; index += 1) {
      ReplicaNode& node = replicas_[index];
      node.simulation = this;
      node.index = index;
      node.storage = storage_make(index, options.seed * 31 + index);
      format(node);
      // Storage faults on at most replication quorum - 1 replicas (never replica 0), fewer with
      // --lost (storage_faults_end()): then every committed op keeps an intact copy on some
      // replica that runs, which is what the cluster promises to survive (docs/vsr-protocol.md,
      // "Fault model").
      if (options.storage_faults && index != 0 && index < storage_faults_end(options)) {
        storage_faults_allow(*node.storage, index);
      }
      if (options.clock_skew) {
        node.clock.time().offset_set(
            clock_prng_.range_inclusive<i64>(-clock_offset_max_ns, clock_offset_max_ns));
        node.clock.time().drift_set(clock_prng_.range_inclusive<i64>(
            -io::sim::Time::drift_ppm_max, io::sim::Time::drift_ppm_max));
      }
      node.endpoint = &network_->replica_attach(index, replica_on_message, &node);
      node.bus = ReplicaBus(this, index, node.endpoint);
      replica_start(node);
    }
    realtime_highest_update();
    if (options.lost > 0) {
      const u64 requests = u64{options.client_count} * options.requests_per_client;
      lost_at_requests_ = requests * lost_prng_.range_inclusive<u64>(lost_progress_min_per_mille,
                                                                     lost_progress_max_per_mille) /
                          1000;
    }
    clients_.resize(options.client_count);
    for (u32 index = 0; index < options.client_count; index += 1) {
      ClientNode& node = clients_[index];
      node.simulation = this;
      node.index = index;
      node.id = (u128{0xC11E} << 64) | (index + 1);
      node.endpoint = &network_->client_attach(node.id, client_on_message, &node);
      node.session = std::make_unique<Session>(
          *node.endpoint, client::SessionOptions{.cluster = cluster_id,
                                                 .client = node.id,
                                                 .replica_count = options.replica_count,
                                                 .seed = options.seed + index});
    }
    if (options.forged) forger_ = &network_->client_attach(forger_id, forger_on_message, this);
  }

  ~Simulation() {
    for (ClientNode& node : clients_) node.session.reset();
    for (ReplicaNode& node : replicas_) node.replica.reset();
    network_->drain();
  }

  void run() {
    u64 tick = 0;
    bool quiet = false;
    u64 quiet_since = 0;
    std::optional<u64> end_game_ticks;  // From the end game's start to done and converged.
    for (; tick < options_.ticks_max; tick += 1) {
      step(tick, quiet);
      check();
      const bool clients_done = clients_finished();
      if (!quiet && (clients_done || tick > options_.ticks_max / 2)) {
        // The end game: faults stop, every replica but the lost ones comes back, and
        // everything must finish.
        quiet = true;
        quiet_since = tick;
        end_game_requests_left_ =
            u64{options_.client_count} * options_.requests_per_client - requests_done_total();
        network_->faults_set({});
        network_->heal_all();
        isolation_ = Isolation{};
      }
      if (!quiet) continue;
      const bool converged = clients_done && replicas_converged();
      if (converged && !end_game_ticks.has_value()) end_game_ticks = tick - quiet_since;
      const u64 elapsed = tick - quiet_since;
      if (!end_game_ticks.has_value() && elapsed > end_game_ticks_bound()) {
        dump();
        fail(options_, std::string("liveness: the ") +
                           (clients_done ? "replicas did not converge"
                                         : "clients did not finish their requests") +
                           " within " + std::to_string(end_game_ticks_bound()) +
                           " ticks of the end game (end_game_ticks_base " +
                           (options_.slow_disk ? "with --slow-disk " : "") + "+ " +
                           std::to_string(end_game_requests_left_) +
                           " requests left * end_game_ticks_per_request), which began at tick " +
                           std::to_string(quiet_since));
      }
      if (converged && tick > quiet_since + 200) break;
    }
    if (!clients_finished() || !replicas_converged()) dump();
    if (!clients_finished()) {
      fail(options_, "liveness: clients did not finish their requests in " +
                         std::to_string(options_.ticks_max) + " ticks");
    }
    if (!replicas_converged()) fail(options_, "liveness: replicas did not converge");
    final_check();
    report(tick, end_game_ticks);
  }

 private:
  void report(u64 tick, std::optional<u64> end_game_ticks) const {
    std::printf("simulator: seed %" PRIu64 " ok: %u replicas, %u clients, %" PRIu64
                " ops, %" PRIu64 " ticks, %" PRIu64 " crashes, %" PRIu64
                " packets dropped of %" PRIu64 ", %" PRIu64 " storage faults, %" PRIu64
                " expiries, %" PRIu64 " state syncs%s, end game %" PRIu64 " ticks (%" PRIu64
                " requests left), %" PRIu64 " replies repeated%s\n",
                options_.seed, options_.replica_count, options_.client_count, model_op_, tick,
                crashes_, network_->stats().dropped_total(), network_->stats().sent,
                storage_fault_count(), expired_, syncs_done(), forger_summary().c_str(),
                end_game_ticks.value_or(0), end_game_requests_left_, replies_repeated_,
                modes_summary().c_str());
  }

  // The liveness bound on the end game (see end_game_ticks_base).
  u64 end_game_base_ticks() const {
    return options_.slow_disk ? end_game_slow_disk_ticks_base : end_game_ticks_base;
  }
  u64 end_game_ticks_bound() const {
    return end_game_base_ticks() + end_game_requests_left_ * end_game_ticks_per_request;
  }

  io::sim::NetworkFaults faults_random() {
    io::sim::NetworkFaults faults;
    faults.loss_ppm = static_cast<u32>(prng_.range_inclusive<u64>(0, 50'000));
    faults.duplicate_ppm = static_cast<u32>(prng_.range_inclusive<u64>(0, 30'000));
    faults.partition_mode = io::sim::PartitionMode::uniform_size;
    faults.partition_ppm = 2'000;
    faults.heal_ppm = 20'000;
    faults.partition_ticks_min = 10;
    faults.whole_ticks_min = 50;
    return faults;
  }

  // Latent sector errors and bit flips in the WAL (and with --grid-faults in the grid, at a
  // twentieth of the rate: a checkpoint is read whole at open), and torn writes at crashes, on
  // the replicas the constructor chooses (never more than replication quorum - 1, whatever their
  // role): what the cluster repairs from peers (a checkpoint's damaged grid blocks when it is
  // read, at open). Client replies are not repaired from peers yet (docs/vsr-protocol.md,
  // "Limits").
  void storage_faults_allow(io::sim::Storage& storage, u8 index) {
    if (options_.grid_faults) {
      const journal::Zone grid = layout_.zone(journal::ZoneKind::grid);
      const io::sim::FaultZone fault_zone{
          .offset = grid.offset, .size = grid.size, .read_fault_divisor = 20};
      storage.faults_allow(io::sim::Fault::read_error, fault_zone);
      storage.faults_allow(io::sim::Fault::bit_flip, fault_zone);
      storage.faults_allow(io::sim::Fault::torn_write, fault_zone);
    }
    if (options_.superblock_faults) {
      // What the four copies are built to survive (docs/data-file.md): one bad copy at a time.
      // Read errors and bit flips, at the WAL's rates, in one copy's slot of each faulty
      // replica, and no torn write there: a crash in an update leaves new copies, the copy in
      // flight and old ones, and one more bad copy could leave no version with two (seed
      // 1676978063169256829, with faults in every slot and torn writes, found exactly that).
      const journal::Zone superblock = layout_.zone(journal::ZoneKind::superblock);
      const u64 slot = index % journal::superblock_copies;
      const io::sim::FaultZone fault_zone{
          .offset = superblock.offset + slot * journal::superblock_copy_size,
          .size = journal::superblock_copy_size};
      storage.faults_allow(io::sim::Fault::read_error, fault_zone);
      storage.faults_allow(io::sim::Fault::bit_flip, fault_zone);
    }
    const journal::Zone headers = layout_.zone(journal::ZoneKind::wal_headers);
    const journal::Zone prepares = layout_.zone(journal::ZoneKind::wal_prepares);
    for (const journal::Zone& zone : {headers, prepares}) {
      const io::sim::FaultZone fault_zone{.offset = zone.offset, .size = zone.size};
      storage.faults_allow(io::sim::Fault::read_error, fault_zone);
      storage.faults_allow(io::sim::Fault::bit_flip, fault_zone);
      storage.faults_allow(io::sim::Fault::torn_write, fault_zone);
    }
    storage.fault_rates_set(io::sim::FaultRates{.read_error_ppm = 2'000,
                                                .bit_flip_ppm = 2'000,
                                                .misdirected_write_ppm = 0,
                                                .torn_write_ppm = 300'000});
  }

  // A replica's storage, empty. The last replica has the slow disk (with view changes it is
  // sometimes the primary).
  std::unique_ptr<io::sim::Storage> storage_make(u8 index, u64 seed) const {
    const bool slow = options_.slow_disk && index == options_.replica_count - 1 && index != 0;
    return std::make_unique<io::sim::Storage>(io::sim::StorageOptions{
        .size = layout_.size(),
        .seed = seed,
        .read_latency_min_ticks = 1,
        .read_latency_max_ticks = options_.faults ? 5u : 1u,
        .write_latency_min_ticks = slow ? slow_disk_latency_min_ticks : 1u,
        .write_latency_max_ticks = slow ? slow_disk_latency_max_ticks
                                   : options_.faults ? 8u
                                                     : 1u,
    });
  }

  void format(ReplicaNode& node, u32 view = 0) {
    using Store = journal::SuperblockStore<io::sim::Storage>;
    Store store(*node.storage);
    bool done = false;
    store.context = &done;
    store.format({.cluster = cluster_id,
                  .replica = node.index,
                  .replica_count = options_.replica_count,
                  .layout = layout_.config(),
                  .view = view},
                 [](Store* s) { *static_cast<bool*>(s->context) = true; });
    while (!done) node.storage->tick();
  }

  void replica_start(ReplicaNode& node) {
    TALLY_ASSERT(!node.lost);
    node.replica = std::make_unique<Replica>(
        *node.storage, node.bus, node.clock, layout_,
        vsr::ReplicaOptions{.cluster = cluster_id,
                            .replica = node.index,
                            .replica_count = options_.replica_count,
                            .state_machine = state_machine::Config::testing()});
    node.replica->open(nullptr);
    node.up = true;
    node.checked_op = 0;
    node.digest_at.reset();
    network_->node_up(node.index);
  }

  void replica_crash(ReplicaNode& node) {
    messages_invalid_before_crashes_ += node.replica->stats().messages_invalid;
    syncs_done_before_crashes_ += node.replica->stats().syncs_done;
    checkpoint_repairs_before_crashes_ += node.replica->stats().checkpoint_repairs;
    // The storage first: writes in flight still read from the replica's buffers.
    node.storage->crash();
    node.replica.reset();
    node.up = false;
    network_->node_down(node.index);
    crashes_ += 1;
  }

  static void replica_on_message(void* context, Message* message) {
    auto* node = static_cast<ReplicaNode*>(context);
    if (node->simulation->options_.forged) {
      if (node->simulation->forger_late(*node, *message)) return;
      node->simulation->forger_observe(message);
    }
    if (node->replica) node->replica->on_message(message);
  }

  static void client_on_message(void* context, Message* message) {
    auto* node = static_cast<ClientNode*>(context);
    node->simulation->reply_check(*node, *message);
    node->session->on_message(message);
  }

  void step(u64 tick, bool quiet) {
    for (ReplicaNode& node : replicas_) node.clock.time().tick();
    if (options_.clock_skew && !quiet) clock_step();
    realtime_highest_update();
    network_->tick();
    for (ReplicaNode& node : replicas_) {
      node.storage->tick();
      if (node.replica) node.replica->tick();
    }
    // Before a crash can take a new prepare from a replica's memory.
    for (ReplicaNode& node : replicas_) {
      if (node.clock.read()) prepares_made_scan(node);
      node.clock.read_clear();
    }
    for (ClientNode& node : clients_) {
      node.session->tick();
      client_next(node);
    }
    if (options_.crashes) crash_step(tick, quiet);
    if (options_.forged) forger_step();
    if (options_.lost > 0 && !quiet) lost_step();
    if (options_.isolate_primary && !quiet) isolate_step(tick);
  }

  void crash_step(u64 tick, bool quiet) {
    for (ReplicaNode& node : replicas_) {
      if (node.up || node.lost || !(quiet || tick >= node.restart_tick)) continue;
      if (node.wiped_head.has_value()) {
        wiped_restart_try(node, quiet);
      } else {
        replica_start(node);
      }
    }
    if (quiet) return;
    if (prng_.chance(Ratio{.numerator = 1, .denominator = 400})) {
      ReplicaNode& node = replicas_[prng_.index(replicas_.size())];
      if (node.up) {
        const u64 head = node.replica->op();
        replica_crash(node);
        node.restart_tick = tick + prng_.range_inclusive<u64>(10, 300);
        if (options_.wipe) wipe_maybe(node, head);
      }
    }
    if (prng_.chance(Ratio{.numerator = 1, .denominator = 5000})) {
      const u64 restart = tick + prng_.range_inclusive<u64>(10, 100);
      for (ReplicaNode& node : replicas_) {
        if (!node.up) continue;
        replica_crash(node);
        node.restart_tick = restart;
      }
    }
  }

  // --wipe: the first time a crashed replica is drawn for it (eligible: with --storage-faults
  // only a replica whose storage is faulty, so that the faults stay within what the cluster
  // survives), while enough requests are left for the cluster to commit past its head.
  void wipe_maybe(ReplicaNode& node, u64 head) {
    if (wiped_ || requests_done_total() + wipe_requests_left_min >
                      u64{options_.client_count} * options_.requests_per_client) {
      return;
    }
    const bool faulty = node.index != 0 && node.index < storage_faults_end(options_);
    if (options_.storage_faults && !faulty) return;
    if (!wipe_prng_.chance(Ratio{.numerator = 1, .denominator = 3})) return;
    wiped_ = true;
    node.wiped_head = head;
  }

  // `tally recover`'s two steps: the cluster commits up to the lost WAL's head (the tool commits
  // a pipeline of requests of its own; here the clients' requests do it), then a new data file
  // in the highest view a running replica is in, plus 2. A run whose clients finished before
  // that gives the replica up as lost (counted in the summary).
  void wiped_restart_try(ReplicaNode& node, bool quiet) {
    TALLY_ASSERT(!node.up && node.wiped_head.has_value());
    u64 committed = 0;
    u32 view = 0;
    for (const ReplicaNode& other : replicas_) {
      if (!other.up || !other.replica->opened()) continue;
      committed = std::max(committed, other.replica->commit_min());
      view = std::max(view, other.replica->view());
    }
    if (committed < *node.wiped_head) {
      if (quiet && clients_finished()) {
        node.lost = true;
        wipes_abandoned_ += 1;
      }
      return;
    }
    const bool faulty = options_.storage_faults && node.index != 0 &&
                        node.index < storage_faults_end(options_);
    node.storage = storage_make(node.index, (options_.seed * 31 + node.index) ^ 0x3199ED);
    format(node, view + 2);
    if (faulty) storage_faults_allow(*node.storage, node.index);
    node.wiped_head.reset();
    wipes_ += 1;
    replica_start(node);
  }

  // --------------------------------------------------------------------------------------
  // Clocks (--clock-skew), replicas lost for good (--lost), the primary cut off
  // (--isolate-primary).

  // Now and then one replica's wall clock steps to another offset, forwards or back.
  void clock_step() {
    if (!clock_prng_.chance(clock_step_chance)) return;
    ReplicaNode& node = replicas_[clock_prng_.index(replicas_.size())];
    node.clock.time().offset_set(
        clock_prng_.range_inclusive<i64>(-clock_offset_max_ns, clock_offset_max_ns));
    clock_steps_ += 1;
  }

  // The highest wall clock any replica has shown (whether or not it was read): a timestamp
  // made from clock readings alone is never far above it.
  void realtime_highest_update() {
    for (const ReplicaNode& node : replicas_) {
      if (node.clock.time().realtime_ns() > realtime_highest_ns_) {
        realtime_highest_ns_ = node.clock.time().realtime_ns();
      }
    }
  }

  // The replica that leads the cluster now: the primary of the highest view a running replica
  // is normal in (it may itself be down or behind), or none while no replica is normal.
  std::optional<u8> primary_current() const {
    std::optional<u32> view;
    for (const ReplicaNode& node : replicas_) {
      if (!node.replica || node.replica->status() != vsr::ReplicaStatus::normal) continue;
      if (!view.has_value() || node.replica->view() > *view) view = node.replica->view();
    }
    if (!view.has_value()) return std::nullopt;
    return static_cast<u8>(*view % options_.replica_count);
  }

  u64 requests_done_total() const {
    u64 total = 0;
    for (const ClientNode& node : clients_) total += node.requests_done;
    return total;
  }

  // Once the clients have done the drawn share of their requests, and a view runs: its primary,
  // then options_.lost - 1 others drawn from the rest, crash and never come back.
  void lost_step() {
    if (lost_tick_.has_value() || requests_done_total() < lost_at_requests_) return;
    const std::optional<u8> primary = primary_current();
    if (!primary.has_value()) return;
    lose(replicas_[*primary]);
    for (u8 count = 1; count < options_.lost; count += 1) {
      std::vector<u8> survivors;
      for (const ReplicaNode& node : replicas_) {
        if (!node.lost) survivors.push_back(node.index);
      }
      lose(replicas_[survivors[lost_prng_.index(survivors.size())]]);
    }
    lost_tick_ = network_->ticks();
  }

  void lose(ReplicaNode& node) {
    TALLY_ASSERT(!node.lost);
    if (node.up) replica_crash(node);
    node.lost = true;
  }

  u8 lost_count() const {
    u8 count = 0;
    for (const ReplicaNode& node : replicas_) count = static_cast<u8>(count + (node.lost ? 1 : 0));
    return count;
  }

  // Cuts the view's primary off from the other replicas at a chance per tick, in one of three
  // ways, for a drawn while; heals exactly those paths (the manual layer of the network, which
  // only this uses: the automatic partitions of --faults have their own).
  void isolate_step(u64 tick) {
    if (isolation_.active) {
      if (tick < isolation_.heal_tick) return;
      isolate_paths(isolation_.replica, isolation_.mode, false);
      isolation_.active = false;
      return;
    }
    if (!isolate_prng_.chance(isolate_chance)) return;
    const std::optional<u8> primary = primary_current();
    if (!primary.has_value()) return;
    const auto mode = static_cast<IsolateMode>(isolate_prng_.index(u64{isolate_mode_count}));
    const u64 ticks = isolate_prng_.range_inclusive<u64>(isolate_ticks_min, isolate_ticks_max);
    isolation_ = Isolation{
        .replica = *primary, .mode = mode, .heal_tick = tick + ticks, .active = true};
    isolate_paths(isolation_.replica, isolation_.mode, true);
    isolations_[static_cast<u32>(isolation_.mode)] += 1;
  }

  void isolate_paths(u8 isolated, IsolateMode mode, bool cut) {
    const u32 node = network_->replica_node(isolated);
    for (u8 other = 0; other < options_.replica_count; other += 1) {
      if (other == isolated) continue;
      const u32 other_node = network_->replica_node(other);
      std::vector<io::sim::Path> paths;
      if (mode != IsolateMode::incoming) paths.push_back({.source = node, .target = other_node});
      if (mode != IsolateMode::outgoing) paths.push_back({.source = other_node, .target = node});
      for (const io::sim::Path path : paths) {
        if (cut) {
          network_->path_cut(path);
        } else {
          network_->path_heal(path);
        }
      }
    }
  }

  // --------------------------------------------------------------------------------------
  // Clients and their workload.

  bool clients_finished() const {
    for (const ClientNode& node : clients_) {
      if (node.requests_done < options_.requests_per_client || node.in_flight) return false;
    }
    return true;
  }

  void client_next(ClientNode& node) {
    if (node.session->state() == client::SessionState::idle) {
      if (node.session->start()) node.in_flight = false;
      return;
    }
    if (node.session->state() != client::SessionState::registered || node.in_flight) return;
    if (!node.registered) {
      node.registered = true;
      // The register's op: its reply is the session number.
      observe(node.session->session(), Operation::register_session, {}, 0, {});
    }
    if (node.requests_done >= options_.requests_per_client) return;
    std::vector<std::byte> body;
    const Operation operation = workload_next(node, body);
    node.operation = operation;
    const ClientError error =
        node.session->submit(operation, body, client_on_complete, &node);
    if (error != ClientError::ok) {
      fail(options_, std::string("client submit failed: ") + tally::name(error));
    }
    node.in_flight = true;
  }

  static void client_on_complete(void* context, const client::SessionCompletion& completion) {
    auto* node = static_cast<ClientNode*>(context);
    node->simulation->client_completed(*node, completion);
  }

  void client_completed(ClientNode& node, const client::SessionCompletion& completion) {
    if (completion.error != ClientError::ok) {
      dump();
      fail(options_, std::string("client ") + std::to_string(node.index) +
                         " request failed: " + tally::name(completion.error) + " (" +
                         tally::name(completion.eviction_reason) + ")");
    }
    node.in_flight = false;
    node.requests_done += 1;
    node.requests_acknowledged += 1;
    const Header& reply = completion.reply->header();
    const std::span<const std::byte> reply_body = completion.reply->body();
    const std::span<const std::byte> request_body = completion.request->body();
    observe(reply.reply.op, node.operation,
            std::vector<std::byte>(request_body.begin(), request_body.end()),
            reply.reply.timestamp, std::vector<std::byte>(reply_body.begin(), reply_body.end()));
    if (node.operation == Operation::create_transfers) {
      // Remember what was created, to repeat it exactly later.
      MultiBatchDecoder decoder;
      if (decoder.decode(reply_body, sizeof(CreateTransferResult)) != MultiBatchError::none) {
        fail(options_, "a create_transfers reply does not decode");
      }
      u32 position = 0;
      for (const std::span<const std::byte> batch : decoder) {
        for (u32 index = 0; index < batch.size() / sizeof(CreateTransferResult); index += 1) {
          CreateTransferResult result;
          std::memcpy(&result, batch.data() + index * sizeof(result), sizeof(result));
          if (result.status == CreateTransferStatus::created) {
            node.transfers_created.push_back(node.transfers_sent[position]);
          }
          position += 1;
        }
      }
    }
  }

  u128 account_id_random() {
    // Accounts are numbered per client; any client may name any of them, created or not yet.
    const u32 owner = static_cast<u32>(prng_.index(clients_.size()));
    const u64 number = prng_.range_inclusive<u64>(1, account_counters_[owner] + 2);
    return (u128{owner + 1} << 64) | number;
  }

  // One batch, encoded by the client library as any client would.
  template <typename Event>
  std::vector<std::byte> encode_one_batch(Operation operation, const std::vector<Event>& events) {
    std::vector<std::byte> body(message_body_size_max);
    const client::BodyEncoding encoded =
        client::encode_batch<Event>(operation, std::span<const Event>(events), body);
    if (encoded.error != ClientError::ok) {
      fail(options_, std::string("the workload built an invalid body: ") +
                         tally::name(encoded.error));
    }
    body.resize(encoded.size);
    return body;
  }

  Operation workload_next(ClientNode& node, std::vector<std::byte>& body) {
    if (account_counters_.size() != clients_.size()) account_counters_.resize(clients_.size());
    const u64 kind = prng_.index(u64{10});
    const u32 count = static_cast<u32>(prng_.range_inclusive<u64>(1, 8));
    if (kind < 3) {
      std::vector<Account> accounts;
      for (u32 index = 0; index < count; index += 1) {
        if (!node.accounts_created.empty() && prng_.chance(Ratio{1, 5})) {
          accounts.push_back(node.accounts_created[prng_.index(node.accounts_created.size())]);
          continue;
        }
        account_counters_[node.index] += 1;
        Account account{};
        account.id = (u128{node.index + 1} << 64) | account_counters_[node.index];
        account.ledger = 1;
        account.code = static_cast<u16>(prng_.range_inclusive<u64>(1, 9));
        account.user_data_64 = prng_.range_inclusive<u64>(0, 1000);
        node.accounts_created.push_back(account);
        accounts.push_back(account);
      }
      body = encode_one_batch(Operation::create_accounts, accounts);
      return Operation::create_accounts;
    }
    if (kind < 7) {
      std::vector<Transfer> transfers;
      for (u32 index = 0; index < count; index += 1) {
        if (!node.transfers_created.empty() && prng_.chance(Ratio{1, 6})) {
          transfers.push_back(node.transfers_created[prng_.index(node.transfers_created.size())]);
          continue;
        }
        transfer_counter_ += 1;
        Transfer transfer{};
        transfer.id = (u128{0x7} << 96) | transfer_counter_;
        transfer.debit_account_id = account_id_random();
        do {
          transfer.credit_account_id = account_id_random();
        } while (transfer.credit_account_id == transfer.debit_account_id);
        transfer.amount = prng_.range_inclusive<u64>(1, 100);
        transfer.ledger = 1;
        transfer.code = 1;
        if (prng_.chance(Ratio{1, 4})) {
          // Expires 1-3 s later (100-300 ticks) through the primary's pulse.
          transfer.flags = transfer_flags::pending;
          transfer.timeout = static_cast<u32>(prng_.range_inclusive<u64>(1, 3));
        }
        transfers.push_back(transfer);
      }
      node.transfers_sent = transfers;
      body = encode_one_batch(Operation::create_transfers, transfers);
      return Operation::create_transfers;
    }
    std::vector<u128> ids;
    const bool accounts = kind < 9;
    for (u32 index = 0; index < count; index += 1) {
      if (accounts) {
        ids.push_back(account_id_random());
      } else {
        ids.push_back((u128{0x7} << 96) | prng_.range_inclusive<u64>(1, transfer_counter_ + 2));
      }
    }
    const Operation operation = accounts ? Operation::lookup_accounts : Operation::lookup_transfers;
    body = encode_one_batch(operation, ids);
    return operation;
  }

  // --------------------------------------------------------------------------------------
  // The forger (--forged): replica messages from a node that is no replica.
  //
  // Each message is well-formed (checksums, cluster, zero reserved bytes: it passes the frame
  // checks), so that it reaches the replica's own validation and, when it passes that, the
  // handlers. Its fields are drawn around the state of the replica it goes to (the reference:
  // that replica, or another running one while it is down), so that many are close to what a
  // real peer sends: the view's primary as the sender, the op after the head, the head's hash
  // as the parent.

  static void forger_on_message(void*, Message*) {}  // No replica knows the forger's id.

  // Whether a forged prepare or commit reaches a receiver whose view changed since the forger
  // drew it: the draws keep out what the receiver could not tell from its primary's messages
  // (forgery_indistinguishable(), forger_names_receiver_primary()), judged in the receiver's
  // view of that moment; in another view the same message may be exactly such a one (a forged
  // prepare of view 3, drawn while the receiver was in view 2, taken as its new primary's). It
  // is dropped, as the network might have: the draws' rule holds at delivery too.
  bool forger_late(const ReplicaNode& receiver, const Message& message) {
    const Header& header = message.header();
    if (header.command != Command::prepare && header.command != Command::commit) return false;
    const auto drawn = forged_receiver_view_.find(header.checksum);
    if (drawn == forged_receiver_view_.end() || !receiver.replica) return false;
    if (drawn->second == receiver.replica->view()) return false;
    forged_late_ += 1;
    return true;
  }

  // The forger sniffs the network: a copy of every real prepare on its way to a replica.
  void forger_observe(const Message* message) {
    const Header& header = message->header();
    if (header.command != Command::prepare || forged_prepares_.contains(header.checksum)) return;
    const std::span<const std::byte> body = message->body();
    Forgery copy{.header = header, .body = {body.begin(), body.end()}};
    if (forger_observed_.size() < forger_observed_max) {
      forger_observed_.push_back(std::move(copy));
    } else {
      forger_observed_[forger_observed_next_] = std::move(copy);
    }
    forger_observed_next_ = (forger_observed_next_ + 1) % forger_observed_max;
  }

  void forger_step() {
    if (!forger_prng_.chance(forger_send_chance)) return;
    const u8 target = static_cast<u8>(forger_prng_.index(u64{options_.replica_count}));
    const Replica* reference = forger_reference(target);
    if (reference == nullptr) return;
    const u64 kind = forger_prng_.index(u64{10});
    Forgery forgery;
    if (kind < 4) {
      forgery = forge_prepare(*reference, target);
    } else if (kind < 6) {
      forgery = forge_prepare_ok(*reference);
    } else if (kind < 8) {
      forgery = forge_commit(*reference, target);
    } else {
      forgery = forge_get_prepare(*reference);
    }
    forger_send(target, forgery);
  }

  // The replica whose state the draws are around: the target, or while it is down (its
  // messages are then dropped, as a real network's would be) another running one.
  const Replica* forger_reference(u8 target) const {
    const ReplicaNode& node = replicas_[target];
    if (node.replica && node.replica->status() == vsr::ReplicaStatus::normal) {
      return node.replica.get();
    }
    for (const ReplicaNode& other : replicas_) {
      if (other.replica && other.replica->status() == vsr::ReplicaStatus::normal) {
        return other.replica.get();
      }
    }
    return nullptr;
  }

  // The frame as a replica sends it, and both checksums.
  static void forgery_seal(Forgery& forgery) {
    Header& header = forgery.header;
    header.cluster = cluster_id;
    header.release = release_server;
    header.size = header_size + static_cast<u32>(forgery.body.size());
    set_checksum_body(header, std::span<const std::byte>(forgery.body));
    set_checksum(header);
  }

  void forger_send(u8 target, Forgery& forgery) {
    forgery_seal(forgery);
    const Header& header = forgery.header;
    if (validate_header(header) != HeaderError::none) {
      fail(options_, std::string("the forger built a header that fails the frame checks: ") +
                         name(validate_header(header)));
    }
    if (header.command == Command::prepare) {
      // A mutation that changed nothing would be the real prepare, not a forgery.
      for (const Forgery& observed : forger_observed_) {
        if (observed.header.checksum == header.checksum) return;
      }
      forged_prepares_.emplace(header.checksum, header);
    }
    if (header.command == Command::prepare || header.command == Command::commit) {
      const ReplicaNode& receiver = replicas_[target];
      forged_receiver_view_[header.checksum] =
          receiver.replica ? receiver.replica->view() : std::numeric_limits<u32>::max();
    }
    Message* message = pool_.get();
    if (message == nullptr) fail(options_, "the message pool is exhausted");
    std::memcpy(message->buffer, &header, header_size);
    if (!forgery.body.empty()) {
      std::memcpy(message->buffer + header_size, forgery.body.data(), forgery.body.size());
    }
    message->pad_zero();
    forged_count_ += 1;
    forger_->send_to_replica(target, message);
    pool_.unref(message);
  }

  u128 forger_u128_nonzero() {
    const u128 value = (u128{forger_prng_.next_u64()} << 64) | forger_prng_.next_u64();
    return value == 0 ? 1 : value;
  }

  // Below the reference's view, at it, above it (another primary's view, or the same
  // primary's later one: a restart).
  u32 forger_view(const Replica& reference) {
    const u32 view = reference.view();
    const u32 replica_count = options_.replica_count;
    const u64 spread = 2 * u64{replica_count};
    switch (forger_prng_.index(u64{5})) {
      case 0: {
        if (view == 0) return view;
        const u64 below = forger_prng_.range_inclusive<u64>(1, view < spread ? view : spread);
        return view - static_cast<u32>(below);
      }
      case 1: return view + static_cast<u32>(forger_prng_.range_inclusive<u64>(1, spread));
      case 2:
        return view + replica_count * static_cast<u32>(forger_prng_.range_inclusive<u64>(1, 2));
      default: return view;
    }
  }

  // Mostly the view's primary when the command is a primary's (else the sender rule rejects
  // it at once), else any replica, the receiver and the real primary included, and now and
  // then an index outside the cluster.
  u8 forger_sender(u32 view, bool primary_likely) {
    const u8 replica_count = options_.replica_count;
    if (forger_prng_.chance(Ratio{.numerator = 1, .denominator = 20})) {
      return static_cast<u8>(forger_prng_.range_inclusive<u64>(replica_count, 255));
    }
    if (primary_likely && forger_prng_.chance(Ratio{.numerator = 3, .denominator = 4})) {
      return static_cast<u8>(view % replica_count);
    }
    return static_cast<u8>(forger_prng_.index(u64{replica_count}));
  }

  // Around the reference's head and commit number: the next op, a gap, ops at or below the
  // head, committed ops, far beyond the WAL, and now and then op 0.
  u64 forger_op(const Replica& reference) {
    const u64 head = reference.op();
    const u64 commit = reference.commit_min();
    const u64 back = forger_prng_.range_inclusive<u64>(0, 3);
    switch (forger_prng_.index(u64{7})) {
      case 0:
      case 1: return head + 1;
      case 2: return head + forger_prng_.range_inclusive<u64>(2, 2 * u64{vsr::pipeline_max});
      case 3: return head - (back < head ? back : head);
      case 4: return commit - (back < commit ? back : commit);
      case 5: return head + forger_prng_.range_inclusive<u64>(vsr::prepare_cache_max, 1024);
      default: return forger_prng_.range_inclusive<u64>(0, head + 2);
    }
  }

  // The checksum and timestamp of a prepare at `op` that a running replica holds (the
  // reference, or another drawn at random), if it holds one.
  std::optional<Header> forger_prepare_at(const Replica& reference, u64 op) {
    const Replica* source = &reference;
    const ReplicaNode& other = replicas_[forger_prng_.index(replicas_.size())];
    if (forger_prng_.boolean() && other.replica &&
        other.replica->status() == vsr::ReplicaStatus::normal) {
      source = other.replica.get();
    }
    const Header* header = source->wal().header_with_op(op);
    if (header == nullptr || header->command != Command::prepare) return std::nullopt;
    return *header;
  }

  // Relative to the timestamp of the prepare it follows: 0, not increasing, or increasing.
  u64 forger_timestamp(u64 parent_timestamp) {
    switch (forger_prng_.index(u64{8})) {
      case 0: return 0;
      case 1: return parent_timestamp;
      case 2: return parent_timestamp > 1 ? parent_timestamp - 1 : 1;
      case 3: return forger_prng_.range_inclusive<u64>(1, parent_timestamp + 1);
      default: return parent_timestamp + forger_prng_.range_inclusive<u64>(1, 1'000'000'000);
    }
  }

  // Operations a primary prepares, and now and then one it never does.
  Operation forger_operation() {
    static constexpr Operation valid[] = {Operation::pulse,           Operation::register_session,
                                          Operation::create_accounts, Operation::create_transfers,
                                          Operation::lookup_accounts, Operation::lookup_transfers};
    static constexpr Operation invalid[] = {Operation::reserved,    Operation::root,
                                            Operation::reconfigure, Operation::upgrade,
                                            Operation::noop,        Operation::state_machine_pulse};
    if (forger_prng_.chance(Ratio{.numerator = 4, .denominator = 5})) {
      return valid[forger_prng_.index(std::size(valid))];
    }
    if (forger_prng_.boolean()) return invalid[forger_prng_.index(std::size(invalid))];
    // A value no operation has: VSR-reserved, or past the state machine's.
    return static_cast<Operation>(forger_prng_.boolean()
                                      ? forger_prng_.range_inclusive<u64>(7, 127)
                                      : forger_prng_.range_inclusive<u64>(148, 255));
  }

  u128 forger_account_id() {
    forger_account_next_ += 1;
    return (u128{0xF0F6ED} << 64) | forger_account_next_;
  }

  // A valid body for the operation, as a client (or, for a register, the primary) builds it.
  std::vector<std::byte> forger_body(Operation operation) {
    const u64 count = forger_prng_.range_inclusive<u64>(1, 4);
    switch (operation) {
      case Operation::register_session: return std::vector<std::byte>(sizeof(RegisterRequest));
      case Operation::create_accounts: {
        std::vector<Account> accounts(count);
        for (Account& account : accounts) {
          account.id = forger_account_id();
          account.ledger = 1;
          account.code = 1;
        }
        return encode_one_batch(operation, accounts);
      }
      case Operation::create_transfers: {
        std::vector<Transfer> transfers(count);
        for (Transfer& transfer : transfers) {
          transfer.id = forger_account_id();
          transfer.debit_account_id = forger_account_id();
          transfer.credit_account_id = forger_account_id();
          transfer.amount = 1;
          transfer.ledger = 1;
          transfer.code = 1;
        }
        return encode_one_batch(operation, transfers);
      }
      case Operation::lookup_accounts:
      case Operation::lookup_transfers: {
        std::vector<u128> ids(count);
        for (u128& id : ids) id = forger_account_id();
        return encode_one_batch(operation, ids);
      }
      default: return {};
    }
  }

  std::vector<std::byte> forger_junk() {
    std::vector<std::byte> body(forger_prng_.range_inclusive<u64>(1, 300));
    forger_prng_.fill(std::span(reinterpret_cast<u8*>(body.data()), body.size()));
    return body;
  }

  Forgery forge_prepare(const Replica& reference, u8 target) {
    Forgery forgery;
    if (!forger_observed_.empty() && forger_prng_.chance(Ratio{.numerator = 1, .denominator = 3})) {
      forgery = forger_observed_[forger_prng_.index(forger_observed_.size())];
      forger_mutate(forgery, reference);
    } else {
      forgery = forge_prepare_random(reference);
    }
    forgery.header.prepare.commit =
        forger_commit_capped(forgery.header, target, forgery.header.prepare.commit);
    forgery_seal(forgery);
    if (forgery_indistinguishable(forgery, target)) {
      // Moved to the next view, which nobody started: the receiver only asks for its start.
      forgery.header.view += 1;
      forgery.header.replica =
          static_cast<u8>(forgery.header.view % options_.replica_count);
      forgery_seal(forgery);
      forged_reshaped_ += 1;
    }
    return forgery;
  }

  Forgery forge_prepare_random(const Replica& reference) {
    Forgery forgery;
    Header& header = forgery.header;
    Header::Prepare& prepare = header.prepare;
    header.command = Command::prepare;
    header.view = forger_view(reference);
    header.replica = forger_sender(header.view, true);
    prepare.op =
        forger_prng_.chance(Ratio{.numerator = 1, .denominator = 30}) ? 0 : forger_op(reference);
    // Half of them chain onto a prepare some replica holds at op - 1.
    u64 parent_timestamp = reference.state_machine().commit_timestamp();
    prepare.parent = forger_u128_nonzero();
    if (prepare.op > 0 && forger_prng_.boolean()) {
      if (const std::optional<Header> parent = forger_prepare_at(reference, prepare.op - 1)) {
        prepare.parent = parent->checksum;
        parent_timestamp = parent->prepare.timestamp;
      }
    }
    prepare.timestamp = forger_timestamp(parent_timestamp);
    if (prepare.op > 0 && forger_prng_.chance(Ratio{.numerator = 5, .denominator = 6})) {
      prepare.commit = forger_prng_.range_inclusive<u64>(0, prepare.op - 1);
    } else {
      prepare.commit = prepare.op + forger_prng_.range_inclusive<u64>(0, 2);
    }
    // The checkpoint id the reference replica expects of the op, where it knows one; now and
    // then another, or none (0, which validation rejects).
    const std::optional<u128> checkpoint_id =
        prepare.op > 0 ? reference.checkpoint_id_for_op(prepare.op) : std::nullopt;
    prepare.checkpoint_id = checkpoint_id.has_value() ? *checkpoint_id : forger_u128_nonzero();
    if (forger_prng_.chance(Ratio{.numerator = 1, .denominator = 12})) {
      prepare.checkpoint_id = forger_prng_.boolean() ? forger_u128_nonzero() : 0;
    }
    prepare.operation = forger_operation();
    // The fields the operation needs, then now and then one of them broken.
    if (prepare.operation != Operation::pulse) {
      prepare.client = forger_u128_nonzero();
      prepare.request_checksum = forger_u128_nonzero();
      if (prepare.operation != Operation::register_session) {
        prepare.request = static_cast<u32>(forger_prng_.range_inclusive<u64>(1, 100));
      }
    }
    forgery.body = forger_body(prepare.operation);
    switch (forger_prng_.index(u64{12})) {
      case 0: prepare.client = prepare.client == 0 ? forger_u128_nonzero() : 0; break;
      case 1: prepare.request = prepare.request == 0 ? 1 : 0; break;
      case 2: forgery.body = forger_junk(); break;
      case 3: forgery.body = forger_body(forger_operation()); break;
      default: break;
    }
    return forgery;
  }

  // A copy of a real prepare with one field changed (and the checksums recomputed when sent).
  void forger_mutate(Forgery& forgery, const Replica& reference) {
    Header& header = forgery.header;
    Header::Prepare& prepare = header.prepare;
    switch (forger_prng_.index(u64{12})) {
      case 0: {
        const u32 view = forger_view(reference);
        header.view = view != header.view ? view : header.view + 1;
        break;
      }
      case 1: {
        const u8 sender = forger_sender(header.view, false);
        header.replica = sender != header.replica ? sender : static_cast<u8>(sender + 1);
        break;
      }
      case 2: {
        const u64 delta = forger_prng_.range_inclusive<u64>(1, 3);
        prepare.op =
            prepare.op > delta && forger_prng_.boolean() ? prepare.op - delta : prepare.op + delta;
        break;
      }
      case 3: {
        const u64 commit = forger_prng_.range_inclusive<u64>(0, prepare.op);
        prepare.commit = commit != prepare.commit ? commit : prepare.op;
        break;
      }
      case 4: {
        u64 parent_timestamp = reference.state_machine().commit_timestamp();
        if (const std::optional<Header> parent = forger_prepare_at(reference, prepare.op - 1)) {
          parent_timestamp = parent->prepare.timestamp;
        }
        const u64 timestamp = forger_timestamp(parent_timestamp);
        prepare.timestamp = timestamp != prepare.timestamp ? timestamp : 0;
        break;
      }
      case 5: prepare.parent = forger_u128_nonzero(); break;
      case 6: {
        const Operation operation = forger_operation();
        prepare.operation = operation != prepare.operation ? operation : Operation::reserved;
        break;
      }
      case 7: prepare.client = prepare.client == 0 ? forger_u128_nonzero() : 0; break;
      case 8:
        prepare.request = prepare.request == 0 || forger_prng_.boolean() ? prepare.request + 1 : 0;
        break;
      case 9: prepare.request_checksum = forger_u128_nonzero(); break;
      case 10:
        prepare.checkpoint_id = forger_prng_.boolean() ? forger_u128_nonzero() : 0;
        break;
      default:
        forgery.body = forger_prng_.boolean() ? forger_junk() : forger_body(prepare.operation);
        break;
    }
  }

  // Without peer authentication a prepare is exactly one the primary could have sent when it
  // passes validate_replica_message() at the receiver and names the receiver's own view (and so
  // that view's primary as its sender): a backup takes a prepare of its view from its primary
  // as the log's entry for that op, whatever its parent (docs/vsr-protocol.md, "Normal
  // operation"). Only authenticating peers (a later issue) can reject it, so the draws keep it
  // out: it is moved to a view nobody started. Prepares of other views are repair answers,
  // taken only with the checksum the receiver's log expects.
  bool forgery_indistinguishable(const Forgery& forgery, u8 target) const {
    const Header& header = forgery.header;
    const u8 replica_count = options_.replica_count;
    const vsr::ValidationContext context{.replica = target, .replica_count = replica_count};
    if (vsr::validate_replica_message(header, forgery.body, context) != vsr::MessageError::none) {
      return false;
    }
    const ReplicaNode& receiver = replicas_[target];
    return !receiver.replica || header.view == receiver.replica->view();
  }

  // A backup's acknowledgement. Never of a real prepare: a prepare_ok naming a real prepare's
  // checksum, from a backup of the current view, is what that backup sends once the prepare
  // is durable, and the primary would count it towards the quorum (a commit without a
  // majority really holding it). Without peer authentication nothing can tell them apart, so
  // the forger names only checksums no prepare has.
  Forgery forge_prepare_ok(const Replica& reference) {
    Forgery forgery;
    Header& header = forgery.header;
    header.command = Command::prepare_ok;
    header.view = forger_view(reference);
    header.replica = forger_sender(header.view, false);
    header.prepare_ok.op =
        forger_prng_.chance(Ratio{.numerator = 1, .denominator = 20}) ? 0 : forger_op(reference);
    header.prepare_ok.prepare_checksum =
        forger_prng_.chance(Ratio{.numerator = 1, .denominator = 10}) ? 0 : forger_u128_nonzero();
    header.prepare_ok.parent = forger_u128_nonzero();
    header.prepare_ok.commit = forger_prng_.range_inclusive<u64>(0, header.prepare_ok.op);
    header.prepare_ok.timestamp = forger_prng_.next_u64();
    return forgery;
  }

  // The primary's heartbeat. Mostly from the view's primary, with commit numbers around the
  // reference's and the checksum of its prepare there or a random one; in the name of the
  // receiver's own primary, only what that primary could truthfully say (below).
  Forgery forge_commit(const Replica& reference, u8 target) {
    Forgery forgery;
    Header& header = forgery.header;
    header.command = Command::commit;
    header.view = forger_view(reference);
    header.replica = forger_sender(header.view, true);
    const u64 commit = reference.commit_max();
    const u64 back = forger_prng_.range_inclusive<u64>(0, 8);
    switch (forger_prng_.index(u64{4})) {
      case 0: header.commit.commit = commit; break;
      case 1: header.commit.commit = commit - (back < commit ? back : commit); break;
      default: header.commit.commit = commit + forger_prng_.range_inclusive<u64>(1, 40); break;
    }
    const std::optional<Header> prepare = forger_prepare_at(reference, header.commit.commit);
    header.commit.commit_checksum =
        prepare.has_value() && forger_prng_.boolean() ? prepare->checksum : forger_u128_nonzero();
    if (forger_names_receiver_primary(header, target)) {
      // What the receiver's primary may say (see forger_commit_capped()): a commit number the
      // cluster has reached, with the checksum it committed there. A wrong checksum would
      // make a backup drop its entries from that op on as ones the primary lost in a restart
      // (verification), entries that may well be committed and that the primary may no longer
      // hold to send again.
      const auto committed = chain_.upper_bound(header.commit.commit);
      if (committed == chain_.begin()) {
        header.commit.commit = 0;
        header.commit.commit_checksum = vsr::root_prepare(cluster_id).checksum;
      } else {
        header.commit.commit = std::prev(committed)->first;
        header.commit.commit_checksum = std::prev(committed)->second;
      }
    }
    header.commit.checkpoint_op = forger_prng_.chance(Ratio{.numerator = 1, .denominator = 10})
                                      ? header.commit.commit + 1
                                      : forger_prng_.range_inclusive<u64>(0, header.commit.commit);
    // Derived, not drawn (the draws, and with them old seeds, stay as they were): any id.
    header.commit.checkpoint_id = header.commit.commit_checksum ^ 0xC4EC'4B01'17D0ULL;
    const ReplicaNode& receiver = replicas_[target];
    if (forger_names_receiver_primary(header, target)) {
      // The receiver's primary names the checkpoint the cluster has at that op: the receiver's
      // own (a backup stops, as for a diverged replica, if its own differs from the primary's).
      // A receiver still opening has none to read yet: the commit is made invalid instead (a
      // checkpoint above the commit), since it may be open by the time the commit arrives.
      if (receiver.replica && receiver.replica->opened()) {
        header.commit.checkpoint_op = receiver.replica->op_checkpoint();
        header.commit.checkpoint_id = receiver.replica->checkpoint_id_durable();
      } else {
        header.commit.checkpoint_op = header.commit.commit + 1;
      }
    }
    if (forger_names_receiver_primary(header, target) && !primary_normal_in(header.view)) {
      // A heartbeat in the name of a primary that is not running its view (crashed, lost, or
      // not yet started): the backups would take it for their primary's and never elect
      // another. Only authenticating peers (a later issue) can reject it, so the draws keep it
      // out: it is moved to a view nobody started.
      header.view += 1;
      header.replica = static_cast<u8>(header.view % options_.replica_count);
      forged_reshaped_ += 1;
    }
    return forgery;
  }

  // Whether the primary of `view` is up and normal in that view.
  bool primary_normal_in(u32 view) const {
    const ReplicaNode& primary = replicas_[view % options_.replica_count];
    return primary.replica && primary.replica->view() == view && primary.replica->primary_normal();
  }

  // Whether a message names the receiver's primary as its sender, in the receiver's view or a
  // later one of that primary (after a restart): what the receiver takes commit numbers from.
  bool forger_names_receiver_primary(const Header& header, u8 target) const {
    const ReplicaNode& receiver = replicas_[target];
    const u32 view = receiver.replica ? receiver.replica->view() : header.view;
    const u8 primary = static_cast<u8>(view % options_.replica_count);
    return header.replica == primary && header.view % options_.replica_count == primary &&
           header.view >= view;
  }

  // A commit number (of a commit, or the one a prepare carries) from the receiver's primary
  // that announces more than the cluster has committed is what that primary could send: a
  // backup would take it and execute prepares not committed yet, which the primary may still
  // lose in a crash. Without peer authentication it cannot be rejected, so the draws keep it
  // out: such a number is capped at the highest op a replica has executed.
  u64 forger_commit_capped(const Header& header, u8 target, u64 commit) const {
    if (!forger_names_receiver_primary(header, target)) return commit;
    const u64 committed = chain_.empty() ? 0 : chain_.rbegin()->first;
    return commit < committed ? commit : committed;
  }

  // A repair request: the receiver answers the replica it names with a real prepare.
  Forgery forge_get_prepare(const Replica& reference) {
    Forgery forgery;
    Header& header = forgery.header;
    header.command = Command::get_prepare;
    header.view = forger_view(reference);
    header.replica = forger_sender(header.view, false);
    header.get_prepare.op = forger_op(reference);
    switch (forger_prng_.index(u64{4})) {
      case 0: {
        const std::optional<Header> prepare = forger_prepare_at(reference, header.get_prepare.op);
        if (prepare.has_value()) header.get_prepare.prepare_checksum = prepare->checksum;
        break;
      }
      case 1: header.get_prepare.prepare_checksum = forger_u128_nonzero(); break;
      default: break;  // Whatever the receiver holds at the op.
    }
    return forgery;
  }

  static std::string forgery_describe(const Header& header) {
    const Header::Prepare& prepare = header.prepare;
    return std::string("view ") + std::to_string(header.view) + " replica " +
           std::to_string(header.replica) + " op " + std::to_string(prepare.op) + " commit " +
           std::to_string(prepare.commit) + " timestamp " + std::to_string(prepare.timestamp) +
           " operation " + std::to_string(static_cast<u32>(prepare.operation)) + " size " +
           std::to_string(header.size);
  }

  // What the modes of clock skew, lost replicas and primary isolation did, for the run's line.
  std::string modes_summary() const {
    std::string summary;
    if (options_.clock_skew) {
      summary += ", " + std::to_string(clock_steps_) + " clock steps, timestamps at most " +
                 std::to_string(timestamp_ahead_seen_ns_) + " ns ahead of every clock";
    }
    if (options_.lost > 0) {
      summary += lost_tick_.has_value()
                     ? ", " + std::to_string(lost_count()) + " lost at tick " +
                           std::to_string(*lost_tick_)
                     : std::string(", none lost (no view ran in time)");
    }
    if (options_.grid_faults) {
      summary += ", " + std::to_string(checkpoint_repairs()) + " checkpoints repaired at open";
    }
    if (options_.wipe) {
      summary += ", " + std::to_string(wipes_) + " data file" + (wipes_ == 1 ? "" : "s") +
                 " wiped and recovered" +
                 (wipes_abandoned_ > 0 ? ", 1 wiped replica not recovered (no requests left)"
                                       : "");
    }
    if (options_.isolate_primary) {
      summary += ", primary cut off both ways " +
                 std::to_string(isolations_[static_cast<u32>(IsolateMode::both)]) + " times, " +
                 std::to_string(isolations_[static_cast<u32>(IsolateMode::outgoing)]) +
                 " outgoing only, " +
                 std::to_string(isolations_[static_cast<u32>(IsolateMode::incoming)]) +
                 " incoming only";
    }
    return summary;
  }

  std::string forger_summary() const {
    if (!options_.forged) return "";
    u64 invalid = messages_invalid_before_crashes_;
    for (const ReplicaNode& node : replicas_) {
      if (node.replica) invalid += node.replica->stats().messages_invalid;
    }
    return ", " + std::to_string(forged_count_) + " forged (" +
           std::to_string(forged_prepares_.size()) + " prepares, " +
           std::to_string(forged_reshaped_) + " moved to an unstarted view, " +
           std::to_string(forged_late_) + " dropped late), " +
           std::to_string(invalid) + " messages counted invalid";
  }

  // --------------------------------------------------------------------------------------
  // Checkers.

 public:
  // Every message a replica sends (ReplicaBus), before the network takes it. One primary per
  // view: a prepare names its view's primary, and one (view, op) has one prepare. And every
  // prepare a replica sends is one a replica made (prepares_made_scan()).
  void replica_sent(u8 sender, const Message& message) {
    const Header& header = message.header();
    if (header.command != Command::prepare) return;
    const u64 op = header.prepare.op;
    const std::string what = "replica " + std::to_string(sender) + " sent a prepare of view " +
                             std::to_string(header.view) + " op " + std::to_string(op);
    const u8 primary = static_cast<u8>(header.view % options_.replica_count);
    if (header.replica != primary) {
      dump();
      fail(options_, what + " naming replica " + std::to_string(header.replica) +
                         " as its primary, not the view's primary " + std::to_string(primary));
    }
    const auto [position, inserted] =
        prepares_sent_.emplace(std::pair<u32, u64>{header.view, op}, header.checksum);
    if (!inserted && position->second != header.checksum) {
      dump();
      fail(options_, what + " that differs from one sent before for that view and op: two "
                            "primaries in one view, or one that prepared an op twice");
    }
    ReplicaNode& node = replicas_[sender];
    auto made = prepares_made_.find(header.checksum);
    if (made == prepares_made_.end() && node.clock.read()) {
      prepares_made_scan(node);  // Made in this tick, maybe just now.
      made = prepares_made_.find(header.checksum);
    }
    if (made == prepares_made_.end()) {
      dump();
      fail(options_, what + " that no replica made" +
                         (forged_prepares_.contains(header.checksum) ? " (a forged one)" : ""));
    }
    made->second.timestamp = header.prepare.timestamp;
  }

 private:
  // The prepares a replica made in this tick: the entries of its log that no replica had
  // before (above what it had executed when last checked, within its WAL's reach). A replica
  // makes a prepare only as the primary of its view, reading its clock for the timestamp, and
  // scans run in that tick (step(), replica_sent()), so the clocks read here are the ones the
  // primary read.
  void prepares_made_scan(const ReplicaNode& node) {
    if (!node.replica || !node.replica->opened()) return;
    const u64 head = node.replica->op();
    const u64 slot_count = layout_.config().slot_count;
    u64 op = node.checked_op + 1;
    if (head > slot_count && op < head - slot_count) op = head - slot_count;
    for (; op <= head; op += 1) {
      const std::optional<u128> checksum = node.replica->checksum_of(op);
      if (!checksum.has_value() || prepares_made_.contains(*checksum)) continue;
      if (forged_prepares_.contains(*checksum)) continue;
      const Header* header = node.replica->wal().header_with_op(op);
      if (header != nullptr && header->checksum == *checksum) {
        prepare_checkpoint_check(op, header->prepare.checkpoint_id);
      }
      prepares_made_.emplace(
          *checksum,
          PrepareMade{.primary = node.index,
                      .tick = network_->ticks(),
                      .timestamp = header != nullptr && header->checksum == *checksum
                                       ? header->prepare.timestamp
                                       : 0,
                      .primary_realtime_ns = node.clock.time().realtime_ns(),
                      .highest_realtime_ns = realtime_highest_ns_});
    }
  }

  // A prepare of an op in (C_k, C_k+1] names checkpoint C_k-1 (C_0 for k = 0) by its id: the
  // same id every replica's checkpoint of that op has (checkpoint_ids_, over the whole run).
  void prepare_checkpoint_check(u64 op, u128 id) {
    const u64 interval = replicas_[0].replica ? replicas_[0].replica->checkpoint_interval()
                                              : layout_.config().slot_count - 2 * vsr::pipeline_max;
    const u64 below = (op - 1) / interval * interval;
    const u64 named = below >= interval ? below - interval : 0;
    const auto [position, inserted] = checkpoint_ids_.emplace(named, id);
    if (!inserted && position->second != id) {
      dump();
      fail(options_, "the prepare of op " + std::to_string(op) +
                         " names another id for the checkpoint of op " + std::to_string(named) +
                         " than the replicas' checkpoint has");
    }
  }

  // A committed prepare's timestamp against the clocks when it was made (see
  // timestamp_ahead_max_ns). The model checks that timestamps increase with the op.
  void timestamp_check(const Replica& replica, u64 op, u128 checksum) {
    const auto made = prepares_made_.find(checksum);
    if (made == prepares_made_.end()) {
      dump();
      fail(options_, "op " + std::to_string(op) + " was committed, a prepare no replica was "
                     "seen making");
    }
    const PrepareMade& when = made->second;
    u64 timestamp = when.timestamp;
    if (timestamp == 0) {
      // Never sent (a single replica's; in a cluster a commit needs a backup that received
      // it): a single replica executes only what is durable, so its WAL has the header.
      const Header* prepare = replica.wal().header_with_op(op);
      if (prepare == nullptr || prepare->checksum != checksum) return;
      timestamp = prepare->prepare.timestamp;
    }
    const std::string what = "the timestamp " + std::to_string(timestamp) + " of op " +
                             std::to_string(op) + " (prepared by replica " +
                             std::to_string(when.primary) + " at tick " +
                             std::to_string(when.tick) + ")";
    const auto primary_realtime = static_cast<u64>(when.primary_realtime_ns);
    const auto highest = static_cast<u64>(when.highest_realtime_ns);
    if (timestamp < primary_realtime) {
      fail(options_, what + " is below its primary's wall clock then, " +
                         std::to_string(primary_realtime));
    }
    if (timestamp > highest + timestamp_ahead_max_ns) {
      fail(options_, what + " is more than " + std::to_string(timestamp_ahead_max_ns) +
                         " ns above the highest wall clock of the cluster then, " +
                         std::to_string(highest));
    }
    if (timestamp > highest && timestamp - highest > timestamp_ahead_seen_ns_) {
      timestamp_ahead_seen_ns_ = timestamp - highest;
    }
  }

  // Every reply a client receives for one request is the first one: the same header (every
  // field comes from the prepare: src/vsr/replica_commit.hpp, reply_build()) and the same body,
  // whichever replica sent it and whether it was executed, replayed or stored.
  void reply_check(const ClientNode& node, const Message& message) {
    const Header& header = message.header();
    if (header.command != Command::reply) return;
    const ReplySeen seen{.header_checksum = header.checksum,
                         .body_checksum = tally::checksum(message.body()),
                         .op = header.reply.op,
                         .timestamp = header.reply.timestamp};
    const auto [first, inserted] =
        replies_seen_.emplace(std::pair<u32, u32>{node.index, header.reply.request}, seen);
    if (inserted) return;
    const ReplySeen& expected = first->second;
    if (seen.body_checksum == expected.body_checksum &&
        seen.header_checksum == expected.header_checksum) {
      replies_repeated_ += 1;
      return;
    }
    dump();
    fail(options_, "client " + std::to_string(node.index) + " request " +
                       std::to_string(header.reply.request) + ": a later reply (op " +
                       std::to_string(seen.op) + ", timestamp " + std::to_string(seen.timestamp) +
                       ", from the primary of view " + std::to_string(header.view) +
                       ") differs from the first (op " + std::to_string(expected.op) +
                       ", timestamp " + std::to_string(expected.timestamp) + ") in its " +
                       (seen.body_checksum != expected.body_checksum ? "body" : "header"));
  }

  void observe(u64 op, Operation operation, std::vector<std::byte> request_body, u64 timestamp,
               std::vector<std::byte> reply_body) {
    if (op <= model_op_) {
      fail(options_, "op " + std::to_string(op) + " was answered after the model passed it");
    }
    const auto [position, inserted] = observed_.emplace(
        op, Observed{operation, std::move(request_body), timestamp, std::move(reply_body)});
    if (!inserted && position->second.operation != operation) {
      fail(options_, "two different requests were answered with op " + std::to_string(op));
    }
    model_advance();
  }

  void model_advance() {
    while (true) {
      const auto pulse = pulses_.find(model_op_ + 1);
      if (pulse != pulses_.end()) {
        if (pulse->second <= model_timestamp_) {
          fail(options_, "a pulse's timestamp does not increase with the op at op " +
                             std::to_string(pulse->first));
        }
        model_timestamp_ = pulse->second;
        expired_ += model_.pulse(pulse->second);
        model_op_ = pulse->first;
        pulses_.erase(pulse);
        continue;
      }
      const auto next = observed_.find(model_op_ + 1);
      if (next == observed_.end()) return;
      const Observed& observed = next->second;
      if (observed.operation != Operation::register_session) {
        if (observed.timestamp <= model_timestamp_) {
          fail(options_, "reply timestamps do not increase with the op at op " +
                             std::to_string(next->first));
        }
        model_timestamp_ = observed.timestamp;
        const std::vector<std::byte> expected =
            model_.apply(observed.operation, observed.request_body, observed.timestamp);
        if (expected != observed.reply_body) {
          fail(options_, std::string("the reply of op ") + std::to_string(next->first) + " (" +
                             name(observed.operation) + ") differs from the model's");
        }
      }
      model_op_ = next->first;
      observed_.erase(next);
    }
  }

  void check() {
    // Agreement of the hash chain over what each replica has committed.
    for (ReplicaNode& node : replicas_) {
      if (!node.replica || node.replica->status() != vsr::ReplicaStatus::normal) continue;
      const u64 commit = node.replica->commit_min();
      for (u64 op = node.checked_op + 1; op <= commit; op += 1) {
        const std::optional<u128> checksum = node.replica->checksum_of(op);
        if (!checksum.has_value()) continue;  // Reused by the WAL after a checkpoint.
        if (const auto forged = forged_prepares_.find(*checksum);
            forged != forged_prepares_.end()) {
          dump();
          fail(options_, "replica " + std::to_string(node.index) +
                             " committed a forged prepare at op " + std::to_string(op) + ": " +
                             forgery_describe(forged->second));
        }
        // Pulses have no client to report them: the model learns them from the log.
        const Header* prepare = node.replica->wal().header_with_op(op);
        if (prepare != nullptr && prepare->prepare.operation == Operation::pulse &&
            op > model_op_) {
          pulses_.emplace(op, prepare->prepare.timestamp);
        }
        const auto [position, inserted] = chain_.emplace(op, *checksum);
        if (!inserted && position->second != *checksum) {
          fail(options_, "replica " + std::to_string(node.index) + " committed a different op " +
                             std::to_string(op) + " than another replica");
        }
        if (inserted) timestamp_check(*node.replica, op, *checksum);
      }
      if (commit > node.checked_op) node.checked_op = commit;
    }
    model_advance();
    // Identical state at equal commit numbers, among the replicas that share one, every 256
    // ticks (a digest reads every table whole: most of a run's time if taken for every replica
    // each time; the chain check above compares every executed op already).
    if (++check_count_ % 256 == 0) {
      std::map<u64, u32> sharing;
      for (ReplicaNode& node : replicas_) {
        if (digest_comparable(node)) sharing[node.replica->commit_min()] += 1;
      }
      std::map<u64, u128> digests;
      for (ReplicaNode& node : replicas_) {
        if (!digest_comparable(node)) continue;
        const u64 commit = node.replica->commit_min();
        if (sharing[commit] < 2) continue;
        if (!node.digest_at.has_value() || node.digest_at->first != commit) {
          node.digest_at.emplace(commit, node.replica->state_machine().ledger().digest());
        }
        const auto [position, inserted] = digests.emplace(commit, node.digest_at->second);
        if (!inserted && position->second != node.digest_at->second) {
          fail(options_, "two replicas at op " + std::to_string(position->first) +
                             " have different ledgers");
        }
      }
    }
    // Identical checkpoints at equal ops: every durable checkpoint's id, over the run.
    for (const ReplicaNode& node : replicas_) {
      if (!node.replica || !node.replica->opened()) continue;
      const u64 op = node.replica->checkpoint_op_durable();
      const u128 id = node.replica->checkpoint_id_durable();
      const auto [position, inserted] = checkpoint_ids_.emplace(op, id);
      if (!inserted && position->second != id) {
        dump();
        fail(options_, "replica " + std::to_string(node.index) + " holds a checkpoint of op " +
                           std::to_string(op) + " that differs from another replica's");
      }
    }
  }

  // A normal replica's ledger is its commit_min's (a syncing replica's commit_min is its
  // target's, its state not yet).
  static bool digest_comparable(const ReplicaNode& node) {
    return node.replica && node.replica->status() == vsr::ReplicaStatus::normal &&
           !node.replica->syncing();
  }

  u64 storage_fault_count() const {
    u64 total = 0;
    for (const ReplicaNode& node : replicas_) {
      for (u32 fault = 0; fault < io::sim::fault_kind_count; fault += 1) {
        total += node.storage->fault_count(static_cast<io::sim::Fault>(fault));
      }
    }
    return total;
  }

  // What the cluster looks like, for a failing run.
  void dump() const {
    for (const ReplicaNode& node : replicas_) {
      if (!node.replica) {
        std::fprintf(stderr, "  replica %u: %s\n", node.index, node.lost ? "lost" : "down");
        continue;
      }
      const Replica& replica = *node.replica;
      const vsr::ReplicaStats& stats = replica.stats();
      std::fprintf(stderr,
                   "  replica %u: status %u view %u op %" PRIu64 " commit_min %" PRIu64
                   " commit_max %" PRIu64 " checkpoint %" PRIu64 " pipeline %u repairs %" PRIu64
                   " prepares accepted %" PRIu64 " ignored %" PRIu64 "\n",
                   node.index, static_cast<unsigned>(replica.status()), replica.view(),
                   replica.op(), replica.commit_min(), replica.commit_max(),
                   replica.op_checkpoint(), replica.pipeline_count(), stats.repairs_requested,
                   stats.prepares_accepted, stats.prepares_ignored);
      std::fprintf(stderr,
                   "    requests %" PRIu64 " dropped %" PRIu64 " duplicate %" PRIu64
                   " evicted %" PRIu64 " capacity %" PRIu64 " invalid messages %" PRIu64 "\n",
                   stats.requests_received, stats.requests_dropped, stats.requests_duplicate,
                   stats.requests_evicted, stats.requests_capacity_dropped,
                   stats.messages_invalid);
      std::fprintf(stderr,
                   "    sync stage %u syncing %d syncs started %" PRIu64 " done %" PRIu64
                   " retargeted %" PRIu64 " checkpoint repairs %" PRIu64 "\n",
                   static_cast<unsigned>(replica.sync_stage()), replica.syncing() ? 1 : 0,
                   stats.syncs_started, stats.syncs_done, stats.syncs_retargeted,
                   stats.checkpoint_repairs);
    }
    for (const ClientNode& node : clients_) {
      std::fprintf(stderr, "  client %u: state %s done %u in flight %d attempts %u\n",
                   node.index, client::name(node.session->state()), node.requests_done,
                   node.in_flight ? 1 : 0, node.session->request_attempts());
      const client::SessionStats& stats = node.session->stats();
      std::fprintf(stderr, "    sent %" PRIu64 " retransmissions %" PRIu64 " ignored:",
                   stats.requests_sent, stats.retransmissions);
      for (u32 reason = 0; reason < client::ignored_reason_count; reason += 1) {
        if (stats.ignored[reason] != 0) {
          std::fprintf(stderr, " %u=%" PRIu64, reason, stats.ignored[reason]);
        }
      }
      std::fprintf(stderr, "\n");
    }
    std::fprintf(stderr, "  model op %" PRIu64 ", observed waiting %zu\n", model_op_,
                 observed_.size());
    if (options_.forged) std::fprintf(stderr, "  forger%s\n", forger_summary().c_str());
  }

  // State syncs finished, by every replica (those that crashed since too).
  u64 checkpoint_repairs() const {
    u64 total = checkpoint_repairs_before_crashes_;
    for (const ReplicaNode& node : replicas_) {
      if (node.replica) total += node.replica->stats().checkpoint_repairs;
    }
    return total;
  }

  u64 syncs_done() const {
    u64 total = syncs_done_before_crashes_;
    for (const ReplicaNode& node : replicas_) {
      if (node.replica) total += node.replica->stats().syncs_done;
    }
    return total;
  }

  bool replicas_converged() const {
    std::optional<u64> commit;
    for (const ReplicaNode& node : replicas_) {
      if (node.lost) continue;
      if (!node.replica || !node.replica->opened()) return false;
      if (node.replica->status() != vsr::ReplicaStatus::normal) return false;
      // A syncing replica's commit_min is its target's, its state not yet (seed
      // 4213410928864073861 ended with one mid-sync, its ledger the old checkpoint's).
      if (node.replica->syncing()) return false;
      if (!commit.has_value()) commit = node.replica->commit_min();
      if (node.replica->commit_min() != *commit) return false;
    }
    return commit.has_value() && *commit >= model_op_;
  }

  void final_check() {
    if (!observed_.empty()) fail(options_, "replies of some ops never reached the model");
    for (const ReplicaNode& node : replicas_) {
      if (node.lost) continue;
      const state_machine::StateMachine& machine = node.replica->state_machine();
      if (machine.ledger().account_count() != model_.accounts().size()) {
        fail(options_, "replica " + std::to_string(node.index) + " has " +
                           std::to_string(machine.ledger().account_count()) +
                           " accounts, the model " + std::to_string(model_.accounts().size()));
      }
      for (const auto& [id, expected] : model_.accounts()) {
        Account found[1];
        const u128 ids[1] = {id};
        if (machine.lookup_accounts(ids, found) != 1 ||
            std::memcmp(&found[0], &expected, sizeof(Account)) != 0) {
          fail(options_, "replica " + std::to_string(node.index) +
                             " lost or changed an acknowledged account");
        }
      }
      for (const auto& [id, expected] : model_.transfers()) {
        Transfer found[1];
        const u128 ids[1] = {id};
        if (machine.lookup_transfers(ids, found) != 1 ||
            std::memcmp(&found[0], &expected, sizeof(Transfer)) != 0) {
          fail(options_, "replica " + std::to_string(node.index) +
                             " lost or changed an acknowledged transfer");
        }
      }
    }
  }

  Options options_;
  Prng prng_;
  Prng forger_prng_;  // The forger's own draws: the workload's stay those of a run without it.
  Prng clock_prng_;    // --clock-skew: the clocks' offsets, drifts and steps.
  Prng lost_prng_;     // --lost: when, and which replicas besides the primary.
  Prng isolate_prng_;  // --isolate-primary: when, how and how long.
  Prng wipe_prng_;     // --wipe: which crash loses its data file.
  bool wiped_ = false;  // --wipe: a replica's file was drawn to be lost (once per run).
  u64 wipes_ = 0;
  u64 wipes_abandoned_ = 0;
  journal::Layout layout_;
  MessagePool pool_;
  std::unique_ptr<Network> network_;
  std::vector<ReplicaNode> replicas_;
  std::vector<ClientNode> clients_;
  std::vector<u64> account_counters_;
  u64 transfer_counter_ = 0;
  simulator::LedgerModel model_;
  std::map<u64, Observed> observed_;
  std::map<u64, u64> pulses_;  // Committed pulses the model has not applied: op -> timestamp.
  u64 expired_ = 0;
  u64 model_op_ = 0;
  u64 model_timestamp_ = 0;
  std::map<u64, u128> chain_;
  std::map<u64, u128> checkpoint_ids_;  // Durable checkpoints seen, by op: one id each.
  u64 check_count_ = 0;
  u64 crashes_ = 0;
  u64 messages_invalid_before_crashes_ = 0;  // Counted by replicas that crashed since.
  u64 syncs_done_before_crashes_ = 0;         // Likewise.
  u64 checkpoint_repairs_before_crashes_ = 0;  // Likewise.

  Network::Endpoint* forger_ = nullptr;
  std::vector<Forgery> forger_observed_;  // Copies of real prepares, a ring.
  u32 forger_observed_next_ = 0;
  std::map<u128, Header> forged_prepares_;  // Every forged prepare sent, by its checksum.
  // The receiver's view when each forged prepare and commit was drawn, by checksum: what the
  // draws keep out depends on it (forger_late()).
  std::map<u128, u32> forged_receiver_view_;
  u64 forged_late_ = 0;  // Dropped at delivery: the receiver's view had changed (forger_late()).
  u64 forged_count_ = 0;
  u64 forged_reshaped_ = 0;  // Draws made distinguishable (forgery_indistinguishable()).
  u64 forger_account_next_ = 0;

  i64 realtime_highest_ns_ = 0;
  u64 clock_steps_ = 0;
  u64 timestamp_ahead_seen_ns_ = 0;  // The most a committed timestamp ran ahead of every clock.
  std::map<std::pair<u32, u64>, u128> prepares_sent_;  // (view, op) -> checksum.
  std::map<u128, PrepareMade> prepares_made_;           // By checksum.
  std::map<std::pair<u32, u32>, ReplySeen> replies_seen_;  // (client, request) -> first reply.
  u64 replies_repeated_ = 0;  // Replies received again, each the first one byte for byte.
  u64 lost_at_requests_ = 0;
  u64 end_game_requests_left_ = 0;  // What the clients had still to do when it began.
  std::optional<u64> lost_tick_;
  Isolation isolation_;
  std::array<u64, isolate_mode_count> isolations_{};
};

void ReplicaBus::send_to_replica(u8 replica, Message* message) {
  simulation_->replica_sent(replica_, *message);
  endpoint_->send_to_replica(replica, message);
}

bool flag_value(const char* argument, const char* name, u64* value) {
  const std::size_t length = std::strlen(name);
  if (std::strncmp(argument, name, length) != 0 || argument[length] != '=') return false;
  char* end = nullptr;
  *value = std::strtoull(argument + length + 1, &end, 10);
  if (end == argument + length + 1 || *end != '\0') {
    std::fprintf(stderr, "simulator: %s needs a number\n", name);
    std::exit(2);
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  // Replicas restart all the time here and touch few pages of their tables: small pages save
  // zeroing a 2 MiB page per first touch (a third of a run's time with crashes).
  tally::base::pages_huge_set(false);
  Options options;
  std::vector<u64> seeds;
  for (int index = 1; index < argc; index += 1) {
    const char* argument = argv[index];
    u64 value = 0;
    if (flag_value(argument, "--replicas", &value)) {
      if (value < 1 || value > replicas_max) {
        std::fprintf(stderr, "simulator: --replicas must be 1..6\n");
        return 2;
      }
      options.replica_count = static_cast<u8>(value);
    } else if (flag_value(argument, "--clients", &value)) {
      options.client_count = static_cast<u32>(value);
    } else if (flag_value(argument, "--requests", &value)) {
      options.requests_per_client = static_cast<u32>(value);
    } else if (flag_value(argument, "--ticks", &value)) {
      options.ticks_max = value;
    } else if (std::strcmp(argument, "--crashes") == 0) {
      options.crashes = true;
    } else if (std::strcmp(argument, "--faults") == 0) {
      options.faults = true;
    } else if (std::strcmp(argument, "--storage-faults") == 0) {
      options.storage_faults = true;
    } else if (std::strcmp(argument, "--slow-disk") == 0) {
      options.slow_disk = true;
    } else if (std::strcmp(argument, "--forged") == 0) {
      options.forged = true;
    } else if (std::strcmp(argument, "--clock-skew") == 0) {
      options.clock_skew = true;
    } else if (flag_value(argument, "--lost", &value)) {
      if (value > replicas_max) {
        std::fprintf(stderr, "simulator: --lost must be at most %u\n", replicas_max);
        return 2;
      }
      options.lost = static_cast<u8>(value);
    } else if (std::strcmp(argument, "--isolate-primary") == 0) {
      options.isolate_primary = true;
    } else if (std::strcmp(argument, "--wipe") == 0) {
      options.wipe = true;
    } else if (std::strcmp(argument, "--grid-faults") == 0) {
      options.grid_faults = true;
    } else if (std::strcmp(argument, "--superblock-faults") == 0) {
      options.superblock_faults = true;
    } else {
      char* end = nullptr;
      const u64 seed = std::strtoull(argument, &end, 10);
      if (end == argument || *end != '\0') {
        std::fprintf(stderr,
                     "usage: simulator [--replicas=N] [--clients=N] [--requests=N] "
                     "[--ticks=N] [--crashes] [--faults] [--storage-faults] [--slow-disk] "
                     "[--forged] [--clock-skew] [--lost=K] [--isolate-primary] [--wipe] "
                     "[--grid-faults] [--superblock-faults] SEED...\n"
                     "  --clock-skew       each replica's own wall clock: offset up to 3 s "
                     "either way, drift up to 1%%, now and then a step\n"
                     "  --lost=K           K replicas (the primary first) crash for good in the "
                     "first half of the run; K at most replicas - max(replication, view-change "
                     "quorum); with --storage-faults, faults on replication quorum - 1 - K "
                     "replicas, refused where that is none\n"
                     "  --isolate-primary  now and then cut the view's primary off from the other "
                     "replicas (both ways, outgoing or incoming only) for 10-500 ticks\n"
                     "  --wipe             once, a crashed replica's data file is lost; it comes "
                     "back as `tally recover` makes it (3 or more replicas, not with --lost)\n"
                     "  --grid-faults      with --storage-faults: the faulty replicas' grids too "
                     "(a checkpoint's damaged blocks are fetched from peers at open)\n"
                     "  --superblock-faults  with --storage-faults: the faulty replicas' "
                     "superblock copies too\n");
        return 2;
      }
      seeds.push_back(seed);
    }
  }
  if (options.lost > lost_max(options.replica_count)) {
    std::fprintf(stderr,
                 "simulator: --lost=%u: a cluster of %u replicas can lose at most %u for good "
                 "(replicas - max(replication quorum, view-change quorum)) and still make "
                 "progress\n",
                 options.lost, options.replica_count, lost_max(options.replica_count));
    return 2;
  }
  if (options.lost > 0 && options.storage_faults && storage_faults_end(options) <= 1) {
    std::fprintf(stderr,
                 "simulator: --storage-faults with --lost=%u on %u replicas: a committed op may "
                 "be held only by the %u replicas of a replication quorum; with %u of them lost, "
                 "storage faults on any survivor could damage its last copy. Storage faults "
                 "with --lost need replication quorum - 1 - lost >= 1 (5 or 6 replicas, "
                 "--lost=1).\n",
                 options.lost, options.replica_count,
                 vsr::quorums(options.replica_count).replication, options.lost);
    return 2;
  }
  if ((options.grid_faults || options.superblock_faults) && !options.storage_faults) {
    std::fprintf(stderr,
                 "simulator: --grid-faults and --superblock-faults need --storage-faults (the "
                 "same replicas)\n");
    return 2;
  }
  if (options.wipe && (options.replica_count < 3 || options.lost > 0 || !options.crashes)) {
    std::fprintf(stderr,
                 "simulator: --wipe needs --crashes and 3 or more replicas (a smaller cluster "
                 "cannot commit without the wiped one), and not --lost (it is one more replica "
                 "gone)\n");
    return 2;
  }
  if (options.isolate_primary && options.replica_count == 1) {
    std::fprintf(stderr, "simulator: --isolate-primary needs 2 or more replicas\n");
    return 2;
  }
  if (seeds.empty()) seeds.push_back(1);
  for (const u64 seed : seeds) {
    options.seed = seed;
    Simulation simulation(options);
    simulation.run();
  }
  return 0;
}
