/* Cache prefetch hints for the kernels (Swift has no spelling of its own for them). */
#ifndef CACHE_PREFETCH_H
#define CACHE_PREFETCH_H

/* Asks the CPU to bring the cache line holding `address` towards L1; never faults. */
static inline void cache_prefetch(const void *address) { __builtin_prefetch(address, 0, 3); }

#endif
