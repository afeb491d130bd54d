/* Unit tests for health.c: the /healthz body and status for each combination of what is down. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "health.h"

static const char *field(json_object *o, const char *k)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, k, &v))
        return "(absent)";
    return v ? json_object_get_string(v) : "(null)";
}

static health_t all_up(void)
{
    health_t h = {.postgres_ok = 1, .redis_ok = 1, .worker = HEALTH_WORKER_OK, .worker_age = 2, .queue_depth = 7};
    snprintf(h.worker_heartbeat, sizeof h.worker_heartbeat, "%s", "2026-11-22T10:15:00Z");
    return h;
}

static void test_ok(void **state)
{
    (void)state;
    health_t h = all_up();
    json_object *o = health_json(&h);
    assert_int_equal(health_http_status(&h), 200);
    assert_string_equal(field(o, "status"), "ok");
    assert_string_equal(field(o, "postgres"), "ok");
    assert_string_equal(field(o, "redis"), "ok");
    assert_string_equal(field(o, "worker"), "ok");
    assert_string_equal(field(o, "worker_heartbeat"), "2026-11-22T10:15:00Z");
    assert_string_equal(field(o, "worker_heartbeat_age"), "2");
    assert_string_equal(field(o, "queue_depth"), "7");
    json_object_put(o);
}

/* Redis down: still served from PostgreSQL, so 200 and "degraded", never 503. */
static void test_redis_down_is_degraded(void **state)
{
    (void)state;
    health_t h = all_up();
    h.redis_ok = 0;
    json_object *o = health_json(&h);
    assert_int_equal(health_http_status(&h), 200);
    assert_string_equal(field(o, "status"), "degraded");
    assert_string_equal(field(o, "redis"), "down");
    assert_string_equal(field(o, "postgres"), "ok");
    json_object_put(o);
}

/* PostgreSQL down: nothing can be served, 503 whatever Redis says; the worker and queue are unknown. */
static void test_postgres_down_is_unavailable(void **state)
{
    (void)state;
    for (int redis = 0; redis <= 1; redis++) {
        health_t h = {.postgres_ok = 0, .redis_ok = redis, .worker_age = -1, .queue_depth = -1};
        json_object *o = health_json(&h);
        assert_int_equal(health_http_status(&h), 503);
        assert_string_equal(field(o, "status"), "unavailable");
        assert_string_equal(field(o, "postgres"), "down");
        assert_string_equal(field(o, "redis"), redis ? "ok" : "down");
        assert_string_equal(field(o, "worker"), "unknown");
        assert_string_equal(field(o, "worker_heartbeat"), "(null)");
        assert_string_equal(field(o, "queue_depth"), "(null)");
        json_object_put(o);
    }
}

/* A stale or missing worker is reported but does not change the status: the API still answers. */
static void test_worker_states(void **state)
{
    (void)state;
    health_t h = all_up();
    h.worker = HEALTH_WORKER_STALE;
    h.worker_age = 600;
    json_object *o = health_json(&h);
    assert_int_equal(health_http_status(&h), 200);
    assert_string_equal(field(o, "status"), "ok");
    assert_string_equal(field(o, "worker"), "stale");
    json_object_put(o);
    h.worker = HEALTH_WORKER_NONE;
    h.worker_heartbeat[0] = '\0';
    h.worker_age = -1;
    o = health_json(&h);
    assert_string_equal(field(o, "worker"), "none");
    assert_string_equal(field(o, "worker_heartbeat"), "(null)");
    assert_string_equal(field(o, "worker_heartbeat_age"), "(null)");
    json_object_put(o);
}

static void test_metrics_allowed(void **state)
{
    (void)state;
    const char *def = "127.0.0.1,::1";
    assert_true(health_metrics_allowed(def, "127.0.0.1"));
    assert_true(health_metrics_allowed(def, "::1"));
    assert_false(health_metrics_allowed(def, "127.0.0.10")); /* whole items, never prefixes */
    assert_false(health_metrics_allowed(def, "127.0.0"));
    assert_false(health_metrics_allowed(def, "10.0.0.1"));
    assert_false(health_metrics_allowed(def, ""));
    assert_false(health_metrics_allowed(def, NULL));
    assert_false(health_metrics_allowed(def, "any")); /* a relayed request: only an explicit "any" */
    assert_true(health_metrics_allowed("10.0.0.5, 10.0.0.6", "10.0.0.6"));
    assert_true(health_metrics_allowed("any", "203.0.113.9"));
    assert_true(health_metrics_allowed("10.0.0.5,any", "any"));
    assert_false(health_metrics_allowed("", "127.0.0.1")); /* empty: nobody */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ok),
        cmocka_unit_test(test_redis_down_is_degraded),
        cmocka_unit_test(test_postgres_down_is_unavailable),
        cmocka_unit_test(test_worker_states),
        cmocka_unit_test(test_metrics_allowed),
    };
    return cmocka_run_group_tests_name("health", tests, NULL, NULL);
}
