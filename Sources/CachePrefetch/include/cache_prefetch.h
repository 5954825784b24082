/* Cache prefetch hints for the kernels (Swift has no spelling of its own for them). */
#ifndef CACHE_PREFETCH_H
#define CACHE_PREFETCH_H

/* Asks the CPU to bring the cache line holding `address` towards L1; never faults. */
static inline void cache_prefetch(const void *address) { __builtin_prefetch(address, 0, 3); }

/* Asks for the line holding `address` in the outer caches (L2 and beyond), for a later
   phase of the work: the lines the current phase uses stay in L1. Never faults. */
static inline void cache_prefetch_ahead(const void *address) { __builtin_prefetch(address, 0, 2); }

/* The same for a line that will be written. */
static inline void cache_prefetch_ahead_to_write(const void *address) { __builtin_prefetch(address, 1, 2); }

#endif
