/* Fuzz target: Google Gemini generateContent answers ({"candidates":[...]}, {"error":{...}} with details such as
 * RetryInfo and QuotaFailure) as the worker classifies them (ai_parse_response in lib/ai.c). Input format and checks:
 * fuzz/ai_reply.h. */
#include "ai_reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return ai_reply_one(AI_PROVIDER_GEMINI, data, size);
}
