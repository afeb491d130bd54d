/* Fuzz target: OpenAI-compatible chat completion answers ({"choices":[...]}, {"error":{...}}) as the worker classifies
 * them (ai_parse_response in lib/ai.c). Input format and checks: fuzz/ai_reply.h. */
#include "ai_reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return ai_reply_one(AI_PROVIDER_OPENAI, data, size);
}
