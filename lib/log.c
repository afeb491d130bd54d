#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static const char *log_prog = "gemini";
static int log_min = LOG_INFO;
static int log_pid;
static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

void log_init(const char *prog, int level)
{
    log_prog = prog;
    log_min = level;
    log_pid = (int)getpid(); /* no fork after this point in our programs */
}

int log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (s && strcasecmp(s, level_names[i]) == 0)
            return i;
    if (s && strcasecmp(s, "warning") == 0)
        return LOG_WARN;
    return -1;
}

static void log_write(int level, const char *fmt, va_list ap)
{
    char line[1024];
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
    int n = snprintf(line, sizeof line, "%s.%03ldZ %s[%d] %s ", ts, now.tv_nsec / 1000000, log_prog,
                     log_pid ? log_pid : (int)getpid(),
                     level_names[level < 0   ? 0
                                 : level > 3 ? 3
                                             : level]);
    if (n < 0 || (size_t)n >= sizeof line)
        return;
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    if (m < 0)
        return;
    size_t len = (size_t)n + ((size_t)m < sizeof line - (size_t)n - 1 ? (size_t)m : sizeof line - (size_t)n - 2);
    for (size_t i = (size_t)n; i < len; i++) /* one event, one line: no CR/LF or other control bytes */
        if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
            line[i] = '?';
    line[len++] = '\n';
    (void)!write(STDERR_FILENO, line, len); /* one write: lines from several processes do not interleave */
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

void log_request(const char *method, const char *path, int status, double ms, const char *request_id)
{
    log_msg(LOG_INFO, "%s %s %d %.2fms rid=%s", method ? method : "-", path ? path : "-", status, ms,
            request_id ? request_id : "-");
}
