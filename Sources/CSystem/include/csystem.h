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

/* `path` itself as an O_PATH descriptor, never what a symlink there points to (a symlink opens as the link):
 * it can be fstat'ed, chmod'ed and chown'ed, and closing it never drops the process's POSIX locks on the
 * file, as closing an ordinary descriptor would (SQLite's, on the database, -wal and -shm). */
int workfcgi_open_path_nofollow(const char *path);

/* chmod and chown of the file an O_PATH descriptor names (fchmod refuses such a descriptor): through
 * /proc/self/fd, and fchownat's AT_EMPTY_PATH. `gid` -1 keeps the group. */
int workfcgi_fchmod_path(int fd, unsigned int mode);
int workfcgi_fchown_group_path(int fd, int gid);

/* A handler program's start (Handlers): posix_spawn of `path` with argv = { path }, the environment `envp`,
 * `in_fd`, `out_fd` and `err_fd` as its 0, 1 and 2 and no other descriptor, `cwd` as its working folder, its
 * own process group, every signal's disposition default and none blocked (the daemons ignore SIGPIPE and
 * SIGTERM, which exec would keep). Returns 0 and the pid, or an errno. (glibc's posix_spawn refuses SCHED_IDLE:
 * workfcgi_limit_process sets it.) */
int workfcgi_spawn_handler(const char *path, char *const envp[], int in_fd, int out_fd, int err_fd, const char *cwd, int *pid);
/* The same with the arguments `argv` (the test harness's PostgreSQL tools). */
int workfcgi_spawn(const char *path, char *const argv[], char *const envp[], int in_fd, int out_fd, int err_fd, const char *cwd,
    int *pid);

/* prlimit(2) of another process, soft and hard limit alike (never above the hard limit in force): CPU
 * seconds, address space bytes, open files, processes of the user (0: leave it); and SCHED_IDLE. */
void workfcgi_limit_process(int pid, unsigned long long cpu, unsigned long long memory, unsigned long long files,
    unsigned long long processes);

/* pipe2(O_CLOEXEC). */
int workfcgi_pipe(int fds[2]);

/* accept4 with SOCK_CLOEXEC: a TCP connection taken by a pool thread (the peer address is checked first). */
int workfcgi_accept_cloexec(int fd, void *address, unsigned int *length);

/* 1 when `pid` has exited (it is left a zombie, not reaped: waitid with WNOWAIT), else 0. */
int workfcgi_has_exited(int pid);

/* An anonymous in-memory file (memfd_create, close-on-exec), and a pidfd that polls readable once `pid` exits. */
int workfcgi_memfd(const char *name);
int workfcgi_pidfd_open(int pid);

/* A listening unix socket's accept queue, read from the kernel with sock_diag (NETLINK_SOCK_DIAG,
 * UDIAG_SHOW_RQLEN): *queued = connections waiting for accept, *limit = the listen backlog. 0, or -1 when
 * the kernel does not answer (no sock_diag). One netlink round trip for the one socket (by inode). */
int workfcgi_unix_accept_queue(int listen_fd, unsigned int *queued, unsigned int *limit);

/* The user owning the TCP socket at the other end of a connection when that end is on this machine, asked of the
 * kernel with sock_diag (NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY, inet_diag by the exact 4-tuple: the peer's
 * address and port, then this end's; `family` AF_INET (4-byte addresses) or AF_INET6 (16), ports in host order).
 * 0: found, *uid set; 1: found but no process holds it (time-wait or orphaned: no owner to tell); 2: no such
 * socket here; -errno: the kernel did not answer. One netlink round trip. */
int workfcgi_tcp_peer_owner(int family, const unsigned char *peer, unsigned short peer_port, const unsigned char *local,
    unsigned short local_port, unsigned int *uid);

/* Whether `address` is one of this machine's (the kernel's route to it is RTN_LOCAL: loopback, an interface's
 * address, a local route): 1 yes, 0 no, -errno when the kernel did not answer. One netlink round trip. */
int workfcgi_is_local_address(int family, const unsigned char *address);

#endif
