/* The thread-local last-error message behind kiln_last_error(). */
#ifndef KILN_ERROR_H
#define KILN_ERROR_H

#include "kiln/kiln.h"

#if defined(__GNUC__)
#define KILN_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define KILN_PRINTF(f, a)
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Records the message for `status` on this thread and returns `status`, so a
 * check reads `return kiln_fail(KILN_ERROR_..., "...", ...);`. */
kiln_status kiln_fail(kiln_status status, const char *fmt, ...) KILN_PRINTF(2, 3);

/* Clears the message at the start of every public call. */
void kiln_clear_error(void);

#ifdef __cplusplus
}
#endif

#endif
