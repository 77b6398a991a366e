/*
 * log — the one logger of every Hashi program.
 *
 * Lines go to stderr as "2026-11-28T11:23:48.123Z info  message".  Safe to
 * call from any thread (each line is written with one locked stdio call).
 * Control bytes in a message (newline included) are written as \xNN, so
 * peer-provided text can be logged as is and a line is always one line.
 */
#ifndef HASHI_LOG_H
#define HASHI_LOG_H

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_set_level(enum log_level level);
/* "debug", "info", "warn", "error" -> level; -1 if unknown. */
int log_parse_level(const char *name);
void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
