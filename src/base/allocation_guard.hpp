// The allocation guard: static allocation made checkable.
//
// Every global operator new/delete (all forms: sized, aligned, nothrow, arrays) is replaced and
// forwarded to mimalloc (to the system allocator in sanitizer builds, so ASan sees every block).
// Start-up allocates everything the process will ever need, then calls seal(). From then on any
// allocation through operator new is a bug:
//   - Mode::abort (debug, sanitizer and simulator builds) prints the size and traps at once, so
//     the stack shows the culprit;
//   - Mode::count (release) lets the allocation succeed and counts it, so a production replica
//     keeps running while `tally inspect`/metrics and benchmarks can report the leak of discipline.
// Frees are always allowed: tearing down at exit is not a hot-path allocation.
//
// This is the one piece of process-wide mutable state in Tally, because operator new is itself
// process-wide. The counters are atomics so that any thread may allocate before sealing.
#pragma once

#include "tally/types.hpp"

namespace tally::base::allocation_guard {

enum class Mode : u8 { abort, count };

// Abort in TALLY_DEBUG builds, count otherwise.
Mode default_mode();

void seal(Mode mode);
// Reopens the heap. For tests and benchmarks that seal around a measured region only.
void unseal();
bool sealed();

// Allocations through operator new since the process started, sealed or not.
u64 allocations_total();
// Allocations that happened while sealed (count mode; in abort mode the first one traps).
u64 allocations_after_seal();

}  // namespace tally::base::allocation_guard
