/*
 * phases: what each step of porthog's collector costs on a live namespace, and two alternatives.
 * An experiment behind the notes in BENCHMARKS.md, not part of the benchmark. Three rounds of:
 *   - two SOCK_DIAG_BY_FAMILY dumps (AF_INET, then AF_INET6), as porthog and the floor do;
 *   - one legacy TCPDIAG_GETSOCK dump: inet_diag_dump_compat() asks for AF_UNSPEC, so the
 *     kernel walks the machine-wide TCP hash once for both families instead of once per family;
 *   - the /proc/PID/fd walk with readlinkat(), and the same walk with fstatat() (S_ISSOCK).
 *
 * cc -O2 -o phases phases.c
 * sudo target/release/porthog-bench --sizes 250000 --runs 1 --skip ss --skip netstat --skip lsof \
 *     --no-write --after-size './phases /run/netns/$PORTHOG_BENCH_NETNS'
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static char buf[64 * 1024] __attribute__((aligned(8)));

/* Sends one dump request and counts the messages until NLMSG_DONE. */
static long dump(const void *msg, size_t len) {
    int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    if (fd < 0 || sendto(fd, msg, len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) {
        perror("sock_diag");
        exit(1);
    }
    long n = 0;
    for (;;) {
        ssize_t got = recv(fd, buf, sizeof buf, 0);
        if (got < 0) {
            if (errno == EINTR) continue;
            perror("recv");
            exit(1);
        }
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, got); h = NLMSG_NEXT(h, got)) {
            if (h->nlmsg_type == NLMSG_DONE) {
                close(fd);
                return n;
            }
            if (h->nlmsg_type == NLMSG_ERROR) {
                errno = -((struct nlmsgerr *)NLMSG_DATA(h))->error;
                perror("dump");
                exit(1);
            }
            n++;
        }
    }
}

static long dump_by_family(int family) {
    struct {
        struct nlmsghdr nlh;
        struct inet_diag_req_v2 req;
    } m = {
        .nlh = {.nlmsg_len = sizeof m, .nlmsg_type = SOCK_DIAG_BY_FAMILY,
                .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP, .nlmsg_seq = 1},
        .req = {.sdiag_family = family, .sdiag_protocol = IPPROTO_TCP, .idiag_states = ~0u},
    };
    return dump(&m, sizeof m);
}

static long dump_compat(void) {
    struct {
        struct nlmsghdr nlh;
        struct inet_diag_req req;
    } m = {
        .nlh = {.nlmsg_len = sizeof m, .nlmsg_type = TCPDIAG_GETSOCK,
                .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP, .nlmsg_seq = 1},
        .req = {.idiag_family = AF_INET, .idiag_states = ~0u},
    };
    return dump(&m, sizeof m);
}

/* Socket fds of every process, by readlinkat() or by fstatat(). */
static long walk(int use_stat) {
    long sockets = 0;
    DIR *proc = opendir("/proc");
    struct dirent *p;
    while ((p = readdir(proc))) {
        if (p->d_name[0] < '1' || p->d_name[0] > '9') continue;
        char path[sizeof p->d_name + 8];
        snprintf(path, sizeof path, "%s/fd", p->d_name);
        int dfd = openat(dirfd(proc), path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0) continue;
        DIR *d = fdopendir(dfd);
        struct dirent *f;
        while ((f = readdir(d))) {
            if (f->d_name[0] == '.') continue;
            if (use_stat) {
                struct stat st;
                if (fstatat(dfd, f->d_name, &st, 0) == 0 && S_ISSOCK(st.st_mode)) sockets++;
            } else {
                char link[64];
                ssize_t n = readlinkat(dfd, f->d_name, link, sizeof link);
                if (n > 8 && memcmp(link, "socket:[", 8) == 0) sockets++;
            }
        }
        closedir(d);
    }
    closedir(proc);
    return sockets;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: phases NETNS_PATH\n");
        return 2;
    }
    int ns = open(argv[1], O_RDONLY | O_CLOEXEC);
    if (ns < 0 || setns(ns, CLONE_NEWNET) < 0) {
        perror(argv[1]);
        return 1;
    }
    for (int round = 0; round < 3; round++) {
        double t0 = now();
        long two = dump_by_family(AF_INET) + dump_by_family(AF_INET6);
        double t1 = now();
        long one = dump_compat();
        double t2 = now();
        long links = walk(0);
        double t3 = now();
        long stats = walk(1);
        double t4 = now();
        printf("v4+v6 dumps: %ld in %.3f s | compat AF_UNSPEC dump: %ld in %.3f s | "
               "walk readlink: %ld in %.3f s | walk fstatat: %ld in %.3f s\n",
               two, t1 - t0, one, t2 - t1, links, t3 - t2, stats, t4 - t3);
    }
    return 0;
}
