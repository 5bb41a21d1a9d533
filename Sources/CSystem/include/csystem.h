#ifndef WORKFCGI_CSYSTEM_H
#define WORKFCGI_CSYSTEM_H

/* epoll, which Swift's Glibc module leaves out (loadgen's event loop). */
#include <sys/epoll.h>

/* Linux specifics that Swift's Glibc module does not expose (they need _GNU_SOURCE, which is defined only
 * inside csystem.c: defining it in a header would change system types under other modules). */

/* glibc's malloc: at most `arenas` arenas instead of eight per core, and freed memory kept (up to 16 MiB)
 * rather than returned after every burst. */
int workfcgi_tune_malloc(int arenas);

/* The calling thread runs only when no normal thread wants the CPU (SCHED_IDLE). */
int workfcgi_thread_sched_idle(void);

/* Names the calling thread for ps, top and /proc (at most 15 bytes are kept). */
void workfcgi_name_thread(const char *name);

/* Installs a do-nothing handler for `sig` without SA_RESTART: sending it to a thread wakes a blocking call. */
int workfcgi_install_wake_signal(int sig);

/* pthread_kill, and pthread_self as a plain number (pthread_t is an unsigned long on Linux). */
int workfcgi_signal_thread(unsigned long thread, int sig);
unsigned long workfcgi_current_thread(void);

/* Lets the calling thread receive `sig` (threads start with the creating thread's mask, which blocks most). */
int workfcgi_unblock_signal(int sig);

/* flock(fd, LOCK_EX) or LOCK_UN, retried on EINTR (Swift's Glibc names both the call and `struct flock`). */
int workfcgi_flock(int fd, int exclusive);

#endif
