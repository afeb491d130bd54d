/* ai: talking to the model, without I/O. Request bodies for Gemini generateContent and OpenAI-compatible chat
 * completions; classification of an upstream answer (or a transport failure) into text, a transient error (retry
 * with backoff) or a permanent one; backoff; the offline stand-in. Every function works on buffers only, so all of
 * it is unit-tested without a network. The worker does the HTTP (libcurl multi). The provider, its URL and auth
 * header: ai_provider.h. */
#ifndef GB_AI_H
#define GB_AI_H

#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>

#include "ai_provider.h"
#include "util.h"

#define AI_MAX_RESPONSE_BYTES (2u * 1024u * 1024u) /* ceiling on an upstream response body */
#define AI_MAX_OUTPUT_TOKENS 4096                  /* thinking models spend part of it: keep >= 2048 */
#define AI_HISTORY_MAX_BYTES_S "524288"            /* the history sent upstream: newest turns up to 512 KiB */
#define AI_ERROR_MAX 200                           /* the stored error of a failed reply, in bytes */
#define AI_OFFLINE_ECHO_CHARS 200                  /* code points of the user text the offline stand-in echoes */
#define AI_BACKOFF_BASE_MS 1000L                   /* first retry waits up to this */
#define AI_BACKOFF_CAP_MS 60000L                   /* exponential growth stops here */
#define AI_RETRY_HINT_CAP_MS 600000L               /* an upstream Retry-After/retryDelay is honoured up to this */

enum ai_role { AI_ROLE_USER = 0, AI_ROLE_MODEL = 1 };
enum ai_status { AI_OK = 0, AI_TRANSIENT = 1, AI_PERMANENT = 2 };

/* One stored message of the conversation; text need not be NUL-terminated. */
typedef struct ai_turn {
    enum ai_role role;
    const char *text;
    size_t len;
} ai_turn_t;

/* The outcome of one upstream call. */
typedef struct ai_result {
    enum ai_status status;
    char *text; /* AI_OK: the answer, valid UTF-8 without NULs, malloc'd (free with ai_result_free) */
    size_t text_len;
    int truncated;                /* AI_OK: the model stopped at its token limit (MAX_TOKENS / length) */
    long http_status;             /* 0 for transport errors */
    long retry_after_ms;          /* upstream's wait hint (Retry-After header, Gemini RetryInfo), -1 when none */
    char error[AI_ERROR_MAX + 1]; /* not AI_OK: short reason, safe to store and show (no secrets, no body) */
    char detail[161];             /* not AI_OK: upstream's own message, sanitised and cut, for the log only */
} ai_result_t;

/* Normalise a history (oldest first) into what is sent upstream: rows with empty text are skipped, leading
 * and trailing model turns are dropped (the conversation must start and end with the user), and consecutive
 * same-role turns are kept adjacent for merging. Fills out[0..*nout) with pointers into turns (no copies);
 * out must hold n entries. Returns 0, or -1 when no user turn is left (nothing to answer). */
int ai_normalise(const ai_turn_t *turns, size_t n, ai_turn_t *out, size_t *nout);

/* Append the JSON request body to out. Gemini: {"contents":[...], "systemInstruction"?, "generationConfig"};
 * consecutive same-role turns become one content with several parts. OpenAI: {"model"?, "messages":[system?,
 * user/assistant...], "stream":false}; consecutive same-role turns are joined by a blank line. system_prompt
 * NULL or "" is left out; model NULL is left out (OpenAI only: llama.cpp ignores it). 0 ok, -1 when there is
 * nothing to answer (see ai_normalise) or the provider is offline (out unchanged). */
int ai_build_request(enum ai_provider p, const ai_turn_t *turns, size_t n, const char *system_prompt, const char *model,
                     buf_t *out);

/* The same for a streamed answer: the Gemini body is the same; the OpenAI one says "stream": true. Parse the
 * answer with ai_stream.h. */
int ai_build_stream_request(enum ai_provider p, const ai_turn_t *turns, size_t n, const char *system_prompt,
                            const char *model, buf_t *out);

/* Classify an HTTP answer. body may be NULL (len 0); retry_after is the Retry-After header value or NULL.
 * 2xx: the text, or AI_PERMANENT when blocked / empty / refused, AI_TRANSIENT when the body is not JSON.
 * 408, 429, 500, 502, 503, 504: AI_TRANSIENT (a Gemini 429 on a per-day quota is AI_PERMANENT).
 * Anything else: AI_PERMANENT. r is overwritten (call ai_result_free first when reusing it). */
void ai_parse_response(enum ai_provider p, long http_status, const char *body, size_t len, const char *retry_after,
                       ai_result_t *r);

/* Classify a transport failure (curl_code is a CURLcode; CURLE_WRITE_ERROR means our body ceiling was hit).
 * Timeouts, refused/reset connections and the like are AI_TRANSIENT; a malformed URL, an unsupported protocol
 * or a too-large body are AI_PERMANENT. */
void ai_transport_error(int curl_code, ai_result_t *r);

/* Member key of object o when it has JSON type type, else NULL (o not an object, key absent, another type); and
 * the same for a string member, as a C string. Shared by the answer parsers (ai.c, ai_stream.c). */
json_object *ai_json_get(json_object *o, const char *key, json_type type);
const char *ai_json_str(json_object *o, const char *key);
/* Each text part of a Gemini candidate's content that belongs to the answer (thought summaries are left out), in
 * order: emit(ctx, text, len). Shared by the answer parsers. */
void ai_gemini_parts(json_object *candidate, void (*emit)(void *ctx, const char *text, size_t len), void *ctx);

/* Free the text of a result and reset it; accepts NULL. */
void ai_result_free(ai_result_t *r);

/* Parse a Retry-After value: delta-seconds or an HTTP-date. Milliseconds (a date in the past gives 0), or -1
 * when absent or malformed. */
long ai_parse_retry_after(const char *v);
/* Parse a protobuf JSON Duration ("34s", "1.5s", "0.250s"). Milliseconds (rounded up), or -1 if malformed. */
long ai_parse_duration(const char *s, size_t len);

/* Wait before retry number `attempt` (1 = the wait after the first failed attempt): full jitter over an
 * exponential window, rnd % (min(CAP, BASE * 2^(attempt-1)) + 1), but never below retry_after_ms (capped at
 * AI_RETRY_HINT_CAP_MS). rnd is a uniformly random value supplied by the caller. */
long ai_backoff_ms(long attempt, long retry_after_ms, uint64_t rnd);

/* Append s[0..len) to out as valid UTF-8 without NUL bytes: NULs are dropped, every byte that does not start
 * a well-formed sequence (overlong, surrogate, past U+10FFFF, cut short) becomes U+FFFD. Answers pass through
 * this before they are stored (PostgreSQL text refuses both). */
void ai_text_sanitise(const char *s, size_t len, buf_t *out);

/* The offline stand-in: appends "[offline model: no AI provider configured] You said: " and the first
 * AI_OFFLINE_ECHO_CHARS code points of the last user turn (with an ellipsis when cut). */
void ai_offline_reply(const ai_turn_t *turns, size_t n, buf_t *out);

#endif
