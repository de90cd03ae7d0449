// Replica: one member of a Tally cluster. Viewstamped Replication's normal operation over the
// journal (WAL, superblock) and the state machine, templated on Storage, Bus and Time so that
// the same code runs on io_uring (src/cli) and in the simulator (tests/simulator).
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
// The log is a hash chain: every prepare names its parent's checksum, op 1's parent is the
// cluster's root prepare (root_prepare()). A backup appends only the op after its head whose
// parent is its head, so its log is always a prefix-consistent copy of the primary's. Gaps
// (lost prepares) are repaired by asking the primary for the missing op (get_prepare); the
// primary retransmits prepares that lack acknowledgements.
//
// Checkpoints: every checkpoint_interval() ops every replica writes the state machine's changed
// blocks, the client sessions and their replies (checkpoint_store.hpp), then moves the
// superblock to that op; WAL slots up to it may then be reused. The primary prepares at most
// op_checkpoint + slot_count, which leaves the pipeline room while a checkpoint is written. A
// restart loads the checkpoint and replays the WAL after it.
//
// What is not here yet (docs/vsr-protocol.md, "Limits"): view changes (a failed primary stops
// the cluster until it restarts), state sync (a backup that falls a whole WAL behind). A
// primary that restarts in a cluster moves to view + replica_count (the same primary), so
// that prepares it made before the crash and never made durable are told apart from the ones
// it makes now.
//
// Determinism: no clock reads except Time (realtime for timestamps, ticks for timeouts), no
// randomness, no iteration over unordered containers; messages, ticks and storage completions
// are the only inputs.
#pragma once

#include <bit>
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
#include "src/state_machine/config.hpp"
#include "src/state_machine/state_machine.hpp"
#include "src/state_machine/checkpoint.hpp"
#include "src/vsr/checkpoint_format.hpp"
#include "src/vsr/checkpoint_store.hpp"
#include "src/vsr/client_sessions.hpp"
#include "src/vsr/message_validation.hpp"
#include "src/vsr/request_decision.hpp"
#include "tally/constants.hpp"
#include "tally/header.hpp"
#include "tally/types.hpp"

namespace tally::vsr {

// Prepares in flight at the primary, uncommitted: also the WAL's concurrent writes.
inline constexpr u32 pipeline_max = journal::wal_write_count_max;
// Recent prepares kept in memory by op (a power of two), so that commits rarely read the WAL.
inline constexpr u32 prepare_cache_max = 64;
// Requests waiting for room in the pipeline: one per client session at most.
inline constexpr u32 request_queue_max = clients_max;

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

// The smallest number of replicas (the primary included) that must hold a prepare before it is
// committed: a majority, so that any two quorums intersect.
constexpr u32 quorum_replication(u32 replica_count) { return replica_count / 2 + 1; }

// The cluster's op 0: the anchor of the hash chain, the same on every replica of a cluster.
inline Header root_prepare(u128 cluster) {
  Header header{};
  header.cluster = cluster;
  header.size = header_size;
  header.release = release_server;
  header.command = Command::prepare;
  header.prepare.operation = Operation::root;
  header.checksum_body = checksum_empty;
  set_checksum(header);
  return header;
}

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
  u64 messages_invalid = 0;
  u64 ops_committed = 0;
};

template <journal::Storage S, typename Bus, typename Time>
class Replica {
 public:
  using OpenCallback = void (*)(Replica* replica);

  Replica(S& storage, Bus& bus, Time& time, const journal::Layout& layout,
          const ReplicaOptions& options)
      : storage_(storage),
        bus_(bus),
        time_(time),
        layout_(layout),
        options_(options),
        superblock_(storage),
        wal_(storage, layout,
             journal::WalOptions{.cluster = options.cluster, .solo = options.replica_count == 1}),
        checkpoint_store_(storage, layout),
        root_(root_prepare(options.cluster)) {
    TALLY_ASSERT(layout.config().slot_count > 2 * pipeline_max);
    grid_capacity_check(layout, options.state_machine);
    TALLY_ASSERT(options.replica_count >= 1 && options.replica_count <= replicas_max);
    TALLY_ASSERT(options.replica < options.replica_count);
    TALLY_ASSERT(layout.config().message_size_max == message_size_max,
                 "the replica needs whole-size messages (any reply must fit)");
    superblock_.context = this;
    wal_completion_.context = this;
    state_machine_.init(options.state_machine);
    sessions_.init(clients_max, message_size_max);
    scratch_reply_.init(message_size_max);
    for (WriteSlot& slot : write_slots_) slot.write.context = this;
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
  u64 op() const { return op_; }
  u64 commit_min() const { return commit_min_; }
  u64 commit_max() const { return commit_max_; }
  u64 op_prepare_max() const { return op_checkpoint_ + wal_.slot_count(); }
  u64 op_checkpoint() const { return op_checkpoint_; }
  const CheckpointStore<S>& checkpoint_store() const { return checkpoint_store_; }
  // Ops between checkpoints: the WAL's slots less room for two pipelines, so that the primary
  // can keep preparing while a checkpoint is written.
  u64 checkpoint_interval() const { return wal_.slot_count() - 2 * pipeline_max; }
  const state_machine::StateMachine& state_machine() const { return state_machine_; }
  const ClientSessions& sessions() const { return sessions_; }
  const ReplicaStats& stats() const { return stats_; }
  const journal::Wal<S>& wal() const { return wal_; }
  u32 pipeline_count() const { return pipeline_count_; }
  // The checksum of the committed prepare at `op` (<= commit_min), if the WAL still names it.
  std::optional<u128> checksum_of(u64 op) const {
    if (op == op_checkpoint_) return checkpoint_checksum_;
    const Header* header = log_header(op);
    if (header == nullptr) return std::nullopt;
    return header->checksum;
  }

  // -------------------------------------------------------------------------------------------
  // Lifecycle.

  // Opens the data file: superblock, WAL recovery, replay of the log. `callback` runs when the
  // replica is normal; fatal() stops the process when the file belongs elsewhere.
  // The bus must be ready (its pool set) from here on; the constructor does not touch it.
  void open(OpenCallback callback) {
    TALLY_ASSERT(status_ == ReplicaStatus::init);
    TALLY_ASSERT(pool().message_size() >= message_size_max);
    status_ = ReplicaStatus::opening;
    open_callback_ = callback;
    superblock_.open(true, superblock_open_callback);
  }

  // Every 10 ms.
  void tick() {
    ticks_ += 1;
    if (status_ != ReplicaStatus::normal) return;
    if (primary()) {
      primary_tick();
    } else {
      backup_tick();
    }
  }

  // A message from the bus (one reference held by the bus for the call's duration).
  void on_message(base::Message* message) {
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

 private:
  struct PipelineEntry {
    base::Message* prepare = nullptr;
    u64 op = 0;
    u32 ok_mask = 0;  // Bit r: replica r holds the prepare durably (the primary's own bit too).
  };

  struct WriteSlot {
    typename journal::Wal<S>::Write write;
    base::Message* message = nullptr;
  };

  // A checkpoint of full tables, written while the previous one keeps its own copies of every
  // block it may replace, must fit the grid: running out in the middle of a checkpoint would
  // stop every replica at the same op. Checked once, before anything runs.
  static void grid_capacity_check(const journal::Layout& layout,
                                  const state_machine::Config& config) {
    const u64 needed = state_machine::checkpoint_block_count_max(config) +
                       state_machine::checkpoint_block_count_rewritable(config) +
                       2 * manifest_blocks_max + 2;
    const u64 available = layout.config().grid_block_count;
    if (available < needed) {
      base::fatal(base::FatalReason::configuration_invalid,
                  "the data file's grid holds %llu blocks, but checkpoints of the state "
                  "machine's capacities may need %llu: format a data file with a larger grid, "
                  "or run with lower capacities",
                  static_cast<unsigned long long>(available),
                  static_cast<unsigned long long>(needed));
    }
  }

  u8 primary_index(u32 view) const { return static_cast<u8>(view % options_.replica_count); }
  u32 quorum() const { return quorum_replication(options_.replica_count); }
  bool solo() const { return options_.replica_count == 1; }

  // Until view changes exist, a view changes only when its primary restarts, moving on by
  // replica_count views: a message of a later view whose primary is another replica cannot
  // come from this cluster, and following it would leave the real primary (docs/vsr-protocol.md,
  // "Validation"). Messages of earlier views are answers to repairs, and pass.
  bool view_consistent(const Header& header) const {
    if (header.view <= view_) return true;
    return primary_index(header.view) == primary_index(view_);
  }
  base::MessagePool& pool() { return bus_.pool(); }

  // -------------------------------------------------------------------------------------------
  // Opening.

  static void superblock_open_callback(journal::SuperblockStore<S>* store) {
    auto* self = static_cast<Replica*>(store->context);
    self->superblock_opened();
  }

  void superblock_opened() {
    if (superblock_.result() != journal::SuperblockResult::ok) {
      base::fatal(base::FatalReason::data_file_invalid, "the data file's superblock: %s",
                  journal::superblock_result_message(superblock_.result()));
    }
    const journal::Superblock& working = superblock_.working();
    if (working.cluster != options_.cluster || working.replica != options_.replica ||
        working.replica_count != options_.replica_count) {
      base::fatal(base::FatalReason::data_file_mismatch,
                  "the data file is replica %u of %u, not replica %u of %u (or of another "
                  "cluster)",
                  working.replica, working.replica_count, options_.replica,
                  options_.replica_count);
    }
    if (working.layout != layout_.config()) {
      base::fatal(base::FatalReason::data_file_mismatch,
                  "the data file's layout differs from the one this replica was built for");
    }
    view_ = working.vsr_state.view;
    op_checkpoint_ = working.checkpoint.op;
    checkpoint_checksum_ = root_.checksum;
    if (op_checkpoint_ == 0) {
      wal_recover();
      return;
    }
    const CheckpointVsrState state = checkpoint_vsr_state_read(working.checkpoint);
    checkpoint_checksum_ = state.prepare_checksum;
    checkpoint_store_.open(state, state_machine_, sessions_, checkpoint_opened_callback, this);
  }

  static void checkpoint_opened_callback(void* context) {
    auto* self = static_cast<Replica*>(context);
    const journal::CheckpointReference& checkpoint = self->superblock_.working().checkpoint;
    TALLY_ASSERT(self->state_machine_.commit_timestamp() == checkpoint.commit_timestamp);
    // The next checkpoint is relative to this one.
    self->checkpointer_.done(self->state_machine_);
    self->commit_min_ = self->op_checkpoint_;
    self->prepare_timestamp_ = checkpoint.commit_timestamp;
    self->wal_recover();
  }

  void wal_recover() {
    journal::RecoverOptions options{};
    if (op_checkpoint_ > 0) options.op_checkpoint = op_checkpoint_;
    wal_.recover(&wal_completion_, wal_recovered_callback, options);
  }

  static void wal_recovered_callback(typename journal::Wal<S>::Completion* completion) {
    static_cast<Replica*>(completion->context)->wal_recovered();
  }

  void wal_recovered() {
    // The log is the hash chain from the root as far as it goes unbroken.
    op_ = op_checkpoint_;
    head_checksum_ = checkpoint_checksum_;
    for (u64 op = op_checkpoint_ + 1; op <= op_checkpoint_ + wal_.slot_count(); op += 1) {
      const Header* header = wal_.header_with_op(op);
      if (header == nullptr || header->prepare.parent != head_checksum_) break;
      op_ = op;
      head_checksum_ = header->checksum;
      prepare_timestamp_ = header->prepare.timestamp;
    }
    // Entries past a break cannot be trusted to follow the chain. If the op after the head was
    // simply never written here (a write lost or torn by the crash, the slot empty or older),
    // nothing after it committed either: a commit needs this replica's own write of every op
    // up to it when it is the primary (or alone), and backups fetch their entries again. A
    // faulty slot is different: it may hold a committed op that storage damaged, and the
    // only complete log (a single replica's, or the primary's while views do not change)
    // must not drop it. The slot after the head is checked whatever the WAL's op_max says:
    // op_max counts only entries recovery trusted, so a damaged newest entry does not show in
    // it, and the log would silently end one op early (an acknowledged op lost).
    const bool authority = solo() || primary_index(view_) == options_.replica;
    const u64 op_next = op_ + 1;
    if (authority && op_next <= op_checkpoint_ + wal_.slot_count() &&
        wal_.faulty(wal_.slot_for_op(op_next))) {
      base::fatal(base::FatalReason::data_file_invalid,
                  "the WAL's op %llu (or the entry in its slot) is damaged, and this replica's "
                  "log is the only complete one (a single replica, or the primary without view "
                  "changes): it cannot be repaired from a peer yet, and starting without it could "
                  "lose an acknowledged operation",
                  static_cast<unsigned long long>(op_next));
    }
    const std::optional<u64> op_max = wal_.op_max();
    if (op_max.has_value() && *op_max > op_) log_truncate_after(op_);
    // What may be executed now: a solo replica committed everything it wrote; a primary in a
    // cluster everything but the pipeline's worth at its head (it never had more uncommitted);
    // a backup waits for the primary to say.
    u64 committed = 0;
    if (solo()) {
      committed = op_;
    } else if (primary_index(view_) == options_.replica) {
      committed = op_ > pipeline_max ? op_ - pipeline_max : 0;
    }
    if (committed < op_checkpoint_) committed = op_checkpoint_;
    commit_max_ = committed;
    pipeline_reload_op_ = committed;
    // Replay stops at the next checkpoint's op: that checkpoint is written once normal, and
    // commit_journal() goes on from there.
    const u64 checkpoint_next = op_checkpoint_ + checkpoint_interval();
    replay_target_ = committed < checkpoint_next ? committed : checkpoint_next;
    op_verified_ = op_;
    if (!solo() && primary_index(view_) != options_.replica) op_verified_ = op_checkpoint_;
    replay_next();
  }

  // Executes ops commit_min+1 .. replay_target from the WAL, one read at a time, then loads
  // the rest of a primary's log into its pipeline.
  void replay_next() {
    if (commit_min_ < replay_target_) {
      commit_read_start(commit_min_ + 1, replay_read_callback);
      return;
    }
    if (!solo() && primary_index(view_) == options_.replica && pipeline_reload_op_ < op_) {
      commit_read_start(pipeline_reload_op_ + 1, reload_read_callback);
      return;
    }
    open_finish();
  }

  void commit_read_start(u64 op, void (*callback)(typename journal::Wal<S>::Read*)) {
    TALLY_ASSERT(commit_read_message_ == nullptr);
    const Header* header = wal_.header_with_op(op);
    TALLY_ASSERT(header != nullptr);
    commit_read_message_ = pool().get();
    TALLY_ASSERT(commit_read_message_ != nullptr, "message pool exhausted while opening");
    wal_.read_prepare(&commit_read_, callback, op, header->checksum,
                      {commit_read_message_->buffer, message_size_max});
  }

  base::Message* commit_read_take(typename journal::Wal<S>::Read* read) {
    base::Message* message = commit_read_message_;
    commit_read_message_ = nullptr;
    if (read->status != journal::PrepareStatus::ok) {
      pool().unref(message);
      return nullptr;
    }
    return message;
  }

  // While opening, an op of the log that does not read back intact cannot be fetched from a
  // peer yet (the replica is not running): stop.
  base::Message* open_read_take(typename journal::Wal<S>::Read* read) {
    base::Message* message = commit_read_take(read);
    if (message == nullptr) {
      base::fatal(base::FatalReason::data_file_invalid,
                  "the WAL's op %llu cannot be read back intact",
                  static_cast<unsigned long long>(read->op));
    }
    return message;
  }

  static void replay_read_callback(typename journal::Wal<S>::Read* read) {
    auto* self = static_cast<Replica*>(read->context);
    base::Message* message = self->open_read_take(read);
    self->execute(message);
    self->pool().unref(message);
    self->replay_next();
  }

  static void reload_read_callback(typename journal::Wal<S>::Read* read) {
    auto* self = static_cast<Replica*>(read->context);
    base::Message* message = self->open_read_take(read);
    TALLY_ASSERT(self->pipeline_count_ < pipeline_max);
    self->cache_put(message);
    PipelineEntry& entry = self->pipeline_[self->pipeline_count_];
    entry = PipelineEntry{.prepare = message, .op = read->op, .ok_mask = 0};
    entry.ok_mask |= 1u << self->options_.replica;  // Durable here already.
    self->pipeline_count_ += 1;
    self->pipeline_reload_op_ = read->op;
    self->replay_next();
  }

  void open_finish() {
    // A primary that restarts in a cluster moves to a later view in which it is still primary,
    // so that backups can tell its new prepares from the ones of its previous life (see the
    // header comment); the view is durable before any message of the new view leaves.
    if (!solo() && primary_index(view_) == options_.replica) {
      view_ += options_.replica_count;
      journal::SuperblockUpdate update{
          .vsr_state = {.view = view_, .log_view = view_, .commit_max = commit_min_},
          .checkpoint = superblock_.working().checkpoint,
      };
      superblock_.update(update, superblock_view_callback);
      return;
    }
    become_normal();
  }

  static void superblock_view_callback(journal::SuperblockStore<S>* store) {
    static_cast<Replica*>(store->context)->become_normal();
  }

  void become_normal() {
    status_ = ReplicaStatus::normal;
    op_at_open_ = op_;
    if (prepare_timestamp_ < state_machine_.commit_timestamp()) {
      prepare_timestamp_ = state_machine_.commit_timestamp();
    }
    if (primary()) {
      for (u32 index = 0; index < pipeline_count_; index += 1) {
        prepare_send_to_backups(pipeline_[index]);
      }
    }
    if (open_callback_ != nullptr) open_callback_(this);
    commit_journal();
  }

  // -------------------------------------------------------------------------------------------
  // Checkpoints.

  void checkpoint_start() {
    TALLY_ASSERT(!checkpointing_ && commit_min_ == op_checkpoint_ + checkpoint_interval());
    const std::optional<u128> checksum = checksum_of(commit_min_);
    TALLY_ASSERT(checksum.has_value(), "the checkpoint's op is in the log");
    checkpointing_ = true;
    checkpoint_checksum_next_ = *checksum;
    checkpoint_store_.write(state_machine_, checkpointer_, sessions_, op_checkpoint_, *checksum,
                            checkpoint_written_callback, this);
  }

  static void checkpoint_written_callback(void* context) {
    auto* self = static_cast<Replica*>(context);
    journal::SuperblockUpdate update{
        .vsr_state = self->superblock_.working().vsr_state,
        .checkpoint = {},
    };
    if (update.vsr_state.view < self->view_) {
      update.vsr_state.view = self->view_;
      update.vsr_state.log_view = self->view_;
    }
    if (update.vsr_state.commit_max < self->commit_min_) {
      update.vsr_state.commit_max = self->commit_min_;
    }
    update.checkpoint.op = self->commit_min_;
    update.checkpoint.commit_timestamp = self->state_machine_.commit_timestamp();
    checkpoint_vsr_state_write(self->checkpoint_store_.vsr_state(), update.checkpoint);
    self->superblock_.update(update, checkpoint_superblock_callback);
  }

  static void checkpoint_superblock_callback(journal::SuperblockStore<S>* store) {
    auto* self = static_cast<Replica*>(store->context);
    self->checkpoint_store_.commit();
    self->checkpointer_.done(self->state_machine_);
    self->op_checkpoint_ = self->commit_min_;
    self->checkpoint_checksum_ = self->checkpoint_checksum_next_;
    self->checkpointing_ = false;
    self->stats_.checkpoints += 1;
    self->commit_journal();
  }

  // -------------------------------------------------------------------------------------------
  // Requests (primary).

  void on_request(base::Message* message) {
    stats_.requests_received += 1;
    if (!primary()) {
      // Clients find the primary from the view in replies; backups stay silent.
      stats_.requests_dropped += 1;
      return;
    }
    if (commit_min_ < op_at_open_) {
      // The log holds ops from before a restart, some acknowledged to clients already, that
      // are not executed yet: the sessions do not know them, so no request can be judged.
      stats_.requests_dropped += 1;
      return;
    }
    request_handle(message, /*from_queue=*/false);
  }

  void request_handle(base::Message* message, bool from_queue) {
    const Header& header = message->header();
    const RequestDecision decision = request_decide(
        header, message->body(), sessions_,
        RequestLimits{.batch_size_limit = batch_size_limit(), .view = view_});
    switch (decision.action) {
      case RequestAction::drop: stats_.requests_dropped += 1; return;
      case RequestAction::evict:
        stats_.requests_evicted += 1;
        eviction_send(header.request.client, decision.reason);
        return;
      case RequestAction::duplicate:
        stats_.requests_duplicate += 1;
        reply_send(decision.session_index);
        return;
      case RequestAction::prepare: break;
    }
    // 10. Already being prepared or waiting: the reply will come. (A queued request has left
    // the queue before it gets here.)
    if (client_in_flight(header.request.client)) {
      stats_.requests_dropped += 1;
      return;
    }
    if (!from_queue && (pipeline_count_ == pipeline_max || op_ + 1 > op_prepare_max() ||
                        request_queue_count_ > 0)) {
      request_enqueue(message);
      return;
    }
    const Operation operation = header.request.operation;
    if (operation_is_state_machine(operation) &&
        !state_machine_.capacity_admits(operation, message->body(), pipeline_reservation())) {
      // No room left in the ledger for the worst case of this request: it is not prepared.
      // The client retries; docs/vsr-protocol.md explains the limit.
      stats_.requests_capacity_dropped += 1;
      return;
    }
    prepare_start(header.request.client, header.checksum, header.request.request,
                  header.release, operation, message->body());
  }

  u32 batch_size_limit() const { return message_size_max - header_size; }

  bool client_in_flight(u128 client) const {
    for (u32 index = 0; index < pipeline_count_; index += 1) {
      if (pipeline_[index].prepare->header().prepare.client == client) return true;
    }
    for (u32 index = 0; index < request_queue_count_; index += 1) {
      const base::Message* queued = request_queue_[request_queue_index(index)];
      if (queued->header().request.client == client) return true;
    }
    return false;
  }

  u32 request_queue_index(u32 position) const {
    return (request_queue_head_ + position) % request_queue_max;
  }

  void request_enqueue(base::Message* message) {
    if (request_queue_count_ == request_queue_max) {
      stats_.requests_dropped += 1;
      return;
    }
    request_queue_[request_queue_index(request_queue_count_)] = pool().ref(message);
    request_queue_count_ += 1;
  }

  // Prepares queued requests while the pipeline and the WAL have room.
  void request_queue_drain() {
    while (request_queue_count_ > 0 && pipeline_count_ < pipeline_max &&
           op_ + 1 <= op_prepare_max()) {
      base::Message* message = request_queue_[request_queue_head_];
      request_queue_[request_queue_head_] = nullptr;
      request_queue_head_ = (request_queue_head_ + 1) % request_queue_max;
      request_queue_count_ -= 1;
      request_handle(message, /*from_queue=*/true);
      pool().unref(message);
    }
  }

  state_machine::StateMachine::Reservation pipeline_reservation() const {
    state_machine::StateMachine::Reservation reservation{.accounts = 0, .transfers = 0};
    for (u32 index = 0; index < pipeline_count_; index += 1) {
      const base::Message* prepare = pipeline_[index].prepare;
      const Operation operation = prepare->header().prepare.operation;
      if (!operation_is_state_machine(operation) ||
          operation == Operation::state_machine_pulse) {
        continue;
      }
      const u32 events = state_machine::StateMachine::timestamp_event_count(operation,
                                                                           prepare->body());
      if (operation == Operation::create_accounts ||
          operation == Operation::deprecated_create_accounts_sparse ||
          operation == Operation::deprecated_create_accounts_unbatched) {
        reservation.accounts += events;
      } else {
        reservation.transfers += events;
      }
    }
    return reservation;
  }

  // The operation's timestamp (§7.1): after the previous prepare's and the last commit's, at
  // least the wall clock, plus one per event it creates.
  u64 timestamp_next(Operation operation, std::span<const std::byte> body) {
    u64 timestamp = prepare_timestamp_;
    const u64 commit_timestamp = state_machine_.commit_timestamp();
    if (timestamp < commit_timestamp) timestamp = commit_timestamp;
    timestamp += 1;
    const i64 now = time_.realtime_ns();
    if (now > 0 && static_cast<u64>(now) > timestamp) timestamp = static_cast<u64>(now);
    timestamp += events_of(operation, body);
    prepare_timestamp_ = timestamp;
    return timestamp;
  }

  static u32 events_of(Operation operation, std::span<const std::byte> body) {
    if (operation == Operation::pulse) {
      return state_machine::StateMachine::timestamp_event_count(Operation::state_machine_pulse,
                                                                {});
    }
    if (!operation_is_state_machine(operation)) return 0;
    return state_machine::StateMachine::timestamp_event_count(operation, body);
  }

  void prepare_start(u128 client, u128 request_checksum, u32 request, u32 release,
                     Operation operation, std::span<const std::byte> body) {
    TALLY_ASSERT(primary() && pipeline_count_ < pipeline_max && op_ + 1 <= op_prepare_max());
    base::Message* message = pool().get();
    if (message == nullptr) {
      stats_.requests_dropped += 1;
      return;
    }
    Header& header = message->header();
    header.cluster = options_.cluster;
    header.size = header_size + static_cast<u32>(body.size());
    header.view = view_;
    header.release = release;
    header.command = Command::prepare;
    header.replica = options_.replica;
    header.prepare.parent = head_checksum_;
    header.prepare.client = client;
    header.prepare.request_checksum = request_checksum;
    header.prepare.op = op_ + 1;
    header.prepare.commit = commit_max_;
    header.prepare.timestamp = timestamp_next(operation, body);
    header.prepare.request = request;
    header.prepare.operation = operation;
    if (!body.empty()) std::memcpy(message->buffer + header_size, body.data(), body.size());
    set_checksum_body(header, message->body());
    set_checksum(header);
    message->pad_zero();

    op_ = header.prepare.op;
    op_verified_ = op_;
    head_checksum_ = header.checksum;
    PipelineEntry& entry = pipeline_[pipeline_count_];
    entry = PipelineEntry{.prepare = message, .op = op_, .ok_mask = 0};
    pipeline_count_ += 1;
    cache_put(message);
    write_enqueue(message);
    prepare_send_to_backups(entry);
  }

  void prepare_send_to_backups(const PipelineEntry& entry) {
    for (u8 replica = 0; replica < options_.replica_count; replica += 1) {
      if (replica == options_.replica) continue;
      if ((entry.ok_mask & (1u << replica)) != 0) continue;
      bus_.send_to_replica(replica, entry.prepare);
    }
  }

  PipelineEntry* pipeline_find(u64 op, u128 checksum) {
    for (u32 index = 0; index < pipeline_count_; index += 1) {
      PipelineEntry& entry = pipeline_[index];
      if (entry.op == op && entry.prepare->header().checksum == checksum) return &entry;
    }
    return nullptr;
  }

  void on_prepare_ok(base::Message* message) {
    const Header& header = message->header();
    TALLY_ASSERT(header.replica < options_.replica_count && header.replica != options_.replica);
    if (!primary() || header.view != view_) return;
    PipelineEntry* entry = pipeline_find(header.prepare_ok.op, header.prepare_ok.prepare_checksum);
    if (entry == nullptr) return;
    entry->ok_mask |= 1u << header.replica;
    pipeline_commit();
  }

  // Advances commit_max over the pipeline's prefix that has a quorum, the primary's own write
  // included (so a committed op is always in the primary's WAL). Entries leave the pipeline
  // only once executed (execute()): until then a retransmission of their request must still
  // find them here, or it would be prepared a second time (a checkpoint, or a WAL read, can
  // hold execution back after the commit).
  void pipeline_commit() {
    for (u32 index = 0; index < pipeline_count_; index += 1) {
      const PipelineEntry& entry = pipeline_[index];
      if (entry.op <= commit_max_) continue;
      if ((entry.ok_mask & (1u << options_.replica)) == 0) break;
      if (static_cast<u32>(std::popcount(entry.ok_mask)) < quorum()) break;
      TALLY_ASSERT(entry.op == commit_max_ + 1);
      commit_max_ = entry.op;
    }
    commit_journal();
  }

  void pipeline_pop_executed(u64 op) {
    if (pipeline_count_ == 0 || pipeline_[0].op != op) return;
    pool().unref(pipeline_[0].prepare);
    for (u32 index = 1; index < pipeline_count_; index += 1) {
      pipeline_[index - 1] = pipeline_[index];
    }
    pipeline_count_ -= 1;
    pipeline_[pipeline_count_] = PipelineEntry{};
  }

  void primary_tick() {
    if (ticks_ % commit_heartbeat_ticks == 0 && !solo()) commit_heartbeat_send();
    if (ticks_ % prepare_retry_ticks == 0) {
      for (u32 index = 0; index < pipeline_count_; index += 1) {
        prepare_send_to_backups(pipeline_[index]);
      }
    }
    if (ticks_ % pulse_ticks == 0) pulse_maybe();
    request_queue_drain();
  }

  void pulse_maybe() {
    if (pipeline_count_ == pipeline_max || op_ + 1 > op_prepare_max()) return;
    for (u32 index = 0; index < pipeline_count_; index += 1) {
      if (pipeline_[index].prepare->header().prepare.operation == Operation::pulse) return;
    }
    const i64 now = time_.realtime_ns();
    if (now <= 0 || !state_machine_.pulse_needed(static_cast<u64>(now))) return;
    prepare_start(0, 0, 0, release_server, Operation::pulse, {});
  }

  void commit_heartbeat_send() {
    base::Message* message = pool().get();
    if (message == nullptr) return;
    Header& header = message->header();
    frame_fill(header, Command::commit);
    header.commit.commit = commit_max_;
    const std::optional<u128> checksum = checksum_of(commit_max_);
    header.commit.commit_checksum = checksum.value_or(0);
    header.commit.checkpoint_op = op_checkpoint_;
    message_seal(message);
    for (u8 replica = 0; replica < options_.replica_count; replica += 1) {
      if (replica != options_.replica) bus_.send_to_replica(replica, message);
    }
    pool().unref(message);
  }

  // -------------------------------------------------------------------------------------------
  // Prepares (backups).

  // Prepares and commits come only from the primary of the view they name, another replica
  // (validate_replica_message() established it).
  void assert_from_primary(const Header& header) const {
    TALLY_ASSERT(header.replica == primary_index(header.view));
    TALLY_ASSERT(header.replica != options_.replica);
  }

  void on_prepare(base::Message* message) {
    const Header& header = message->header();
    assert_from_primary(header);
    TALLY_ASSERT(header.prepare.op > 0 && header.prepare.operation != Operation::root);
    if (header.view > view_) view_adopt(header.view);
    if (primary()) {
      stats_.prepares_ignored += 1;
      return;
    }
    const u64 op = header.prepare.op;
    if (header.view == view_ && header.prepare.commit > commit_max_) {
      commit_max_ = header.prepare.commit;
    }
    if (op <= commit_min_) {
      // Executed here already. A restarted primary re-replicating its pipeline still needs
      // this replica's acknowledgement to commit it again.
      const Header* existing = log_header(op);
      if (existing != nullptr && existing->checksum == header.checksum && !log_dirty(op)) {
        prepare_ok_send(header);
      }
      stats_.prepares_ignored += 1;
    } else {
      prepare_accept_or_hold(message);
    }
    commit_journal();
  }

  void view_adopt(u32 view) {
    TALLY_ASSERT(view > view_);
    TALLY_ASSERT(!primary() && primary_index(view) == primary_index(view_));
    view_ = view;
    // A new view means the primary restarted (there is no view change yet). What its earlier
    // run sent may include prepares it lost before they were durable there, which therefore
    // never committed: the prepares held here for later are dropped, and the log beyond what
    // this replica executed must be shown to be the new run's again (a commit checksum, or a
    // prepare of the new run that chains onto it) before it executes.
    for (base::Message*& cached : prepare_cache_) {
      if (cached != nullptr && cached->header().prepare.op > op_) {
        pool().unref(cached);
        cached = nullptr;
      }
    }
    if (op_verified_ > commit_min_) op_verified_ = commit_min_;
  }

  void prepare_accept_or_hold(base::Message* message) {
    const Header& header = message->header();
    const u64 op = header.prepare.op;
    const Header* existing = log_header(op);
    if (existing != nullptr) {
      if (existing->checksum == header.checksum) {
        // A retransmission: acknowledge again once durable. The primary holds this entry, so
        // the log up to it is the primary's (the hash chain).
        if (op <= op_ && !log_dirty(op)) prepare_ok_send(header);
        if (op <= op_ && op > op_verified_) op_verified_ = op;
        if (op <= op_ && log_dirty(op) && !write_queued(op) && !write_queue_full() &&
            !wal_.writing(wal_.slot_for_op(op))) {
          // The entry here is known but its prepare is not durable (a read found it damaged):
          // this copy repairs it.
          cache_put(message);
          write_enqueue(message);
          stats_.prepares_repaired += 1;
          return;
        }
        stats_.prepares_ignored += 1;
        return;
      }
      // A different prepare for an op this replica holds: only a later view's prepare wins (it
      // was prepared after the primary restarted without the entry held here, which therefore
      // never committed).
      if (header.view <= existing->view || !log_truncate_after(op - 1)) {
        stats_.prepares_ignored += 1;
        return;
      }
      stats_.prepares_truncated += 1;
    }
    if (op > op_prepare_max()) {
      stats_.prepares_ignored += 1;
      return;
    }
    if (op != op_ + 1) {
      // A gap: keep it for when the ops before it arrive, and ask for the next one.
      if (op > op_ + 1 && op - commit_min_ < prepare_cache_max) cache_put(message);
      repair_request(op_ + 1);
      return;
    }
    if (header.prepare.parent != head_checksum_) {
      // The head here is not the primary's: ask for the primary's version of it.
      if (op_ > commit_min_) repair_request(op_);
      stats_.prepares_ignored += 1;
      return;
    }
    if (!follows_head(header)) {
      // Chains onto the head but its timestamp does not increase: no primary made it.
      stats_.messages_invalid += 1;
      return;
    }
    if (write_queue_full()) {
      // This backup's disk is behind the cluster (which commits without it): the prepare waits,
      // unacknowledged, until a write completes (held_prepares_append()).
      if (op - commit_min_ < prepare_cache_max) cache_put(message);
      stats_.prepares_held += 1;
      return;
    }
    prepare_append(message);
    held_prepares_append();
  }

  // Appends the held prepares that follow the head, as far as the write queue has room.
  void held_prepares_append() {
    while (op_ < op_prepare_max() && !write_queue_full()) {
      base::Message* next = cache_get(op_ + 1);
      if (next == nullptr || !follows_head(next->header())) break;
      if (log_header(op_ + 1) != nullptr) break;
      prepare_append(next);
    }
  }

  // The head's timestamp: every op's is above its parent's (timestamp_next()).
  u64 head_timestamp() const {
    if (const Header* head = log_header(op_); head != nullptr) return head->prepare.timestamp;
    TALLY_ASSERT(op_ == op_checkpoint_);
    return superblock_.working().checkpoint.commit_timestamp;
  }

  // Whether a prepare is the head's successor in the hash chain, as a primary makes them.
  bool follows_head(const Header& header) const {
    TALLY_ASSERT(header.command == Command::prepare);
    return header.prepare.op == op_ + 1 && header.prepare.parent == head_checksum_ &&
           header.prepare.timestamp > head_timestamp();
  }

  void prepare_append(base::Message* message) {
    const Header& header = message->header();
    TALLY_ASSERT(follows_head(header));
    op_ = header.prepare.op;
    head_checksum_ = header.checksum;
    // Every prepare comes from the primary's log (on_prepare() checks the sender), and it
    // chains onto the head: the log up to it is the primary's. (Prepares a primary sent before
    // it crashed cannot arrive after its restart: its connections died with it.)
    op_verified_ = op_;
    stats_.prepares_accepted += 1;
    cache_put(message);
    write_enqueue(message);
    verify_try();
  }

  // The oldest commit the primary announced (this view) beyond what is verified here: once the
  // log reaches it, its checksum says whether the log up to there is the primary's.
  void verify_note(u64 commit, u128 checksum) {
    if (commit <= op_verified_) return;
    if (verify_op_ > op_verified_) return;  // One at a time, oldest first.
    verify_op_ = commit;
    verify_checksum_ = checksum;
    verify_try();
  }

  void verify_try() {
    if (verify_op_ <= op_verified_ || verify_op_ > op_) return;
    const Header* ours = log_header(verify_op_);
    if (ours != nullptr && ours->checksum == verify_checksum_) {
      op_verified_ = verify_op_;
      return;
    }
    // The primary committed another prepare at that op: the entry here is one the primary
    // lost before a restart. It never committed, so it goes, and repair fetches the right one.
    if (verify_op_ > commit_min_ && log_truncate_after(verify_op_ - 1)) {
      stats_.prepares_truncated += 1;
    }
    verify_op_ = 0;
  }

  void prepare_ok_send(const Header& prepare) {
    base::Message* message = pool().get();
    if (message == nullptr) return;
    Header& header = message->header();
    frame_fill(header, Command::prepare_ok);
    header.prepare_ok.prepare_checksum = prepare.checksum;
    header.prepare_ok.parent = prepare.prepare.parent;
    header.prepare_ok.op = prepare.prepare.op;
    header.prepare_ok.commit = commit_min_;
    header.prepare_ok.timestamp = prepare.prepare.timestamp;
    message_seal(message);
    bus_.send_to_replica(primary_index(view_), message);
    pool().unref(message);
  }

  void on_commit(base::Message* message) {
    const Header& header = message->header();
    assert_from_primary(header);
    if (header.view > view_) view_adopt(header.view);
    if (header.view != view_ || primary()) return;
    const u64 commit = header.commit.commit;
    if (commit > commit_max_) commit_max_ = commit;
    verify_note(commit, header.commit.commit_checksum);
    repair_window();
    commit_journal();
  }

  void backup_tick() { repair_window(); }

  // Asks the primary for the ops after the head that it has committed, up to a pipeline's
  // worth at a time (they may arrive in any order: the prepare cache holds them), again every
  // repair_ticks while they do not arrive.
  void repair_window() {
    if (op_verified_ < op_ && commit_max_ > op_verified_ && ticks_ % repair_ticks == 0) {
      // The log after a restart: the primary's copy of the head verifies all of it.
      repair_send(op_);
    }
    if (commit_max_ <= op_) return;
    const bool moved = op_ + 1 > repair_window_end_;
    if (!moved && ticks_ < repair_window_tick_ + repair_ticks) return;
    const u64 end = commit_max_ < op_ + pipeline_max ? commit_max_ : op_ + pipeline_max;
    for (u64 op = op_ + 1; op <= end; op += 1) {
      if (cache_get(op) == nullptr) repair_send(op);
    }
    repair_window_end_ = end;
    repair_window_tick_ = ticks_;
  }

  void repair_request(u64 op) {
    if (repair_requested_op_ == op && ticks_ < repair_requested_tick_ + repair_ticks) return;
    repair_requested_op_ = op;
    repair_requested_tick_ = ticks_;
    repair_send(op);
  }

  void repair_send(u64 op) {
    base::Message* message = pool().get();
    if (message == nullptr) return;
    Header& header = message->header();
    frame_fill(header, Command::get_prepare);
    header.get_prepare.op = op;
    message_seal(message);
    stats_.repairs_requested += 1;
    bus_.send_to_replica(primary_index(view_), message);
    pool().unref(message);
  }

  void on_get_prepare(base::Message* message) {
    const Header& header = message->header();
    TALLY_ASSERT(header.replica < options_.replica_count && header.replica != options_.replica);
    const u64 op = header.get_prepare.op;
    const Header* ours = log_header(op);
    if (ours == nullptr || op > op_) return;
    const u128 wanted = header.get_prepare.prepare_checksum;
    if (wanted != 0 && wanted != ours->checksum) return;
    if (base::Message* cached = cache_get(op); cached != nullptr) {
      if (cached->header().checksum == ours->checksum) {
        bus_.send_to_replica(header.replica, cached);
        return;
      }
    }
    if (repair_read_message_ != nullptr || log_dirty(op)) return;  // One at a time; retried.
    repair_read_message_ = pool().get();
    if (repair_read_message_ == nullptr) return;
    repair_read_to_ = header.replica;
    wal_.read_prepare(&repair_read_, repair_read_callback, op, ours->checksum,
                      {repair_read_message_->buffer, message_size_max});
  }

  static void repair_read_callback(typename journal::Wal<S>::Read* read) {
    auto* self = static_cast<Replica*>(read->context);
    base::Message* message = self->repair_read_message_;
    self->repair_read_message_ = nullptr;
    if (read->status == journal::PrepareStatus::ok) {
      self->bus_.send_to_replica(self->repair_read_to_, message);
    }
    self->pool().unref(message);
  }

  // -------------------------------------------------------------------------------------------
  // The log: the WAL's entries plus prepares accepted but still waiting for a WAL write.

  const Header* log_header(u64 op) const {
    if (op == 0) return &root_;
    for (u32 index = 0; index < write_queue_count_; index += 1) {
      const base::Message* queued = write_queue_[write_queue_index(index)];
      if (queued->header().prepare.op == op) return &queued->header();
    }
    return wal_.header_with_op(op);
  }

  bool write_queued(u64 op) const {
    for (u32 index = 0; index < write_queue_count_; index += 1) {
      if (write_queue_[write_queue_index(index)]->header().prepare.op == op) return true;
    }
    return false;
  }

  bool log_dirty(u64 op) const { return write_queued(op) || wal_.dirty(wal_.slot_for_op(op)); }

  // Removes every entry above `op` (never a committed one). False if a WAL write to one of
  // them is in flight: the caller tries again later.
  bool log_truncate_after(u64 op) {
    TALLY_ASSERT(op >= commit_min_);
    const std::optional<u64> op_max = wal_.op_max();
    const u64 last = op_max.has_value() && *op_max > op_ ? *op_max : op_;
    for (u64 candidate = op + 1; candidate <= last; candidate += 1) {
      if (wal_.writing(wal_.slot_for_op(candidate))) return false;
    }
    while (write_queue_count_ > 0) {
      const u32 tail = write_queue_index(write_queue_count_ - 1);
      if (write_queue_[tail]->header().prepare.op <= op) break;
      pool().unref(write_queue_[tail]);
      write_queue_[tail] = nullptr;
      write_queue_count_ -= 1;
    }
    for (u64 candidate = op + 1; candidate <= last; candidate += 1) {
      const u32 slot = wal_.slot_for_op(candidate);
      const Header& header = wal_.header(slot);
      if (header.prepare.operation != Operation::reserved && header.prepare.op > op) {
        wal_.remove_entry(slot);
      }
    }
    const Header* head = log_header(op);
    TALLY_ASSERT(head != nullptr || op == op_checkpoint_);
    op_ = op;
    head_checksum_ = op == op_checkpoint_ ? checkpoint_checksum_ : head->checksum;
    if (op_verified_ > op_) op_verified_ = op_;
    return true;
  }

  // -------------------------------------------------------------------------------------------
  // WAL writes, in op order.

  u32 write_queue_index(u32 position) const {
    return (write_queue_head_ + position) % prepare_cache_max;
  }

  // A primary's queue never fills (its pipeline is shorter); a backup stops accepting prepares
  // while its queue is full.
  bool write_queue_full() const { return write_queue_count_ == prepare_cache_max; }

  void write_enqueue(base::Message* message) {
    TALLY_ASSERT(!write_queue_full(), "WAL write queue overflow");
    write_queue_[write_queue_index(write_queue_count_)] = pool().ref(message);
    write_queue_count_ += 1;
    write_pump();
  }

  void write_pump() {
    while (write_queue_count_ > 0) {
      if (wal_.writes_in_flight() == journal::wal_write_count_max) return;
      if (solo() && wal_.writes_in_flight() > 0) return;
      base::Message* message = write_queue_[write_queue_head_];
      if (wal_.writing(wal_.slot_for_op(message->header().prepare.op))) return;
      WriteSlot* slot = nullptr;
      for (WriteSlot& candidate : write_slots_) {
        if (candidate.message == nullptr) {
          slot = &candidate;
          break;
        }
      }
      TALLY_ASSERT(slot != nullptr);
      write_queue_[write_queue_head_] = nullptr;
      write_queue_head_ = (write_queue_head_ + 1) % prepare_cache_max;
      write_queue_count_ -= 1;
      slot->message = message;  // The queue's reference moves to the write.
      wal_.write_prepare(&slot->write, write_callback, message->padded());
    }
  }

  static void write_callback(typename journal::Wal<S>::Write* write) {
    auto* self = static_cast<Replica*>(write->context);
    WriteSlot* slot = nullptr;
    for (WriteSlot& candidate : self->write_slots_) {
      if (&candidate.write == write) slot = &candidate;
    }
    TALLY_ASSERT(slot != nullptr && slot->message != nullptr);
    base::Message* message = slot->message;
    slot->message = nullptr;
    self->write_done(message->header());
    self->pool().unref(message);
    self->write_pump();
    if (self->status_ == ReplicaStatus::normal && !self->primary()) {
      self->held_prepares_append();
    }
  }

  void write_done(const Header& header) {
    const Header* entry = log_header(header.prepare.op);
    if (entry == nullptr || entry->checksum != header.checksum) return;  // Truncated meanwhile.
    if (primary()) {
      PipelineEntry* pipeline_entry = pipeline_find(header.prepare.op, header.checksum);
      if (pipeline_entry != nullptr) {
        pipeline_entry->ok_mask |= 1u << options_.replica;
        pipeline_commit();
      }
    } else {
      prepare_ok_send(header);
    }
  }

  // -------------------------------------------------------------------------------------------
  // The prepare cache.

  void cache_put(base::Message* message) {
    const u64 op = message->header().prepare.op;
    base::Message*& slot = prepare_cache_[op % prepare_cache_max];
    if (slot == message) return;
    if (slot != nullptr) pool().unref(slot);
    slot = pool().ref(message);
  }

  base::Message* cache_get(u64 op) const {
    base::Message* message = prepare_cache_[op % prepare_cache_max];
    if (message == nullptr || message->header().prepare.op != op) return nullptr;
    return message;
  }

  // -------------------------------------------------------------------------------------------
  // Committing: executing committed ops in order, on every replica.

  void commit_journal() {
    if (status_ != ReplicaStatus::normal) return;
    while (commit_read_message_ == nullptr && !checkpointing_) {
      if (commit_min_ == op_checkpoint_ + checkpoint_interval()) {
        checkpoint_start();
        break;
      }
      const u64 limit = commit_max_ < op_verified_ ? commit_max_ : op_verified_;
      if (commit_min_ >= limit) break;
      const u64 op = commit_min_ + 1;
      const Header* entry = log_header(op);
      if (entry == nullptr) {
        repair_request(op);
        break;
      }
      base::Message* cached = cache_get(op);
      if (cached != nullptr && cached->header().checksum == entry->checksum) {
        execute(cached);
        continue;
      }
      if (log_dirty(op)) {
        repair_request(op);
        break;
      }
      commit_read_start(op, commit_read_callback);
    }
    if (primary()) request_queue_drain();
  }

  static void commit_read_callback(typename journal::Wal<S>::Read* read) {
    auto* self = static_cast<Replica*>(read->context);
    base::Message* message = self->commit_read_take(read);
    if (message == nullptr) {
      self->repair_request(read->op);  // The read found the slot damaged: fetch it.
      return;
    }
    if (message->header().prepare.op == self->commit_min_ + 1) {
      self->cache_put(message);
    }
    self->pool().unref(message);
    self->commit_journal();
  }

  // Applies one committed prepare: the state machine, the client sessions, and (on the
  // primary, once normal) the reply.
  void execute(base::Message* prepare) {
    const Header& header = prepare->header();
    const Header::Prepare& fields = header.prepare;
    TALLY_ASSERT(fields.op == commit_min_ + 1, "op %llu after commit %llu",
                 static_cast<unsigned long long>(fields.op),
                 static_cast<unsigned long long>(commit_min_));
    TALLY_ASSERT(fields.timestamp > state_machine_.commit_timestamp());
    commit_min_ = fields.op;
    stats_.ops_committed += 1;
    if (commit_min_ > commit_max_) commit_max_ = commit_min_;
    pipeline_pop_executed(fields.op);

    std::optional<u32> session_index;
    std::span<std::byte> reply_body;
    u32 reply_size = 0;
    switch (fields.operation) {
      case Operation::register_session: {
        session_index = sessions_.open(fields.client, fields.op, header.release,
                                       fields.request_checksum);
        reply_body = sessions_.reply_buffer(*session_index).subspan(header_size);
        RegisterResult result{};
        result.batch_size_limit = batch_size_limit();
        std::memcpy(reply_body.data(), &result, sizeof(result));
        reply_size = sizeof(result);
        state_machine_.commit_timestamp_set(fields.timestamp);
        break;
      }
      case Operation::pulse: {
        state_machine_.execute(Operation::state_machine_pulse, fields.timestamp, {},
                               {scratch_reply_.data(), message_body_size_max});
        break;
      }
      default: {
        TALLY_ASSERT(operation_is_state_machine(fields.operation));
        if (fields.client != 0) session_index = sessions_.find(fields.client);
        reply_body = session_index.has_value()
                         ? sessions_.reply_buffer(*session_index).subspan(header_size)
                         : std::span<std::byte>(scratch_reply_.data(), message_body_size_max);
        reply_size = state_machine_.execute(fields.operation, fields.timestamp,
                                            prepare->body(), reply_body);
        break;
      }
    }
    TALLY_ASSERT(state_machine_.commit_timestamp() == fields.timestamp);
    // Every op, in op order on every replica: the grid's layout stays a function of the history.
    checkpoint_store_.seal_ahead(state_machine_, checkpointer_);
    if (fields.client == 0 || !session_index.has_value()) return;

    // The reply, built where the session keeps it. Every field comes from the prepare, not
    // from this replica (its index, its current view): every replica, and a replica replaying
    // after a restart, builds the identical reply, so the context the client chains its next
    // request to is the same everywhere.
    std::span<std::byte> buffer = sessions_.reply_buffer(*session_index);
    Header reply{};
    reply.cluster = options_.cluster;
    reply.size = header_size + reply_size;
    reply.view = header.view;
    reply.release = header.release;  // The client's own release (protocol §12.1).
    reply.command = Command::reply;
    reply.replica = header.replica;
    reply.reply.request_checksum = fields.request_checksum;
    reply.reply.client = fields.client;
    reply.reply.op = fields.op;
    reply.reply.commit = fields.op;
    reply.reply.timestamp = fields.timestamp;
    reply.reply.request = fields.request;
    reply.reply.operation = fields.operation;
    set_checksum_body(reply, buffer.subspan(header_size, reply_size));
    set_reply_context(reply);
    set_checksum(reply);
    std::memcpy(buffer.data(), &reply, header_size);
    sessions_.reply_record(*session_index, fields.request, fields.request_checksum, fields.op);
    if (status_ == ReplicaStatus::normal && primary()) reply_send(*session_index);
  }

  void reply_send(u32 session_index) {
    if (!sessions_.reply_available(session_index)) return;  // Lost to storage damage.
    const std::span<const std::byte> bytes = sessions_.reply_bytes(session_index);
    base::Message* message = pool().get();
    if (message == nullptr) return;  // The client retransmits and gets the duplicate.
    std::memcpy(message->buffer, bytes.data(), bytes.size());
    message->pad_zero();
    bus_.send_to_client(sessions_.entry(session_index).client, message);
    pool().unref(message);
  }

  // -------------------------------------------------------------------------------------------
  // Client messages answered without the log.

  void eviction_send(u128 client, EvictionReason reason) {
    base::Message* message = pool().get();
    if (message == nullptr) return;
    Header& header = message->header();
    frame_fill(header, Command::eviction);
    header.eviction.client = client;
    header.eviction.reason = reason;
    message_seal(message);
    bus_.send_to_client(client, message);
    pool().unref(message);
  }

  // §5.5: a pong, or an eviction for a session that is gone or a release out of range.
  void on_ping_client(base::Message* message) {
    const Header& ping = message->header();
    const u128 client = ping.ping_client.client;
    if (ping.ping_client.session != 0 && ping.ping_client.session <= commit_min_ &&
        !sessions_.find(client).has_value()) {
      eviction_send(client, EvictionReason::no_session);
      return;
    }
    if (ping.release < release_client_min) {
      eviction_send(client, EvictionReason::client_release_too_low);
      return;
    }
    if (ping.release > release_server) {
      eviction_send(client, EvictionReason::client_release_too_high);
      return;
    }
    base::Message* pong = pool().get();
    if (pong == nullptr) return;
    Header& header = pong->header();
    frame_fill(header, Command::pong_client);
    header.pong_client.ping_timestamp_monotonic = ping.ping_client.ping_timestamp_monotonic;
    message_seal(pong);
    bus_.send_to_client(client, pong);
    pool().unref(pong);
  }

  // -------------------------------------------------------------------------------------------
  // Message helpers.

  void frame_fill(Header& header, Command command) {
    header.cluster = options_.cluster;
    header.size = header_size;
    header.view = view_;
    header.release = release_server;
    header.command = command;
    header.replica = options_.replica;
  }

  static void message_seal(base::Message* message) {
    Header& header = message->header();
    set_checksum_body(header, message->body());
    set_checksum(header);
    message->pad_zero();
  }

  void release_messages() {
    base::MessagePool& messages = pool();
    for (u32 index = 0; index < pipeline_count_; index += 1) {
      messages.unref(pipeline_[index].prepare);
    }
    pipeline_count_ = 0;
    for (base::Message*& message : prepare_cache_) {
      if (message != nullptr) messages.unref(message);
      message = nullptr;
    }
    while (request_queue_count_ > 0) {
      messages.unref(request_queue_[request_queue_head_]);
      request_queue_head_ = (request_queue_head_ + 1) % request_queue_max;
      request_queue_count_ -= 1;
    }
    while (write_queue_count_ > 0) {
      messages.unref(write_queue_[write_queue_head_]);
      write_queue_head_ = (write_queue_head_ + 1) % prepare_cache_max;
      write_queue_count_ -= 1;
    }
    // Writes and reads still in flight belong to a storage that is going away with us (a
    // crash in the simulator, or process exit): their buffers are given back too.
    for (WriteSlot& slot : write_slots_) {
      if (slot.message != nullptr) messages.unref(slot.message);
      slot.message = nullptr;
    }
    if (commit_read_message_ != nullptr) messages.unref(commit_read_message_);
    if (repair_read_message_ != nullptr) messages.unref(repair_read_message_);
    commit_read_message_ = nullptr;
    repair_read_message_ = nullptr;
  }

  S& storage_;
  Bus& bus_;
  Time& time_;
  journal::Layout layout_;
  ReplicaOptions options_;
  journal::SuperblockStore<S> superblock_;
  journal::Wal<S> wal_;
  typename journal::Wal<S>::Completion wal_completion_;
  state_machine::StateMachine state_machine_;
  state_machine::Checkpointer checkpointer_;
  CheckpointStore<S> checkpoint_store_;
  ClientSessions sessions_;
  base::LargeArray<std::byte> scratch_reply_;
  Header root_;

  ReplicaStatus status_ = ReplicaStatus::init;
  OpenCallback open_callback_ = nullptr;
  u64 ticks_ = 0;
  u32 view_ = 0;
  u64 op_ = 0;               // The log's head.
  u128 head_checksum_ = 0;   // The head's checksum.
  u64 op_verified_ = 0;      // Ops up to here are known to be the primary's (this view).
  u64 commit_min_ = 0;       // Executed.
  u64 commit_max_ = 0;       // Known committed.
  u64 op_checkpoint_ = 0;
  u128 checkpoint_checksum_ = 0;       // The prepare at op_checkpoint_: the chain's anchor.
  u128 checkpoint_checksum_next_ = 0;  // The one being written.
  bool checkpointing_ = false;
  u64 prepare_timestamp_ = 0;
  u64 replay_target_ = 0;
  u64 op_at_open_ = 0;  // The log's head when the replica became normal.
  u64 pipeline_reload_op_ = 0;

  PipelineEntry pipeline_[pipeline_max] = {};
  u32 pipeline_count_ = 0;
  base::Message* prepare_cache_[prepare_cache_max] = {};
  base::Message* request_queue_[request_queue_max] = {};
  u32 request_queue_head_ = 0;
  u32 request_queue_count_ = 0;
  base::Message* write_queue_[prepare_cache_max] = {};
  u32 write_queue_head_ = 0;
  u32 write_queue_count_ = 0;
  WriteSlot write_slots_[journal::wal_write_count_max] = {};

  typename journal::Wal<S>::Read commit_read_;
  base::Message* commit_read_message_ = nullptr;
  typename journal::Wal<S>::Read repair_read_;
  base::Message* repair_read_message_ = nullptr;
  u8 repair_read_to_ = 0;
  u64 repair_requested_op_ = 0;
  u64 repair_requested_tick_ = 0;
  u64 repair_window_end_ = 0;
  u64 repair_window_tick_ = 0;
  u64 verify_op_ = 0;         // A commit announced by the primary, not yet verified here.
  u128 verify_checksum_ = 0;  // Its checksum.

  ReplicaStats stats_;
};

}  // namespace tally::vsr
