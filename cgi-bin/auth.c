/* auth: every /auth/... endpoint and GET /user/me (API.md "Authentication"), and the JSON 404 of any path no
 * program owns. A route table and thin handlers: authenticate where the endpoint needs it, hand over to
 * lib/account.c. GET /healthz and /metrics are the chatroom program's: a login flood keeps every auth process
 * busy with Argon2 (or waiting for a slot), and a load balancer's health check must not queue behind it. */
#include <stdlib.h>

#include "account.h"
#include "auth.h"
#include "http.h"
#include "keys.h"

static void h_send_otp(http_req_t *req)
{
    account_send_otp(req, ACCOUNT_OTP_LOGIN);
}

static void h_forgot_password(http_req_t *req)
{
    account_send_otp(req, ACCOUNT_OTP_RESET);
}

static void h_change_password(http_req_t *req)
{
    if (auth_require(req) == 0)
        account_change_password(req);
}

static void h_logout(http_req_t *req)
{
    if (auth_require(req) != 0)
        return;
    if (http_json_body_optional(req) == 0)
        account_logout(req);
}

static void h_me(http_req_t *req)
{
    char *cached = NULL;
    size_t len = 0;

    if (auth_require_cached(req, KEYS_ME_PREFIX, &cached, &len) == 0)
        account_me_cached(req, cached, len);
    free(cached);
}

static const http_route_t routes[] = {
    {"POST", "/auth/signup", account_signup},
    {"POST", "/auth/send-otp", h_send_otp},
    {"POST", "/auth/verify-otp", account_verify_otp},
    {"POST", "/auth/login", account_login},
    {"POST", "/auth/forgot-password", h_forgot_password},
    {"POST", "/auth/reset-password", account_reset_password},
    {"POST", "/auth/change-password", h_change_password},
    {"POST", "/auth/logout", h_logout},
    {"GET", "/user/me", h_me},
};

int main(void)
{
    return http_serve("auth", routes, sizeof routes / sizeof routes[0], account_init);
}
