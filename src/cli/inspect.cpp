// `tally inspect FILE`: prints what a data file holds, without writing to it: every superblock
// copy (status, copy index, sequence, checksum), the working superblock that open() chooses and
// the zones of its layout, and a summary of the WAL: its recovery run read-only (nothing is fixed
// on disk), with the slots counted by status and by row of the decision table. A file without a
// valid superblock quorum is shown copy by copy, then stops with FatalReason::data_file_invalid.
// Later issues add client sessions and the checkpoint.
#include <cstdio>

#include "io/file_storage.hpp"
#include "io/loop.hpp"
#include "journal/layout.hpp"
#include "journal/superblock.hpp"
#include "journal/wal.hpp"
#include "src/base/assert.hpp"
#include "src/cli/arguments.hpp"
#include "src/cli/commands.hpp"

namespace tally::cli {

namespace {

constexpr const char* inspect_usage = "usage: tally inspect <file>\n";

using Store = journal::SuperblockStore<io::FileStorage>;

void open_done(Store* store) { *static_cast<bool*>(store->context) = true; }

unsigned long as_ulong(u64 value) { return static_cast<unsigned long>(value); }

void print_checksum(u128 value) {
  std::printf("%016lx%016lx", as_ulong(u128_high(value)), as_ulong(u128_low(value)));
}

void print_copies(const journal::QuorumDecision& decision) {
  std::printf("superblock copies (a quorum is %u copies of one version):\n",
              journal::quorum_open);
  std::printf("  %-4s  %-8s  %-20s  %-4s  %-8s  %-32s  %s\n", "slot", "offset", "status", "copy",
              "sequence", "checksum", "working");
  for (u32 slot = 0; slot < journal::superblock_copies; slot += 1) {
    const journal::CopyReport& report = decision.reports[slot];
    std::printf("  %-4u  %-8lu  %-20s  ", slot,
                as_ulong(u64{slot} * journal::superblock_copy_size),
                journal::copy_status_name(report.status));
    if (report.status == journal::CopyStatus::valid) {
      std::printf("%-4u  %-8lu  ", report.copy, as_ulong(report.sequence));
      print_checksum(report.checksum);
      std::printf("  %s\n", report.working ? "yes" : "no");
    } else {
      std::printf("%-4s  %-8s  %-32s  %s\n", "-", "-", "-", "no");
    }
  }
}

void print_working(const journal::Superblock& working, const journal::QuorumDecision& decision) {
  char cluster_text[40];
  std::printf("\nworking superblock (%u copies agree):\n", decision.quorum_count);
  std::printf("  sequence          %lu\n", as_ulong(working.sequence));
  std::printf("  checksum          ");
  print_checksum(working.checksum);
  std::printf("\n  parent            ");
  print_checksum(working.parent);
  std::printf("\n  version           %u\n", working.version);
  std::printf("  cluster           %s\n", u128_decimal(working.cluster, cluster_text));
  std::printf("  replica           %u of %u\n", working.replica, working.replica_count);
  std::printf("  view              %u\n", working.vsr_state.view);
  std::printf("  log_view          %u\n", working.vsr_state.log_view);
  std::printf("  commit_max        %lu\n", as_ulong(working.vsr_state.commit_max));
  std::printf("  checkpoint op     %lu\n", as_ulong(working.checkpoint.op));
  std::printf("  checkpoint time   %lu\n", as_ulong(working.checkpoint.commit_timestamp));
  std::printf("  layout            %u slots, messages of %u bytes, %u clients, "
              "%lu grid blocks of %u bytes\n",
              working.layout.slot_count, working.layout.message_size_max,
              working.layout.clients_max, as_ulong(working.layout.grid_block_count),
              working.layout.grid_block_size);
}

void print_zones(const journal::Layout& layout) {
  std::printf("\nzones:\n");
  std::printf("  %-16s  %14s  %14s  %14s\n", "zone", "offset", "size", "end");
  for (u32 index = 0; index < journal::zone_count; index += 1) {
    const auto kind = static_cast<journal::ZoneKind>(index);
    const journal::Zone zone = layout.zone(kind);
    std::printf("  %-16s  %14lu  %14lu  %14lu\n", journal::zone_name(kind), as_ulong(zone.offset),
                as_ulong(zone.size), as_ulong(zone.end()));
  }
}

using Wal = journal::Wal<io::FileStorage>;

void wal_recovered(Wal::Completion* completion) { *static_cast<bool*>(completion->context) = true; }

void print_wal(io::Loop& loop, io::FileStorage& storage, const journal::Layout& layout,
               const journal::Superblock& working) {
  Wal wal(storage, layout, {.cluster = working.cluster, .solo = working.replica_count == 1});
  bool done = false;
  Wal::Completion completion;
  completion.context = &done;
  journal::RecoverOptions options;
  if (working.checkpoint.op > 0) options.op_checkpoint = working.checkpoint.op;
  options.read_only = true;
  wal.recover(&completion, wal_recovered, options);
  while (!done) loop.run_once(1'000'000'000);

  constexpr u32 status_count = 6;
  u32 by_status[status_count] = {};
  const std::span<const journal::RecoveryCase> cases = journal::recovery_cases();
  u32 by_case[64] = {};
  TALLY_ASSERT(cases.size() <= 64);
  for (u32 slot = 0; slot < wal.slot_count(); slot += 1) {
    const auto status = static_cast<u32>(wal.slot_status(slot));
    TALLY_ASSERT(status < status_count);
    by_status[status] += 1;
    by_case[&wal.recovery_case_of(slot) - cases.data()] += 1;
  }
  std::printf("\nwrite-ahead log (recovered read-only, %u slots):\n", wal.slot_count());
  if (wal.op_max().has_value()) {
    std::printf("  highest op        %lu\n", as_ulong(*wal.op_max()));
  } else {
    std::printf("  highest op        none (empty log)\n");
  }
  std::printf("  slots by status  ");
  for (u32 status = 0; status < status_count; status += 1) {
    std::printf(" %s %u", journal::slot_status_name(static_cast<journal::SlotStatus>(status)),
                by_status[status]);
  }
  std::printf("\n  decision table rows:\n");
  for (u32 index = 0; index < cases.size(); index += 1) {
    if (by_case[index] > 0) std::printf("    %-22s %u\n", cases[index].label, by_case[index]);
  }
}

}  // namespace

int command_inspect(std::span<char*> arguments) {
  Positionals positionals;
  if (!arguments_parse("inspect", arguments, {}, positionals)) {
    std::fputs(inspect_usage, stderr);
    return exit_usage;
  }
  if (positionals.count != 1) {
    std::fprintf(stderr, "tally inspect: expected one data file path, got %u\n%s",
                 positionals.count, inspect_usage);
    return exit_usage;
  }
  const char* path = positionals.values[0];

  io::Loop loop;
  loop.init(io::Loop::entries_default);
  io::FileStorage storage;
  const io::OpenResult opened = storage.open(&loop, {.path = path, .read_only = true});
  if (opened.status != io::OpenStatus::ok) {
    std::fprintf(stderr, "tally inspect: %s: %s\n", path, io::open_status_message(opened.status));
    return 1;
  }
  if (storage.size() < journal::superblock_zone_size) {
    base::fatal(base::FatalReason::data_file_invalid,
                "%s: %lu bytes is too small for a data file (the superblock alone is %lu)", path,
                as_ulong(storage.size()), as_ulong(journal::superblock_zone_size));
  }

  Store store(storage);
  bool done = false;
  store.context = &done;
  store.open(false, open_done);
  while (!done) loop.run_once(1'000'000'000);

  std::printf("data file %s, %lu bytes\n\n", path, as_ulong(storage.size()));
  print_copies(store.decision());
  if (store.result() != journal::SuperblockResult::ok) {
    std::fflush(stdout);
    base::fatal(base::FatalReason::data_file_invalid, "%s: %s", path,
                journal::superblock_result_message(store.result()));
  }
  const journal::Superblock& working = store.working();
  print_working(working, store.decision());
  const journal::Layout layout(working.layout);
  print_zones(layout);
  if (storage.size() < layout.size()) {
    std::fflush(stdout);
    base::fatal(base::FatalReason::data_file_invalid,
                "%s: the file has %lu bytes, its layout needs %lu: truncated?", path,
                as_ulong(storage.size()), as_ulong(layout.size()));
  }
  print_wal(loop, storage, layout, working);
  storage.close();
  loop.deinit();
  return 0;
}

}  // namespace tally::cli
