#include "error.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char last_error[512];

kiln_status kiln_fail(kiln_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}

void kiln_clear_error(void)
{
    last_error[0] = '\0';
}

const char *kiln_last_error(void)
{
    return last_error;
}

const char *kiln_status_string(kiln_status status)
{
    switch (status) {
    case KILN_SUCCESS: return "KILN_SUCCESS: no error";
    case KILN_ERROR_NULL_POINTER: return "KILN_ERROR_NULL_POINTER: a required pointer is NULL";
    case KILN_ERROR_INVALID_SHAPE: return "KILN_ERROR_INVALID_SHAPE: a size, count or stride is out of range";
    case KILN_ERROR_INVALID_PARAMETER: return "KILN_ERROR_INVALID_PARAMETER: a parameter value is out of range";
    case KILN_ERROR_INVALID_CONFIG: return "KILN_ERROR_INVALID_CONFIG: a sampler configuration field is out of range";
    case KILN_ERROR_WORKSPACE_TOO_SMALL: return "KILN_ERROR_WORKSPACE_TOO_SMALL: the workspace is smaller than kiln_sampler_workspace_size";
    case KILN_ERROR_MISALIGNED: return "KILN_ERROR_MISALIGNED: a pointer is not aligned to its element type";
    case KILN_ERROR_OVERLAP: return "KILN_ERROR_OVERLAP: an output buffer overlaps another buffer";
    case KILN_ERROR_OUT_OF_MEMORY: return "KILN_ERROR_OUT_OF_MEMORY: an allocation failed";
    case KILN_ERROR_BACKEND_UNAVAILABLE: return "KILN_ERROR_BACKEND_UNAVAILABLE: the backend or device is not available";
    case KILN_ERROR_CUDA: return "KILN_ERROR_CUDA: a CUDA call failed";
    case KILN_ERROR_INTERNAL: return "KILN_ERROR_INTERNAL: internal error";
    }
    return "KILN_ERROR_UNKNOWN: not a kiln_status value";
}
