/* The module's functions are static inline in include/vector_shuffles.h. */
#include "vector_shuffles.h"
