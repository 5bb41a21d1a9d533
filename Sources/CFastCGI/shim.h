#include <fcgiapp.h>
#include <sys/socket.h>
#include <sys/types.h>

/* SO_PEERCRED fills a struct ucred, which glibc declares only under _GNU_SOURCE; defining that here would
 * change system types under other modules (fd_set), so the same three fields are spelled out. */
struct workfcgi_peer_credentials { pid_t pid; uid_t uid; gid_t gid; };

static inline int workfcgi_peer_credentials(int fd, struct workfcgi_peer_credentials *credentials) {
    socklen_t length = sizeof *credentials;
    return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, credentials, &length);
}
