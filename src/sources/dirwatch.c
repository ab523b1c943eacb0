/* The file-mode configuration source: inotify on the configuration directory and every
 * directory below it. Events are not interpreted, only debounced: any change means "load the
 * directory again", which is cheap, and a burst of writes (an editor, `kubectl cp`, a kubelet
 * ConfigMap swap) costs one reload. Started by main.c on the control thread, with
 * control/reload.c's pt_reload_request as its callback. */
#include "sources/dirwatch.h"
#include "core/loop.h"
#include "core/log.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#define PT_DIRWATCH_MASK (IN_CREATE | IN_DELETE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | \
                          IN_DELETE_SELF | IN_ATTRIB)

static struct {
    struct pt_io io;
    struct pt_loop *loop;
    struct pt_timer timer;
    char dir[PATH_MAX];
    unsigned debounce_ms;
    void (*on_change)(void *);
    void *arg;
} dw;

static void add_tree(const char *path, int depth)
{
    DIR *d;
    struct dirent *e;

    if (inotify_add_watch(dw.io.fd, path, PT_DIRWATCH_MASK) < 0 && errno != ENOENT)
        pt_warn("cannot watch %s: %s", path, strerror(errno));
    if (depth > 16 || (d = opendir(path)) == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        char sub[PATH_MAX];
        struct stat st;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
        if (stat(sub, &st) == 0 && S_ISDIR(st.st_mode))
            add_tree(sub, depth + 1);
    }
    closedir(d);
}

static void on_timer(struct pt_timer *t)
{
    dw.on_change(dw.arg);
}

/* Whether an event can change the configuration: YAML files, directories, and kubelet's
 * ConfigMap swap (the "..data" link); editors' swap files and logs cannot. */
static bool relevant(const struct inotify_event *ev)
{
    size_t n = ev->len ? strlen(ev->name) : 0;
    if (n == 0 || (ev->mask & (IN_ISDIR | IN_DELETE_SELF)))
        return true;
    if (strncmp(ev->name, "..data", 6) == 0)
        return true;
    return (n > 5 && strcasecmp(ev->name + n - 5, ".yaml") == 0) || (n > 4 && strcasecmp(ev->name + n - 4, ".yml") == 0);
}

static void on_events(struct pt_io *io, uint32_t events)
{
    char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
    bool any = false;

    for (;;) {
        ssize_t n = read(io->fd, buf, sizeof(buf));
        if (n <= 0)
            break;
        for (char *p = buf; p < buf + n;) {
            struct inotify_event *ev = (struct inotify_event *)p;
            if (ev->mask & IN_ISDIR && ev->mask & (IN_CREATE | IN_MOVED_TO))
                pt_dirwatch_rescan();
            any |= relevant(ev);
            p += sizeof(*ev) + ev->len;
        }
    }
    if (any)
        pt_timer_arm(dw.loop, &dw.timer, dw.debounce_ms);
}

void pt_dirwatch_rescan(void)
{
    add_tree(dw.dir, 0);
}

int pt_dirwatch_start(struct pt_loop *loop, const char *dir, unsigned debounce_ms,
                      void (*on_change)(void *), void *arg)
{
    dw.loop = loop;
    snprintf(dw.dir, sizeof(dw.dir), "%s", dir);
    dw.debounce_ms = debounce_ms;
    dw.on_change = on_change;
    dw.arg = arg;
    dw.timer.cb = on_timer;
    dw.io.fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    dw.io.cb = on_events;
    if (dw.io.fd < 0)
        return PT_IO;
    add_tree(dir, 0);
    return pt_loop_add(loop, &dw.io, EPOLLIN);
}
