// Replica: one member of a Tally cluster. Viewstamped Replication (normal operation, view
// changes, repair) over the journal (WAL, superblock) and the state machine, templated on
// Storage, MessageBus and Time so that the same code runs on io_uring (src/cli) and in the
// simulator (tests/simulator).
//
// docs/vsr-protocol.md describes the messages and the rules; in short:
//
//   client ── request ──> primary (replica view % replica_count)
//     primary: §5.4 decision; prepare = request body + op (next), timestamp, parent (hash chain)
//     primary ── prepare ──> every backup; primary and backups write it to their WAL
//     backup ── prepare_ok ──> primary, once the prepare is durable
//     primary: quorum (its own write included) => committed; executes in op order; replies
//   A backup that hears nothing from its primary votes to leave the view (exit_view); a quorum
//   of votes starts a view change: each replica sends its log's newest headers (join_view) to
//   the next view's primary, which chooses the log (view_change_quorum.hpp), repairs what it
//   lacks, and starts the view (view) once its log is whole and durable.
//
// The replica is split along its seams; this file is the table of contents and the state:
//
//   log.hpp                 the hash chain over the WAL: write queue, prepare cache, truncation
//   pipeline.hpp            the primary's prepares in flight and the queue of waiting requests
//   timeout.hpp             named timeouts with backoff
//   quorums.hpp             replication, view-change and nack quorums for 1..6 replicas
//   message_validation.hpp  every replica message checked once, at on_message()
//   view_change_quorum.hpp  the new primary's choice of log (pure)
//   replica_open.hpp        opening: superblock, checkpoint, WAL recovery, replay, first status
//   replica_primary.hpp     requests, preparing, acknowledgements, heartbeats, pulses
//   replica_backup.hpp      accepting the primary's prepares, acknowledging, heartbeats
//   replica_repair.hpp      the log trusted from the head down; fetching what it lacks
//   replica_view_change.hpp votes, do_view_change, start_view, durable view state
//   replica_commit.hpp      executing committed ops, replies, checkpoints, superblock writes
//
// Invariants (asserted where they are relied on):
// - op_checkpoint <= commit_min <= commit_max; commit_min <= op (the head) <= op_prepare_max;
// - an op executes only when the hash chain from the head reaches it and names the executed op
//   before it as parent;
// - view >= log_view, and neither ever goes down, in memory or on disk; a replica sends the
//   messages of a view only once that view is durable; it acknowledges prepares only in normal
//   status;
// - a committed op is in the primary's WAL: its quorum includes the primary's own write.
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
#include "src/vsr/view_change_quorum.hpp"
#include "tally/constants.hpp"
#include "tally/header.hpp"
#include "tally/types.hpp"

namespace tally::vsr {

// Timeouts, in ticks of 10 ms.
inline constexpr u32 commit_heartbeat_ticks = 10;
inline constexpr u32 prepare_retry_ticks = 20;
inline constexpr u32 repair_ticks = 10;
inline constexpr u32 pulse_ticks = 10;
// A backup that hears neither prepare nor commit from its primary for this long votes to leave
// the view: ten heartbeats missed.
inline constexpr u32 normal_heartbeat_ticks = 100;
// Resending a vote, a do_view_change, a get_view while nothing comes back.
inline constexpr u32 view_change_message_ticks = 10;
// A view change that has not finished in this long moves on to the next view.
inline constexpr u32 view_change_status_ticks = 100;

struct ReplicaOptions {
  u128 cluster = 0;
  u8 replica = 0;
  u8 replica_count = 1;
  state_machine::Config state_machine;
};

// normal: the view's primary prepares, backups follow. view_change: view > log_view, or a new
// primary that has not started its view yet. recovering_head: a restarted replica whose newest
// entries cannot be trusted (a damaged slot may hold an op it acknowledged): it takes no part in
// view changes and waits for the view's start_view.
enum class ReplicaStatus : u8 { init, opening, normal, view_change, recovering_head };

constexpr const char* name(ReplicaStatus status) {
  switch (status) {
    case ReplicaStatus::init: return "init";
    case ReplicaStatus::opening: return "opening";
    case ReplicaStatus::normal: return "normal";
    case ReplicaStatus::view_change: return "view_change";
    case ReplicaStatus::recovering_head: return "recovering_head";
  }
  return "unknown";
}

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
  u64 messages_invalid = 0;   // Failed validation (message_validation.hpp) or a role rule.
  u64 ops_committed = 0;
  u64 view_changes = 0;           // Views this replica entered a view change for.
  u64 views_started = 0;          // Views this replica started as their primary.
  u64 chain_breaks_dropped = 0;   // Entries above the executed op naming another parent.
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
  // Past the superblock, the checkpoint and the WAL, whatever the status now.
  bool opened() const {
    return status_ != ReplicaStatus::init && status_ != ReplicaStatus::opening;
  }
  u32 log_view() const { return log_view_; }
  u8 replica() const { return options_.replica; }
  u8 replica_count() const { return options_.replica_count; }
  u32 view() const { return view_; }
  bool primary() const { return primary_index(view_) == options_.replica; }
  // The primary of the current view in normal status: the one replica that prepares.
  bool primary_normal() const { return status_ == ReplicaStatus::normal && primary(); }
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
  bool head_uncertain() const;
  void replay_next();
  static void replay_read_callback(typename journal::Wal<S>::Read* read);
  void open_done();

  // replica_primary.hpp: the primary.
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
  void on_prepare(base::Message* message);
  void later_view_heard(u32 view);
  void prepare_from_primary(base::Message* message);
  void held_prepares_append();
  void prepare_ok_send(const Header& prepare);
  void on_commit(base::Message* message);
  static void log_written_callback(void* context, const Header& header);
  void log_written(const Header& header);

  // replica_repair.hpp: the log from the head down; repair.
  bool chain_executable(u64 op) const { return chain_executable(op, log_.chain_min()); }
  bool chain_executable(u64 op, u64 chained) const;
  void repair_tick();
  void repair_send(u64 op, u128 checksum);
  void repair_accept(base::Message* message);
  void repair_fill_from_cache();
  bool log_truncate_after(u64 op);
  void on_get_prepare(base::Message* message);
  static void repair_read_callback(typename journal::Wal<S>::Read* read);
  void get_headers_send();
  void on_get_headers(base::Message* message);
  void on_headers(base::Message* message);

  // replica_view_change.hpp: view changes.
  void on_exit_view(base::Message* message);
  void on_join_view(base::Message* message);
  void on_view(base::Message* message);
  void on_get_view(base::Message* message);
  bool view_jump(const Header& header);
  void view_change_tick();
  void vote_to_leave_view();
  void transition_to_view_change(u32 view);
  journal::ViewHeaders view_headers_from_log(u64 commit) const;
  void join_view_send();
  void join_view_store(base::Message* message);
  void join_views_release();
  void log_choose_and_install();
  void primary_view_start_try();
  void primary_view_started();
  void view_send(u8 replica, u128 nonce);
  void get_view_send(u32 view);
  void view_install(base::Message* message);
  void backup_view_started();
  void superblock_view_durable();

  // replica_commit.hpp: executing, replies, checkpoints, superblock writes.
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
  void superblock_write_view();
  void superblock_write_next();
  static void superblock_written_callback(journal::SuperblockStore<S>* store);
  u32 view_durable() const { return superblock_.working().vsr_state.view; }
  u32 log_view_durable() const { return superblock_.working().vsr_state.log_view; }
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
  u32 log_view_ = 0;  // The view whose log this replica's log is (normal in it, or its primary).
  // The newest headers of the log this replica stands for: start_view headers while log_view
  // == view, do_view_change headers while log_view < view. Durable ones: the superblock's.
  journal::ViewHeaders view_headers_;
  u64 commit_min_ = 0;  // Executed.
  u64 commit_max_ = 0;  // Known committed.
  u128 checkpoint_checksum_next_ = 0;  // The prepare at the checkpoint being written.
  bool checkpointing_ = false;
  // A random number of this run, echoed by answers to get_view: a restarted replica tells an
  // answer to itself from one sent to its previous run.
  u128 nonce_ = 0;

  // Superblock writes: one at a time; what is wanted meanwhile is written next, as it is then.
  bool superblock_view_wanted_ = false;
  bool superblock_checkpoint_wanted_ = false;
  bool superblock_writing_checkpoint_ = false;
  journal::CheckpointReference checkpoint_reference_next_{};

  // Opening.
  u64 replay_target_ = 0;
  u64 op_at_open_ = 0;  // The log's head when the replica started its view as primary.

  // The primary.
  Pipeline pipeline_;
  RequestQueue request_queue_;
  u64 prepare_timestamp_ = 0;  // The last timestamp prepared (or found in the log).
  Timeout commit_heartbeat_timeout_{"commit_heartbeat", commit_heartbeat_ticks};
  Timeout prepare_retry_timeout_{"prepare_retry", prepare_retry_ticks};
  Timeout pulse_timeout_{"pulse", pulse_ticks};

  // Backups.
  Timeout normal_heartbeat_timeout_{"normal_heartbeat", normal_heartbeat_ticks};

  // Repair (every normal replica; a new primary once it has chosen its log).
  Timeout repair_timeout_{"repair", repair_ticks};
  u8 repair_peer_next_ = 0;  // The replica a backup also asks, besides its primary (in turn).

  // View changes.
  u32 votes_to_leave_ = 0;  // Bit r: replica r voted to leave view_ (this replica's own too).
  base::Message* join_views_[replicas_max] = {};  // The new primary's do_view_changes.
  bool log_chosen_ = false;  // The new primary has chosen and installed the view's log.
  // A damaged slot may hold an op above the head that this replica acknowledged (opening):
  // until a view's log tells it where its head is, its do_view_changes say so.
  bool head_uncertain_ = false;
  u64 view_head_ = 0;        // That log's head.
  u32 get_view_asked_ = 0;   // The view last asked for with get_view.
  Timeout vote_timeout_{"vote", view_change_message_ticks};
  Timeout join_view_timeout_{"join_view", view_change_message_ticks};
  Timeout get_view_timeout_{"get_view", view_change_message_ticks * 2};
  Timeout view_change_status_timeout_{"view_change_status", view_change_status_ticks};

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
  if (!opened()) return;
  for (Timeout* timeout :
       {&commit_heartbeat_timeout_, &prepare_retry_timeout_, &pulse_timeout_,
        &normal_heartbeat_timeout_, &repair_timeout_, &vote_timeout_, &join_view_timeout_,
        &get_view_timeout_, &view_change_status_timeout_}) {
    timeout->tick();
  }
  switch (status_) {
    case ReplicaStatus::normal:
      if (primary()) {
        primary_tick();
      } else if (normal_heartbeat_timeout_.fired()) {
        // Nothing from the primary for ten heartbeats: vote to leave its view.
        normal_heartbeat_timeout_.reset();
        vote_to_leave_view();
      }
      break;
    case ReplicaStatus::view_change:
    case ReplicaStatus::recovering_head: view_change_tick(); break;
    case ReplicaStatus::init:
    case ReplicaStatus::opening: TALLY_ASSERT(false); break;
  }
  if (repair_timeout_.fired()) {
    repair_timeout_.reset();
    repair_tick();
  }
}

template <journal::Storage S, MessageBus Bus, Time Clock>
void Replica<S, Bus, Clock>::on_message(base::Message* message) {
  TALLY_ASSERT(message->references >= 1);
  if (!opened()) return;
  const Header& header = message->header();
  if (header.cluster != options_.cluster || validate_header(header) != HeaderError::none) {
    stats_.messages_invalid += 1;
    return;
  }
  if (header.command != Command::request && header.command != Command::ping_client) {
    const MessageError error = validate_replica_message(
        header, message->body(),
        ValidationContext{.replica = options_.replica, .replica_count = options_.replica_count});
    if (error != MessageError::none) {
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
    case Command::exit_view: on_exit_view(message); break;
    case Command::join_view: on_join_view(message); break;
    case Command::view: on_view(message); break;
    case Command::get_view: on_get_view(message); break;
    case Command::get_headers: on_get_headers(message); break;
    case Command::headers: on_headers(message); break;
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
  join_views_release();
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
#include "src/vsr/replica_repair.hpp"
#include "src/vsr/replica_view_change.hpp"
