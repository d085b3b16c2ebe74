/*
 * ui.h - `timeglass ui`: the dashboard command.
 */
#ifndef TG_SERVER_UI_H
#define TG_SERVER_UI_H

/* Runs `timeglass ui [--db PATH] [--port N] [--host ADDR] [--no-open]`;
 * argv[0] is the command name ("ui"). Serves until SIGINT or SIGTERM, then
 * returns 0. On bad usage, a busy port or an unusable store it prints one
 * line `timeglass: ...` on stderr and returns 2. A missing store is not an
 * error: the page says how to record one and shows it once it appears.
 * Blocks SIGINT and SIGTERM while serving and restores the signal mask. */
int tg_cmd_ui(int argc, char **argv);

#endif
