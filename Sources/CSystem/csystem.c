#define _GNU_SOURCE
#include "csystem.h"

#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <errno.h>
#include <sys/file.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

int workfcgi_tune_malloc(int arenas) {
    /* Also keep up to 16 MiB of freed memory instead of returning it at once: giving it back with madvise
     * on every burst cost deliveryd's recorder thread a sixth of its time (perf). */
    mallopt(M_TRIM_THRESHOLD, 16 << 20);
    return mallopt(M_ARENA_MAX, arenas);
}

int workfcgi_thread_sched_idle(void) {
    struct sched_param param = {0};
    return pthread_setschedparam(pthread_self(), SCHED_IDLE, &param);
}

void workfcgi_name_thread(const char *name) {
    char shortened[16] = {0};
    strncpy(shortened, name, sizeof shortened - 1);
    pthread_setname_np(pthread_self(), shortened);
}

static void workfcgi_wake(int sig) { (void)sig; }

int workfcgi_install_wake_signal(int sig) {
    /* No SA_RESTART: a blocking call in the signalled thread returns EINTR, and its caller looks again. */
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = workfcgi_wake;
    sigemptyset(&action.sa_mask);
    return sigaction(sig, &action, NULL);
}

int workfcgi_signal_thread(unsigned long thread, int sig) {
    return pthread_kill((pthread_t)thread, sig);
}

unsigned long workfcgi_current_thread(void) {
    return (unsigned long)pthread_self();
}

int workfcgi_unblock_signal(int sig) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    return pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

int workfcgi_flock(int fd, int exclusive) {
    int rc;
    do {
        rc = flock(fd, exclusive ? LOCK_EX : LOCK_UN);
    } while (rc != 0 && errno == EINTR);
    return rc;
}

int workfcgi_open_path_nofollow(const char *path) {
    return open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
}

int workfcgi_fchmod_path(int fd, unsigned int mode) {
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    return chmod(proc, (mode_t)mode);
}

int workfcgi_fchown_group_path(int fd, int gid) {
    return fchownat(fd, "", (uid_t)-1, (gid_t)gid, AT_EMPTY_PATH);
}
