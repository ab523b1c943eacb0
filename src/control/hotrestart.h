/* Hot restart by AMBASSADOR_ENVOY_BASE_ID (control/hotrestart.c). */
#ifndef PT_CONTROL_HOTRESTART_H
#define PT_CONTROL_HOTRESTART_H

#include <stdbool.h>

struct pt_loop;

/* pt_hotrestart_start: before the first configuration: takes over the listening sockets of a
 * running portico with the same <base_id>, or else claims the id so that a later one can take
 * over from this process (<on_drain> then runs when it does). Returns 0 or PT_IO. */
int pt_hotrestart_start(struct pt_loop *loop, const char *base_id, void (*on_drain)(void));

/* pt_hotrestart_ready: after the first configuration is live: the replaced process may drain;
 * sockets no Listener took are closed; the id is claimed. */
void pt_hotrestart_ready(void);

/* pt_hotrestart_handed_over: this process gave its sockets to a successor (drain without
 * closing them). */
bool pt_hotrestart_handed_over(void);

#endif
