/* The module's functions are static inline in include/cache_prefetch.h. */
#include "cache_prefetch.h"
