/* NSS lookup latency: getpwnam, getgrgid and getgrouplist (initgroups) through glibc, whatever
 * nsswitch.conf names. Usage: nssbench CALLS USERS BASE_UID
 * Users are u<i>@contoso.test with UID and private GID BASE_UID+i. Prints p50 and p99 in µs. */
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void report(const char *what, double *t, int n, int misses) {
    qsort(t, n, sizeof(double), cmp);
    printf("%-12s p50 %9.2f us  p99 %9.2f us  (%d calls, %d not found)\n", what, t[n / 2], t[(n * 99) / 100], n, misses);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: nssbench CALLS USERS BASE_UID\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    int n = atoi(argv[1]), users = atoi(argv[2]);
    unsigned long base = strtoul(argv[3], NULL, 10);
    double *t = malloc(sizeof(double) * n);
    char name[64];
    int misses = 0;
    srand(42);
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "u%d@contoso.test", rand() % users);
        double t0 = now_us();
        struct passwd *p = getpwnam(name);
        t[i] = now_us() - t0;
        misses += p == NULL;
    }
    report("getpwnam", t, n, misses);
    misses = 0;
    for (int i = 0; i < n; i++) {
        gid_t gid = base + rand() % users;
        double t0 = now_us();
        struct group *g = getgrgid(gid);
        t[i] = now_us() - t0;
        misses += g == NULL;
    }
    report("getgrgid", t, n, misses);
    misses = 0;
    for (int i = 0; i < n; i++) {
        int k = rand() % users;
        snprintf(name, sizeof name, "u%d@contoso.test", k);
        gid_t groups[64];
        int ng = 64;
        double t0 = now_us();
        int r = getgrouplist(name, base + k, groups, &ng);
        t[i] = now_us() - t0;
        misses += r < 2; /* the private group and usher-admins */
    }
    report("initgroups", t, n, misses);
    return 0;
}
