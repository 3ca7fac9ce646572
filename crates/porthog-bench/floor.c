/*
 * floor: the least work porthog's live collector must do, in plain C, as a cost floor.
 * It dumps every TCP socket (IPv4 and IPv6, all states) over NETLINK_SOCK_DIAG, walks
 * /proc/<pid>/fd once (readlink of "socket:[N]"), joins inode -> pid and prints counts.
 * No formatting, no analysis, one thread: porthog's full run should cost no more than this.
 *
 * usage: floor [NETNS_PATH]   (e.g. /run/netns/NAME: setns() into it first, as porthog --netns)
 * prints: sockets=N v4=N v6=N with_inode=N attributed=N processes=N fds=N socket_fds=N
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void die(const char *what) {
    fprintf(stderr, "floor: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* Socket inodes from the dump (0 for TIME_WAIT and other ownerless sockets). */
static uint32_t *inodes;
static size_t n_inodes, cap_inodes;
static size_t n_sockets, n_v4, n_v6;

static void push_inode(uint32_t ino) {
    if (n_inodes == cap_inodes) {
        cap_inodes = cap_inodes ? cap_inodes * 2 : 65536;
        inodes = realloc(inodes, cap_inodes * sizeof *inodes);
        if (!inodes) die("realloc");
    }
    inodes[n_inodes++] = ino;
}

/* One sock_diag dump, answered by a walk of the machine-wide TCP hash tables that skips other
 * namespaces (inet_diag_dump_icsk(); tcp_diag_dump() in net/ipv4/tcp_diag.c on Linux 6.18). */
static void dump(int family) {
    int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0) die("socket(NETLINK_SOCK_DIAG)");
    struct {
        struct nlmsghdr nlh;
        struct inet_diag_req_v2 req;
    } msg = {
        .nlh = {.nlmsg_len = sizeof msg, .nlmsg_type = SOCK_DIAG_BY_FAMILY,
                .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP, .nlmsg_seq = 1},
        .req = {.sdiag_family = family, .sdiag_protocol = IPPROTO_TCP, .idiag_states = ~0u},
    };
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    if (sendto(fd, &msg, sizeof msg, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0)
        die("sendto(sock_diag)");
    /* The kernel fills at most ~32 KiB per dump skb (netlink_recvmsg caps max_recvmsg_len). */
    static char buf[64 * 1024] __attribute__((aligned(8)));
    for (;;) {
        ssize_t len = recv(fd, buf, sizeof buf, 0);
        if (len < 0) {
            if (errno == EINTR) continue;
            die("recv(sock_diag)");
        }
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
            if (h->nlmsg_type == NLMSG_DONE) {
                close(fd);
                return;
            }
            if (h->nlmsg_type == NLMSG_ERROR) {
                struct nlmsgerr *e = NLMSG_DATA(h);
                errno = -e->error;
                die("sock_diag dump");
            }
            struct inet_diag_msg *m = NLMSG_DATA(h);
            n_sockets++;
            if (m->idiag_family == AF_INET) n_v4++; else n_v6++;
            push_inode(m->idiag_inode);
        }
    }
}

/* Open-addressing set of inode -> owning pid (0 = no owner found yet). */
static uint32_t *keys;
static int32_t *owners;
static size_t mask;

static size_t slot(uint32_t ino) {
    size_t i = (ino * 0x9E3779B1u) & mask;
    while (keys[i] && keys[i] != ino) i = (i + 1) & mask;
    return i;
}

int main(int argc, char **argv) {
    if (argc > 1) {
        int ns = open(argv[1], O_RDONLY | O_CLOEXEC);
        if (ns < 0 || setns(ns, CLONE_NEWNET) < 0) die(argv[1]);
        close(ns);
    }
    dump(AF_INET);
    dump(AF_INET6);

    size_t size = 1024;
    while (size < n_inodes * 2) size *= 2;
    mask = size - 1;
    keys = calloc(size, sizeof *keys);
    owners = calloc(size, sizeof *owners);
    if (!keys || !owners) die("calloc");
    size_t with_inode = 0;
    for (size_t i = 0; i < n_inodes; i++) {
        if (!inodes[i]) continue;
        with_inode++;
        keys[slot(inodes[i])] = inodes[i];
    }

    /* /proc/<pid>/fd/<n> -> "socket:[inode]" (proc_fd_link() in fs/proc/fd.c). */
    size_t processes = 0, fds = 0, socket_fds = 0, attributed = 0;
    DIR *proc = opendir("/proc");
    if (!proc) die("/proc");
    struct dirent *p;
    while ((p = readdir(proc))) {
        if (p->d_name[0] < '1' || p->d_name[0] > '9') continue;
        char path[sizeof p->d_name + 8];
        snprintf(path, sizeof path, "%s/fd", p->d_name);
        int fd_dir = openat(dirfd(proc), path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd_dir < 0) continue; /* exited, or a kernel thread we may not read */
        DIR *d = fdopendir(fd_dir);
        if (!d) { close(fd_dir); continue; }
        processes++;
        int pid = atoi(p->d_name);
        struct dirent *f;
        while ((f = readdir(d))) {
            if (f->d_name[0] == '.') continue;
            fds++;
            char link[64];
            ssize_t n = readlinkat(fd_dir, f->d_name, link, sizeof link - 1);
            if (n < 9 || memcmp(link, "socket:[", 8) != 0) continue;
            link[n] = 0;
            socket_fds++;
            uint32_t ino = (uint32_t)strtoul(link + 8, NULL, 10);
            size_t i = slot(ino);
            if (keys[i] == ino && owners[i] == 0) {
                owners[i] = pid;
                attributed++;
            }
        }
        closedir(d);
    }
    closedir(proc);

    printf("sockets=%zu v4=%zu v6=%zu with_inode=%zu attributed=%zu processes=%zu fds=%zu "
           "socket_fds=%zu\n",
           n_sockets, n_v4, n_v6, with_inode, attributed, processes, fds, socket_fds);
    return 0;
}
