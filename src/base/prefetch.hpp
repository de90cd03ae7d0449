// prefetch(address): asks the CPU to bring a cache line in, without waiting for it.
//
// Not __builtin_prefetch: GCC 12 at -O2 deletes it as dead code when the address comes from a
// 128-bit hash (found with objdump on the state machine's id index: not one prefetch was left in
// the execution loop, and every lookup stalled on memory). A volatile asm cannot be deleted.
#pragma once

namespace tally::base {

inline void prefetch(const void* address) {
#if defined(__x86_64__)
  asm volatile("prefetcht0 (%0)" : : "r"(address));
#else
  __builtin_prefetch(address);
#endif
}

}  // namespace tally::base
