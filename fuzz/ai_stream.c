/* Fuzz target: streamed model answers (lib/ai_stream.c), as the worker feeds them: the body arrives in pieces cut
 * wherever the network cut it. Input: byte 0 picks the provider (even: Gemini, odd: OpenAI-compatible), byte 1 seeds
 * the piece sizes, the rest is the body. The whole body in one piece and the same body in pieces must give the same
 * outcome and the same text; the text handed out as deltas is valid UTF-8 without NULs and, for an answer that is
 * AI_OK, exactly the stored text. */
#include "fuzz.h"

#include "ai_stream.h"
#include "util.h"

/* Feed body[0..n) in pieces (sizes from seed; 0: one piece) and finish: the status, the deltas in *deltas. */
static int run(enum ai_provider p, const char *body, size_t n, unsigned seed, buf_t *deltas, ai_result_t *r)
{
    ai_stream_t *s = ai_stream_new(p);
    size_t off = 0;
    uint32_t x = seed * 2654435761u + 1;
    while (off < n) {
        size_t k = n - off;
        if (seed) {
            x = x * 1103515245u + 12345u;
            k = 1 + (x >> 16) % 64;
            if (k > n - off)
                k = n - off;
        }
        if (ai_stream_feed(s, body + off, k, deltas) != AI_STREAM_MORE)
            break;
        off += k;
    }
    ai_stream_finish(s, deltas, r);
    ai_stream_free(s);
    return r->status;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    enum ai_provider p = data[0] & 1 ? AI_PROVIDER_OPENAI : AI_PROVIDER_GEMINI;
    unsigned seed = data[1] ? data[1] : 1;
    const char *body = (const char *)data + 2;
    size_t n = size - 2;
    buf_t whole = {0}, split = {0};
    ai_result_t rw = {0}, rs = {0};

    int sw = run(p, body, n, 0, &whole, &rw);
    int ss = run(p, body, n, seed, &split, &rs);
    FUZZ_CHECK(sw == ss);
    FUZZ_CHECK(whole.len == split.len && (whole.len == 0 || memcmp(whole.data, split.data, whole.len) == 0));
    FUZZ_CHECK(utf8_length(whole.data ? whole.data : "", whole.len) >= 0);
    FUZZ_CHECK(whole.len == 0 || memchr(whole.data, '\0', whole.len) == NULL);
    if (sw == AI_OK)
        FUZZ_CHECK(rw.text_len == whole.len && (whole.len == 0 || memcmp(rw.text, whole.data, whole.len) == 0));
    ai_result_free(&rw);
    ai_result_free(&rs);
    buf_free(&whole);
    buf_free(&split);
    return 0;
}
