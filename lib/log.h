/* log: one printf-style function with levels, one line per event on stderr.
 * The message is sanitised: CR, LF and other control bytes become '?', so one event is one line.
 * Never pass a secret, OTP, password or token to it. */
#ifndef GB_LOG_H
#define GB_LOG_H

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

/* prog: short program name shown on each line. level: minimum level written. */
void log_init(const char *prog, int level);
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

/* The access line: method, path (no query string), status, duration and request id. */
void log_request(const char *method, const char *path, int status, double ms, const char *request_id);

/* Parse "debug|info|warn|error"; -1 if unknown. */
int log_level_parse(const char *s);

#endif
