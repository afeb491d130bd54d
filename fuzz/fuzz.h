/* fuzz.h: what the libFuzzer targets of fuzz/ share. One target per parser of untrusted bytes, each a
 * LLVMFuzzerTestOneInput over (data, size) that calls the parser as the service does and then checks the
 * parser's contract (FUZZ_CHECK aborts, which libFuzzer reports as a crash like any sanitizer finding).
 * Built with clang -fsanitize=fuzzer,address,undefined by `make fuzz` (README "Fuzzing").
 *
 * fuzz/ai_stream.c covers the incremental SSE parsers of streamed answers: each input is fed whole and in pieces whose
 * sizes come from the input, and both must give the same outcome and text. */
#ifndef GB_FUZZ_H
#define GB_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A contract of the parser under test that does not hold: report and abort, so the input is kept as a crash. */
#define FUZZ_CHECK(cond)                                                                                               \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "fuzz: contract broken: %s (%s:%d)\n", #cond, __FILE__, __LINE__);                         \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

/* A malloc'd NUL-terminated copy of d[0..n) (the input may hold NULs: C-string parsers see up to the first). */
static inline char *fuzz_cstr(const uint8_t *d, size_t n)
{
    char *s = malloc(n + 1);
    if (!s)
        abort();
    if (n)
        memcpy(s, d, n);
    s[n] = '\0';
    return s;
}

/* Split d[0..n) at the first '\n': returns the length of the first line (a '\r' before the '\n' excluded) and
 * sets *rest to the offset just past the '\n' (n when there is none). */
static inline size_t fuzz_line(const uint8_t *d, size_t n, size_t *rest)
{
    const uint8_t *nl = n ? memchr(d, '\n', n) : NULL;
    size_t k = nl ? (size_t)(nl - d) : n;
    *rest = nl ? k + 1 : n;
    if (k && d[k - 1] == '\r')
        k--;
    return k;
}

#endif
