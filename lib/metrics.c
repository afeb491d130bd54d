#include "metrics.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

#define MAGIC "gbmetr01" /* layout version: a file of another layout is started afresh */

/* Upper bounds of the latency buckets, in microseconds (Prometheus' default buckets). */
static const uint64_t bucket_us[METRICS_NBUCKETS] = {5000,   10000,   25000,   50000,   100000,  250000,
                                                     500000, 1000000, 2500000, 5000000, 10000000};
static const char *const bucket_le[METRICS_NBUCKETS] = {"0.005", "0.01", "0.025", "0.05", "0.1", "0.25",
                                                        "0.5",   "1",    "2.5",   "5",    "10"};

typedef struct hist {
    uint64_t count, sum_us;
    uint64_t buckets[METRICS_NBUCKETS]; /* observations in (le[i-1], le[i]]; over the last: count only */
} hist_t;

typedef struct series {
    uint32_t used; /* set last (release) once the labels are written */
    uint16_t status;
    char method[8];
    char route[METRICS_ROUTE_MAX];
    hist_t h;
} series_t;

typedef struct mfile {
    char magic[8];
    uint64_t counters[METRICS_NCOUNTERS];
    hist_t upstream;
    series_t series[METRICS_SLOTS];
} mfile_t;

static mfile_t *g_file;    /* NULL: metrics off */
static int g_lock_fd = -1; /* a shared file's descriptor: slot claims are made under flock on it */
static int g_tried;

static int lock(int op)
{
    int rc;
    while ((rc = flock(g_lock_fd, op)) != 0 && errno == EINTR)
        ;
    return rc;
}

int metrics_open(const char *dir, const char *prog, int shared)
{
    if (g_tried)
        return g_file ? 0 : -1;
    g_tried = 1;
    if (!dir || !*dir)
        return -1;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        log_warn("metrics off: cannot create %s: %s", dir, strerror(errno));
        return -1;
    }
    char path[4096];
    int n = shared ? snprintf(path, sizeof path, "%s/%s.shared.metrics", dir, prog)
                   : snprintf(path, sizeof path, "%s/%s.%ld.metrics", dir, prog, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof path)
        return -1;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        log_warn("metrics off: cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    g_lock_fd = shared ? fd : -1;
    struct stat st;
    void *p = MAP_FAILED;
    if ((!shared || lock(LOCK_EX) == 0) && fstat(fd, &st) == 0 &&
        (st.st_size == (off_t)sizeof(mfile_t) || ftruncate(fd, sizeof(mfile_t)) == 0))
        p = mmap(NULL, sizeof(mfile_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p != MAP_FAILED) {
        g_file = p;
        if (memcmp(g_file->magic, MAGIC, sizeof g_file->magic) != 0 || st.st_size != (off_t)sizeof(mfile_t)) {
            memset(g_file, 0, sizeof *g_file);
            memcpy(g_file->magic, MAGIC, sizeof g_file->magic);
        }
    }
    if (shared)
        lock(LOCK_UN);
    if (!shared || !g_file) {
        close(fd);
        g_lock_fd = -1;
    }
    if (!g_file) {
        log_warn("metrics off: cannot map %s", path);
        return -1;
    }
    return 0;
}

static void observe(hist_t *h, double ms)
{
    uint64_t us = ms <= 0 ? 0 : (uint64_t)(ms * 1000.0);
    __atomic_fetch_add(&h->count, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&h->sum_us, us, __ATOMIC_RELAXED);
    for (int i = 0; i < METRICS_NBUCKETS; i++) {
        if (us <= bucket_us[i]) {
            __atomic_fetch_add(&h->buckets[i], 1, __ATOMIC_RELAXED);
            break;
        }
    }
}

/* A method label: one of HTTP's methods, else "OTHER". The method is the client's: any token it could send as a
 * label (FOO, BAR, ...) would take a series slot of its own, and a client could fill the table with them. */
static const char *method_label(const char *m)
{
    static const char *const known[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"};
    for (size_t i = 0; m && i < sizeof known / sizeof known[0]; i++)
        if (strcmp(m, known[i]) == 0)
            return known[i];
    return "OTHER";
}

static uint32_t hash(const char *route, const char *method, int status)
{
    uint32_t h = 2166136261u;
    for (const char *s = route; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    for (const char *s = method; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return (h ^ (uint32_t)status) * 16777619u;
}

void metrics_request(const char *route, const char *method, int status, double ms)
{
    if (!g_file)
        return;
    if (!route || strlen(route) >= METRICS_ROUTE_MAX)
        route = "unmatched";
    method = method_label(method);
    uint32_t h = hash(route, method, status);
    for (uint32_t i = 0; i < METRICS_SLOTS; i++) {
        series_t *s = &g_file->series[(h + i) % METRICS_SLOTS];
        if (!__atomic_load_n(&s->used, __ATOMIC_ACQUIRE)) {
            /* Claim the slot: at once when this process is the file's only writer, else under the file's lock
             * (another process may claim it first, for these labels or others). */
            if (g_lock_fd >= 0 && lock(LOCK_EX) != 0)
                return;
            if (!s->used) {
                s->status = (uint16_t)status;
                snprintf(s->method, sizeof s->method, "%s", method);
                snprintf(s->route, sizeof s->route, "%s", route);
                __atomic_store_n(&s->used, 1, __ATOMIC_RELEASE);
            }
            if (g_lock_fd >= 0)
                lock(LOCK_UN);
        }
        if (s->status != status || strcmp(s->method, method) != 0 || strcmp(s->route, route) != 0)
            continue;
        observe(&s->h, ms);
        return;
    }
    /* Table full: the series is not recorded (METRICS_SLOTS is far above our routes x statuses). */
}

void metrics_upstream(double ms)
{
    if (g_file)
        observe(&g_file->upstream, ms);
}

void metrics_add(enum metrics_counter c, long long n)
{
    if (g_file && c >= 0 && c < METRICS_NCOUNTERS && n > 0)
        __atomic_fetch_add(&g_file->counters[c], (uint64_t)n, __ATOMIC_RELAXED);
}

/* ---- reading ------------------------------------------------------------------------------------------- */

typedef struct agg {
    char route[METRICS_ROUTE_MAX];
    char method[8];
    int status; /* -1: the histogram row of (route, method), all statuses */
    hist_t h;
} agg_t;

typedef struct sums {
    agg_t *rows;
    size_t n, cap;
    uint64_t counters[METRICS_NCOUNTERS];
    hist_t upstream;
} sums_t;

static void hist_add(hist_t *to, const hist_t *from)
{
    to->count += __atomic_load_n(&from->count, __ATOMIC_RELAXED);
    to->sum_us += __atomic_load_n(&from->sum_us, __ATOMIC_RELAXED);
    for (int i = 0; i < METRICS_NBUCKETS; i++)
        to->buckets[i] += __atomic_load_n(&from->buckets[i], __ATOMIC_RELAXED);
}

static agg_t *row(sums_t *s, const char *route, const char *method, int status)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->rows[i].status == status && strcmp(s->rows[i].route, route) == 0 &&
            strcmp(s->rows[i].method, method) == 0)
            return &s->rows[i];
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->rows = xrealloc(s->rows, s->cap * sizeof *s->rows);
    }
    agg_t *a = &s->rows[s->n++];
    memset(a, 0, sizeof *a);
    snprintf(a->route, sizeof a->route, "%s", route);
    snprintf(a->method, sizeof a->method, "%s", method);
    a->status = status;
    return a;
}

static void add_file(sums_t *s, const mfile_t *f)
{
    if (memcmp(f->magic, MAGIC, sizeof f->magic) != 0)
        return;
    for (int c = 0; c < METRICS_NCOUNTERS; c++)
        s->counters[c] += __atomic_load_n(&f->counters[c], __ATOMIC_RELAXED);
    hist_add(&s->upstream, &f->upstream);
    for (int i = 0; i < METRICS_SLOTS; i++) {
        const series_t *se = &f->series[i];
        if (!__atomic_load_n(&se->used, __ATOMIC_ACQUIRE))
            continue;
        char route[METRICS_ROUTE_MAX], method[8];
        snprintf(route, sizeof route, "%.*s", (int)sizeof se->route - 1, se->route);
        snprintf(method, sizeof method, "%.*s", (int)sizeof se->method - 1, se->method);
        hist_add(&row(s, route, method, se->status)->h, &se->h);
        hist_add(&row(s, route, method, -1)->h, &se->h);
    }
}

static int read_dir(const char *dir, sums_t *s)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 9 || strcmp(e->d_name + n - 8, ".metrics") != 0)
            continue;
        int fd = openat(dirfd(d), e->d_name, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        struct stat st;
        if (fstat(fd, &st) == 0 && st.st_size == (off_t)sizeof(mfile_t)) {
            void *p = mmap(NULL, sizeof(mfile_t), PROT_READ, MAP_SHARED, fd, 0);
            if (p != MAP_FAILED) {
                add_file(s, p);
                munmap(p, sizeof(mfile_t));
            }
        }
        close(fd);
    }
    closedir(d);
    return 0;
}

static void hist_lines(buf_t *out, const char *name, const char *labels, const hist_t *h)
{
    uint64_t cum = 0;
    const char *sep = *labels ? "," : "";
    for (int i = 0; i < METRICS_NBUCKETS; i++) {
        cum += h->buckets[i];
        buf_printf(out, "%s_bucket{%s%sle=\"%s\"} %llu\n", name, labels, sep, bucket_le[i], (unsigned long long)cum);
    }
    buf_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, (unsigned long long)h->count);
    buf_printf(out, "%s_sum%s%s%s %.6f\n", name, *labels ? "{" : "", labels, *labels ? "}" : "",
               (double)h->sum_us / 1e6);
    buf_printf(out, "%s_count%s%s%s %llu\n", name, *labels ? "{" : "", labels, *labels ? "}" : "",
               (unsigned long long)h->count);
}

int metrics_render(const char *dir, const metrics_gauges_t *g, buf_t *out)
{
    sums_t s = {0};
    int rc = dir && *dir ? read_dir(dir, &s) : -1;

    buf_puts(out, "# HELP gemini_http_requests_total HTTP requests answered, by route, method and status.\n"
                  "# TYPE gemini_http_requests_total counter\n");
    for (size_t i = 0; i < s.n; i++)
        if (s.rows[i].status >= 0)
            buf_printf(out, "gemini_http_requests_total{route=\"%s\",method=\"%s\",status=\"%d\"} %llu\n",
                       s.rows[i].route, s.rows[i].method, s.rows[i].status, (unsigned long long)s.rows[i].h.count);
    buf_puts(out, "# HELP gemini_http_request_duration_seconds Time from request to response, by route and method.\n"
                  "# TYPE gemini_http_request_duration_seconds histogram\n");
    for (size_t i = 0; i < s.n; i++) {
        if (s.rows[i].status >= 0)
            continue;
        char labels[METRICS_ROUTE_MAX + 32];
        snprintf(labels, sizeof labels, "route=\"%s\",method=\"%s\"", s.rows[i].route, s.rows[i].method);
        hist_lines(out, "gemini_http_request_duration_seconds", labels, &s.rows[i].h);
    }
    static const char *const names[METRICS_NCOUNTERS] = {"completed", "failed", "retried"};
    static const char *const helps[METRICS_NCOUNTERS] = {"Replies stored complete by the worker.",
                                                         "Replies the worker gave up on (status failed).",
                                                         "Upstream attempts that were retried later."};
    for (int c = 0; c < METRICS_NCOUNTERS; c++)
        buf_printf(out,
                   "# HELP gemini_replies_%s_total %s\n# TYPE gemini_replies_%s_total counter\n"
                   "gemini_replies_%s_total %llu\n",
                   names[c], helps[c], names[c], names[c], (unsigned long long)s.counters[c]);
    buf_puts(out, "# HELP gemini_upstream_duration_seconds Duration of calls to the model provider.\n"
                  "# TYPE gemini_upstream_duration_seconds histogram\n");
    hist_lines(out, "gemini_upstream_duration_seconds", "", &s.upstream);
    if (g && g->queue_depth >= 0)
        buf_printf(out,
                   "# HELP gemini_queue_depth Replies waiting for the worker (status pending).\n"
                   "# TYPE gemini_queue_depth gauge\ngemini_queue_depth %lld\n",
                   g->queue_depth);
    if (g && g->worker_heartbeat_age >= 0)
        buf_printf(out,
                   "# HELP gemini_worker_heartbeat_age_seconds Seconds since the worker's last heartbeat.\n"
                   "# TYPE gemini_worker_heartbeat_age_seconds gauge\ngemini_worker_heartbeat_age_seconds %.3f\n",
                   g->worker_heartbeat_age);
    free(s.rows);
    return rc;
}
