/* log: one printf-style function with levels, one line per event, on stderr (the default; under systemd that
 * is the journal) or syslog(3), as text or as one JSON object per line.
 * The message is sanitised: CR, LF and other control bytes become '?' in text lines (escaped in JSON), so one
 * event is one line. Lines written while a request is served carry its request id and user id.
 * Never pass a secret, OTP, password or token to it. */
#ifndef GB_LOG_H
#define GB_LOG_H

#include <stddef.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };
enum log_format { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON = 1 };
enum log_target { LOG_TARGET_STDERR = 0, LOG_TARGET_SYSLOG = 1 };

/* prog: short program name shown on each line (kept, not copied). level: minimum level written. Text on stderr. */
void log_init(const char *prog, int level);
/* The same with a format and a target (LOG_TARGET_SYSLOG opens syslog with facility daemon). */
void log_setup(const char *prog, int level, enum log_format format, enum log_target target);
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

/* The request being served: its id (NULL: none; kept, not copied, until the next call) and user (0: none). Every
 * line until the next call carries them. Call with (NULL, 0) at the end of the request. */
void log_set_context(const char *request_id, long long user_id);

/* The access line: method, path (no query string), status, duration (and the context's ids). */
void log_request(const char *method, const char *path, int status, double ms);

/* Parse "debug|info|warn|error"; -1 if unknown. */
int log_level_parse(const char *s);
/* Parse "text|json" / "stderr|syslog"; -1 if unknown. */
int log_format_parse(const char *s);
int log_target_parse(const char *s);

/* Internal: the syslog target (log_syslog.c). */
void log_syslog_open(const char *prog);
void log_syslog_write(int level, const char *line, size_t len);

#endif
