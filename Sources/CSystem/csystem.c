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
#include <spawn.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

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

int workfcgi_spawn_handler(const char *path, char *const envp[], int in_fd, int out_fd, int err_fd, const char *cwd, int *pid) {
    char *const argv[] = {(char *)path, NULL};
    return workfcgi_spawn(path, argv, envp, in_fd, out_fd, err_fd, cwd, pid);
}

int workfcgi_spawn(const char *path, char *const argv[], char *const envp[], int in_fd, int out_fd, int err_fd, const char *cwd,
    int *pid) {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    int rc = posix_spawn_file_actions_init(&actions);
    if (rc != 0) return rc;
    if ((rc = posix_spawnattr_init(&attr)) != 0) {
        posix_spawn_file_actions_destroy(&actions);
        return rc;
    }
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    sigdelset(&all, SIGKILL);
    sigdelset(&all, SIGSTOP);
    if (rc == 0) rc = posix_spawn_file_actions_adddup2(&actions, in_fd, 0);
    if (rc == 0) rc = posix_spawn_file_actions_adddup2(&actions, out_fd, 1);
    if (rc == 0) rc = posix_spawn_file_actions_adddup2(&actions, err_fd, 2);
    if (rc == 0) rc = posix_spawn_file_actions_addclosefrom_np(&actions, 3);
    if (rc == 0) rc = posix_spawn_file_actions_addchdir_np(&actions, cwd);
    if (rc == 0) rc = posix_spawnattr_setpgroup(&attr, 0);
    if (rc == 0) rc = posix_spawnattr_setsigmask(&attr, &none);
    if (rc == 0) rc = posix_spawnattr_setsigdefault(&attr, &all);
    if (rc == 0) {
        rc = posix_spawnattr_setflags(
            &attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    }
    if (rc == 0) {
        pid_t child = 0;
        rc = posix_spawn(&child, path, &actions, &attr, argv, envp);
        if (rc == 0) *pid = child;
    }
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&actions);
    return rc;
}

static void limit_one(int pid, int resource, unsigned long long value) {
    struct rlimit old;
    if (value == 0 || prlimit(pid, resource, NULL, &old) != 0) return;
    /* Never above the hard limit already in force: raising it would need privileges. */
    if (old.rlim_max != RLIM_INFINITY && value > old.rlim_max) value = old.rlim_max;
    struct rlimit limit = {value, value};
    prlimit(pid, resource, &limit, NULL);
}

void workfcgi_limit_process(int pid, unsigned long long cpu, unsigned long long memory, unsigned long long files,
    unsigned long long processes) {
    limit_one(pid, RLIMIT_CPU, cpu);
    limit_one(pid, RLIMIT_AS, memory);
    limit_one(pid, RLIMIT_NOFILE, files);
    limit_one(pid, RLIMIT_NPROC, processes);
    /* Inherited from a compute thread already; said again for a caller that is not one. */
    struct sched_param param = {0};
    sched_setscheduler(pid, SCHED_IDLE, &param);
}

int workfcgi_pipe(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

int workfcgi_accept_cloexec(int fd, void *address, unsigned int *length) {
    socklen_t len = *length;
    int rc = accept4(fd, (struct sockaddr *)address, &len, SOCK_CLOEXEC);
    *length = len;
    return rc;
}

int workfcgi_has_exited(int pid) {
    siginfo_t info;
    memset(&info, 0, sizeof info);
    return waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid;
}

int workfcgi_memfd(const char *name) { return memfd_create(name, MFD_CLOEXEC); }

int workfcgi_pidfd_open(int pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <linux/inet_diag.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <netinet/in.h>
#include <arpa/inet.h>

int workfcgi_unix_accept_queue(int listen_fd, unsigned int *queued, unsigned int *limit) {
    struct stat st;
    if (fstat(listen_fd, &st) != 0) return -1;
    int nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (nl < 0) return -1;
    struct timeval tv = {.tv_sec = 0, .tv_usec = 200000};
    setsockopt(nl, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct {
        struct nlmsghdr nlh;
        struct unix_diag_req req;
    } msg;
    memset(&msg, 0, sizeof msg);
    msg.nlh.nlmsg_len = sizeof msg;
    msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    msg.nlh.nlmsg_flags = NLM_F_REQUEST;
    msg.req.sdiag_family = AF_UNIX;
    msg.req.udiag_states = 1 << 10; /* TCP_LISTEN */
    msg.req.udiag_ino = (unsigned int)st.st_ino;
    msg.req.udiag_show = UDIAG_SHOW_RQLEN;
    msg.req.udiag_cookie[0] = INET_DIAG_NOCOOKIE;
    msg.req.udiag_cookie[1] = INET_DIAG_NOCOOKIE;
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    if (sendto(nl, &msg, sizeof msg, 0, (struct sockaddr *)&kernel, sizeof kernel) != (ssize_t)sizeof msg) {
        close(nl);
        return -1;
    }
    long buffer[1024];
    ssize_t n = recv(nl, buffer, sizeof buffer, 0);
    close(nl);
    if (n <= 0) return -1;
    for (struct nlmsghdr *h = (struct nlmsghdr *)buffer; NLMSG_OK(h, (unsigned int)n); h = NLMSG_NEXT(h, n)) {
        if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY) return -1;
        struct unix_diag_msg *m = NLMSG_DATA(h);
        if (m->udiag_ino != (unsigned int)st.st_ino) continue;
        int len = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof *m));
        for (struct rtattr *a = (struct rtattr *)(m + 1); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
            if (a->rta_type == UNIX_DIAG_RQLEN && RTA_PAYLOAD(a) >= sizeof(struct unix_diag_rqlen)) {
                struct unix_diag_rqlen *q = RTA_DATA(a);
                *queued = q->udiag_rqueue;
                *limit = q->udiag_wqueue;
                return 0;
            }
        }
    }
    return -1;
}

/* One netlink request and its answer, with a 200 ms bound on the wait. Each thread keeps one socket per
 * protocol: opening and closing one cost more than the question itself (30 us against 10, measured). A late
 * answer cannot pass for the next: answers carry the question's sequence number, and a socket whose wait
 * failed is closed. Returns the bytes read into `answer`, or -errno. */
static __thread int netlink_fds[2] = {-1, -1};
static __thread unsigned int netlink_seq;

static ssize_t netlink_ask(int protocol, struct nlmsghdr *request, void *answer, size_t capacity) {
    int *fd = &netlink_fds[protocol == NETLINK_ROUTE ? 1 : 0];
    if (*fd < 0) {
        *fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, protocol);
        if (*fd < 0) return -errno;
        struct timeval tv = {.tv_sec = 0, .tv_usec = 200000};
        setsockopt(*fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
    request->nlmsg_seq = ++netlink_seq;
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    ssize_t n = sendto(*fd, request, request->nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel);
    int code = n < 0 ? errno : EIO;
    while (n == (ssize_t)request->nlmsg_len) {
        n = recv(*fd, answer, capacity, 0);
        if (n < 0 && errno == EINTR) {
            n = (ssize_t)request->nlmsg_len;
            continue;
        }
        code = n < 0 ? errno : EIO;
        if (n < (ssize_t)sizeof(struct nlmsghdr)) break;
        if (((struct nlmsghdr *)answer)->nlmsg_seq != netlink_seq) {
            n = (ssize_t)request->nlmsg_len; /* an answer to an earlier question: read on */
            continue;
        }
        return n;
    }
    close(*fd);
    *fd = -1;
    return -code;
}

int workfcgi_tcp_peer_owner(int family, const unsigned char *peer, unsigned short peer_port, const unsigned char *local,
    unsigned short local_port, unsigned int *uid) {
    struct {
        struct nlmsghdr nlh;
        struct inet_diag_req_v2 req;
    } msg;
    memset(&msg, 0, sizeof msg);
    msg.nlh.nlmsg_len = sizeof msg;
    msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    msg.nlh.nlmsg_flags = NLM_F_REQUEST; /* not NLM_F_DUMP: the kernel looks the one socket up by its 4-tuple */
    msg.req.sdiag_family = (unsigned char)family;
    msg.req.sdiag_protocol = IPPROTO_TCP;
    msg.req.idiag_states = ~0U;
    size_t size = family == AF_INET ? 4 : 16;
    /* The peer's own socket: its source is the peer's address, its destination ours. */
    memcpy(msg.req.id.idiag_src, peer, size);
    memcpy(msg.req.id.idiag_dst, local, size);
    msg.req.id.idiag_sport = htons(peer_port);
    msg.req.id.idiag_dport = htons(local_port);
    msg.req.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
    msg.req.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
    long buffer[512];
    ssize_t n = netlink_ask(NETLINK_SOCK_DIAG, &msg.nlh, buffer, sizeof buffer);
    if (n < 0) return (int)n;
    struct nlmsghdr *h = (struct nlmsghdr *)buffer;
    if (!NLMSG_OK(h, (unsigned int)n)) return -EIO;
    if (h->nlmsg_type == NLMSG_ERROR) {
        struct nlmsgerr *e = NLMSG_DATA(h);
        if (e->error == -ENOENT) return 2;
        return e->error < 0 ? e->error : -EIO;
    }
    if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY || h->nlmsg_len < NLMSG_LENGTH(sizeof(struct inet_diag_msg))) return -EIO;
    struct inet_diag_msg *m = NLMSG_DATA(h);
    /* Exactly the socket asked for: when no connected socket matches, the kernel's lookup falls back to a
     * listener on the peer's address and port, which is someone else's socket. */
    if (m->id.idiag_sport != htons(peer_port) || m->id.idiag_dport != htons(local_port) || memcmp(m->id.idiag_src, peer, size) != 0
        || memcmp(m->id.idiag_dst, local, size) != 0) {
        return 2;
    }
    /* A socket no process holds (time-wait, or closed and orphaned) has no owner: the kernel reports uid 0. */
    if (m->idiag_inode == 0 || m->idiag_state == 10 /* TCP_LISTEN */) return 1;
    *uid = m->idiag_uid;
    return 0;
}

int workfcgi_is_local_address(int family, const unsigned char *address) {
    struct {
        struct nlmsghdr nlh;
        struct rtmsg rtm;
        char attributes[64];
    } msg;
    memset(&msg, 0, sizeof msg);
    size_t size = family == AF_INET ? 4 : 16;
    msg.nlh.nlmsg_type = RTM_GETROUTE;
    msg.nlh.nlmsg_flags = NLM_F_REQUEST;
    msg.rtm.rtm_family = (unsigned char)family;
    msg.rtm.rtm_dst_len = (unsigned char)(size * 8);
    struct rtattr *a = (struct rtattr *)msg.attributes;
    a->rta_type = RTA_DST;
    a->rta_len = (unsigned short)RTA_LENGTH(size);
    memcpy(RTA_DATA(a), address, size);
    msg.nlh.nlmsg_len = NLMSG_LENGTH(sizeof msg.rtm) + RTA_ALIGN(a->rta_len);
    long buffer[512];
    ssize_t n = netlink_ask(NETLINK_ROUTE, &msg.nlh, buffer, sizeof buffer);
    if (n < 0) return (int)n;
    struct nlmsghdr *h = (struct nlmsghdr *)buffer;
    if (!NLMSG_OK(h, (unsigned int)n)) return -EIO;
    if (h->nlmsg_type == NLMSG_ERROR) {
        struct nlmsgerr *e = NLMSG_DATA(h);
        /* No route to it at all: not an address of this machine. */
        if (e->error == -ENETUNREACH || e->error == -EHOSTUNREACH) return 0;
        return e->error < 0 ? e->error : -EIO;
    }
    if (h->nlmsg_type != RTM_NEWROUTE || h->nlmsg_len < NLMSG_LENGTH(sizeof(struct rtmsg))) return -EIO;
    struct rtmsg *r = NLMSG_DATA(h);
    return r->rtm_type == RTN_LOCAL ? 1 : 0;
}
