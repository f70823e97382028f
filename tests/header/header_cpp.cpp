// kiln.h must compile as strict C++17 (-pedantic -Werror) and its functions
// must link with C linkage (extern "C"). Included first and twice.
#include <kiln/kiln.h>
#include <kiln/kiln.h>

#include <cstring>
#include <type_traits>

static_assert(KILN_SUCCESS == 0 && KILN_ERROR_INTERNAL == 11, "status values are fixed");
static_assert(KILN_MAX_VOCAB_SIZE == 16777215, "2^24 - 1");
static_assert(std::is_standard_layout<kiln_config>::value &&
                  std::is_standard_layout<kiln_batch>::value &&
                  std::is_standard_layout<kiln_sampling_params>::value &&
                  std::is_standard_layout<kiln_outputs>::value,
              "the structs are plain C layouts");
static_assert(std::is_trivially_copyable<kiln_outputs>::value, "plain data");

int main()
{
    kiln_config config = KILN_CONFIG_INIT;
    kiln_batch batch = KILN_BATCH_INIT;
    kiln_sampling_params params = KILN_SAMPLING_PARAMS_INIT;
    kiln_outputs outputs = KILN_OUTPUTS_INIT;
    kiln_stream stream = nullptr;
    kiln_sampler *sampler = nullptr;
    auto sample = &kiln_sample;
    (void)stream;
    (void)sample;
    if (config.struct_size != sizeof config || batch.struct_size != sizeof batch ||
        params.struct_size != sizeof params || outputs.struct_size != sizeof outputs)
        return 1;
    if (config.backend != KILN_BACKEND_CPU || batch.dtype != KILN_DTYPE_F32)
        return 1;
    if (kiln_sampler_destroy(sampler) != KILN_SUCCESS || !kiln_status_string(KILN_SUCCESS))
        return 1;
    if (std::strcmp(kiln_version_string(), KILN_VERSION_STRING) != 0)
        return 1;
    return kiln_version_number() == KILN_VERSION_NUMBER ? 0 : 1;
}
