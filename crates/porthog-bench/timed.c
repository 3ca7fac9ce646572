/*
 * timed: runs one tool and reports its own wall time, CPU time and peak RSS, like time(1).
 *
 * Why not measure the tool as a direct child of porthog-bench: ru_maxrss is the peak of every
 * memory image the process ever had, and exec() records the old image's peak first
 * (setmax_mm_hiwater_rss() in exec_mmap(), fs/exec.c). A tool posix_spawn()ed from the
 * benchmark (CLONE_VM) starts out with the benchmark's own peak RSS, and one started by
 * `ip netns exec` with ip's. This launcher is tiny and static, enters the network namespace
 * itself (what `ip netns exec` does that the tools need) and forks the tool from its own small
 * image, so the tool's ru_maxrss is its own to within this program's few hundred KiB.
 *
 * usage: timed OUT_FILE NETNS_PATH|- PROGRAM [ARGS...]
 * writes to OUT_FILE: "wall_ns=N user_us=N sys_us=N maxrss_kib=N status=N"
 * and exits with the tool's exit code (128 + signal if a signal ended it).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: timed OUT_FILE NETNS_PATH|- PROGRAM [ARGS...]\n");
        return 125;
    }
    if (strcmp(argv[2], "-") != 0) {
        int ns = open(argv[2], O_RDONLY | O_CLOEXEC);
        if (ns < 0 || setns(ns, CLONE_NEWNET) < 0) {
            fprintf(stderr, "timed: entering %s: %s\n", argv[2], strerror(errno));
            return 125;
        }
        close(ns);
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "timed: fork: %s\n", strerror(errno));
        return 125;
    }
    if (pid == 0) {
        /* If the benchmark kills this launcher (timeout, Ctrl-C), the tool goes too. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execvp(argv[3], argv + 3);
        fprintf(stderr, "timed: exec %s: %s\n", argv[3], strerror(errno));
        _exit(127);
    }
    int status;
    struct rusage ru;
    while (wait4(pid, &status, 0, &ru) < 0) {
        if (errno != EINTR) {
            fprintf(stderr, "timed: wait4: %s\n", strerror(errno));
            return 125;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long long wall = (t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec);
    FILE *out = fopen(argv[1], "w");
    if (!out) {
        fprintf(stderr, "timed: %s: %s\n", argv[1], strerror(errno));
        return 125;
    }
    fprintf(out, "wall_ns=%lld user_us=%lld sys_us=%lld maxrss_kib=%ld status=%d\n", wall,
            ru.ru_utime.tv_sec * 1000000LL + ru.ru_utime.tv_usec,
            ru.ru_stime.tv_sec * 1000000LL + ru.ru_stime.tv_usec, ru.ru_maxrss, status);
    fclose(out);
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}
