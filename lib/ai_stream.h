/* ai_stream: incremental parsing of a streamed model answer, without I/O. Gemini streamGenerateContent?alt=sse
 * and OpenAI-compatible "stream": true both answer Server-Sent Events whose data lines carry JSON chunks; the
 * bytes arrive split wherever the network split them. Feed them in as they come, take the text each chunk adds
 * (a delta), and classify the whole answer at the end like ai_parse_response does for a plain one.
 *
 *   ai_stream_t *s = ai_stream_new(AI_PROVIDER_GEMINI);
 *   while (bytes arrive) if (ai_stream_feed(s, data, len, &delta) != 0) break;   // publish delta, reset it
 *   ai_stream_finish(s, &r);                                                      // r: AI_OK + text, or why not
 *   ai_stream_free(s);
 *
 * Only a 2xx text/event-stream body goes through here; an error status (or a plain JSON body) is classified by
 * ai_parse_response as before. The text of the answer is exactly the concatenation of the deltas handed out, each
 * valid UTF-8 without NULs (sanitised piece by piece). Everything is bounded by AI_MAX_RESPONSE_BYTES. */
#ifndef GB_AI_STREAM_H
#define GB_AI_STREAM_H

#include <stddef.h>

#include "ai.h"
#include "util.h"

typedef struct ai_stream ai_stream_t;

/* A parser for a streamed answer of provider p (AI_PROVIDER_GEMINI or AI_PROVIDER_OPENAI). Free with
 * ai_stream_free. Never NULL (allocation failure aborts). */
ai_stream_t *ai_stream_new(enum ai_provider p);
/* Accepts NULL. */
void ai_stream_free(ai_stream_t *s);

/* ai_stream_feed results */
#define AI_STREAM_MORE 0      /* go on feeding */
#define AI_STREAM_COMPLETE 1  /* the answer is complete (a usable finish reason, or [DONE]): stop reading */
#define AI_STREAM_FAILED (-1) /* the answer is unusable (an error chunk, a refusal, too large): stop the transfer */

/* Feed data[0..len) (len 0 is fine), the next bytes of the body. The text that complete events add is appended
 * to delta (NULL: not handed out; it is still part of the whole text). Returns one of AI_STREAM_*; once
 * COMPLETE or FAILED it stays so and ignores further input. */
int ai_stream_feed(ai_stream_t *s, const char *data, size_t len, buf_t *delta);

/* The body has ended (or feeding stopped): classify the answer into r (overwritten; free it with
 * ai_result_free). Any text an unterminated last event adds is appended to delta (may be NULL).
 * AI_OK: r->text is the whole text (the concatenation of every delta) and r->truncated is set when the model
 * hit its token limit. AI_PERMANENT: blocked prompt, safety stop, refusal, no text, too large, a permanent
 * error chunk. AI_TRANSIENT: a transient error chunk (overloaded, ...), a malformed chunk, or a body that ended
 * before the model said it was finished. */
void ai_stream_finish(ai_stream_t *s, buf_t *delta, ai_result_t *r);

/* Where the parser is: AI_STREAM_MORE, AI_STREAM_COMPLETE (the answer is whole, whatever the transport does
 * now) or AI_STREAM_FAILED. */
int ai_stream_state(const ai_stream_t *s);

/* The text handed out so far (the concatenation of the deltas), *len bytes; valid until the next feed. */
const char *ai_stream_text(const ai_stream_t *s, size_t *len);

#endif
