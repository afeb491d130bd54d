#include "ai_provider.h"

#include <ctype.h>
#include <string.h>

int ai_provider_parse(const char *s)
{
    if (!s)
        return -1;
    if (strcmp(s, "gemini") == 0)
        return AI_PROVIDER_GEMINI;
    if (strcmp(s, "openai") == 0)
        return AI_PROVIDER_OPENAI;
    if (strcmp(s, "offline") == 0)
        return AI_PROVIDER_OFFLINE;
    return -1;
}

const char *ai_provider_name(enum ai_provider p)
{
    switch (p) {
    case AI_PROVIDER_GEMINI: return "gemini";
    case AI_PROVIDER_OPENAI: return "openai";
    default: return "offline";
    }
}

static int model_ok(const char *m)
{
    if (!m || !*m)
        return 0;
    for (const char *c = m; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '.' && *c != '_' && *c != '-')
            return 0;
    return 1;
}

static int build_url(enum ai_provider p, const char *base, const char *model, int stream, buf_t *out)
{
    if (!base || !*base)
        return -1;
    size_t blen = strlen(base);
    if (base[blen - 1] == '/')
        blen--;
    if (blen == 0)
        return -1;
    if (p == AI_PROVIDER_GEMINI) {
        if (model && strncmp(model, "models/", 7) == 0)
            model += 7;
        if (!model_ok(model))
            return -1;
        buf_append(out, base, blen);
        buf_printf(out, "/v1beta/models/%s:%s", model, stream ? "streamGenerateContent?alt=sse" : "generateContent");
        return 0;
    }
    if (p == AI_PROVIDER_OPENAI) {
        buf_append(out, base, blen);
        buf_puts(out, "/chat/completions");
        return 0;
    }
    return -1;
}

int ai_build_url(enum ai_provider p, const char *base, const char *model, buf_t *out)
{
    return build_url(p, base, model, 0, out);
}

int ai_build_stream_url(enum ai_provider p, const char *base, const char *model, buf_t *out)
{
    return build_url(p, base, model, 1, out);
}

int ai_auth_header(enum ai_provider p, const char *key, buf_t *out)
{
    if (p != AI_PROVIDER_GEMINI && p != AI_PROVIDER_OPENAI)
        return -1;
    if (!key || !*key)
        return 1;
    for (const char *c = key; *c; c++)
        if ((unsigned char)*c <= 0x20 || *c == 0x7f)
            return -1;
    buf_puts(out, p == AI_PROVIDER_GEMINI ? "x-goog-api-key: " : "Authorization: Bearer ");
    buf_puts(out, key);
    return 0;
}
