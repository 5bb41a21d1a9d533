#ifndef WORKFCGI_CSYSTEM_H
#define WORKFCGI_CSYSTEM_H

/* Linux specifics that Swift's Glibc module does not expose (they need _GNU_SOURCE, which is defined only
 * inside csystem.c: defining it in a header would change system types under other modules). */

/* glibc's malloc: at most `arenas` arenas instead of eight per core, and freed memory kept (up to 16 MiB)
 * rather than returned after every burst. */
int workfcgi_tune_malloc(int arenas);

/* The calling thread runs only when no normal thread wants the CPU (SCHED_IDLE). */
int workfcgi_thread_sched_idle(void);

/* Names the calling thread for ps, top and /proc (at most 15 bytes are kept). */
void workfcgi_name_thread(const char *name);

#endif
