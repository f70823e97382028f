/* Helpers shared by the validation files: buffer ranges for the overlap
 * check, alignment, and early return on a failed check. */
#ifndef KILN_VALIDATE_UTIL_H
#define KILN_VALIDATE_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "kiln/kiln.h"

/* ------------------------------------------------------------ buffer ranges */

typedef struct region {
    const char *name;
    uintptr_t begin, end; /* [begin, end) bytes */
    int is_output;
} region;

typedef struct region_list {
    region r[64];
    int n;
} region_list;

static inline void add_region(region_list *list, const char *name, const void *p, uint64_t bytes,
                       int is_output)
{
    if (!p || bytes == 0 || list->n == (int)(sizeof list->r / sizeof list->r[0]))
        return;
    region *r = &list->r[list->n++];
    r->name = name;
    r->begin = (uintptr_t)p;
    r->end = (uintptr_t)p + (uintptr_t)bytes;
    r->is_output = is_output;
}

/* Outputs must not overlap anything; inputs may share memory with inputs. */
static inline kiln_status check_overlaps(const region_list *list)
{
    for (int i = 0; i < list->n; ++i)
        for (int j = i + 1; j < list->n; ++j) {
            const region *a = &list->r[i], *b = &list->r[j];
            if (!a->is_output && !b->is_output)
                continue;
            if (a->begin < b->end && b->begin < a->end)
                return kiln_fail(KILN_ERROR_OVERLAP, "%s overlaps %s", a->name, b->name);
        }
    return KILN_SUCCESS;
}

static inline kiln_status check_aligned(const void *p, size_t align, const char *name)
{
    if ((uintptr_t)p % align)
        return kiln_fail(KILN_ERROR_MISALIGNED, "%s = %p is not aligned to %zu bytes", name, p,
                         align);
    return KILN_SUCCESS;
}

#define CHECK(expr)                   \
    do {                              \
        kiln_status check_st = expr;  \
        if (check_st != KILN_SUCCESS) \
            return check_st;          \
    } while (0)

/* Elements of a dtype. */
static inline size_t kiln_dtype_size(kiln_dtype d)
{
    return d == KILN_DTYPE_F32 ? 4 : 2;
}

#endif
