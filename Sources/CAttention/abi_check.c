/* Compile-time checks of the layout promises include/attention.h makes to C callers and to
 * the Swift side that imports it: every versioned struct starts with its size, and the enums
 * are 32-bit. This file defines no symbols. */
#include <stddef.h>
#include "attention.h"

_Static_assert(sizeof(att_status) == 4, "att_status is 32-bit");
_Static_assert(sizeof(att_dtype) == 4, "att_dtype is 32-bit");
_Static_assert(offsetof(att_attention_config, struct_size) == 0, "struct_size first");
_Static_assert(offsetof(att_additive_attention_config, struct_size) == 0, "struct_size first");
_Static_assert(offsetof(att_multi_head_attention_config, struct_size) == 0, "struct_size first");
_Static_assert(offsetof(att_group_query_attention_config, struct_size) == 0, "struct_size first");
_Static_assert(offsetof(att_reuse_multi_head_attention_config, struct_size) == 0, "struct_size first");
_Static_assert(offsetof(att_call_args, struct_size) == 0, "struct_size first");
_Static_assert(offsetof(att_gradient_args, struct_size) == 0, "struct_size first");
_Static_assert(offsetof(att_dot_product_attention_args, struct_size) == 0, "struct_size first");
