/* log's syslog(3) target, apart from log.c because <syslog.h> defines LOG_DEBUG, LOG_INFO ... as macros that
 * clash with log.h's level names. */
#include <stddef.h>
#include <syslog.h>

void log_syslog_open(const char *prog);
void log_syslog_write(int level, const char *line, size_t len);

void log_syslog_open(const char *prog)
{
    openlog(prog, LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

/* level: log.h's 0..3 (debug, info, warn, error). */
void log_syslog_write(int level, const char *line, size_t len)
{
    static const int prio[] = {LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR};
    syslog(prio[level < 0 ? 0 : level > 3 ? 3 : level], "%.*s", (int)len, line);
}
