/* chatroom: the chatroom and message endpoints (API.md "Chatrooms and messages"), and GET /healthz and /metrics
 * (lib/health.c): this program's processes only wait on PostgreSQL and Redis, so the operators' endpoints stay
 * answered while a login flood keeps the auth processes hashing. A route table and thin handlers: authenticate,
 * pick the {id}, hand over to lib/chat.c. */
#include <stdlib.h>

#include "auth.h"
#include "chat.h"
#include "health.h"
#include "http.h"

static void h_create(http_req_t *req)
{
    if (auth_require(req) == 0)
        chat_create(req);
}

static void h_list(http_req_t *req)
{
    char *cached = NULL;
    size_t len = 0;

    if (auth_require_cached(req, CHAT_CACHE_PREFIX, &cached, &len) == 0)
        chat_list(req, cached, len);
    free(cached);
}

static void h_usage(http_req_t *req)
{
    if (auth_require(req) == 0)
        chat_usage(req);
}

/* Authentication comes before the id check, so an anonymous caller learns nothing about ids. */
static void h_get(http_req_t *req)
{
    if (auth_require(req) == 0)
        chat_get(req, http_param_id(req, 0));
}

static void h_delete(http_req_t *req)
{
    if (auth_require(req) == 0)
        chat_delete(req, http_param_id(req, 0));
}

static void h_post_message(http_req_t *req)
{
    if (auth_require(req) == 0)
        chat_post_message(req, http_param_id(req, 0));
}

static void h_messages(http_req_t *req)
{
    if (auth_require(req) == 0)
        chat_messages(req, http_param_id(req, 0));
}

/* /chatroom/usage comes before /chatroom/{id}. */
static const http_route_t routes[] = {
    {"POST", "/chatroom", h_create},
    {"GET", "/chatroom", h_list},
    {"GET", "/chatroom/usage", h_usage},
    {"GET", "/chatroom/{id}", h_get},
    {"DELETE", "/chatroom/{id}", h_delete},
    {"POST", "/chatroom/{id}/message", h_post_message},
    {"GET", "/chatroom/{id}/messages", h_messages},
    {"GET", "/healthz", health_respond},
    {"GET", "/metrics", health_metrics_respond},
};

int main(void)
{
    return http_serve("chatroom", routes, sizeof routes / sizeof routes[0], NULL);
}
