#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

static const char *log_prog = "gemini";
static int log_min = LOG_INFO;
static int log_pid;
static enum log_format log_fmt = LOG_FORMAT_TEXT;
static enum log_target log_tgt = LOG_TARGET_STDERR;
static const char *ctx_rid;
static long long ctx_uid;
static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
static const char *const level_json[] = {"debug", "info", "warn", "error"};

void log_setup(const char *prog, int level, enum log_format format, enum log_target target)
{
    log_prog = prog;
    log_min = level;
    log_fmt = format;
    log_tgt = target;
    log_pid = (int)getpid(); /* no fork after this point in our programs */
    if (target == LOG_TARGET_SYSLOG)
        log_syslog_open(prog);
}

void log_init(const char *prog, int level)
{
    log_setup(prog, level, LOG_FORMAT_TEXT, LOG_TARGET_STDERR);
}

void log_set_context(const char *request_id, long long user_id)
{
    ctx_rid = request_id;
    ctx_uid = user_id;
}

static int parse_word(const char *s, const char *const *words, int n)
{
    for (int i = 0; i < n; i++)
        if (s && strcasecmp(s, words[i]) == 0)
            return i;
    return -1;
}

int log_level_parse(const char *s)
{
    if (s && strcasecmp(s, "warning") == 0)
        return LOG_WARN;
    return parse_word(s, level_names, 4);
}

int log_format_parse(const char *s)
{
    static const char *const w[] = {"text", "json"};
    return parse_word(s, w, 2);
}

int log_target_parse(const char *s)
{
    static const char *const w[] = {"stderr", "syslog"};
    return parse_word(s, w, 2);
}

/* Append s[0..n) to b as the inside of a JSON string: quotes, backslashes and control bytes escaped, bytes that
 * are not well-formed UTF-8 replaced by '?'. */
static void json_escape(buf_t *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            buf_printf(b, "\\%c", c);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            buf_printf(b, "\\u%04x", c);
            i++;
        } else if (c < 0x80) {
            buf_append(b, &s[i], 1);
            i++;
        } else {
            size_t k = utf8_decode(s + i, n - i, NULL);
            if (k == 0) {
                buf_append(b, "?", 1);
                i++;
            } else {
                buf_append(b, s + i, k);
                i += k;
            }
        }
    }
}

static void emit(int level, const char *line, size_t len)
{
    if (log_tgt == LOG_TARGET_SYSLOG)
        log_syslog_write(level, line, len);
    else {
        char *p = (char *)line;
        p[len] = '\n';
        (void)!write(STDERR_FILENO, p, len + 1); /* one write: lines from several processes do not interleave */
    }
}

static void log_write(int level, const char *fmt, va_list ap)
{
    char msg[1024];
    static char ts[24]; /* "YYYY-MM-DDTHH:MM:SS", formatted again only when the second changes */
    static time_t ts_sec = -1;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (now.tv_sec != ts_sec) {
        struct tm tm;
        gmtime_r(&now.tv_sec, &tm);
        strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
        ts_sec = now.tv_sec;
    }
    level = level < 0 ? 0 : level > 3 ? 3 : level;
    int m = vsnprintf(msg, sizeof msg, fmt, ap);
    if (m < 0)
        return;
    size_t mlen = (size_t)m < sizeof msg ? (size_t)m : sizeof msg - 1;
    int pid = log_pid ? log_pid : (int)getpid();

    char line[2048 + 256];
    size_t len;
    if (log_fmt == LOG_FORMAT_JSON) {
        buf_t b = {0};
        buf_printf(&b, "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",\"prog\":\"%s\",\"pid\":%d,\"msg\":\"", ts,
                   now.tv_nsec / 1000000, level_json[level], log_prog, pid);
        json_escape(&b, msg, mlen);
        buf_puts(&b, "\"");
        if (ctx_rid) {
            buf_puts(&b, ",\"request_id\":\"");
            json_escape(&b, ctx_rid, strlen(ctx_rid));
            buf_puts(&b, "\"");
        }
        if (ctx_uid > 0)
            buf_printf(&b, ",\"user_id\":%lld", ctx_uid);
        buf_puts(&b, "}");
        len = b.len < sizeof line - 1 ? b.len : sizeof line - 1;
        memcpy(line, b.data, len);
        buf_free(&b);
    } else {
        int n = log_tgt == LOG_TARGET_SYSLOG /* syslog adds its own time, name and pid */
                    ? snprintf(line, sizeof line, "%s ", level_names[level])
                    : snprintf(line, sizeof line, "%s.%03ldZ %s[%d] %s ", ts, now.tv_nsec / 1000000, log_prog, pid,
                               level_names[level]);
        if (n < 0 || (size_t)n >= sizeof line)
            return;
        len = (size_t)n;
        for (size_t i = 0; i < mlen && len < sizeof line - 1; i++) /* one event, one line */
            line[len++] = ((unsigned char)msg[i] < 0x20 || msg[i] == 0x7f) ? '?' : msg[i];
        if (ctx_rid || ctx_uid > 0) {
            char ids[128];
            int k = ctx_uid > 0 ? snprintf(ids, sizeof ids, " rid=%s uid=%lld", ctx_rid ? ctx_rid : "-", ctx_uid)
                                : snprintf(ids, sizeof ids, " rid=%s", ctx_rid);
            for (int i = 0; i < k && (size_t)i < sizeof ids - 1 && len < sizeof line - 1; i++)
                line[len++] = ids[i];
        }
    }
    emit(level, line, len);
}

void log_msg(int level, const char *fmt, ...)
{
    if (level < log_min)
        return;
    va_list ap;
    va_start(ap, fmt);
    log_write(level, fmt, ap);
    va_end(ap);
}

void log_request(const char *method, const char *path, int status, double ms)
{
    log_msg(LOG_INFO, "%s %s %d %.2fms", method ? method : "-", path ? path : "-", status, ms);
}
