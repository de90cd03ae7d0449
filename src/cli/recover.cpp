// `tally recover --cluster=N --replica=I --replica-count=K --addresses=A0,A1,... FILE`: creates
// a new data file for a replica whose file was lost, in a state in which it joins the cluster
// safely (docs/data-file.md, "Replacing a lost data file"):
//
//   1. as a client of the running cluster, it commits a register and pipeline_max more requests
//      (lookups, which change nothing). Every op the lost file may have acknowledged was
//      prepared before this started, so once these commit, each such op is committed or was
//      truncated by a view change: the new replica, which never held any of them, cannot count
//      as "never acknowledged" for an op that may still commit.
//   2. it formats FILE like `tally format`, except that the replica starts in view v + 2, v being
//      the highest view the cluster's replies named: the lost file may have voted in view v + 1
//      (never further, or the cluster would be past v), and a replica must never take part in
//      a view twice with different logs.
//
// Started with `tally start`, the replica has no log: it sends no join_view until a view's
// start_view gives it one, takes a peer's checkpoint by state sync where the cluster is more
// than a WAL past op 0, and acknowledges only what it holds. A cluster of 1 or 2 replicas
// cannot commit without the lost one, so recover refuses them.
#include <sys/stat.h>

#include <cstdio>
#include <limits>

#include "src/cli/arguments.hpp"
#include "src/cli/commands.hpp"
#include "src/cli/format.hpp"
#include "src/vsr/pipeline.hpp"
#include "tally/client.hpp"

namespace tally::cli {

namespace {

constexpr const char* recover_usage =
    "usage: tally recover --cluster=<integer> --replica=<index> --replica-count=<3..6>\n"
    "                     --addresses=<address,...> <file>\n"
    "creates <file> anew for a replica whose data file was lost; the other replicas must be\n"
    "running. Start it afterwards with `tally start`.\n";

// Long enough for a view change or two in a loaded cluster; a cluster that cannot commit in
// this time is not one a replica can be recovered into now.
constexpr u64 request_timeout_ms = 60'000;

}  // namespace

int command_recover(std::span<char*> arguments) {
  Flag flags[] = {
      {.name = "cluster", .value_hint = "<integer>"},
      {.name = "replica", .value_hint = "<index>"},
      {.name = "replica-count", .value_hint = "<3..6>"},
      {.name = "addresses", .value_hint = "<address,...>"},
  };
  DataFileIdentity identity;
  if (!identity_parse("recover", recover_usage, arguments, flags, identity)) return exit_usage;
  if (identity.replica_count < 3) {
    std::fprintf(stderr,
                 "tally recover: a cluster of %u replica%s cannot commit without replica %u, so "
                 "it cannot be recovered from its peers (its data is in the lost file only)\n",
                 static_cast<unsigned>(identity.replica_count),
                 identity.replica_count == 1 ? "" : "s", static_cast<unsigned>(identity.replica));
    return exit_usage;
  }
  u32 address_count = 1;
  for (const char* cursor = flags[3].value; *cursor != '\0'; cursor += 1) {
    address_count += *cursor == ',' ? 1 : 0;
  }
  if (address_count != identity.replica_count) {
    std::fprintf(stderr,
                 "tally recover: --addresses names %u replica%s, but --replica-count is %u: "
                 "give every replica's address, in replica order, the lost one's too\n",
                 address_count, address_count == 1 ? "" : "s",
                 static_cast<unsigned>(identity.replica_count));
    return exit_usage;
  }
  struct stat existing{};
  if (stat(identity.path, &existing) == 0) {
    std::fprintf(stderr,
                 "tally recover: %s exists; recover creates the replica's data file anew. Move "
                 "the old file aside first (keep it until the new replica has caught up)\n",
                 identity.path);
    return 1;
  }

  Client client;
  if (client.open({.cluster = identity.cluster,
                   .addresses = flags[3].value,
                   .timeout_ms = request_timeout_ms}) != ClientError::ok) {
    std::fprintf(stderr, "tally recover: --addresses=%s: %s\n", flags[3].value,
                 client.error_message());
    return exit_usage;
  }
  // The register goes first, with the first lookup.
  const u128 ids[] = {1};
  Account found[1];
  for (u32 request = 0; request < vsr::pipeline_max; request += 1) {
    const ClientResult result = client.lookup_accounts(ids, found);
    if (!result.ok()) {
      std::fprintf(stderr,
                   "tally recover: the cluster did not commit request %u of %u (%s%s): a quorum "
                   "of the other replicas must be running and reachable at --addresses; %s was "
                   "not created\n",
                   request + 1, vsr::pipeline_max, name(result.error),
                   result.error == ClientError::timeout ? ", after 60 s" : "", identity.path);
      return 1;
    }
  }
  const u32 view_seen = client.view();
  client.close();
  if (view_seen > std::numeric_limits<u32>::max() - 2) {
    std::fprintf(stderr, "tally recover: the cluster named view %u, too close to the last view\n",
                 view_seen);
    return 1;
  }
  const u32 view = view_seen + 2;
  data_file_create(identity, view);
  char cluster_text[40];
  std::printf("recovered %s: cluster %s, replica %u of %u, starting in view %u (the cluster's "
              "view is %u); start it with `tally start`: it catches up from its peers\n",
              identity.path, u128_decimal(identity.cluster, cluster_text),
              static_cast<unsigned>(identity.replica),
              static_cast<unsigned>(identity.replica_count), view, view_seen);
  return 0;
}

}  // namespace tally::cli
