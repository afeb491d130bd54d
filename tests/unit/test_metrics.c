/* Unit tests for metrics.c: series per (route, method, status), histograms, worker counters, the sum of
 * several processes' files (a forked child writes a file of its own), and one shared file written by many
 * processes at once (plain CGI). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <dirent.h>
#include <unistd.h>

#include "metrics.h"

static char dir[] = "/tmp/gb-metrics-test.XXXXXX";

static int has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)); p += n)
        if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
            return 1;
    return 0;
}

static void test_render(void **state)
{
    (void)state;
    assert_non_null(mkdtemp(dir));

    buf_t out = {0};
    /* Before any file: the families are there with zero values. */
    metrics_gauges_t g = {.queue_depth = 3, .worker_heartbeat_age = 1.5};
    assert_int_equal(metrics_render(dir, &g, &out), 0);
    assert_true(has_line(out.data, "gemini_replies_completed_total 0"));
    assert_true(has_line(out.data, "gemini_queue_depth 3"));
    assert_true(has_line(out.data, "gemini_worker_heartbeat_age_seconds 1.500"));
    buf_reset(&out);

    /* A child process records into a file of its own. */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (metrics_open(dir, "child", 0) != 0)
            _exit(1);
        metrics_request("/chatroom", "GET", 200, 3.0);
        metrics_add(METRICS_REPLIES_FAILED, 2);
        _exit(0);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);

    assert_int_equal(metrics_open(dir, "test", 0), 0);
    metrics_request("/chatroom", "GET", 200, 7.0);     /* 0.01 bucket */
    metrics_request("/chatroom", "GET", 404, 30000.0); /* over every bucket */
    metrics_request("/auth/login", "POST", 401, 0.2);
    metrics_request(NULL, "weird method", 404, 1.0);
    metrics_request(NULL, "FOO", 404, 1.0); /* a token, but no HTTP method: no series of its own */
    metrics_upstream(600.0);
    metrics_add(METRICS_REPLIES_COMPLETED, 5);

    g.queue_depth = -1;
    g.worker_heartbeat_age = -1;
    assert_int_equal(metrics_render(dir, &g, &out), 0);
    const char *t = out.data;
    assert_true(has_line(t, "gemini_http_requests_total{route=\"/chatroom\",method=\"GET\",status=\"200\"} 2"));
    assert_true(has_line(t, "gemini_http_requests_total{route=\"/chatroom\",method=\"GET\",status=\"404\"} 1"));
    assert_true(has_line(t, "gemini_http_requests_total{route=\"/auth/login\",method=\"POST\",status=\"401\"} 1"));
    assert_true(has_line(t, "gemini_http_requests_total{route=\"unmatched\",method=\"OTHER\",status=\"404\"} 2"));
    /* The histogram of GET /chatroom over its three requests: 3 ms and 7 ms by 0.01 s, 30 s only in +Inf. */
    assert_true(
        has_line(t, "gemini_http_request_duration_seconds_bucket{route=\"/chatroom\",method=\"GET\",le=\"0.005\"} 1"));
    assert_true(
        has_line(t, "gemini_http_request_duration_seconds_bucket{route=\"/chatroom\",method=\"GET\",le=\"0.01\"} 2"));
    assert_true(
        has_line(t, "gemini_http_request_duration_seconds_bucket{route=\"/chatroom\",method=\"GET\",le=\"10\"} 2"));
    assert_true(
        has_line(t, "gemini_http_request_duration_seconds_bucket{route=\"/chatroom\",method=\"GET\",le=\"+Inf\"} 3"));
    assert_true(has_line(t, "gemini_http_request_duration_seconds_count{route=\"/chatroom\",method=\"GET\"} 3"));
    assert_true(has_line(t, "gemini_http_request_duration_seconds_sum{route=\"/chatroom\",method=\"GET\"} 30.010000"));
    assert_true(has_line(t, "gemini_replies_completed_total 5"));
    assert_true(has_line(t, "gemini_replies_failed_total 2"));
    assert_true(has_line(t, "gemini_upstream_duration_seconds_bucket{le=\"0.5\"} 0"));
    assert_true(has_line(t, "gemini_upstream_duration_seconds_bucket{le=\"1\"} 1"));
    assert_true(has_line(t, "gemini_upstream_duration_seconds_count 1"));
    assert_null(strstr(t, "gemini_queue_depth"));
    buf_free(&out);

    /* A missing directory: -1, the families still render. */
    assert_int_equal(metrics_render("/nonexistent/gb-metrics", NULL, &out), -1);
    assert_true(has_line(out.data, "gemini_replies_completed_total 0"));
    buf_free(&out);

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* Plain CGI: 16 processes at once, each one request of its own program run, record into one shared file; every
 * series is claimed once and every count lands, and the directory holds that one file. */
static void test_shared(void **state)
{
    (void)state;
    char sdir[] = "/tmp/gb-metrics-shared.XXXXXX";
    assert_non_null(mkdtemp(sdir));
    enum { PROCS = 16, EACH = 300 };
    pid_t pids[PROCS];
    for (int p = 0; p < PROCS; p++) {
        pids[p] = fork();
        assert_true(pids[p] >= 0);
        if (pids[p] == 0) {
            if (metrics_open(sdir, "cgi", 1) != 0)
                _exit(1);
            for (int i = 0; i < EACH; i++) /* 10 series, claimed by whichever process comes first */
                metrics_request(i % 2 ? "/chatroom" : "/user/me", "GET", 200 + i % 5, 1.0);
            metrics_add(METRICS_REPLIES_COMPLETED, 1);
            _exit(0);
        }
    }
    for (int p = 0; p < PROCS; p++) {
        int st;
        assert_int_equal(waitpid(pids[p], &st, 0), pids[p]);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    int files = 0;
    DIR *d = opendir(sdir);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));)
        files += e->d_name[0] != '.';
    closedir(d);
    assert_int_equal(files, 1);

    buf_t out = {0};
    assert_int_equal(metrics_render(sdir, NULL, &out), 0);
    /* Each (route, status) pair gets EACH / 10 requests of every process, on one line. */
    char line[160];
    for (int i = 0; i < 10; i++) {
        snprintf(line, sizeof line, "gemini_http_requests_total{route=\"%s\",method=\"GET\",status=\"%d\"} %d",
                 i % 2 ? "/chatroom" : "/user/me", 200 + i % 5, PROCS * EACH / 10);
        assert_true(has_line(out.data, line));
    }
    const char *first =
        strstr(out.data, "gemini_http_requests_total{route=\"/chatroom\",method=\"GET\",status=\"201\"}");
    assert_non_null(first);
    assert_null(strstr(first + 1, "gemini_http_requests_total{route=\"/chatroom\",method=\"GET\",status=\"201\"}"));
    snprintf(line, sizeof line, "gemini_replies_completed_total %d", PROCS);
    assert_true(has_line(out.data, line));
    buf_free(&out);

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", sdir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shared), /* first: its children must not inherit test_render's open file */
        cmocka_unit_test(test_render),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
