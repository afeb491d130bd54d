/* ai_provider: which model API the worker talks to, where, and how it authenticates: the provider named by
 * AI_PROVIDER, its endpoint URL and auth header line. No I/O and no libcurl, so that `--check` (lib/cli.c), which
 * every program has, does not pull the model client (lib/ai.h) and libcurl into the FastCGI programs. */
#ifndef GB_AI_PROVIDER_H
#define GB_AI_PROVIDER_H

#include "util.h"

enum ai_provider { AI_PROVIDER_OFFLINE = 0, AI_PROVIDER_GEMINI = 1, AI_PROVIDER_OPENAI = 2 };

/* "gemini" / "openai" / "offline" -> the provider; -1 for anything else (NULL included). */
int ai_provider_parse(const char *s);
/* The provider's name ("gemini", ...). */
const char *ai_provider_name(enum ai_provider p);

/* Append the endpoint URL: {base}/v1beta/models/{model}:generateContent or {base}/chat/completions (one
 * trailing '/' of base ignored, a "models/" prefix of the Gemini model ignored). -1 if base is empty, the
 * model is missing (Gemini) or holds characters outside [A-Za-z0-9._-], or the provider is offline. */
int ai_build_url(enum ai_provider p, const char *base, const char *model, buf_t *out);
/* The same for a streamed answer: {base}/v1beta/models/{model}:streamGenerateContent?alt=sse (Gemini); the
 * OpenAI-compatible URL is the same as ai_build_url's. */
int ai_build_stream_url(enum ai_provider p, const char *base, const char *model, buf_t *out);

/* Append the auth header line for curl: "x-goog-api-key: KEY" or "Authorization: Bearer KEY". Returns 1 and
 * appends nothing when key is NULL/empty (OpenAI-compatible local servers need none), -1 if the key holds
 * control characters or spaces (header injection) or the provider is offline, else 0. */
int ai_auth_header(enum ai_provider p, const char *key, buf_t *out);

#endif
