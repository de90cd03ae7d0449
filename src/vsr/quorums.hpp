// Quorums of a cluster of 1..6 replicas, TigerBeetle's flexible scheme: the replication quorum
// (replicas, the primary included, that must hold a prepare before it commits) is at most 3, and
// the view-change quorum is large enough to intersect every replication quorum.
//
//   replicas      1  2  3  4  5  6
//   replication   1  2  2  2  3  3
//   view change   1  2  2  3  3  4
//   nack          1  1  2  3  3  4
//
// Why each is what it is:
// - replication + view change > replica_count: any view-change quorum holds at least one
//   replica that holds each committed op, so a new primary can find every committed op;
// - view change > replica_count / 2: two view-change quorums intersect, so at most one view
//   change completes for a view;
// - replication + nack > replica_count: `nack` replicas that never acknowledged an op prove it
//   never reached a replication quorum, so it never committed and may be truncated.
// Two replicas are the exception: both must hold every op (replication 2), one nack suffices.
#pragma once

#include "src/base/assert.hpp"
#include "tally/constants.hpp"
#include "tally/types.hpp"

namespace tally::vsr {

inline constexpr u32 quorum_replication_max = 3;

struct Quorums {
  u32 replication;
  u32 view_change;
  u32 nack;
};

constexpr Quorums quorums(u32 replica_count) {
  TALLY_ASSERT(replica_count >= 1 && replica_count <= replicas_max);
  if (replica_count == 2) return Quorums{.replication = 2, .view_change = 2, .nack = 1};
  const u32 majority_half = (replica_count + 1) / 2;  // ceil(replica_count / 2)
  const u32 replication =
      majority_half < quorum_replication_max ? majority_half : quorum_replication_max;
  const u32 view_change = replica_count - replication + 1;
  const Quorums result{.replication = replication, .view_change = view_change,
                       .nack = replica_count - replication + 1};
  TALLY_ASSERT(result.replication + result.view_change > replica_count);
  TALLY_ASSERT(result.replication + result.nack > replica_count);
  TALLY_ASSERT(2 * result.view_change > replica_count);
  // Every quorum can be reached by the cluster, and the replication quorum needs a backup
  // whenever there is one (the primary alone never commits for a cluster).
  TALLY_ASSERT(result.replication <= replica_count && result.view_change <= replica_count);
  TALLY_ASSERT(result.replication >= 2 || replica_count == 1);
  return result;
}

static_assert(quorums(1).replication == 1 && quorums(1).view_change == 1 && quorums(1).nack == 1);
static_assert(quorums(2).replication == 2 && quorums(2).view_change == 2 && quorums(2).nack == 1);
static_assert(quorums(3).replication == 2 && quorums(3).view_change == 2 && quorums(3).nack == 2);
static_assert(quorums(4).replication == 2 && quorums(4).view_change == 3 && quorums(4).nack == 3);
static_assert(quorums(5).replication == 3 && quorums(5).view_change == 3 && quorums(5).nack == 3);
static_assert(quorums(6).replication == 3 && quorums(6).view_change == 4 && quorums(6).nack == 4);

}  // namespace tally::vsr
