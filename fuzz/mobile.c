/* Fuzz target: E.164 mobile normalisation (mobile_normalize in lib/jsonv.c), the key of every account.
 * Checked against the rule written out: at most 64 bytes; once spaces and dashes are gone, an optional '+'
 * then 8 to 15 ASCII digits; the result is '+' and those digits, and normalising it again changes nothing. */
#include "fuzz.h"

#include "jsonv.h"

static int ref_normalize(const char *in, char out[17])
{
    char t[65];
    size_t n = 0, i = 0, digits;
    if (strlen(in) > 64)
        return -1;
    for (const char *p = in; *p; p++)
        if (*p != ' ' && *p != '-')
            t[n++] = *p;
    t[n] = '\0';
    if (t[0] == '+')
        i = 1;
    for (digits = 0; i + digits < n; digits++)
        if (t[i + digits] < '0' || t[i + digits] > '9')
            return -1;
    if (digits < 8 || digits > 15)
        return -1;
    out[0] = '+';
    memcpy(out + 1, t + i, digits);
    out[1 + digits] = '\0';
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = fuzz_cstr(data, size);
    char out[17], ref[17], again[17];
    memset(out, 'x', sizeof out);
    int rc = mobile_normalize(in, out), ref_rc = ref_normalize(in, ref);
    FUZZ_CHECK(rc == ref_rc);
    if (rc == 0) {
        FUZZ_CHECK(strcmp(out, ref) == 0);
        FUZZ_CHECK(mobile_normalize(out, again) == 0 && strcmp(again, out) == 0);
    }
    FUZZ_CHECK(mobile_normalize(NULL, out) == -1);
    free(in);
    return 0;
}
