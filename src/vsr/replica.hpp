// Replica: one member of a Tally cluster. Viewstamped Replication's normal operation over the
// journal (WAL, superblock) and the state machine, templated on Storage, MessageBus and Time so
// that the same code runs on io_uring (src/cli) and in the simulator (tests/simulator).
//
// docs/vsr-protocol.md describes the messages and the rules; in short:
//
//   client ── request ──> primary (replica view % replica_count)
//     primary: §5.4 decision; prepare = request body + op (next), timestamp, parent (hash chain)
//     primary ── prepare ──> every backup; primary and backups write it to their WAL
//     backup ── prepare_ok ──> primary, once the prepare is durable
//     primary: quorum (its own write included) => committed; executes in op order; replies
//     backups learn the commit number from later prepares and from commit heartbeats, and
//     execute up to it; every replica keeps the client sessions (with each latest reply).
//
// The replica is split along its seams; this file is the table of contents and the state:
//
//   log.hpp                the hash chain over the WAL: write queue, prepare cache, truncation
//   pipeline.hpp           the primary's prepares in flight and the queue of waiting requests
//   timeout.hpp            named timeouts with backoff
//   message_validation.hpp every replica message checked once, at on_message()
//   quorums.hpp            replication, view-change and nack quorums for 1..6 replicas
//   replica_open.hpp       opening: superblock, checkpoint, WAL recovery, replay
//   replica_primary.hpp    requests, preparing, acknowledgements, heartbeats, pulses
//   replica_backup.hpp     accepting prepares, verification against the primary, repair
//   replica_commit.hpp     executing committed ops, replies, checkpoints
//
// Invariants (asserted where they are relied on):
// - op_checkpoint <= commit_min <= commit_max, commit_min <= op (the log's head) <= op_prepare_max;
// - the log up to op_verified is the primary's (this view); nothing above it executes;
// - a primary's pipeline holds exactly the ops commit_min+1..op (when normal);
// - a committed op is in the primary's WAL: its quorum includes the primary's own write.
//
// What is not here yet (docs/vsr-protocol.md, "Limits"): view changes (a failed primary stops
// the cluster until it restarts), state sync (a backup that falls a whole WAL behind). A
// primary that restarts in a cluster moves to view + replica_count (the same primary), so
// that prepares it made before the crash and never made durable are told apart from the ones
// it makes now.
//
// Determinism: no clock reads except Time (realtime for timestamps; timeouts count ticks), no
// randomness but the replica's seeded PRNG, no iteration over unordered containers; messages,
// ticks and storage completions are the only inputs.
#pragma once

#include <cstddef>
#include <cstring>
#include <optional>
#include <span>

#include "journal/layout.hpp"
#include "journal/storage.hpp"
#include "journal/superblock.hpp"
#include "journal/wal.hpp"
#include "src/base/assert.hpp"
#include "src/base/large_array.hpp"
#include "src/base/message_pool.hpp"
#include "src/base/prng.hpp"
#include "src/state_machine/checkpoint.hpp"
#include "src/state_machine/config.hpp"
#include "src/state_machine/state_machine.hpp"
#include "src/vsr/checkpoint_format.hpp"
#include "src/vsr/checkpoint_store.hpp"
#include "src/vsr/client_sessions.hpp"
#include "src/vsr/io_concepts.hpp"
#include "src/vsr/log.hpp"
#include "src/vsr/message_validation.hpp"
#include "src/vsr/pipeline.hpp"
#include "src/vsr/quorums.hpp"
#include "src/vsr/request_decision.hpp"
#include "src/vsr/timeout.hpp"
#include "tally/constants.hpp"
#include "tally/header.hpp"
#include "tally/types.hpp"

namespace tally::vsr {

// Timeouts, in ticks of 10 ms.
inline constexpr u32 commit_heartbeat_ticks = 10;
inline constexpr u32 prepare_retry_ticks = 20;
inline constexpr u32 repair_ticks = 10;
inline constexpr u32 pulse_ticks = 10;

struct ReplicaOptions {
  u128 cluster = 0;
  u8 replica = 0;
  u8 replica_count = 1;
  state_machine::Config state_machine;
};

enum class ReplicaStatus : u8 { init, opening, normal };

struct ReplicaStats {
  u64 requests_received = 0;
  u64 requests_dropped = 0;
  u64 requests_evicted = 0;
  u64 requests_duplicate = 0;
  u64 requests_capacity_dropped = 0;  // The ledger is full: see docs/vsr-protocol.md.
  u64 prepares_accepted = 0;
  u64 prepares_ignored = 0;
  u64 prepares_truncated = 0;
  u64 prepares_repaired = 0;  // Damaged WAL entries rewritten from the primary's copy.
  u64 prepares_held = 0;      // Waited for room in the WAL write queue (a slow disk).
  u64 repairs_requested = 0;
  u64 checkpoints = 0;
  u64 messages_invalid = 0;   // Failed validation (message_validation.hpp) or the view rule.
  u64 ops_committed = 0;
};

template <journal::Storage S, MessageBus Bus, Time Clock>
class Replica {
 public:
  using OpenCallback = void (*)(Replica* replica);

  Replica(S& storage, Bus& bus, Clock& time, const journal::Layout& layout,
          const ReplicaOptions& options)
      : storage_(storage),
        bus_(bus),
        time_(time),
        layout_(layout),
        options_(options),
        superblock_(storage),
        log_(storage, layout, options.cluster, options.replica_count == 1),
        checkpoint_store_(storage, layout),
        prng_(prng_seed(options)) {
    TALLY_ASSERT(layout.config().slot_count > 2 * pipeline_max);
    TALLY_ASSERT(options.replica_count >= 1 && options.replica_count <= replicas_max);
    TALLY_ASSERT(options.replica < options.replica_count);
    TALLY_ASSERT(layout.config().message_size_max == message_size_max,
                 "the replica needs whole-size messages (any reply must fit)");
    grid_capacity_check(layout, options.state_machine);
    superblock_.context = this;
    wal_completion_.context = this;
    state_machine_.init(options.state_machine);
    sessions_.init(clients_max, message_size_max);
    scratch_reply_.init(message_size_max);
    commit_read_.context = this;
    repair_read_.context = this;
  }

  Replica(const Replica&) = delete;
  Replica& operator=(const Replica&) = delete;

  ~Replica() { release_messages(); }

  // -------------------------------------------------------------------------------------------
  // Observers (tests, the simulator's checkers, `tally start`'s log).

  ReplicaStatus status() const { return status_; }
  u8 replica() const { return options_.replica; }
  u8 replica_count() const { return options_.replica_count; }
  u32 view() const { return view_; }
  bool primary() const { return primary_index(view_) == options_.replica; }
  u64 op() const { return log_.op(); }
  u64 commit_min() const { return commit_min_; }
  u64 commit_max() const { return commit_max_; }
  u64 op_prepare_max() const { return log_.op_max(); }
  u64 op_checkpoint() const { return log_.op_checkpoint(); }
  const CheckpointStore<S>& checkpoint_store() const { return checkpoint_store_; }
  // Ops between checkpoints: the WAL's slots less room for two pipelines, so that the primary
  // can keep preparing while a checkpoint is written.
  u64 checkpoint_interval() const { return log_.slot_count() - 2 * pipeline_max; }
  const state_machine::StateMachine& state_machine() const { return state_machine_; }
  const ClientSessions& sessions() const { return sessions_; }
  const ReplicaStats& stats() const { return stats_; }
  const journal::Wal<S>& wal() const { return log_.wal(); }
  u32 pipeline_count() const { return pipeline_.count(); }
  // The checksum of the committed prepare at `op` (<= commit_min), if the WAL still names it.
  std::optional<u128> checksum_of(u64 op) const { return log_.checksum_of(op); }

  // -------------------------------------------------------------------------------------------
  // Lifecycle.

  // Opens the data file: superblock, WAL recovery, replay of the log. `callback` runs when the
  // replica is normal; fatal() stops the process when the file belongs elsewhere.
  // The bus must be ready (its pool set) from here on; the constructor does not touch it.
  void open(OpenCallback callback);

  // Every 10 ms.
  void tick();

  // A message from the bus (one reference held by the bus for the call's duration).
  void on_message(base::Message* message);

 private:
  u8 primary_index(u32 view) const { return static_cast<u8>(view % options_.replica_count); }
  // Replicas (the primary included) that must hold a prepare before it commits (quorums.hpp).
  u32 quorum() const { return quorums(options_.replica_count).replication; }
  bool solo() const { return options_.replica_count == 1; }
  base::MessagePool& pool() { return bus_.pool(); }
  static u64 prng_seed(const ReplicaOptions& options) {
    return static_cast<u64>(options.cluster) ^ static_cast<u64>(options.cluster >> 64) ^
           (u64{options.replica} << 56) ^ 0x7a11'7a11'7a11'7a11;
  }
  static void grid_capacity_check(const journal::Layout& layout,
                                  const state_machine::Config& config);
  void release_messages();

  // replica_open.hpp: opening.
  static void superblock_open_callback(journal::SuperblockStore<S>* store);
  void superblock_opened();
  static void checkpoint_opened_callback(void* context);
  void wal_recover();
  static void wal_recovered_callback(typename journal::Wal<S>::Completion* completion);
  void wal_recovered();
  void replay_next();
  base::Message* open_read_take(typename journal::Wal<S>::Read* read);
  static void replay_read_callback(typename journal::Wal<S>::Read* read);
  static void reload_read_callback(typename journal::Wal<S>::Read* read);
  void open_finish();
  static void superblock_view_callback(journal::SuperblockStore<S>* store);
  void become_normal();

  // replica_primary.hpp: the primary.
  bool view_consistent(const Header& header) const;
  void on_request(base::Message* message);
  void request_handle(base::Message* message, bool from_queue);
  u32 batch_size_limit() const { return message_size_max - header_size; }
  void request_queue_drain();
  u64 timestamp_next(Operation operation, u32 events);
  static u32 events_of(Operation operation, std::span<const std::byte> body);
  void prepare_start(u128 client, u128 request_checksum, u32 request, u32 release,
                     Operation operation, std::span<const std::byte> body);
  void prepare_send_to_backups(const Pipeline::Entry& entry);
  void on_prepare_ok(base::Message* message);
  void pipeline_commit();
  void primary_tick();
  void pulse_maybe();
  void commit_heartbeat_send();

  // replica_backup.hpp: backups.
  void assert_from_primary(const Header& header) const;
  void on_prepare(base::Message* message);
  void view_adopt(u32 view);
  void prepare_accept_or_hold(base::Message* message);
  void held_prepares_append();
  void prepare_append(base::Message* message);
  void verify_note(u64 commit, u128 checksum);
  void verify_try();
  void prepare_ok_send(const Header& prepare);
  void on_commit(base::Message* message);
  void backup_tick();
  void repair_window(bool again);
  void repair_request(u64 op);
  void repair_send(u64 op);
  void on_get_prepare(base::Message* message);
  static void repair_read_callback(typename journal::Wal<S>::Read* read);
  bool log_truncate_after(u64 op);
  static void log_written_callback(void* context, const Header& header);
  void log_written(const Header& header);

  // replica_commit.hpp: executing, replies, checkpoints.
  void commit_journal();
  void commit_read_start(u64 op, void (*callback)(typename journal::Wal<S>::Read*));
  base::Message* commit_read_take(typename journal::Wal<S>::Read* read);
  static void commit_read_callback(typename journal::Wal<S>::Read* read);
  void execute(base::Message* prepare);
  void reply_build(const Header& prepare, u32 session_index, u32 reply_size);
  void reply_send(u32 session_index);
  void eviction_send(u128 client, EvictionReason reason);
  void on_ping_client(base::Message* message);
  void checkpoint_start();
  static void checkpoint_written_callback(void* context);
  static void checkpoint_superblock_callback(journal::SuperblockStore<S>* store);
  void frame_fill(Header& header, Command command);
  static void message_seal(base::Message* message);

  // -------------------------------------------------------------------------------------------
  // State.

  S& storage_;
  Bus& bus_;
  Clock& time_;
  journal::Layout layout_;
  ReplicaOptions options_;
  journal::SuperblockStore<S> superblock_;
  Log<S> log_;
  typename journal::Wal<S>::Completion wal_completion_;
  state_machine::StateMachine state_machine_;
  state_machine::Checkpointer checkpointer_;
  CheckpointStore<S> checkpoint_store_;
  ClientSessions sessions_;
  base::LargeArray<std::byte> scratch_reply_;
  base::Prng prng_;  // Jitter for timeouts' backoff: seeded from the cluster and replica.

  ReplicaStatus status_ = ReplicaStatus::init;
  OpenCallback open_callback_ = nullptr;
  u32 view_ = 0;
  u64 op_verified_ = 0;  // Ops up to here are known to be the primary's (this view).
  u64 commit_min_ = 0;   // Executed.
  u64 commit_max_ = 0;   // Known committed.
  u128 checkpoint_checksum_next_ = 0;  // The prepare at the checkpoint being written.
  bool checkpointing_ = false;

  // Opening.
  u64 replay_target_ = 0;
  u64 op_at_open_ = 0;  // The log's head when the replica became normal.
  u64 pipeline_reload_op_ = 0;

  // The primary.
  Pipeline pipeline_;
  RequestQueue request_queue_;
  u64 prepare_timestamp_ = 0;  // The last timestamp prepared (or found in the log).
  Timeout commit_heartbeat_timeout_{"commit_heartbeat", commit_heartbeat_ticks};
  Timeout prepare_retry_timeout_{"prepare_retry", prepare_retry_ticks};
  Timeout pulse_timeout_{"pulse", pulse_ticks};

  // Backups.
  Timeout repair_timeout_{"repair", repair_ticks};  // Asks again for what did not arrive.
  u64 repair_requested_op_ = 0;  // The op repair_request() last asked for, at most once per
  Timeout repair_request_timeout_{"repair_request", repair_ticks};  // this timeout.
  u64 repair_window_end_ = 0;    // The last op the repair window asked for.
  u64 verify_op_ = 0;            // A commit announced by the primary, not yet verified here.
  u128 verify_checksum_ = 0;     // Its checksum.

  // Reads: one for commits (and replay), one for repairs answered from the WAL.
  typename journal::Wal<S>::Read commit_read_;
  base::Message* commit_read_message_ = nullptr;
  typename journal::Wal<S>::Read repair_read_;
  base::Message* repair_read_message_ = nullptr;
  u8 repair_read_to_ = 0;

  ReplicaStats stats_;
};

// -------------------------------------------------------------------------------------------
// Lifecycle and dispatch.

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::open(OpenCallback callback) {
  TALLY_ASSERT(status_ == ReplicaStatus::init);
  TALLY_ASSERT(pool().message_size() >= message_size_max);
  status_ = ReplicaStatus::opening;
  open_callback_ = callback;
  log_.init(&pool(), log_written_callback, this);
  pipeline_.init(&pool());
  request_queue_.init(&pool());
  superblock_.open(true, superblock_open_callback);
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::tick() {
  if (status_ != ReplicaStatus::normal) return;
  for (Timeout* timeout : {&commit_heartbeat_timeout_, &prepare_retry_timeout_, &pulse_timeout_,
                           &repair_timeout_, &repair_request_timeout_}) {
    timeout->tick();
  }
  if (primary()) {
    primary_tick();
  } else {
    backup_tick();
  }
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::on_message(base::Message* message) {
  TALLY_ASSERT(message->references >= 1);
  if (status_ != ReplicaStatus::normal) return;
  const Header& header = message->header();
  if (header.cluster != options_.cluster || validate_header(header) != HeaderError::none) {
    stats_.messages_invalid += 1;
    return;
  }
  if (header.command != Command::request && header.command != Command::ping_client) {
    const MessageError error = validate_replica_message(
        header, message->body(),
        ValidationContext{.replica = options_.replica, .replica_count = options_.replica_count});
    if (error != MessageError::none || !view_consistent(header)) {
      stats_.messages_invalid += 1;
      return;
    }
  }
  switch (header.command) {
    case Command::request: on_request(message); break;
    case Command::ping_client: on_ping_client(message); break;
    case Command::prepare: on_prepare(message); break;
    case Command::prepare_ok: on_prepare_ok(message); break;
    case Command::commit: on_commit(message); break;
    case Command::get_prepare: on_get_prepare(message); break;
    default: stats_.messages_invalid += 1; break;
  }
}

// A checkpoint of full tables, written while the previous one keeps its own copies of every
// block it may replace, must fit the grid: running out in the middle of a checkpoint would stop
// every replica at the same op. Checked once, before anything runs.
template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::grid_capacity_check(const journal::Layout& layout,
                                                 const state_machine::Config& config) {
  const u64 needed = state_machine::checkpoint_block_count_max(config) +
                     state_machine::checkpoint_block_count_rewritable(config) +
                     2 * manifest_blocks_max + 2;
  const u64 available = layout.config().grid_block_count;
  if (available < needed) {
    base::fatal(base::FatalReason::configuration_invalid,
                "the data file's grid holds %llu blocks, but checkpoints of the state machine's "
                "capacities may need %llu: format a data file with a larger grid, or run with "
                "lower capacities",
                static_cast<unsigned long long>(available),
                static_cast<unsigned long long>(needed));
  }
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::release_messages() {
  // Writes and reads still in flight belong to a storage that is going away with us (a crash in
  // the simulator, or process exit): their buffers are given back too.
  pipeline_.release();
  request_queue_.release();
  log_.release();
  base::MessagePool& messages = pool();
  if (commit_read_message_ != nullptr) messages.unref(commit_read_message_);
  if (repair_read_message_ != nullptr) messages.unref(repair_read_message_);
  commit_read_message_ = nullptr;
  repair_read_message_ = nullptr;
}

}  // namespace tally::vsr

#include "src/vsr/replica_backup.hpp"
#include "src/vsr/replica_commit.hpp"
#include "src/vsr/replica_open.hpp"
#include "src/vsr/replica_primary.hpp"
