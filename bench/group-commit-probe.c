// The least any acknowledged-means-durable broker adds on this machine: a bare group commit in C. One
// thread takes arrivals at RATE a second (230 bytes each, a spool line's size), another writes and
// fdatasyncs whatever waits, as often as it can. Run it beside `npm run bench:ingest` to see what the
// disk and the CPU queue alone cost a reading at the plain broker's load (docs/performance-log.md,
// twelfth session).
//
//   gcc -O2 -Wall -pthread -o /tmp/group-commit-probe bench/group-commit-probe.c
//   /tmp/group-commit-probe RATE WINDOW_S TOTAL_S FILE
//
// Prints a line every WINDOW_S: unix time, readings made durable, their wait from arrival to durable
// p50 / p99 / p99.9 in ms, the p99 of write + fdatasync in ms, and the number of commits.
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LINE_BYTES 230
#define MAX_WAITING 100000
#define MAX_SAMPLES 2000000

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t queue_ready = PTHREAD_COND_INITIALIZER;
static double arrivals[MAX_WAITING];
static int waiting = 0;

static pthread_mutex_t sample_lock = PTHREAD_MUTEX_INITIALIZER;
static double waits[MAX_SAMPLES];
static int wait_count = 0;
static double syncs[MAX_SAMPLES];
static int sync_count = 0;

static int fd;
static char bytes[MAX_WAITING * LINE_BYTES];

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double at(const double *sorted, int n, double q) { return sorted[(int)(n * q)] * 1e3; }

static void *syncer(void *unused) {
  (void)unused;
  static double batch[MAX_WAITING];
  for (;;) {
    pthread_mutex_lock(&queue_lock);
    while (waiting == 0) pthread_cond_wait(&queue_ready, &queue_lock);
    int n = waiting;
    memcpy(batch, arrivals, n * sizeof(double));
    waiting = 0;
    pthread_mutex_unlock(&queue_lock);

    double started = now();
    if (write(fd, bytes, (size_t)n * LINE_BYTES) < 0 || fdatasync(fd) < 0) {
      perror("group-commit-probe: write or fdatasync");
      exit(1);
    }
    double durable = now();

    pthread_mutex_lock(&sample_lock);
    for (int i = 0; i < n && wait_count < MAX_SAMPLES; i++) waits[wait_count++] = durable - batch[i];
    if (sync_count < MAX_SAMPLES) syncs[sync_count++] = durable - started;
    pthread_mutex_unlock(&sample_lock);
  }
  return NULL;
}

static void report(void) {
  pthread_mutex_lock(&sample_lock);
  int n = wait_count, m = sync_count;
  double *w = malloc(n * sizeof(double) + 1), *s = malloc(m * sizeof(double) + 1);
  memcpy(w, waits, n * sizeof(double));
  memcpy(s, syncs, m * sizeof(double));
  wait_count = sync_count = 0;
  pthread_mutex_unlock(&sample_lock);
  if (n > 0 && m > 0) {
    qsort(w, n, sizeof(double), by_value);
    qsort(s, m, sizeof(double), by_value);
    printf("%ld %d %.2f %.2f %.2f %.2f %d\n", (long)time(NULL), n, at(w, n, 0.5), at(w, n, 0.99),
           at(w, n, 0.999), at(s, m, 0.99), m);
    fflush(stdout);
  }
  free(w);
  free(s);
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: %s RATE WINDOW_S TOTAL_S FILE\n", argv[0]);
    return 2;
  }
  int rate = atoi(argv[1]);
  double window = atof(argv[2]), total = atof(argv[3]);
  if (rate < 1 || rate > 1000000 || window <= 0 || total <= 0) {
    fprintf(stderr, "group-commit-probe: RATE 1..1000000, WINDOW_S and TOTAL_S > 0\n");
    return 2;
  }
  fd = open(argv[4], O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd < 0) {
    perror("group-commit-probe: open");
    return 1;
  }
  memset(bytes, 'x', sizeof bytes);
  pthread_t thread;
  pthread_create(&thread, NULL, syncer, NULL);

  double start = now(), next = start, report_at = start + window;
  while (now() - start < total) {
    next += 1.0 / rate;
    double ahead = next - now();
    if (ahead > 0) {
      struct timespec pause = {0, (long)(ahead * 1e9)};
      nanosleep(&pause, NULL);
    }
    pthread_mutex_lock(&queue_lock);
    if (waiting < MAX_WAITING) arrivals[waiting++] = now();
    pthread_cond_signal(&queue_ready);
    pthread_mutex_unlock(&queue_lock);
    if (now() >= report_at) {
      report();
      report_at += window;
    }
  }
  return 0;
}
