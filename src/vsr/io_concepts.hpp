// What the replica needs from its message bus and its clock, as concepts: the replica is a
// template over Storage (journal/storage.hpp), MessageBus and Time, compiled with io_uring's
// implementations in `tally start` and with the simulator's in tests, without including either.
//
// MessageBus: send_to_replica() and send_to_client() take their own reference to the message
// (the caller keeps its own) and may drop it (VSR retransmits); pool() is where every message
// comes from. Time: realtime_ns() is wall-clock nanoseconds since the Unix epoch, used only for
// timestamps (it may jump); timeouts count the replica's ticks, never a clock.
#pragma once

#include <concepts>

#include "src/base/message_pool.hpp"
#include "tally/types.hpp"

namespace tally::vsr {

template <typename B>
concept MessageBus = requires(B& bus, u8 replica, u128 client, base::Message* message) {
  { bus.send_to_replica(replica, message) } -> std::same_as<void>;
  { bus.send_to_client(client, message) } -> std::same_as<void>;
  { bus.pool() } -> std::same_as<base::MessagePool&>;
};

template <typename T>
concept Time = requires(const T& time) {
  { time.realtime_ns() } -> std::same_as<i64>;
};

}  // namespace tally::vsr
