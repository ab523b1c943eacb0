/* Watching a configuration directory (and its subdirectories) with inotify. */
#ifndef PT_SOURCES_DIRWATCH_H
#define PT_SOURCES_DIRWATCH_H

struct pt_loop;

/* pt_dirwatch_start: watches <dir> recursively on <loop>; <on_change>(<arg>) runs once per
 * burst of changes, <debounce_ms> after the last event. Returns 0 or a negative PT_E* code. */
int pt_dirwatch_start(struct pt_loop *loop, const char *dir, unsigned debounce_ms,
                      void (*on_change)(void *), void *arg);

/* pt_dirwatch_rescan: adds watches for subdirectories created since the start. */
void pt_dirwatch_rescan(void);

#endif
