/*
 * berth's pod sandbox process. As PID 1 of the pod it holds the pod's
 * namespaces, reaps orphaned children, and exits 0 on SIGTERM or SIGINT
 * (a PID 1 without handlers would ignore them).
 */
#include <signal.h>
#include <stddef.h>
#include <sys/wait.h>

static volatile sig_atomic_t stop;

static void on_stop(int sig) { (void)sig; stop = 1; }

static void on_child(int sig) { (void)sig; }

int main(void)
{
    sigset_t handled, waiting;
    struct sigaction sa = {0};

    /* Block the signals outside sigsuspend so none is lost between checks. */
    sigemptyset(&handled);
    sigaddset(&handled, SIGCHLD);
    sigaddset(&handled, SIGTERM);
    sigaddset(&handled, SIGINT);
    sigprocmask(SIG_BLOCK, &handled, &waiting);
    sigdelset(&waiting, SIGCHLD);
    sigdelset(&waiting, SIGTERM);
    sigdelset(&waiting, SIGINT);

    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_child;
    sa.sa_flags = SA_NOCLDSTOP;
    sigaction(SIGCHLD, &sa, NULL);

    for (;;) {
        sigsuspend(&waiting);
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
        if (stop)
            return 0;
    }
}
