/* kiln.h must compile on its own as strict C11 (-pedantic -Werror) and link
 * against the library. Included first and twice: self-contained, guarded. */
#include <kiln/kiln.h>
#include <kiln/kiln.h>

_Static_assert(KILN_SUCCESS == 0 && KILN_ERROR_INTERNAL == 11, "status values are fixed");
_Static_assert(KILN_MAX_VOCAB_SIZE == 16777215, "2^24 - 1");
_Static_assert(KILN_MASS_FRACTION_BITS == 40, "40 fractional bits");
_Static_assert(KILN_VERSION_NUMBER ==
                   KILN_VERSION_MAJOR * 10000 + KILN_VERSION_MINOR * 100 + KILN_VERSION_PATCH,
               "version number encoding");

int main(void)
{
    kiln_config config = KILN_CONFIG_INIT;
    kiln_batch batch = KILN_BATCH_INIT;
    kiln_sampling_params params = KILN_SAMPLING_PARAMS_INIT;
    kiln_outputs outputs = KILN_OUTPUTS_INIT;
    kiln_stream stream = NULL;
    kiln_sampler *sampler = NULL;
    kiln_status (*sample)(kiln_sampler *, const kiln_batch *, const kiln_sampling_params *,
                          const kiln_outputs *, void *, size_t, kiln_stream) = kiln_sample;
    (void)stream;
    (void)sample;
    if (config.struct_size != sizeof config || batch.struct_size != sizeof batch ||
        params.struct_size != sizeof params || outputs.struct_size != sizeof outputs)
        return 1;
    if (config.backend != KILN_BACKEND_CPU || batch.dtype != KILN_DTYPE_F32 ||
        params.temperature_all != 1.0f || params.top_p_all != 1.0f)
        return 1;
    if (kiln_sampler_destroy(sampler) != KILN_SUCCESS || kiln_status_string(KILN_SUCCESS) == NULL)
        return 1;
    return kiln_version_number() == KILN_VERSION_NUMBER ? 0 : 1;
}
